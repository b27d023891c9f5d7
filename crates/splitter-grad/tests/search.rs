//! End-to-end GradSplitter runs on a tiny model and a tiny learnable dataset.

use candle_core::Device;
use cnn_data::{ImageSet, ImageShape, InputFormat, Normalization};
use cnn_models::spec::{ConvSpec, InputShape, LinearSpec};
use cnn_models::{Checkpointing, LayerSpec, Model, ModelSpec, Resume, TrainConfig, TrainData};
use splitter_grad::{grad_split, GradSplitConfig, GradSplitError, GradSplitEvent, MaskInit};

/// Class c images are bright in quadrant c (4 classes, 16×16 grey).
fn quadrant_set(n_per_class: usize) -> ImageSet {
    let (h, w) = (16, 16);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n_per_class * 4 {
        let c = i % 4;
        for y in 0..h {
            for x in 0..w {
                let q = (y / 8) * 2 + x / 8;
                let noise = ((i * 31 + y * 7 + x * 13) % 40) as u8;
                images.push(if q == c { 200 + noise / 4 } else { noise });
            }
        }
        labels.push(c as u16);
    }
    let names = (0..4).map(|c| format!("q{c}")).collect();
    ImageSet::new(
        "quadrants",
        ImageShape {
            channels: 1,
            height: h,
            width: w,
        },
        images,
        labels,
        names,
    )
    .unwrap()
}

fn format16() -> InputFormat {
    InputFormat {
        channels: 1,
        size: 16,
        norm: Normalization {
            mean: vec![0.3],
            std: vec![0.35],
        },
    }
}

fn conv(name: &str, out: usize) -> LayerSpec {
    LayerSpec::Conv(ConvSpec {
        name: format!("{name}.0"),
        out_channels: out,
        kernel: 3.into(),
        stride: 1.into(),
        padding: 1.into(),
        dilation: 1,
        groups: 1,
        bias: true,
        bn: Some(format!("{name}.1")),
        relu: true,
        relu6: false,
    })
}

/// A tiny net with a residual pair (a shared mask site).
fn tiny_spec() -> ModelSpec {
    ModelSpec {
        name: "tiny".into(),
        input: InputShape {
            channels: 1,
            height: 16,
            width: 16,
        },
        num_classes: 4,
        conv_init: Default::default(),
        layers: vec![
            conv("conv_0", 4),
            LayerSpec::Save { slot: "r".into() },
            conv("conv_1", 4),
            LayerSpec::Add {
                slot: "r".into(),
                shortcut: vec![],
            },
            LayerSpec::MaxPool {
                kernel: 2,
                stride: 2,
                padding: 0,
            },
            conv("conv_2", 6),
            LayerSpec::MaxPool {
                kernel: 4,
                stride: 4,
                padding: 0,
            },
            LayerSpec::Flatten,
            LayerSpec::Linear(LinearSpec {
                name: "fc_3".into(),
                out_features: 4,
                relu: false,
            }),
        ],
    }
}

fn trained_model(set: &ImageSet, train: &[usize], val: &[usize]) -> Model {
    let mut model = Model::init(tiny_spec(), 3, &Device::Cpu).unwrap();
    let data = TrainData {
        set,
        train: train.to_vec(),
        val: val.to_vec(),
        format: format16(),
    };
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 0.05,
        weight_decay: 0.0,
        lr_milestones: vec![],
        eval_batch: 64,
        ..Default::default()
    };
    cnn_models::train(&mut model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
    model
}

fn setup() -> (ImageSet, Vec<usize>, Vec<usize>) {
    let set = quadrant_set(16);
    let train: Vec<usize> = (0..48).collect();
    let val: Vec<usize> = (48..64).collect();
    (set, train, val)
}

