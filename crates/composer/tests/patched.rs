//! Patched-model artefacts: save, load, run, and refuse tampered directories.

use candle_core::{Device, Tensor};
use cnn_data::{DatasetKind, InputFormat};
use cnn_models::module::{build_module, save_module};
use cnn_models::{presets, Model, ModelMeta, ModuleSource};
use composer::{
    load_patched, save_patched, target_column, Calibration, PatchManifest, PatchRule, PATCH_FORMAT,
    PATCH_FORMAT_VERSION, PATCH_MANIFEST,
};

fn setup(dir: &std::path::Path) -> (std::path::PathBuf, PatchManifest) {
    let dev = Device::Cpu;
    let format = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let strong = Model::init(presets::simcnn(0.0625, 3, 3, false), 1, &dev).unwrap();
    let weak = Model::init(presets::simcnn(0.0625, 3, 3, true), 2, &dev).unwrap();
    let meta = ModelMeta::new(weak.spec().clone(), format.clone(), "toy".into(), names);
    let weak_dir = dir.join("weak");
    let sha = cnn_models::save_model(&weak_dir, &weak, &meta).unwrap();
    let masks: Vec<Vec<bool>> = strong
        .analysis()
        .sites
        .iter()
        .map(|s| (0..s.channels).map(|k| k % 3 != 0).collect())
        .collect();
    let mut module = build_module(
        &strong,
        "strong",
        &masks,
        ModuleSource::Logit,
        1,
        "b",
        format,
        None,
    )
    .unwrap();
    module.meta.calibration = Some((-1.0, 3.0));
    let module_dir = dir.join("module");
    let module_sha = save_module(&module_dir, &module).unwrap();
    let column = target_column(&meta, &module, None).unwrap();
    assert_eq!(column, 1);
    let manifest = PatchManifest {
        format: PATCH_FORMAT.into(),
        format_version: PATCH_FORMAT_VERSION,
        rule: PatchRule {
            target_column: column,
            calibration: Calibration::MinMax {
                min: -1.0,
                max: 3.0,
            },
            clip: false,
        },
        target_class: "b".into(),
        model_sha256: sha,
        module_sha256: module_sha,
        crate_version: "test".into(),
    };
    let out = dir.join("patched");
    save_patched(&out, &weak_dir, &module_dir, &manifest).unwrap();
    (out, manifest)
}

#[test]
fn a_saved_patch_runs_like_the_rule_says() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, manifest) = setup(tmp.path());
    let p = load_patched(&out, &Device::Cpu).unwrap();
    assert_eq!(p.manifest, manifest);
    let x = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &Device::Cpu).unwrap();
    let scores = p.scores(&x, 3).unwrap();
    assert_eq!(scores.len(), 12);
    let module_scores = p.module.scores(&x, 3).unwrap();
    let logits: Vec<Vec<f32>> = p.model.forward_eval(&x).unwrap().to_vec2().unwrap();
    for i in 0..4 {
        // column 1 is the calibrated module score, the others the weak softmax
        let want = (module_scores[i] as f64 + 1.0) / 4.0;
        assert!((scores[i * 3 + 1] - want).abs() < 1e-6);
        let z: f64 = logits[i].iter().map(|&v| (v as f64).exp()).sum();
        assert!((scores[i * 3] - (logits[i][0] as f64).exp() / z).abs() < 1e-5);
    }
}

#[test]
fn tampered_patches_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, manifest) = setup(tmp.path());
    let path = out.join(PATCH_MANIFEST);
    let write =
        |m: &serde_json::Value| std::fs::write(&path, serde_json::to_vec(m).unwrap()).unwrap();
    let good = serde_json::to_value(&manifest).unwrap();

    let mut v = good.clone();
    v["format_version"] = serde_json::json!(2);
    write(&v);
    let e = load_patched(&out, &Device::Cpu).unwrap_err().to_string();
    assert!(
        e.contains("version 2 found") && e.contains("reads version 1"),
        "{e}"
    );

    let mut v = good.clone();
    v["module_sha256"] = serde_json::json!("0000");
    write(&v);
    let e = load_patched(&out, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("module/ holds weights"), "{e}");

    let mut v = good.clone();
    v["rule"]["target_column"] = serde_json::json!(7);
    write(&v);
    let e = load_patched(&out, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("target column 7"), "{e}");

    std::fs::write(&path, b"{not json").unwrap();
    let e = load_patched(&out, &Device::Cpu).unwrap_err().to_string();
    assert!(
        e.contains("patch.json") && e.contains("not valid JSON"),
        "{e}"
    );
}
