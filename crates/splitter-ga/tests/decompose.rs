//! CNNSplitter through the library alone: decompose a small model with
//! [`splitter_ga::decompose`], save the modules, and load and compose them with
//! [`composer::load_modules`], the function `cnnsplit compose` loads modules with.

use std::path::Path;

use candle_core::Device;
use cnn_data::{DatasetKind, ImageSet, ImageShape, InputFormat};
use cnn_models::decomposition::{read_record, DecompositionRecord, DECOMPOSITION_FILE};
use cnn_models::files::ModelMeta;
use cnn_models::{presets, Model, ParentModel, TrainData};
use splitter_ga::{GaConfig, GaDecomposeConfig, GaRecord};

/// 40 grey 28×28 images of 2 classes whose brightness and stripes depend on the class.
fn toy_set() -> ImageSet {
    let n = 40;
    let images: Vec<u8> = (0..n)
        .flat_map(|i| {
            let c = i % 2;
            (0..784).map(move |p| (60 * c + (p / 28 % (c + 2)) * 40 + i % 7) as u8)
        })
        .collect();
    let labels: Vec<u16> = (0..n).map(|i| (i % 2) as u16).collect();
    let shape = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    ImageSet::new("toy", shape, images, labels, vec!["a".into(), "b".into()]).unwrap()
}

#[test]
fn decomposed_modules_are_saved_and_compose_as_cnnsplit_compose_loads_them() {
    let set = toy_set();
    let format = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let model = Model::init(presets::simcnn(0.0625, 3, 2, true), 3, &Device::Cpu).unwrap();
    let meta = ModelMeta {
        weights_sha256: "parent-sha".into(),
        ..ModelMeta::new(
            model.spec().clone(),
            format.clone(),
            "toy".into(),
            set.class_names.clone(),
        )
    };
    let parent = ParentModel {
        model: &model,
        meta: &meta,
        path: Path::new("models/toy"),
        dataset: "toy",
    };
    let data = TrainData {
        set: &set,
        train: (0..20).collect(),
        val: (20..40).collect(),
        format,
    };
    let mut ga = GaConfig::scaled_for(2);
    (ga.generations, ga.population, ga.parents, ga.keep) = (2, 4, 2, 2);
    let cfg = GaDecomposeConfig {
        ga: Some(ga),
        fitness_images: Some(16),
        batch_size: 8,
        ..Default::default()
    };
    let mut generations = 0;
    let mut d = splitter_ga::decompose(
        &parent,
        &data,
        &cfg,
        splitter_ga::Checkpointing::Off,
        &mut |ev| {
            if matches!(ev, splitter_ga::GaSplitEvent::Generation { .. }) {
                generations += 1;
            }
        },
    )
    .unwrap();
    assert_eq!(generations, 3);
    assert_eq!(d.modules.len(), 2);

    let out = tempfile::tempdir().unwrap();
    d.save(out.path()).unwrap();
    let record: DecompositionRecord<GaRecord> =
        read_record(&out.path().join(DECOMPOSITION_FILE)).unwrap();
    assert_eq!(record, d.record);
    assert_eq!(record.method, "ga");
    assert_eq!(record.model_sha256, "parent-sha");
    assert_eq!(
        (record.method_fields.fitness_images, record.val_images),
        (16, 20)
    );
    assert_eq!(record.method_fields.generations.len(), 3);
    // the 4 validation images after the 16 fitness images choose the generation
    assert_eq!(record.method_fields.holdout_images, 4);
    let mut expected = cfg.split_config(model.spec());
    expected.ga.selection_split = splitter_ga::SelectionSplit::Holdout;
    assert_eq!(record.method_fields.config, expected);
    assert!(record.method_fields.evaluation_fraction.is_some());

    let modules = composer::load_modules(
        &[out.path().to_path_buf()],
        Some("parent-sha"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(modules.len(), 2);
    for (c, m) in modules.iter().enumerate() {
        assert_eq!(m.meta.class_index, c);
        assert_eq!(m.meta.method, "ga");
        assert!(m.head.is_none());
        assert_eq!(m.meta.kernels, record.modules[c].kernels);
        // calibrated on the module's class among all validation images, not only the fitness ones
        let own: Vec<usize> = (20..40).filter(|i| i % 2 == c).collect();
        let scores = composer::score_images(std::slice::from_ref(m), &set, &own, 256).unwrap();
        let lo = scores.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let hi = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        assert_eq!(m.meta.calibration, Some((lo, hi)));
    }
    let all: Vec<usize> = (0..40).collect();
    let scores = composer::score_images(&modules, &set, &all, 16).unwrap();
    assert_eq!(scores.len(), 40 * 2);
    assert_eq!(
        scores,
        composer::score_images(&d.modules, &set, &all, 16).unwrap()
    );
}
