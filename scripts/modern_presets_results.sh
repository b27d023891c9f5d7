#!/usr/bin/env bash
# ResNet-18, VGG-16 and MobileNetV2 presets through train → decompose (GradSplitter and
# CNNSplitter) → compose → patch on the bundled Fashion-MNIST subset, with the CLI only.
# Every command's --json report goes to docs/results/modern-presets/<arch>/, with the wall
# time of each step and the commit in summary.json. Usage (from the repo root, after
# `cargo build --release -p cnnsplit`):
#   scripts/modern_presets_results.sh [ARCH:WIDTH ...]   (default: resnet18:0.125 vgg16:0.125 mobilenetv2:0.25)
set -euo pipefail
BIN=${CNNSPLIT:-target/release/cnnsplit}
RUNS=${RUNS:-runs/modern-presets}
OUT=docs/results/modern-presets
COMMIT=$(git rev-parse --short HEAD)
NETS=("$@")
[ ${#NETS[@]} -gt 0 ] || NETS=(resnet18:0.125 vgg16:0.125 mobilenetv2:0.25)
mkdir -p "$RUNS" "$OUT"

step() { # NAME FILE -- command...: run, time, keep the JSON (a step whose JSON exists is kept)
    local name=$1 file=$2; shift 3
    local t0 t1
    if [ -f "$file" ]; then echo "  $name: kept"; return; fi
    t0=$(date +%s.%N)
    "$@" > "$file.tmp"
    t1=$(date +%s.%N)
    mv "$file.tmp" "$file"
    echo "$name $(echo "$t1 - $t0" | bc)" >> "$TIMES"
    echo "  $name: $(echo "$t1 - $t0" | bc | cut -c1-7) s"
}

# the weak model every family's module patches (as in `cnnsplit demo`)
WEAK="$RUNS/weak"
mkdir -p "$OUT/weak"
TIMES="$OUT/weak/times.txt"; touch "$TIMES"
echo "weak model"
step train "$OUT/weak/train.json" -- "$BIN" train --arch simcnn-weak --epochs 3 --lr 0.02 \
    --limit 1200 --val-fraction 0.1 --milestones 1000 --augment none --seed 0 --out "$WEAK" -q --json

for net in "${NETS[@]}"; do
    arch=${net%%:*}; width=${net##*:}
    dir="$OUT/$arch"; run="$RUNS/$arch"
    mkdir -p "$dir"
    TIMES="$dir/times.txt"; touch "$TIMES"
    echo "$arch (width $width)"
    step train "$dir/train.json" -- "$BIN" train --arch "$arch" --width "$width" --epochs 8 \
        --lr 0.02 --milestones 6 --val-fraction 0.1 --seed 0 --out "$run/model" -q --json
    step decompose-grad "$dir/decompose-grad.json" -- "$BIN" decompose --model "$run/model" \
        --out "$run/grad" --warmup-epochs 4 --epochs 9 --pattern-mask 1 --pattern-head 2 \
        --mask-lr 0.02 --head-lr 0.005 --mask-phase-head-lr 0.005 --lambda 1.0 --batch-size 32 \
        --tolerance 0.02 --limit 2048 --seed 0 -q --json
    step decompose-ga "$dir/decompose-ga.json" -- "$BIN" decompose --method ga --model "$run/model" \
        --out "$run/ga" --generations 6 --population 12 --parents 6 --keep 2 \
        --fitness-images 300 --holdout-images 300 --seed 0 -q --json
    step compose-grad "$dir/compose-grad.json" -- "$BIN" compose --modules "$run/grad" \
        --model "$run/model" -q --json
    step compose-ga "$dir/compose-ga.json" -- "$BIN" compose --modules "$run/ga" \
        --model "$run/model" -q --json
    # patch the weak model's weakest class (lowest test F1) with this family's module
    weakest=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); f=[c["f1"] for c in r["test_per_class"]]; print(f.index(min(f)))' "$OUT/weak/train.json")
    step patch-grad "$dir/patch-grad.json" -- "$BIN" patch --model "$WEAK" \
        --module "$run/grad/module_$weakest" --force -q --json
done

python3 - "$OUT" "$COMMIT" "${NETS[@]}" <<'PY'
import json, os, sys
out, commit, nets = sys.argv[1], sys.argv[2], sys.argv[3:]
summary = {"commit": commit, "script": "scripts/modern_presets_results.sh", "networks": []}
for net in nets:
    arch, width = net.split(":")
    d = os.path.join(out, arch)
    load = lambda name: json.load(open(os.path.join(d, name)))
    times = dict(line.split() for line in open(os.path.join(d, "times.txt")))
    tr, g, ga = load("train.json"), load("decompose-grad.json"), load("decompose-ga.json")
    cg, cga, pg = load("compose-grad.json"), load("compose-ga.json"), load("patch-grad.json")
    summary["networks"].append({
        "arch": arch, "width": float(width),
        "test_accuracy": tr["test_accuracy"],
        "grad": {"mean_krr": g.get("mean_krr"), "composed_accuracy": cg["composed"]["accuracy"]},
        "ga": {"mean_krr": ga.get("mean_krr"), "composed_accuracy": cga["composed"]["accuracy"]},
        "patch_grad": pg.get("report", pg),
        "seconds": {k: round(float(v), 1) for k, v in times.items()},
    })
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
