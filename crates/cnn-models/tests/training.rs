//! Training, evaluation, metrics, masks and op backends.

use candle_core::{DType, Device, Tensor};
use cnn_data::{ImageSet, ImageShape, InputFormat, Normalization};
use cnn_models::metrics::{argmax_rows, ConfusionMatrix};
use cnn_models::train::DataSplit;
use cnn_models::{
    presets, Checkpointing, ForwardOptions, LayerSpec, Model, OpsBackend, Resume, TrainConfig,
    TrainData,
};

/// A tiny learnable set: class c images are bright in quadrant c (4 classes, 16×16 grey).
fn quadrant_set(n_per_class: usize) -> ImageSet {
    let (h, w) = (16, 16);
    let mut images = Vec::new();
    let mut labels = Vec::new();
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

fn tiny_spec() -> cnn_models::ModelSpec {
    let mut spec = presets::simcnn(0.0625, 1, 4, true);
    spec.input.height = 16;
    spec.input.width = 16;
    // 16×16 input: drop the last pool so the map stays ≥ 1×1
    let last_pool = spec
        .layers
        .iter()
        .rposition(|l| matches!(l, cnn_models::LayerSpec::MaxPool { .. }))
        .unwrap();
    spec.layers.remove(last_pool);
    spec
}

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        lr: 0.02,
        lr_milestones: vec![],
        seed: 3,
        ..TrainConfig::default()
    }
}

#[test]
fn training_lowers_the_loss_and_learns_a_simple_task() {
    let set = quadrant_set(24);
    let (train, val) = DataSplit::Holdout {
        val_fraction: 0.25,
        limit: None,
    }
    .indices(&set, 1)
    .unwrap();
    let data = TrainData {
        set: &set,
        train,
        val: val.clone(),
        format: format16(),
    };
    let mut model = Model::init(tiny_spec(), 3, &Device::Cpu).unwrap();
    let report =
        cnn_models::train(&mut model, &data, &cfg(10), Checkpointing::Off, &mut |_| {}).unwrap();
    let first = report.records.first().unwrap().train_loss;
    let last = report.records.last().unwrap().train_loss;
    assert!(last < first, "loss {first} → {last}");
    let ev = cnn_models::evaluate(&model, &set, &val, &format16(), 64).unwrap();
    assert!(ev.accuracy > 0.9, "val accuracy {}", ev.accuracy);
    // the model keeps the best epoch, ties going to the later one
    let best = report
        .records
        .iter()
        .map(|r| r.val_accuracy)
        .fold(f64::MIN, f64::max);
    let last_best = report
        .records
        .iter()
        .rposition(|r| r.val_accuracy == best)
        .unwrap()
        + 1;
    assert_eq!(report.best_epoch, last_best);
    assert!((ev.accuracy - best).abs() < 1e-12);
}

