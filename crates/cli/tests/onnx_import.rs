//! `cnnsplit import --onnx`: a ResNet-18 exported by PyTorch imports under its own layer names,
//! evaluates, decomposes with GradSplitter and the GA, and composes; bad files fail with the
//! file named and leave no model directory behind.

mod common;
use common::{cnnsplit, fails_with, ok_json, p};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../onnx-import/tests/fixtures")
        .join(name)
}

#[test]
fn an_exported_resnet18_imports_decomposes_and_composes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("resnet18");
    let onnx = fixture("resnet18.bn.onnx");
    let rec = ok_json(&[
        "import",
        "--onnx",
        p(&onnx),
        "--val-last",
        "600",
        "--out",
        p(&model),
        "--json",
    ]);
    assert_eq!(rec["arch"], "resnet18.bn");
    assert_eq!(rec["convs"], 20);
    assert_eq!(rec["classes"], 10);
    assert_eq!(rec["onnx"]["batch_norms"], 20);
    assert_eq!(rec["onnx"]["opset"], 13);
    // inspect shows the user's layer names and the preset's kernel count
    let info = ok_json(&["inspect", "--model", p(&model), "--json"]);
    let preset = ok_json(&[
        "inspect", "--arch", "resnet18", "--width", "0.0625", "--json",
    ]);
    assert_eq!(info["kernels"], preset["kernels"]);
    assert_eq!(info["mask_sites"], preset["mask_sites"]);
    let names: Vec<&str> = info["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["name"].as_str().filter(|n| !n.is_empty()))
        .collect();
    assert!(names.contains(&"layer2.0.downsample.0"), "{names:?}");
    let text = cnnsplit(&["inspect", "--model", p(&model)]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("layer1.0.conv1"));

    let eval = ok_json(&["eval", "--model", p(&model), "--json"]);
    assert_eq!(eval["evaluation"]["samples"], 1000);

    let grad = tmp.path().join("grad");
    let rec = ok_json(&[
        "decompose",
        "--model",
        p(&model),
        "--out",
        p(&grad),
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
    // --val-last recorded the split: the decomposition validated on the last 600 images
    assert_eq!(rec["val_split"], "recorded");
    assert_eq!(rec["val_images"], 600);
    let ga = tmp.path().join("ga");
    let rec = ok_json(&[
        "decompose",
        "--method",
        "ga",
        "--model",
        p(&model),
        "--out",
        p(&ga),
        "--generations",
        "1",
        "--population",
        "4",
        "--parents",
        "2",
        "--keep",
        "1",
        "--fitness-images",
        "20",
        "--holdout-images",
        "20",
        "--eval-batch",
        "64",
        "-q",
        "--json",
    ]);
    assert_eq!(rec["modules"].as_array().unwrap().len(), 10);
    let comp = ok_json(&[
        "compose",
        "--modules",
        p(&grad),
        "--model",
        p(&model),
        "-q",
        "--json",
    ]);
    assert_eq!(comp["composed"]["samples"], 1000);
}

#[test]
fn bad_onnx_files_fail_naming_the_file_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("vgg16.folded.onnx")).unwrap();
    let cut = tmp.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let out = tmp.path().join("out");
    fails_with(
        &["import", "--onnx", p(&cut), "--out", p(&out)],
        &[
            &format!("{}: not an ONNX model", cut.display()),
            "is the file complete?",
        ],
    );
    assert!(!out.exists());
    fails_with(
        &[
            "import",
            "--onnx",
            p(&fixture("vgg16.folded.onnx")),
            "--num-classes",
            "3",
            "--out",
            p(&out),
        ],
        &["--num-classes 3: ", "has 10 classes"],
    );
    assert!(!out.exists());
    fails_with(
        &[
            "import",
            "--onnx",
            p(&cut),
            "--weights",
            p(&cut),
            "--out",
            p(&out),
        ],
        &["'--onnx <ONNX>' cannot be used with '--weights <WEIGHTS>'"],
    );
}
