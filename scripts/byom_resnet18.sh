#!/usr/bin/env bash
# "Bring your own model", measured: a ResNet-18 (width 0.25) trained in PyTorch on the bundled
# Fashion-MNIST subset (all but the last 600 training images, which validate the
# decomposition) and exported with torch.onnx.export, then imported, evaluated, decomposed
# with GradSplitter (a short schedule on 2048 images) and composed by the cnnsplit CLI. Each step's
# --json report and wall time go to docs/results/byom/. Usage, from the repo root:
#   PYTHON=../peer-venv/bin/python scripts/byom_resnet18.sh     (PyTorch, onnx, onnxscript)
# An existing runs/byom/resnet18.onnx is reused (delete it to retrain).
set -euo pipefail
BIN=${CNNSPLIT:-target/release/cnnsplit}
PYTHON=${PYTHON:-python3}
RUN=runs/byom
OUT=docs/results/byom
mkdir -p "$RUN" "$OUT"
TIMES="$OUT/times.txt"; : > "$TIMES"
step() {
    local name=$1 file=$2; shift 3
    local t0 t1
    t0=$(date +%s.%N); "$@" > "$file.tmp"; t1=$(date +%s.%N)
    mv "$file.tmp" "$file"
    echo "$name $(echo "$t1 - $t0" | bc)" >> "$TIMES"
    echo "$name: $(echo "$t1 - $t0" | bc | cut -c1-7) s"
}
if [ ! -f "$RUN/resnet18.onnx" ]; then
    "$PYTHON" scripts/torch_train_export.py --arch resnet18 --width 0.25 --epochs 8 \
        --val-last 600 --data datasets/fashion-mnist-small --out "$RUN/resnet18.onnx"
fi
cp "$RUN/resnet18.json" "$OUT/torch-train.json"
step import "$OUT/import.json" -- "$BIN" import --onnx "$RUN/resnet18.onnx" \
    --dataset fashion-mnist --val-last 600 --out "$RUN/model" --json
step eval "$OUT/eval.json" -- "$BIN" eval --model "$RUN/model" --json
step decompose "$OUT/decompose.json" -- "$BIN" decompose --model "$RUN/model" --out "$RUN/modules" \
    --warmup-epochs 4 --epochs 9 --pattern-mask 1 --pattern-head 2 --mask-lr 0.01 \
    --head-lr 0.005 --mask-phase-head-lr 0.005 --lambda 1.0 --batch-size 32 --tolerance 0.02 \
    --limit 2048 --seed 0 -q --json
step compose "$OUT/compose.json" -- "$BIN" compose --modules "$RUN/modules" --model "$RUN/model" -q --json
echo "commit $(git rev-parse --short HEAD)" >> "$TIMES"