#[test]
fn resume_continues_bit_for_bit() {
    let set = quadrant_set(12);
    let (train, val) = DataSplit::Holdout {
        val_fraction: 0.25,
        limit: None,
    }
    .indices(&set, 2)
    .unwrap();
    let data = TrainData {
        set: &set,
        train,
        val,
        format: format16(),
    };
    let full_dir = tempfile::tempdir().unwrap();
    let mut full = Model::init(tiny_spec(), 9, &Device::Cpu).unwrap();
    let full_report = cnn_models::train(
        &mut full,
        &data,
        &cfg(3),
        Checkpointing::In {
            dir: full_dir.path(),
            resume: Resume::Fresh,
        },
        &mut |_| {},
    )
    .unwrap();

    // an interrupted run: the process stops after epoch 2 of 3 (simulated by a 2-epoch run
    // leaving its checkpoint), then a new process resumes with the original flags
    let dir = tempfile::tempdir().unwrap();
    let mut first = Model::init(tiny_spec(), 9, &Device::Cpu).unwrap();
    let mut two = cfg(3);
    two.epochs = 2;
    cnn_models::train(
        &mut first,
        &data,
        &two,
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Fresh,
        },
        &mut |_| {},
    )
    .unwrap();
    // the checkpoint records the 2-epoch config; patch it to the full run's config, as a
    // run killed during epoch 3 would have left it
    let meta_path = dir.path().join("checkpoint.json");
    let text =
        std::fs::read_to_string(&meta_path)
            .unwrap()
            .replacen("\"epochs\": 2", "\"epochs\": 3", 1);
    std::fs::write(&meta_path, text).unwrap();
    let mut resumed = Model::init(tiny_spec(), 9, &Device::Cpu).unwrap();
    let report = cnn_models::train(
        &mut resumed,
        &data,
        &cfg(3),
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Continue,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.resumed_after, Some(2));
    assert_eq!(report.records.len(), 3);
    assert_eq!(
        report.records[2].train_loss,
        full_report.records[2].train_loss
    );
    for (k, t) in full.tensors() {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = resumed
            .tensor(k)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b, "{k}");
    }
    // resuming with different flags is refused
    let mut other = cfg(3);
    other.lr = 0.5;
    let mut m = Model::init(tiny_spec(), 9, &Device::Cpu).unwrap();
    let err = cnn_models::train(
        &mut m,
        &data,
        &other,
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Continue,
        },
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("different training settings"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_epoch_and_batch() {
    let set = quadrant_set(8);
    let data = TrainData {
        set: &set,
        train: (0..32).collect(),
        val: vec![],
        format: format16(),
    };
    let mut model = Model::init(tiny_spec(), 1, &Device::Cpu).unwrap();
    let mut c = cfg(2);
    c.lr = 1e30;
    let err = cnn_models::train(&mut model, &data, &c, Checkpointing::Off, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("epoch") && err.contains("batch") && err.contains("loss is"),
        "{err}"
    );
}

fn seeded_input(n: usize, seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    Tensor::from_vec(v, (n, 3, 32, 32), &Device::Cpu).unwrap()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1e-3 + x.abs().max(y.abs())))
        .fold(0.0, f32::max)
}

