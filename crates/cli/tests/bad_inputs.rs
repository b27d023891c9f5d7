//! Bad inputs of the `cnnsplit` binary and the exact messages users see (the rows of
//! docs/errors.md that no library test covers).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_cnnsplit"))
        .args(args)
        .output()
        .expect("run cnnsplit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "cnnsplit {args:?} should fail with status 1: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A tiny model on the bundled data (width 0.0625, one epoch on 100 images), trained once.
fn tiny_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad_inputs_model");
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(env!("CARGO_BIN_EXE_cnnsplit"))
            .args([
                "-q", "train", "--width", "0.0625", "--epochs", "1", "--limit", "100", "--out",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

#[test]
fn an_unknown_dataset_kind_lists_the_known_ones() {
    fails_with(
        &["train", "--dataset", "imagenet=x", "--out", "never"],
        &["--dataset imagenet=x: invalid dataset spec \"imagenet=x\": unknown dataset kind; expected one of fashion-mnist, mnist, mnist-5k, cifar10, cifar100, svhn, folder"],
    );
}

#[test]
fn numbers_out_of_range_name_the_flag() {
    fails_with(
        &["train", "--width", "0", "--out", "never"],
        &["--width must be a positive number, got 0"],
    );
    fails_with(
        &["train", "--val-fraction", "1.5", "--out", "never"],
        &["validation fraction 1.5 is not in [0, 1)"],
    );
    let model = tiny_model();
    fails_with(
        &[
            "decompose",
            "--model",
            p(model),
            "--method",
            "ga",
            "--confidence",
            "2",
            "--out",
            "never",
        ],
        &["--confidence must be within [0, 1], got 2"],
    );
}

#[test]
fn cuda_without_cuda_support_is_refused() {
    if cfg!(feature = "cuda") {
        return; // a CUDA build may well find a GPU
    }
    fails_with(
        &["eval", "--device", "cuda", "--model", p(tiny_model())],
        &["--device cuda: this binary was built without CUDA support (build with --features cuda)"],
    );
}

#[test]
fn a_dataset_with_another_class_count_is_refused() {
    // a CIFAR-100 binary dataset of two records per split: 100 classes, the model has 10
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    let mut records = Vec::new();
    for label in [3u8, 57] {
        records.extend([label / 20, label]);
        records.extend(std::iter::repeat_n(128u8, 3072));
    }
    std::fs::write(dir.join("train.bin"), &records).unwrap();
    std::fs::write(dir.join("test.bin"), &records).unwrap();
    let dataset = format!("cifar100={}", tmp.path().display());
    let model = tiny_model();
    fails_with(
        &["eval", "--model", p(model), "--dataset", &dataset],
        &[&format!(
            "{}: the model has 10 classes, dataset `cifar100/train` has 100",
            model.display()
        )],
    );
}

#[test]
fn predict_inputs_of_the_wrong_kind_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let write_safetensors = |name: &str, key: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        let data = vec![0u8; 4 * n];
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &data)
                .unwrap();
        let path = tmp.path().join(name);
        let bytes = safetensors::serialize(
            [(key, view)],
            None::<std::collections::HashMap<String, String>>,
        )
        .unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let out = tmp.path().join("out.safetensors");
    let grey = write_safetensors("grey.safetensors", "images", &[2, 1, 28, 28]);
    fails_with(
        &[
            "predict",
            "--model",
            p(model),
            "--input",
            p(&grey),
            "--output",
            p(&out),
        ],
        &[&format!(
            "{}: images have shape [2, 1, 28, 28], the model expects [N, 3, 32, 32]",
            grey.display()
        )],
    );
    let other = write_safetensors("other.safetensors", "pixels", &[2, 3, 32, 32]);
    fails_with(
        &[
            "predict",
            "--model",
            p(model),
            "--input",
            p(&other),
            "--output",
            p(&out),
        ],
        &[&format!(
            "{}: no `images` tensor (expected [N, C, H, W] f32)",
            other.display()
        )],
    );
    let empty = tmp.path().join("no-images");
    std::fs::create_dir_all(&empty).unwrap();
    fails_with(
        &[
            "predict",
            "--model",
            p(model),
            "--input",
            p(&empty),
            "--output",
            p(&out),
        ],
        &[
            &format!("--input {}", empty.display()),
            "no png/jpg images found",
        ],
    );
    assert!(!out.exists(), "nothing is written for refused input");
}

#[test]
fn compose_needs_a_folder_that_holds_modules() {
    let tmp = tempfile::tempdir().unwrap();
    fails_with(
        &["compose", "--modules", p(tmp.path())],
        &[&format!(
            "{}: holds no module (no module.json in it or its subfolders)",
            tmp.path().display()
        )],
    );
}

#[test]
fn decompose_into_an_existing_decomposition_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("decomposition.json"), "{}").unwrap();
    fails_with(
        &[
            "decompose",
            "--model",
            p(tiny_model()),
            "--out",
            p(tmp.path()),
        ],
        &[&format!(
            "{} already holds a decomposition: choose another --out, delete it, or pass --resume",
            tmp.path().display()
        )],
    );
}
