//! Model files: PyTorch-named safetensors import, save/load round trip, and bad weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use cnn_data::{DatasetKind, InputFormat};
use cnn_models::files::{import_state_dict, load_model, save_model, ModelMeta};
use cnn_models::{presets, Model};
use safetensors::tensor::{Dtype, TensorView};

fn probe(seed: u64) -> Tensor {
    let dev = Device::Cpu;
    let n = 4 * 3 * 32 * 32;
    let v: Vec<f32> = (0..n)
        .map(|i| (((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0) - 1.0)
        .collect();
    Tensor::from_vec(v, (4, 3, 32, 32), &dev).unwrap()
}

/// Write a model's tensors the way PyTorch's `save_file(model.state_dict())` does: the same
/// names, f32 data, plus an i64 `num_batches_tracked` per BatchNorm; optionally altered.
fn write_state_dict(
    path: &std::path::Path,
    model: &Model,
    drop: Option<&str>,
    extra: Option<&str>,
    reshape: Option<&str>,
) {
    let mut owned: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = Vec::new();
    for (k, t) in model.tensors() {
        if Some(k.as_str()) == drop {
            continue;
        }
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let mut shape = t.dims().to_vec();
        let mut bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        if Some(k.as_str()) == reshape {
            shape = vec![v.len() - 1];
            bytes.truncate(bytes.len() - 4);
        }
        owned.push((k.clone(), bytes, shape, Dtype::F32));
    }
    for (bn, _) in &model.analysis().batch_norms {
        owned.push((
            format!("{bn}.num_batches_tracked"),
            7i64.to_le_bytes().to_vec(),
            vec![],
            Dtype::I64,
        ));
    }
    if let Some(name) = extra {
        owned.push((
            name.to_string(),
            0f32.to_le_bytes().to_vec(),
            vec![1],
            Dtype::F32,
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(k, b, s, d)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None::<HashMap<String, String>>).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_pytorch_named_state_dict_imports_with_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["simcnn", "rescnn", "incecnn", "simcnn-cs", "rescnn-cs"] {
        let spec = presets::by_name(name, 0.125, 3, 10).unwrap();
        let original = Model::init(spec.clone(), 11, &Device::Cpu).unwrap();
        let path = dir.path().join(format!("{name}.safetensors"));
        write_state_dict(&path, &original, None, None, None);
        let imported = import_state_dict(&path, spec, &Device::Cpu).unwrap();
        let x = probe(3);
        let a = original
            .forward_eval(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = imported
            .forward_eval(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn import_errors_name_the_key_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = presets::simcnn(0.125, 3, 10, true);
    let model = Model::init(spec.clone(), 0, &Device::Cpu).unwrap();
    let p = dir.path().join("w.safetensors");

    write_state_dict(&p, &model, Some("conv_3.1.running_var"), None, None);
    let err = import_state_dict(&p, spec.clone(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensor `conv_3.1.running_var`") && err.contains("w.safetensors"),
        "{err}"
    );

    write_state_dict(&p, &model, None, Some("fc_99.weight"), None);
    let err = import_state_dict(&p, spec.clone(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unexpected tensor `fc_99.weight`"), "{err}");

    write_state_dict(&p, &model, None, None, Some("fc_15.bias"));
    let err = import_state_dict(&p, spec.clone(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`fc_15.bias` has shape [9], expected [10]"),
        "{err}"
    );

    std::fs::write(&p, b"definitely not safetensors").unwrap();
    let err = import_state_dict(&p, spec, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a valid safetensors file") && err.contains("w.safetensors"),
        "{err}"
    );
}

fn meta_for(model: &Model) -> ModelMeta {
    let names = (0..model.spec().num_classes)
        .map(|c| format!("class {c}"))
        .collect();
    ModelMeta::new(
        model.spec().clone(),
        InputFormat::for_dataset(DatasetKind::FashionMnist),
        "test".into(),
        names,
    )
}

#[test]
fn save_and_load_round_trip_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::init(presets::rescnn(0.125, 3, 10, true), 5, &Device::Cpu).unwrap();
    let sha = save_model(dir.path(), &model, &meta_for(&model)).unwrap();
    let (loaded, meta) = load_model(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(meta.weights_sha256, sha);
    assert_eq!(meta.spec, *model.spec());
    for (k, t) in model.tensors() {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = loaded
            .tensor(k)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b, "{k}");
    }
    let x = probe(1);
    let a: Vec<f32> = model
        .forward_eval(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = loaded
        .forward_eval(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b);
    // saving again gives the same bytes
    let dir2 = tempfile::tempdir().unwrap();
    assert_eq!(save_model(dir2.path(), &loaded, &meta).unwrap(), sha);
    // no temp files left behind
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn tampered_or_truncated_weights_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::init(presets::simcnn(0.125, 3, 10, true), 5, &Device::Cpu).unwrap();
    save_model(dir.path(), &model, &meta_for(&model)).unwrap();
    let w = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_model(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("does not match"),
        "{err}"
    );

    let meta_path = dir.path().join("model.json");
    let text = std::fs::read_to_string(&meta_path)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 9");
    std::fs::write(&meta_path, text).unwrap();
    let err = load_model(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("version 9 found") && err.contains("reads version 1"),
        "{err}"
    );

    let err = load_model(&dir.path().join("nothing-here"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no model.json"), "{err}");
}

/// Rewrite `format_version` (or remove it with `None`) in a JSON artefact.
fn set_version(path: &std::path::Path, version: Option<u64>) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let m = v.as_object_mut().unwrap();
    match version {
        Some(n) => m.insert("format_version".into(), serde_json::json!(n)),
        None => m.remove("format_version"),
    };
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn model_and_module_files_of_other_versions_name_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::init(presets::simcnn(0.0625, 3, 10, true), 5, &Device::Cpu).unwrap();
    save_model(dir.path(), &model, &meta_for(&model)).unwrap();
    let meta_path = dir.path().join("model.json");
    let load = || {
        load_model(dir.path(), &Device::Cpu)
            .unwrap_err()
            .to_string()
    };
    set_version(&meta_path, Some(2));
    let err = load();
    assert!(
        err.contains("model.json: model format version 2 found; this cnnsplit (")
            && err.contains(") reads version 1 (it was written by a newer cnnsplit: upgrade cnnsplit to read it)"),
        "{err}"
    );
    set_version(&meta_path, Some(0));
    let err = load();
    assert!(
        err.contains("model format version 0 found")
            && err.contains("written by an older cnnsplit: recreate it with this one"),
        "{err}"
    );
    set_version(&meta_path, None);
    assert!(load().contains("model.json: model file has no format_version"));
    std::fs::write(
        &meta_path,
        r#"{"format": "cnnsplit-module", "format_version": 1}"#,
    )
    .unwrap();
    assert!(load().contains(r#"not a cnnsplit model file (format must be "cnnsplit-model")"#));

    // module.json
    let masks: Vec<Vec<bool>> = model
        .analysis()
        .sites
        .iter()
        .map(|s| (0..s.channels).map(|k| k % 2 == 0).collect())
        .collect();
    let module = cnn_models::module::build_module(
        &model,
        "parent",
        &masks,
        cnn_models::ModuleSource::Logit,
        3,
        "Dress",
        InputFormat::for_dataset(DatasetKind::FashionMnist),
        None,
    )
    .unwrap();
    let mdir = dir.path().join("module_3");
    cnn_models::module::save_module(&mdir, &module).unwrap();
    let load_module = || {
        cnn_models::module::load_module(&mdir, None, &Device::Cpu)
            .map(|_| ())
            .expect_err("refused")
            .to_string()
    };
    set_version(&mdir.join("module.json"), Some(2));
    let err = load_module();
    assert!(
        err.contains("module.json: module format version 2 found")
            && err.contains("reads version 1")
            && err.contains("newer cnnsplit"),
        "{err}"
    );
    set_version(&mdir.join("module.json"), Some(0));
    let err = load_module();
    assert!(
        err.contains("module format version 0 found") && err.contains("older cnnsplit"),
        "{err}"
    );
}

/// Found while writing the safetensors fuzz target: a module head whose first bias was
/// `[H, 1]` instead of `[H]` loaded, and then broadcast the batch into H scores per image.
#[test]
fn a_module_head_bias_of_the_wrong_rank_is_refused() {
    use cnn_models::module::{build_module, module_from_parts, ModuleHead, ModuleSource};
    use cnn_models::weights::safetensors_bytes;
    let dev = Device::Cpu;
    let parent = Model::init(presets::simcnn(0.0625, 3, 3, true), 1, &dev).unwrap();
    let masks: Vec<Vec<bool>> = parent
        .analysis()
        .sites
        .iter()
        .map(|s| vec![true; s.channels])
        .collect();
    let ones = |d: &[usize]| Tensor::ones(d, candle_core::DType::F32, &dev).unwrap();
    let head = ModuleHead {
        w1: ones(&[4, 3]),
        b1: ones(&[4]),
        w2: ones(&[1, 4]),
        b2: ones(&[1]),
    };
    let format = InputFormat::for_dataset(DatasetKind::Cifar10);
    let module = build_module(
        &parent,
        "sha",
        &masks,
        ModuleSource::Head(head),
        1,
        "one",
        format,
        None,
    )
    .unwrap();
    let mut tensors = module.model.tensors().clone();
    let h = module.head.as_ref().unwrap();
    for (k, t) in [("0.weight", &h.w1), ("2.weight", &h.w2), ("2.bias", &h.b2)] {
        tensors.insert(format!("module_head.{k}"), t.clone());
    }
    let (meta_path, wpath) = (
        Path::new("m/module.json"),
        Path::new("m/module.safetensors"),
    );
    let load = |b1: Tensor| {
        let mut all = tensors.clone();
        all.insert("module_head.0.bias".into(), b1);
        let bytes = safetensors_bytes(&all, &[]).unwrap();
        module_from_parts(meta_path, module.meta.clone(), wpath, &bytes, &dev)
    };
    let good = load(ones(&[4])).unwrap();
    let x = Tensor::zeros((2, 3, 32, 32), candle_core::DType::F32, &dev).unwrap();
    assert_eq!(good.score(&x).unwrap().dims(), &[2]);
    let e = load(ones(&[4, 1])).unwrap_err().to_string();
    assert_eq!(
        e,
        "m/module.safetensors: module head tensors have inconsistent shapes"
    );
}

/// Crash input of the `manifest` fuzz target (its first byte picks `model.json`): a
/// `model.json` whose input format (size 399,999,992) disagrees with its spec (3×8×8) was
/// accepted, and converting an image with it tried to allocate exabytes.
#[test]
fn fuzz_regression_model_json_with_an_input_format_unlike_its_spec() {
    let input = include_bytes!("fuzz-regressions/manifest-model-json-huge-input-size");
    let path = Path::new("m/model.json");
    let e = cnn_models::files::parse_meta(path, &input[1..]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "m/model.json: input format 3×399999992×399999992 does not match the spec's input 3×8×8"
    );
}

#[test]
fn model_json_checks_class_names_and_normalisation() {
    let model = Model::init(presets::simcnn(0.0625, 3, 3, true), 1, &Device::Cpu).unwrap();
    let path = Path::new("m/model.json");
    let parse = |meta: &ModelMeta| {
        let bytes = serde_json::to_vec(meta).unwrap();
        cnn_models::files::parse_meta(path, &bytes).map(|_| ())
    };
    let good = meta_for(&model);
    parse(&good).unwrap();
    let mut names = good.clone();
    names.class_names.pop();
    assert_eq!(
        parse(&names).unwrap_err().to_string(),
        "m/model.json: 2 class names for a model with 3 classes"
    );
    let mut std = good.clone();
    std.input_format.norm.std[1] = 0.0;
    assert_eq!(
        parse(&std).unwrap_err().to_string(),
        "m/model.json: normalisation std 0 is not a positive number"
    );
    let mut means = good;
    means.input_format.norm.mean.push(0.5);
    assert_eq!(
        parse(&means).unwrap_err().to_string(),
        "m/model.json: normalisation has 4 means and 3 stds for 3 channels"
    );
}
