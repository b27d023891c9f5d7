//! Collapse detection in `ParentModel::class_modules`, the step both splitters end with
//! (design §13): empty layers, constant scores and F1 = 0 are flagged in `module.json` and in
//! the decomposition record.

use std::path::Path;

use candle_core::{Device, Tensor};
use cnn_data::{DatasetKind, ImageSet, ImageShape, InputFormat};
use cnn_models::decomposition::{read_record, Decomposition, DecompositionRecord, ModuleSummary};
use cnn_models::module::{load_module, Collapse};
use cnn_models::{presets, Model, ModelMeta, ModuleHead, ModuleSource, ParentModel, TrainData};

/// A head whose score is sigmoid(`bias`) plus 0.01·Σ ReLU(logit) through one hidden unit.
fn head(n: usize, weight: f32, bias: f32) -> ModuleHead {
    let dev = Device::Cpu;
    ModuleHead {
        w1: Tensor::full(weight, (1, n), &dev).unwrap(),
        b1: Tensor::zeros(1, candle_core::DType::F32, &dev).unwrap(),
        w2: Tensor::ones((1, 1), candle_core::DType::F32, &dev).unwrap(),
        b2: Tensor::full(bias, 1, &dev).unwrap(),
    }
}

#[test]
fn empty_layers_constant_scores_and_zero_f1_are_flagged_and_saved() {
    let dev = Device::Cpu;
    let format = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let model = Model::init(presets::simcnn(0.0625, 3, 2, true), 3, &dev).unwrap();
    // 12 images of two classes with varied content
    let pixels: Vec<u8> = (0..12 * 784)
        .map(|i| ((i * 37 + i / 784 * 101) % 256) as u8)
        .collect();
    let set = ImageSet::new(
        "toy",
        ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        pixels,
        (0..12).map(|i| (i % 2) as u16).collect(),
        vec!["zero".into(), "one".into()],
    )
    .unwrap();
    let meta = ModelMeta::new(
        model.spec().clone(),
        format.clone(),
        "toy".into(),
        set.class_names.clone(),
    );
    let parent = ParentModel {
        model: &model,
        meta: &meta,
        path: Path::new("model"),
        dataset: "toy",
    };
    let data = TrainData {
        set: &set,
        train: (0..4).collect(),
        val: (4..12).collect(),
        format,
    };
    let sites = &model.analysis().sites;
    let all: Vec<Vec<bool>> = sites.iter().map(|s| vec![true; s.channels]).collect();
    // class 1 keeps no kernel in its first site: its network carries no signal, its score is
    // the same for every image
    let mut emptied = all.clone();
    emptied[0] = vec![false; sites[0].channels];
    // class 0's head adds 5 to its logit term, class 1's subtracts 5: the composition always
    // predicts class 0, so class 1 has F1 = 0 and class 0 does not
    let sources = vec![
        ModuleSource::Head(head(2, 1.0, 5.0)),
        ModuleSource::Head(head(2, 1.0, -5.0)),
    ];
    let modules = parent
        .class_modules(&data, &[all, emptied], sources, &serde_json::json!({}), 3)
        .unwrap();
    let one = &modules[1].meta;
    assert!(!one.zeroed_convs.is_empty());
    assert_eq!(
        one.collapsed,
        vec![
            Collapse::EmptyLayer {
                convs: one.zeroed_convs.clone()
            },
            Collapse::ZeroF1,
            Collapse::ConstantScore,
        ]
    );
    let (lo, hi) = one.calibration.unwrap();
    assert!(hi <= lo);
    let zero = &modules[0].meta;
    assert!(
        !zero
            .collapsed
            .iter()
            .any(|c| matches!(c, Collapse::EmptyLayer { .. } | Collapse::ZeroF1)),
        "{:?}",
        zero.collapsed
    );
    assert_eq!(zero.calibration_percentiles.len(), 101);

    // the flags reach module.json and decomposition.json, and read back the same
    let record = DecompositionRecord {
        method: "grad".into(),
        modules: modules.iter().map(ModuleSummary::of).collect(),
        ..DecompositionRecord::new(serde_json::json!({}))
    };
    let mut d = Decomposition { modules, record };
    let out = tempfile::tempdir().unwrap();
    d.save(out.path()).unwrap();
    for (c, module) in d.modules.iter().enumerate() {
        let back = load_module(&out.path().join(format!("module_{c}")), None, &dev).unwrap();
        assert_eq!(back.meta.collapsed, module.meta.collapsed);
        assert_eq!(
            back.meta.calibration_percentiles,
            module.meta.calibration_percentiles
        );
    }
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("module_1").join("module.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["collapsed"][1]["reason"], "zero-f1");
    let back: DecompositionRecord<serde_json::Value> =
        read_record(&out.path().join("decomposition.json")).unwrap();
    assert_eq!(back.modules[1].collapsed, d.modules[1].meta.collapsed);
}
