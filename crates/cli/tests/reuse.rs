//! `reuse select`, `reuse new-task` and composed-model directories, end to end on the bundled
//! data with two tiny SimCNNs.

use std::path::{Path, PathBuf};
mod common;
use common::{fails_with, ok_json, p};

/// Train a tiny SimCNN with `seed` and split it with a one-epoch GradSplitter schedule.
fn model_and_modules(dir: &Path, seed: &str) -> (PathBuf, PathBuf) {
    let model = dir.join(format!("model-{seed}"));
    let modules = dir.join(format!("modules-{seed}"));
    ok_json(&[
        "train",
        "--arch",
        "simcnn",
        "--width",
        "0.0625",
        "--epochs",
        "1",
        "--limit",
        "480",
        "--batch-size",
        "32",
        "--seed",
        seed,
        "--out",
        p(&model),
        "-q",
        "--json",
    ]);
    ok_json(&[
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
        "320",
        "--batch-size",
        "32",
        "-q",
        "--json",
    ]);
    (model, modules)
}

#[test]
fn select_and_new_task_write_composed_models_that_eval_predict_and_inspect_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (m0, d0) = model_and_modules(tmp.path(), "1");
    let (m1, d1) = model_and_modules(tmp.path(), "2");

    // ---- reuse select: best F1 per class among the two models' modules
    let sel = tmp.path().join("selected");
    let rec = ok_json(&[
        "reuse",
        "select",
        "--models",
        p(&m0),
        p(&m1),
        "--modules",
        p(&d0),
        p(&d1),
        "--out",
        p(&sel),
        "-q",
        "--json",
    ]);
    assert_eq!(rec["selection_images"], 200);
    assert_eq!(rec["test_images"], 800);
    let f1 = rec["selection_f1"].as_array().unwrap();
    let chosen = rec["chosen_model"].as_array().unwrap();
    assert_eq!(chosen.len(), 10);
    for (c, pick) in chosen.iter().enumerate() {
        let a = f1[0][c].as_f64().unwrap();
        let b = f1[1][c].as_f64().unwrap();
        // the higher F1 wins; a tie keeps the first model
        assert_eq!(
            pick.as_u64().unwrap(),
            u64::from(b > a),
            "class {c}: {a} vs {b}"
        );
    }
    let accs: Vec<f64> = rec["model_test_accuracy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(
        rec["best_model_accuracy"].as_f64().unwrap(),
        accs[0].max(accs[1])
    );
    assert!(
        (rec["mean_model_accuracy"].as_f64().unwrap() - (accs[0] + accs[1]) / 2.0).abs() < 1e-12
    );
    let ensemble = rec["ensemble_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ensemble));

    // the saved composition evaluates to the accuracy the selection reported
    let ev = ok_json(&["eval", "--model", p(&sel), "-q", "--json"]);
    assert_eq!(ev["evaluation"]["accuracy"], rec["composed_accuracy"]);
    assert_eq!(ev["evaluation"]["samples"], 800);
    let ev_sel = ok_json(&["eval", "--model", p(&sel), "--split", "val", "-q", "--json"]);
    assert_eq!(ev_sel["evaluation"]["samples"], 200);
    let scores = tmp.path().join("scores.safetensors");
    let idx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/fashion-mnist-small/t10k-images-idx3-ubyte.gz"
    );
    let pr = ok_json(&[
        "predict",
        "--model",
        p(&sel),
        "--input",
        idx,
        "--output",
        p(&scores),
        "-q",
        "--json",
    ]);
    assert_eq!(pr["images"], 1000);
    let t = candle_core::safetensors::load(&scores, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t["scores"].dims(), &[1000, 10]);
    let ins = ok_json(&["inspect", "--model", p(&sel), "-q", "--json"]);
    assert_eq!(ins["modules"].as_array().unwrap().len(), 10);
    assert_eq!(ins["manifest"]["kind"], "select");
    // an existing composition is never overwritten
    let before = std::fs::read(sel.join("composition.json")).unwrap();
    fails_with(
        &[
            "reuse",
            "select",
            "--models",
            p(&m0),
            p(&m1),
            "--modules",
            p(&d0),
            p(&d1),
            "--out",
            p(&sel),
            "-q",
        ],
        &["already holds a composed model"],
    );
    assert_eq!(std::fs::read(sel.join("composition.json")).unwrap(), before);

    // ---- reuse new-task: renamed classes, two candidates for one of them
    let task = tmp.path().join("task");
    let trousers0 = format!("trousers={}", p(&d0.join("module_1")));
    let bags0 = format!("bags={}", p(&d0.join("module_8")));
    let bags1 = format!("bags={}", p(&d1.join("module_8")));
    let rec = ok_json(&[
        "reuse",
        "new-task",
        "--module",
        &bags0,
        "--module",
        &trousers0,
        "--module",
        &bags1,
        "--dataset",
        "fashion-mnist",
        "--scratch-epochs",
        "1",
        "--scratch-patience",
        "2",
        "--out",
        p(&task),
        "-q",
        "--json",
    ]);
    // labels follow the order of first appearance; sources are the modules' own classes
    assert_eq!(rec["class_names"], serde_json::json!(["bags", "trousers"]));
    assert_eq!(
        rec["class_sources"],
        serde_json::json!(["fashion-mnist/Bag", "fashion-mnist/Trouser"])
    );
    let cands = rec["candidates"].as_array().unwrap();
    let (f_bag0, f_bag1) = (
        cands[0]["f1"].as_f64().unwrap(),
        cands[2]["f1"].as_f64().unwrap(),
    );
    let expected_bag = if f_bag1 > f_bag0 { &d1 } else { &d0 };
    assert_eq!(
        rec["chosen_modules"][0].as_str().unwrap(),
        p(&expected_bag.join("module_8"))
    );
    let composed = rec["composed_accuracy"].as_f64().unwrap();
    let scratch = rec["scratch_accuracy"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&composed) && scratch > 0.0,
        "{composed} {scratch}"
    );
    // the baseline trains and validates on both classes (80/20 of each), and says how it ran
    let s = &rec["scratch"];
    for part in [
        "train_class_counts",
        "val_class_counts",
        "test_class_counts",
    ] {
        let counts = s[part].as_array().unwrap();
        assert!(
            counts.len() == 2 && counts.iter().all(|c| c.as_u64().unwrap() > 0),
            "{part}: {counts:?}"
        );
    }
    assert_eq!(
        (s["epochs_run"].as_u64(), s["stopped_early"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(s["config"]["patience"], 2);
    let majority = s["majority_share"].as_f64().unwrap();
    assert!((0.5..1.0).contains(&majority), "{majority}");
    assert_eq!(
        s["near_majority"].as_bool(),
        Some(scratch < majority + 0.05)
    );
    // only bag and trouser images of the test part: eval agrees on count and accuracy
    let ev = ok_json(&["eval", "--model", p(&task), "-q", "--json"]);
    assert_eq!(ev["evaluation"]["samples"], rec["test_images"]);
    assert_eq!(ev["evaluation"]["accuracy"], rec["composed_accuracy"]);
    assert_eq!(ev["class_names"], serde_json::json!(["bags", "trousers"]));

    // ---- bad input
    fails_with(
        &[
            "reuse",
            "new-task",
            "--module",
            "trousers",
            "--dataset",
            "fashion-mnist",
            "-q",
        ],
        &["expected CLASSNAME=MODULE_DIR"],
    );
    fails_with(
        &[
            "reuse",
            "new-task",
            "--module",
            &trousers0,
            "--dataset",
            "fashion-mnist",
            "-q",
        ],
        &["at least 2 classes"],
    );
    let twice = format!("bags={}", p(&d0.join("module_1")));
    fails_with(
        &[
            "reuse",
            "new-task",
            "--module",
            &trousers0,
            "--module",
            &twice,
            "--dataset",
            "fashion-mnist",
            "-q",
        ],
        &["both fashion-mnist/Trouser"],
    );
    fails_with(
        &[
            "reuse",
            "select",
            "--models",
            p(&m0),
            "--modules",
            p(&d1),
            "-q",
        ],
        &["not among --models"],
    );
}