#[test]
fn fast_and_candle_ops_agree_in_forward_and_training() {
    let dev = Device::Cpu;
    for name in ["simcnn", "rescnn", "incecnn", "simcnn-cs", "rescnn-cs"] {
        let spec = presets::by_name(name, 0.125, 3, 10).unwrap();
        let mut fast = Model::init(spec.clone(), 4, &dev).unwrap();
        let mut slow = fast.clone();
        fast.set_ops(OpsBackend::Fast);
        slow.set_ops(OpsBackend::Candle);
        let x = seeded_input(16, 7);
        let a: Vec<f32> = fast
            .forward_eval(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = slow
            .forward_eval(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(max_rel_diff(&a, &b) < 1e-4, "{name} eval");
        // Gradients of the loss with running statistics. Training-mode BatchNorm is
        // ill-conditioned on a dead channel (constant input: its normalised values are
        // rounding noise times 1/√eps, and ReLU decisions on that noise legitimately differ
        // between implementations); cpu-ops' own tests compare training-mode BN op by op.
        // The CS presets are compared in the forward only (see the notes on an open
        // gradient discrepancy of simcnn-cs).
        if name.ends_with("-cs") {
            continue;
        }
        let train = false;
        let y = Tensor::new(&[0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5], &dev).unwrap();
        let mut grads = Vec::new();
        for m in [&mut fast, &mut slow] {
            let vars = m.trainable_vars().unwrap();
            let (logits, _) = m
                .forward(
                    &x,
                    ForwardOptions {
                        train,
                        ..Default::default()
                    },
                )
                .unwrap();
            let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
            let g = loss.backward().unwrap();
            let flat: Vec<f32> = vars
                .iter()
                .flat_map(|(_, v)| {
                    g.get(v)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                })
                .collect();
            grads.push(flat);
        }
        let scale = grads[1].iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = grads[0]
            .iter()
            .zip(&grads[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4 * scale.max(1e-3) + 1e-6,
            "{name}: gradient difference {worst} (scale {scale})"
        );
    }
}

/// Training-mode forward: the fast path fuses conv → BN (→ pool) into single ops; its logits
/// and the running-statistics updates (whose unbiased variance needs the conv output's element
/// count, not the pooled one) match candle's ops.
#[test]
fn fast_and_candle_ops_agree_in_a_training_forward() {
    let dev = Device::Cpu;
    for name in ["simcnn", "rescnn", "incecnn"] {
        let spec = presets::by_name(name, 0.125, 3, 10).unwrap();
        let mut fast = Model::init(spec, 5, &dev).unwrap();
        let mut slow = fast.clone();
        fast.set_ops(OpsBackend::Fast);
        slow.set_ops(OpsBackend::Candle);
        let x = seeded_input(16, 9);
        let run = |m: &Model| {
            let opts = ForwardOptions {
                train: true,
                ..Default::default()
            };
            let (logits, updates) = m.forward(&x, opts).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let stats: Vec<f32> = updates
                .iter()
                .flat_map(|(_, mean, var)| flat(mean).into_iter().chain(flat(var)))
                .collect();
            (flat(&logits), stats, updates.len())
        };
        let (la, sa, na) = run(&fast);
        let (lb, sb, nb) = run(&slow);
        assert_eq!(na, nb, "{name}: BN updates");
        assert!(max_rel_diff(&sa, &sb) < 1e-4, "{name}: running statistics");
        assert!(max_rel_diff(&la, &lb) < 1e-3, "{name}: training logits");
    }
    // The first layer's running variance, recomputed independently: momentum 0.1 from 1 toward
    // the unbiased variance over batch × 32 × 32 conv outputs. A pool follows in SimCNN; a
    // count taken after it would be 4× too small, which at batch 2 moves the update by more
    // than the tolerance.
    let model = Model::init(presets::by_name("simcnn", 0.125, 3, 10).unwrap(), 5, &dev).unwrap();
    let Some(LayerSpec::Conv(c)) = model.spec().layers.first() else {
        panic!("simcnn starts with a conv")
    };
    let x = seeded_input(2, 9);
    let w = model.tensor(&format!("{}.weight", c.name)).unwrap();
    let mut y = x.conv2d(w, c.padding.h, c.stride.h, 1, 1).unwrap();
    if c.bias {
        let b = model.tensor(&format!("{}.bias", c.name)).unwrap();
        y = y.broadcast_add(&b.reshape((1, (), 1, 1)).unwrap()).unwrap();
    }
    let count = (y.dim(0).unwrap() * y.dim(2).unwrap() * y.dim(3).unwrap()) as f64;
    let centred = y
        .broadcast_sub(
            &y.mean_keepdim(0)
                .unwrap()
                .mean_keepdim(2)
                .unwrap()
                .mean_keepdim(3)
                .unwrap(),
        )
        .unwrap();
    let unbiased = (centred.sqr().unwrap().sum((0, 2, 3)).unwrap() / (count - 1.0)).unwrap();
    let want: Vec<f32> = ((unbiased * 0.1).unwrap() + 0.9)
        .unwrap()
        .to_vec1()
        .unwrap();
    let opts = ForwardOptions {
        train: true,
        ..Default::default()
    };
    let (_, updates) = model.forward(&x, opts).unwrap();
    let got: Vec<f32> = updates[0].2.to_vec1().unwrap();
    assert!(
        max_rel_diff(&got, &want) < 1e-4,
        "first running variance {got:?} vs {want:?}"
    );
}

#[test]
fn all_ones_masks_reproduce_the_logits_exactly() {
    let dev = Device::Cpu;
    for name in ["simcnn", "rescnn", "incecnn", "simcnn-cs"] {
        for ops in [OpsBackend::Fast, OpsBackend::Candle] {
            let mut model =
                Model::init(presets::by_name(name, 0.125, 3, 10).unwrap(), 2, &dev).unwrap();
            model.set_ops(ops);
            let x = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &dev).unwrap();
            let masks: Vec<Tensor> = model
                .analysis()
                .sites
                .iter()
                .map(|s| Tensor::ones((1, s.channels), DType::F32, &dev).unwrap())
                .collect();
            let plain: Vec<f32> = model
                .forward_eval(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let (masked, _) = model
                .forward(
                    &x,
                    ForwardOptions {
                        masks: Some(&masks),
                        ..Default::default()
                    },
                )
                .unwrap();
            let masked: Vec<f32> = masked.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(plain, masked, "{name} {ops:?}");
        }
    }
}

#[test]
fn grouped_masks_equal_separate_forwards() {
    // N modules as one N·B batch equal N separate forwards (design §12.7)
    let dev = Device::Cpu;
    let model = Model::init(presets::rescnn(0.125, 3, 10, true), 8, &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (3, 3, 32, 32), &dev).unwrap();
    let groups = 2;
    let masks: Vec<Tensor> = model
        .analysis()
        .sites
        .iter()
        .map(|s| {
            let v: Vec<f32> = (0..groups * s.channels)
                .map(|i| ((i * 7 + s.index) % 3 != 0) as u8 as f32)
                .collect();
            Tensor::from_vec(v, (groups, s.channels), &dev).unwrap()
        })
        .collect();
    let batched = Tensor::cat(&[&x, &x], 0).unwrap();
    let (y, _) = model
        .forward(
            &batched,
            ForwardOptions {
                masks: Some(&masks),
                ..Default::default()
            },
        )
        .unwrap();
    // per-conv masks (a site's mask given to each of its convs) give the same outputs
    let per_conv: Vec<Tensor> = model
        .analysis()
        .convs
        .iter()
        .map(|c| masks[c.site].clone())
        .collect();
    let opts = ForwardOptions {
        conv_masks: Some(&per_conv),
        ..Default::default()
    };
    let (y2, _) = model.forward(&batched, opts).unwrap();
    let a: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = y2.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a, b);
    // a wrong number of per-conv masks is refused, naming both counts
    let opts = ForwardOptions {
        conv_masks: Some(&masks),
        ..Default::default()
    };
    let err = model.forward(&batched, opts).unwrap_err().to_string();
    assert!(
        err.contains("9 conv masks given, the model has 12 convs"),
        "{err}"
    );
    for g in 0..groups {
        let m: Vec<Tensor> = masks.iter().map(|t| t.narrow(0, g, 1).unwrap()).collect();
        let (single, _) = model
            .forward(
                &x,
                ForwardOptions {
                    masks: Some(&m),
                    ..Default::default()
                },
            )
            .unwrap();
        let a: Vec<f32> = y
            .narrow(0, g * 3, 3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = single.flatten_all().unwrap().to_vec1().unwrap();
        assert!(max_rel_diff(&a, &b) < 1e-5, "group {g}");
    }
}

#[test]
fn metrics_match_hand_computed_values() {
    // labels / predictions over 3 classes
    let labels = [0u32, 0, 0, 1, 1, 2, 2, 2, 2, 1];
    let preds = [0u32, 1, 0, 1, 2, 2, 2, 0, 2, 1];
    let m = ConfusionMatrix::from_predictions(&labels, &preds, 3);
    assert_eq!(m.counts, vec![vec![2, 1, 0], vec![0, 2, 1], vec![1, 0, 3]]);
    assert!((m.accuracy() - 0.7).abs() < 1e-12);
    let c0 = m.class(0);
    assert!((c0.precision - 2.0 / 3.0).abs() < 1e-12 && (c0.recall - 2.0 / 3.0).abs() < 1e-12);
    let c2 = m.class(2);
    assert!(
        (c2.precision - 0.75).abs() < 1e-12
            && (c2.recall - 0.75).abs() < 1e-12
            && (c2.f1 - 0.75).abs() < 1e-12
    );
    assert!((m.accuracy_excluding(2) - 4.0 / 6.0).abs() < 1e-12);
    // a class never predicted and never present: 0, not NaN
    let m = ConfusionMatrix::from_predictions(&[0, 0], &[0, 0], 2);
    assert_eq!(
        (m.class(1).precision, m.class(1).recall, m.class(1).f1),
        (0.0, 0.0, 0.0)
    );
    // argmax ties go to the lowest index
    assert_eq!(argmax_rows(&[1.0, 3.0, 3.0, 2.0, 2.0, 0.0], 3), vec![1, 0]);
}

/// Rewrite a format-2 training checkpoint in `dir` as format 1 wrote it: tensors in
/// `checkpoint.safetensors`, no `tensors_file`, `format_version` 1.
fn downgrade_to_v1(dir: &std::path::Path) {
    let meta_path = dir.join("checkpoint.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    let tensors = v["tensors_file"].as_str().unwrap().to_string();
    std::fs::rename(dir.join(&tensors), dir.join("checkpoint.safetensors")).unwrap();
    let m = v.as_object_mut().unwrap();
    m.remove("tensors_file");
    m.insert("format_version".into(), serde_json::json!(1));
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn checkpoint_format_1_resumes_and_other_versions_are_refused_with_both_versions() {
    let set = quadrant_set(12);
    let (train, val) = DataSplit::Holdout {
        val_fraction: 0.25,
        limit: None,
    }
    .indices(&set, 2)
    .unwrap();
    let data = TrainData {
        set: &set,
        train,
        val,
        format: format16(),
    };
    let mut full = Model::init(tiny_spec(), 9, &Device::Cpu).unwrap();
    cnn_models::train(&mut full, &data, &cfg(3), Checkpointing::Off, &mut |_| {}).unwrap();

    // a 3-epoch run interrupted after epoch 2 (its 2-epoch checkpoint patched to 3 epochs)
    let dir = tempfile::tempdir().unwrap();
    let mut two = cfg(3);
    two.epochs = 2;
    let mut first = Model::init(tiny_spec(), 9, &Device::Cpu).unwrap();
    cnn_models::train(
        &mut first,
        &data,
        &two,
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Fresh,
        },
        &mut |_| {},
    )
    .unwrap();
    let meta_path = dir.path().join("checkpoint.json");
    let text =
        std::fs::read_to_string(&meta_path)
            .unwrap()
            .replacen("\"epochs\": 2", "\"epochs\": 3", 1);
    std::fs::write(&meta_path, &text).unwrap();
    let v2 = text.clone();

    // format 1 (cnnsplit before crash-safe checkpoints) resumes to the same weights
    downgrade_to_v1(dir.path());
    let mut resumed = Model::init(tiny_spec(), 9, &Device::Cpu).unwrap();
    let report = cnn_models::train(
        &mut resumed,
        &data,
        &cfg(3),
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Continue,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.resumed_after, Some(2));
    for (k, t) in full.tensors() {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = resumed
            .tensor(k)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b, "{k}");
    }
    // … and the checkpoint it leaves is format 2, the old tensors file gone
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["checkpoint-epoch3.safetensors", "checkpoint.json"]);
    assert!(std::fs::read_to_string(&meta_path)
        .unwrap()
        .contains("\"format_version\": 2"));

    // a newer and an older version than this build reads, and a truncated file
    let resume = |json: &str| {
        std::fs::write(&meta_path, json).unwrap();
        let mut m = Model::init(tiny_spec(), 9, &Device::Cpu).unwrap();
        cnn_models::train(
            &mut m,
            &data,
            &cfg(3),
            Checkpointing::In {
                dir: dir.path(),
                resume: Resume::Continue,
            },
            &mut |_| {},
        )
        .unwrap_err()
        .to_string()
    };
    let err = resume(&v2.replace("\"format_version\": 2", "\"format_version\": 3"));
    assert!(
        err.contains("checkpoint.json: training checkpoint format version 3 found; this cnnsplit")
            && err.contains("reads versions 1 and 2")
            && err.contains("newer cnnsplit"),
        "{err}"
    );
    let err = resume(&v2.replace("\"format_version\": 2", "\"format_version\": 0"));
    assert!(
        err.contains("format version 0 found") && err.contains("older cnnsplit"),
        "{err}"
    );
    let err = resume(&v2[..v2.len() / 2]);
    assert!(err.contains("checkpoint.json: not valid JSON"), "{err}");
}

/// [`tiny_spec`] without BatchNorm: with learning rate 0 its weights never change, so every
/// epoch's validation accuracy is the same (a plateau from the first epoch on).
fn tiny_spec_without_bn() -> cnn_models::ModelSpec {
    let mut spec = presets::simcnn(0.0625, 1, 4, false);
    spec.input.height = 16;
    spec.input.width = 16;
    let last_pool = spec
        .layers
        .iter()
        .rposition(|l| matches!(l, cnn_models::LayerSpec::MaxPool { .. }))
        .unwrap();
    spec.layers.remove(last_pool);
    spec
}

fn plateau_run(
    patience: usize,
    min_epochs: usize,
    checkpointing: Checkpointing<'_>,
    epochs: usize,
) -> cnn_models::TrainReport {
    let set = quadrant_set(6);
    let (train, val) = DataSplit::Holdout {
        val_fraction: 0.25,
        limit: None,
    }
    .indices(&set, 1)
    .unwrap();
    let data = TrainData {
        set: &set,
        train,
        val,
        format: format16(),
    };
    let mut c = cfg(epochs);
    c.lr = 0.0;
    c.patience = patience;
    c.min_epochs = min_epochs;
    let mut model = Model::init(tiny_spec_without_bn(), 4, &Device::Cpu).unwrap();
    cnn_models::train(&mut model, &data, &c, checkpointing, &mut |_| {}).unwrap()
}

#[test]
fn patience_stops_a_plateaued_run() {
    let report = plateau_run(2, 0, Checkpointing::Off, 10);
    let accs: Vec<f64> = report.records.iter().map(|r| r.val_accuracy).collect();
    assert!(
        accs.windows(2).all(|w| w[0] == w[1]),
        "not a plateau: {accs:?}"
    );
    // epoch 1 sets the best; epochs 2 and 3 do not rise above it: stop after epoch 3 of 10
    assert_eq!(report.records.len(), 3);
    assert_eq!(report.epochs_run, 3);
    assert!(report.stopped_early);
    // ties keep the later epoch, as without early stopping
    assert_eq!(report.best_epoch, 3);
}

#[test]
fn patience_never_stops_before_min_epochs() {
    let report = plateau_run(2, 6, Checkpointing::Off, 10);
    assert_eq!(report.epochs_run, 6);
    assert!(report.stopped_early);
    // a minimum at or above the cap: every epoch, and no early stop
    let report = plateau_run(1, 8, Checkpointing::Off, 4);
    assert_eq!((report.epochs_run, report.stopped_early), (4, false));
}

#[test]
fn patience_zero_trains_every_epoch() {
    let report = plateau_run(0, 0, Checkpointing::Off, 7);
    assert_eq!(report.records.len(), 7);
    assert_eq!(report.epochs_run, 7);
    assert!(!report.stopped_early);
}

#[test]
fn the_stop_rule_counts_epochs_since_the_last_strict_rise() {
    use cnn_models::train::{epochs_without_improvement, EpochRecord};
    let records = |accs: &[f64]| -> Vec<EpochRecord> {
        accs.iter()
            .enumerate()
            .map(|(e, &a)| EpochRecord {
                epoch: e + 1,
                train_loss: 0.0,
                train_accuracy: 0.0,
                val_accuracy: a,
                lr: 0.01,
                seconds: 0.0,
            })
            .collect()
    };
    assert_eq!(epochs_without_improvement(&records(&[])), 0);
    assert_eq!(epochs_without_improvement(&records(&[0.3])), 0);
    assert_eq!(epochs_without_improvement(&records(&[0.3, 0.5, 0.4])), 1);
    // a tie is not a rise
    assert_eq!(epochs_without_improvement(&records(&[0.5, 0.5, 0.5])), 2);
    assert_eq!(
        epochs_without_improvement(&records(&[0.5, 0.4, 0.45, 0.6])),
        0
    );
    let c = TrainConfig {
        patience: 3,
        min_epochs: 0,
        ..TrainConfig::default()
    };
    assert!(!c.stops_early_after(&records(&[0.5, 0.4, 0.45])));
    assert!(c.stops_early_after(&records(&[0.5, 0.4, 0.45, 0.5])));
    let off = TrainConfig::default();
    assert!(!off.stops_early_after(&records(&[0.5, 0.1, 0.1, 0.1, 0.1, 0.1])));
}

#[test]
fn a_resumed_run_stops_early_at_the_same_epoch_as_an_uninterrupted_one() {
    let full = plateau_run(2, 0, Checkpointing::Off, 10);
    assert_eq!(full.epochs_run, 3);
    // interrupted after epoch 2 (a 2-epoch run's checkpoint, patched to the full config as a
    // run killed during epoch 3 would have left it), then resumed
    let dir = tempfile::tempdir().unwrap();
    plateau_run(
        2,
        0,
        Checkpointing::In {
            dir: dir.path(),
            resume: Resume::Fresh,
        },
        2,
    );
    let meta_path = dir.path().join("checkpoint.json");
    let text =
        std::fs::read_to_string(&meta_path)
            .unwrap()
            .replacen("\"epochs\": 2", "\"epochs\": 10", 1);
    std::fs::write(&meta_path, text).unwrap();
    let resume = || {
        plateau_run(
            2,
            0,
            Checkpointing::In {
                dir: dir.path(),
                resume: Resume::Continue,
            },
            10,
        )
    };
    let resumed = resume();
    assert_eq!(resumed.resumed_after, Some(2));
    let losses = |r: &cnn_models::TrainReport| -> Vec<(f64, f64)> {
        r.records
            .iter()
            .map(|e| (e.train_loss, e.val_accuracy))
            .collect()
    };
    assert_eq!(losses(&resumed), losses(&full));
    assert_eq!((resumed.epochs_run, resumed.stopped_early), (3, true));
    assert_eq!(resumed.best_epoch, full.best_epoch);
    // resuming a run that had already stopped early trains nothing more
    let again = resume();
    assert_eq!(again.resumed_after, Some(3));
    assert_eq!((again.epochs_run, again.stopped_early), (3, true));
}
