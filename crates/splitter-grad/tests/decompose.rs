//! GradSplitter through the library alone: decompose a small model with
//! [`splitter_grad::decompose`], save the modules, and load and compose them with
//! [`composer::load_modules`], the function `cnnsplit compose` loads modules with.

use std::path::Path;

use candle_core::Device;
use cnn_data::{DatasetKind, ImageSet, ImageShape, InputFormat};
use cnn_models::decomposition::{read_record, DecompositionRecord, DECOMPOSITION_FILE};
use cnn_models::files::ModelMeta;
use cnn_models::{presets, Model, ParentModel, TrainData};
use splitter_grad::{GradRecord, GradSplitConfig};

/// 36 grey 28×28 images of 3 classes whose brightness and stripes depend on the class.
fn toy_set() -> ImageSet {
    let n = 36;
    let images: Vec<u8> = (0..n)
        .flat_map(|i| {
            let c = i % 3;
            (0..784).map(move |p| (40 * c + (p / 28 % (c + 2)) * 30 + i % 5) as u8)
        })
        .collect();
    let labels: Vec<u16> = (0..n).map(|i| (i % 3) as u16).collect();
    let shape = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    let names = vec!["a".into(), "b".into(), "c".into()];
    ImageSet::new("toy", shape, images, labels, names).unwrap()
}

#[test]
fn decomposed_modules_are_saved_and_compose_as_cnnsplit_compose_loads_them() {
    let set = toy_set();
    let format = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let model = Model::init(presets::simcnn(0.0625, 3, 3, true), 0, &Device::Cpu).unwrap();
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
        train: (0..24).collect(),
        val: (24..36).collect(),
        format,
    };
    let cfg = GradSplitConfig {
        warmup_epochs: 1,
        mask_epochs: 2,
        pattern_mask: 1,
        pattern_head: 1,
        batch_size: 8,
        ..Default::default()
    };
    let mut epochs_ended = 0;
    let mut d = splitter_grad::decompose(
        &parent,
        &data,
        &cfg,
        splitter_grad::Checkpointing::Off,
        &mut |ev| {
            if matches!(ev, splitter_grad::GradSplitEvent::EpochEnd(_)) {
                epochs_ended += 1;
            }
        },
    )
    .unwrap();
    assert_eq!(epochs_ended, 3);
    assert_eq!(d.modules.len(), 3);

    let out = tempfile::tempdir().unwrap();
    d.save(out.path()).unwrap();
    let record: DecompositionRecord<GradRecord> =
        read_record(&out.path().join(DECOMPOSITION_FILE)).unwrap();
    assert_eq!(record, d.record);
    assert_eq!(record.method, "grad");
    assert_eq!(record.model, Path::new("models/toy"));
    assert_eq!(record.model_sha256, "parent-sha");
    assert_eq!(
        (record.method_fields.train_images, record.val_images),
        (24, 12)
    );
    assert_eq!(record.method_fields.log.len(), 3);
    assert!((1..=3).contains(&record.method_fields.chosen_epoch));
    assert_eq!(record.method_fields.config, cfg);

    let modules = composer::load_modules(
        &[out.path().to_path_buf()],
        Some("parent-sha"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(modules.len(), 3);
    for (c, m) in modules.iter().enumerate() {
        assert_eq!(m.meta.class_index, c);
        assert_eq!(m.meta.method, "grad");
        assert!(m.head.is_some());
        assert_eq!(m.meta.dataset.as_deref(), Some("toy"));
        assert_eq!(m.meta.kernels, record.modules[c].kernels);
        assert_eq!(
            record.modules[c].dir,
            out.path().join(format!("module_{c}"))
        );
        // the calibration range is min and max of the module's scores on its class's
        // validation images
        let own: Vec<usize> = (24..36).filter(|i| i % 3 == c).collect();
        let scores = composer::score_images(std::slice::from_ref(m), &set, &own, 256).unwrap();
        let lo = scores.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let hi = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        assert_eq!(m.meta.calibration, Some((lo, hi)));
        assert_eq!(m.meta.calibration, d.modules[c].meta.calibration);
    }
    // composed: one score per image and module, the same as the modules before saving
    let all: Vec<usize> = (0..36).collect();
    let scores = composer::score_images(&modules, &set, &all, 7).unwrap();
    assert_eq!(scores.len(), 36 * 3);
    assert!(scores
        .iter()
        .all(|s| s.is_finite() && (0.0..=1.0).contains(s)));
    assert_eq!(
        scores,
        composer::score_images(&d.modules, &set, &all, 7).unwrap()
    );
    // modules of another parent are refused
    assert!(
        composer::load_modules(&[out.path().to_path_buf()], Some("other"), &Device::Cpu).is_err()
    );
}