fn short_cfg() -> GradSplitConfig {
    GradSplitConfig {
        warmup_epochs: 1,
        mask_epochs: 3,
        pattern_mask: 2,
        pattern_head: 1,
        mask_lr: 0.05,
        batch_size: 16,
        eval_batch: 32,
        mask_init: MaskInit::Normal,
        seed: 9,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_masks_and_resume_is_exact() {
    let (set, train, val) = setup();
    let model = trained_model(&set, &train, &val);
    let data = TrainData {
        set: &set,
        train,
        val,
        format: format16(),
    };
    let cfg = short_cfg();
    let a = grad_split(&model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
    let b = grad_split(&model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
    assert_eq!(a.masks, b.masks);
    assert_eq!(a.chosen_epoch, b.chosen_epoch);
    let losses =
        |r: &splitter_grad::GradSplitResult| r.log.iter().map(|e| e.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(a.log.len(), 4);
    assert_eq!(a.masks.len(), 4);
    assert_eq!(a.masks[0].len(), model.analysis().sites.len());

    // interrupted after epoch 2, then resumed: bit-for-bit the same
    let dir = tempfile::tempdir().unwrap();
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        grad_split(
            &model,
            &data,
            &cfg,
            Checkpointing::In {
                dir: dir.path(),
                resume: Resume::Fresh,
            },
            &mut |e| {
                if let GradSplitEvent::EpochStart { epoch: 3, .. } = e {
                    panic!("interrupt");
                }
            },
        )
    }));
    assert!(interrupted.is_err());
    let mut resumed_at = None;
    let c = grad_split(
        &model,
        &data,
        &cfg,
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Continue,
        },
        &mut |e| {
            if let GradSplitEvent::Started { resumed_after, .. } = e {
                resumed_at = *resumed_after;
            }
        },
    )
    .unwrap();
    assert_eq!(resumed_at, Some(2));
    assert_eq!(c.masks, a.masks);
    assert_eq!(losses(&c), losses(&a));
    assert_eq!(c.chosen_epoch, a.chosen_epoch);
    for (x, y) in a.heads.tensors().iter().zip(c.heads.tensors()) {
        assert_eq!(
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    // a resume with fewer epochs stops at the new last epoch, running nothing
    let shorter = GradSplitConfig {
        mask_epochs: 1,
        ..cfg.clone()
    };
    let mut ran = 0;
    let d = grad_split(
        &model,
        &data,
        &shorter,
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Continue,
        },
        &mut |e| {
            if let GradSplitEvent::EpochStart { .. } = e {
                ran += 1;
            }
        },
    )
    .unwrap();
    assert_eq!(ran, 0);
    assert_eq!(losses(&d), losses(&a)[..2].to_vec());
    assert!(d.chosen_epoch <= 2);

    // a different config on resume names the difference
    let other = GradSplitConfig { lambda: 0.2, ..cfg };
    let err = grad_split(
        &model,
        &data,
        &other,
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Continue,
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, GradSplitError::ConfigChanged { .. }));
    assert!(err.to_string().contains("lambda"), "{err}");
}

#[test]
fn two_epochs_lower_the_loss_and_masks_match_extraction() {
    let (set, train, val) = setup();
    let model = trained_model(&set, &train, &val);
    let data = TrainData {
        set: &set,
        train,
        val,
        format: format16(),
    };
    let cfg = GradSplitConfig {
        warmup_epochs: 2,
        mask_epochs: 0,
        batch_size: 8,
        eval_batch: 32,
        ..Default::default()
    };
    let r = grad_split(&model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
    assert_eq!(r.log.len(), 2);
    assert!(r.log[1].train_loss < r.log[0].train_loss, "{:?}", r.log);
    // warm-up keeps the all-ones masks
    assert!(r.masks.iter().flatten().flatten().all(|b| *b));
    assert_eq!(
        r.log[0].mean_kernels,
        model.analysis().total_kernels() as f64
    );
    let floor = (std::f64::consts::E + 3.0).ln() - 1.0;
    assert!(r.log.iter().all(|e| e.train_loss >= floor - 1e-6));
}

#[test]
fn module_round_trip_and_parent_check() {
    let (set, train, val) = setup();
    let model = trained_model(&set, &train, &val);
    let data = TrainData {
        set: &set,
        train,
        val: val.clone(),
        format: format16(),
    };
    let r = grad_split(&model, &data, &short_cfg(), Checkpointing::Off, &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (x, _) = cnn_data::to_tensor(&set, &val, &format16(), None, &Device::Cpu).unwrap();
    for c in 0..4 {
        let m = cnn_models::module::build_module(
            &model,
            "abc123",
            &r.masks[c],
            cnn_models::ModuleSource::Head(r.heads.module(c).unwrap()),
            c,
            &format!("q{c}"),
            format16(),
            None,
        )
        .unwrap();
        // the module's score equals the batched search forward's column c
        let s = m.score(&x).unwrap();
        let masks = cnn_models::extract::mask_tensors(&r.masks[c], &Device::Cpu).unwrap();
        let logits = model
            .forward(
                &x,
                cnn_models::ForwardOptions {
                    masks: Some(&masks),
                    ..Default::default()
                },
            )
            .unwrap()
            .0;
        let want = r.heads.module(c).unwrap().score(&logits).unwrap();
        let d = (&s - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5);
        assert_eq!(m.meta.kernels, r.kernels(model.analysis(), c));
        let sub = dir.path().join(format!("m{c}"));
        cnn_models::module::save_module(&sub, &m).unwrap();
        let back = cnn_models::module::load_module(&sub, Some("abc123"), &Device::Cpu).unwrap();
        assert_eq!(
            back.score(&x).unwrap().to_vec1::<f32>().unwrap(),
            s.to_vec1::<f32>().unwrap(),
            "reloaded module gives other scores"
        );
        assert_eq!(back.meta.retained, m.meta.retained);
        let err = cnn_models::module::load_module(&sub, Some("def456"), &Device::Cpu).unwrap_err();
        assert!(
            matches!(err, cnn_models::ModelError::ParentMismatch { .. }),
            "{err}"
        );
    }
}

#[test]
fn checkpoint_format_1_resumes_and_other_versions_are_refused_with_both_versions() {
    let (set, train, val) = setup();
    let model = trained_model(&set, &train, &val);
    let data = TrainData {
        set: &set,
        train,
        val,
        format: format16(),
    };
    let cfg = short_cfg();
    let full = grad_split(&model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        grad_split(
            &model,
            &data,
            &cfg,
            Checkpointing::In {
                dir: dir.path(),
                resume: Resume::Fresh,
            },
            &mut |e| {
                if let GradSplitEvent::EpochStart { epoch: 3, .. } = e {
                    panic!("interrupt");
                }
            },
        )
    }));
    assert!(interrupted.is_err());
    let meta_path = dir.path().join("gradsplit.json");
    let v2 = std::fs::read_to_string(&meta_path).unwrap();

    // rewritten as format 1 wrote it: tensors in gradsplit.safetensors, no tensors_file
    let mut v: serde_json::Value = serde_json::from_str(&v2).unwrap();
    let tensors = v["tensors_file"].as_str().unwrap().to_string();
    assert_eq!(tensors, "gradsplit-epoch2.safetensors");
    std::fs::rename(
        dir.path().join(&tensors),
        dir.path().join("gradsplit.safetensors"),
    )
    .unwrap();
    let m = v.as_object_mut().unwrap();
    m.remove("tensors_file");
    m.insert("format_version".into(), serde_json::json!(1));
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let resumed = grad_split(
        &model,
        &data,
        &cfg,
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Continue,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(resumed.masks, full.masks);
    assert_eq!(resumed.chosen_epoch, full.chosen_epoch);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["gradsplit-epoch4.safetensors", "gradsplit.json"]);

    let resume = |json: &str| {
        std::fs::write(&meta_path, json).unwrap();
        grad_split(
            &model,
            &data,
            &cfg,
            Checkpointing::In {
                dir: dir.path(),
                resume: Resume::Continue,
            },
            &mut |_| {},
        )
        .map(|_| ())
        .expect_err("refused")
        .to_string()
    };
    let err = resume(&v2.replace("\"format_version\": 2", "\"format_version\": 3"));
    assert!(
        err.contains("gradsplit.json: GradSplitter checkpoint format version 3 found")
            && err.contains("reads versions 1 and 2")
            && err.contains("newer cnnsplit"),
        "{err}"
    );
    let err = resume(&v2.replace("\"format_version\": 2", "\"format_version\": 0"));
    assert!(
        err.contains("version 0 found") && err.contains("older cnnsplit"),
        "{err}"
    );
    let err = resume(&v2[..v2.len() / 2]);
    assert!(err.contains("gradsplit.json: not valid JSON"), "{err}");
}

#[test]
fn krr_patience_stops_a_stalled_search_and_a_resume_stops_at_the_same_epoch() {
    let (set, train, val) = setup();
    let model = trained_model(&set, &train, &val);
    let data = TrainData {
        set: &set,
        train,
        val,
        format: format16(),
    };
    // masks start at 1 and a learning rate of 1e-6 cannot bring one below 0: the mean KRR stays
    // 1 from the warm-up on, so two mask epochs in a row without a new low stop the search
    // before the next mask epoch (schedule W M M H | M M H …)
    let cfg = GradSplitConfig {
        warmup_epochs: 1,
        mask_epochs: 9,
        pattern_mask: 2,
        pattern_head: 1,
        mask_lr: 1e-6,
        batch_size: 16,
        eval_batch: 32,
        krr_patience: 2,
        ..Default::default()
    };
    let full = grad_split(&model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
    assert!(full.stopped_early);
    assert_eq!(full.log.len(), 4, "{:?}", full.log);
    assert!(full.log.iter().all(|e| e.mean_krr == 1.0));
    // without patience the same search runs its 10 epochs
    let uncapped = GradSplitConfig {
        krr_patience: 0,
        mask_epochs: 5,
        ..cfg.clone()
    };
    let r = grad_split(&model, &data, &uncapped, Checkpointing::Off, &mut |_| {}).unwrap();
    assert!(!r.stopped_early);
    assert_eq!(r.log.len(), 6);

    // a run checkpointed after 3 epochs (without patience), resumed with it, stops where the
    // uninterrupted run did, with the same losses
    let dir = tempfile::tempdir().unwrap();
    let short = GradSplitConfig {
        mask_epochs: 2,
        krr_patience: 0,
        ..cfg.clone()
    };
    let ckpt = |resume| Checkpointing::In {
        dir: dir.path(),
        resume,
    };
    grad_split(&model, &data, &short, ckpt(Resume::Fresh), &mut |_| {}).unwrap();
    let resumed = grad_split(&model, &data, &cfg, ckpt(Resume::Continue), &mut |_| {}).unwrap();
    let losses =
        |r: &splitter_grad::GradSplitResult| r.log.iter().map(|e| e.train_loss).collect::<Vec<_>>();
    assert!(resumed.stopped_early);
    assert_eq!(losses(&resumed), losses(&full));
    assert_eq!(resumed.chosen_epoch, full.chosen_epoch);
    // resuming a run that stopped early runs nothing more
    let mut ran = 0;
    let again = grad_split(&model, &data, &cfg, ckpt(Resume::Continue), &mut |e| {
        if let GradSplitEvent::EpochStart { .. } = e {
            ran += 1;
        }
    })
    .unwrap();
    assert_eq!(ran, 0);
    assert!(again.stopped_early);
    assert_eq!(again.log.len(), 4);
}

#[test]
fn an_imbalanced_validation_part_chooses_by_balanced_accuracy() {
    let (set, train, val) = setup();
    let model = trained_model(&set, &train, &val);
    let cfg = GradSplitConfig {
        warmup_epochs: 1,
        mask_epochs: 0,
        batch_size: 16,
        eval_batch: 32,
        ..Default::default()
    };
    let run = |val: Vec<usize>| {
        let data = TrainData {
            set: &set,
            train: train.clone(),
            val,
            format: format16(),
        };
        grad_split(&model, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap()
    };
    let balanced = run(val.clone());
    assert_eq!(
        balanced.selection_metric,
        splitter_grad::SelectionMetric::Accuracy
    );
    // class 0 twice as often as class 3 in the validation part (labels are i % 4)
    let skewed: Vec<usize> = val
        .iter()
        .copied()
        .filter(|&i| i % 4 != 3 || i < 56)
        .collect();
    let r = run(skewed);
    assert_eq!(
        r.selection_metric,
        splitter_grad::SelectionMetric::BalancedAccuracy
    );
    assert!(r.log[0].val_balanced_accuracy.is_some());
}
