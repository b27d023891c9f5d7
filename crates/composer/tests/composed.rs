//! Composed-model artefacts: save, load, score raw images with per-module input formats, and
//! refuse modules that cannot be composed or tampered directories.

use std::path::{Path, PathBuf};

use candle_core::Device;
use cnn_data::{DatasetKind, ImageSet, ImageShape, InputFormat};
use cnn_models::module::{build_module, save_module};
use cnn_models::{presets, Model, Module, ModuleSource};
use composer::{
    check_composable, load_composed, save_composed, score_images, ComposedClass,
    CompositionManifest, COMPOSITION_MANIFEST,
};

/// A module of class `class` of a tiny random SimCNN (seed `seed`) with input format `format`,
/// saved in `dir`.
fn module(
    dir: &Path,
    seed: u64,
    class: usize,
    format: InputFormat,
    grad: bool,
) -> (PathBuf, Module) {
    let parent = Model::init(presets::simcnn(0.0625, 3, 3, true), seed, &Device::Cpu).unwrap();
    let masks: Vec<Vec<bool>> = parent
        .analysis()
        .sites
        .iter()
        .map(|s| {
            (0..s.channels)
                .map(|k| (k + class).is_multiple_of(2))
                .collect()
        })
        .collect();
    let source = if grad {
        let h = 4;
        let t =
            |shape: &[usize], v: f32| candle_core::Tensor::full(v, shape, &Device::Cpu).unwrap();
        ModuleSource::Head(cnn_models::ModuleHead {
            w1: t(&[h, 3], 0.1),
            b1: t(&[h], 0.0),
            w2: t(&[1, h], 0.2),
            b2: t(&[1], 0.0),
        })
    } else {
        ModuleSource::Logit
    };
    let mut m = build_module(
        &parent,
        &format!("parent-{seed}"),
        &masks,
        source,
        class,
        &format!("class{class}"),
        format,
        None,
    )
    .unwrap();
    m.meta.dataset = Some("fashion-mnist".into());
    let d = dir.join(format!("m{seed}-{class}"));
    let sha = save_module(&d, &m).unwrap();
    m.meta.weights_sha256 = sha;
    (d, m)
}

fn images() -> ImageSet {
    let shape = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    let pixels: Vec<u8> = (0..5 * 784).map(|i| ((i * 37) % 251) as u8).collect();
    ImageSet::new(
        "toy",
        shape,
        pixels,
        vec![0, 1, 0, 1, 0],
        vec!["a".into(), "b".into()],
    )
    .unwrap()
}

#[test]
fn composed_models_round_trip_and_score_each_module_with_its_own_normalisation() {
    let tmp = tempfile::tempdir().unwrap();
    let fmnist = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let mnist = InputFormat::for_dataset(DatasetKind::Mnist);
    assert_ne!(fmnist, mnist);
    let (d0, m0) = module(tmp.path(), 1, 0, fmnist.clone(), true);
    let (d1, m1) = module(tmp.path(), 2, 1, mnist.clone(), true);
    let classes = vec![
        ComposedClass::from_module(0, "shoe", &d0, &m0.meta),
        ComposedClass::from_module(1, "seven", &d1, &m1.meta),
    ];
    assert_eq!(classes[1].source_class, "class1");
    assert_eq!(classes[1].source_dataset.as_deref(), Some("fashion-mnist"));
    let manifest = CompositionManifest::new("new-task", classes, vec!["fashion-mnist".into()], 0.2);
    let out = tmp.path().join("composed");
    save_composed(&out, &manifest).unwrap();
    let c = load_composed(&out, &Device::Cpu).unwrap();
    assert_eq!(c.manifest, manifest);
    assert_eq!(c.class_names(), vec!["shoe", "seven"]);
    assert!(c.shared_input_format().is_none());

    // each module sees the images in its own format: the composed scores equal each module's
    // scores on its own conversion
    let set = images();
    let idx: Vec<usize> = (0..set.len()).collect();
    let scores = c.scores_of_images(&set, &idx, 2).unwrap();
    assert_eq!(scores.len(), 10);
    for (j, (m, f)) in [(&m0, &fmnist), (&m1, &mnist)].into_iter().enumerate() {
        let (x, _) = cnn_data::to_tensor(&set, &idx, f, None, &Device::Cpu).unwrap();
        let own = m.scores(&x, 5).unwrap();
        for i in 0..5 {
            assert!(
                (scores[i * 2 + j] - own[i]).abs() < 1e-6,
                "image {i} module {j}"
            );
        }
    }
    assert_eq!(score_images(&c.modules, &set, &idx, 3).unwrap(), scores);
    // normalised tensors are ambiguous when the normalisations differ
    let (x, _) = cnn_data::to_tensor(&set, &idx, &fmnist, None, &Device::Cpu).unwrap();
    let err = c.scores(&x, 5).unwrap_err().to_string();
    assert!(err.contains("normalise their inputs differently"), "{err}");

    // an existing composition is refused
    let err = save_composed(&out, &manifest).unwrap_err().to_string();
    assert!(err.contains("already holds a composed model"), "{err}");

    // another format version is named, with the one this build reads
    let manifest_path = out.join(COMPOSITION_MANIFEST);
    let original = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        original.replace("\"format_version\": 1", "\"format_version\": 2"),
    )
    .unwrap();
    let err = load_composed(&out, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("format version 2 found"), "{err}");
    std::fs::write(&manifest_path, original).unwrap();

    // a module swapped behind the manifest's back is detected
    let other = tmp.path().join("m2-1");
    std::fs::copy(
        other.join("module.json"),
        out.join("modules/class_0/module.json"),
    )
    .unwrap();
    std::fs::copy(
        other.join("module.safetensors"),
        out.join("modules/class_0/module.safetensors"),
    )
    .unwrap();
    let err = load_composed(&out, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("but the manifest names"), "{err}");
}

#[test]
fn modules_of_different_scoring_or_geometry_are_not_composable() {
    let tmp = tempfile::tempdir().unwrap();
    let fmnist = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let (d0, m0) = module(tmp.path(), 1, 0, fmnist.clone(), true);
    let (d1, m1) = module(tmp.path(), 2, 1, fmnist.clone(), false);
    let err = check_composable(&[(d0.clone(), &m0.meta), (d1.clone(), &m1.meta)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("one is a `grad` module, the other a `ga` module"),
        "{err}"
    );
    assert!(err.contains(d1.to_str().unwrap()), "{err}");

    let mut small = m0.meta.clone();
    small.input_format.size = 28;
    let err = check_composable(&[(d0.clone(), &m0.meta), (d1.clone(), &small)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("inputs are 32×32 and 28×28 pixels"), "{err}");
    let mut grey = m0.meta.clone();
    grey.input_format.channels = 1;
    let err = check_composable(&[(d0.clone(), &m0.meta), (d1, &grey)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("inputs have 3 and 1 channels"), "{err}");

    // labels out of order and repeated names are refused before anything is written
    let mut classes = vec![
        ComposedClass::from_module(0, "x", &d0, &m0.meta),
        ComposedClass::from_module(1, "x", &d0, &m0.meta),
    ];
    let out = tmp.path().join("c");
    let err = save_composed(
        &out,
        &CompositionManifest::new("compose", classes.clone(), vec![], 0.0),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("listed more than once"), "{err}");
    classes[1].name = "y".into();
    classes[1].label = 5;
    let err = save_composed(
        &out,
        &CompositionManifest::new("compose", classes, vec![], 0.0),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("labels must be 0, 1"), "{err}");
    assert!(!out.join(COMPOSITION_MANIFEST).exists());
}
