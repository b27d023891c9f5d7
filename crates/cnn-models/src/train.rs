//! Training (design §4): SGD with momentum and weight decay as PyTorch does it, step learning-rate
//! schedule, best epoch by validation accuracy, optional early stopping by patience, per-epoch
//! checkpoints and exact resume.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Tensor, Var};
use cnn_data::{Augment, Batches, ImageSet, InputFormat};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    fingerprint, setting_differences, CheckpointKind, Checkpointer, Checkpointing, DifferentRun,
    JsonLayout, TensorFiles,
};
use crate::error::{ModelError, Result};
use crate::evaluate::evaluate;
use crate::model::{ForwardOptions, Model};
use crate::{epoch_rng, Stream};

/// The training recipe. Defaults are the paper's (design §4, first row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay (on every parameter, BN and biases included).
    pub weight_decay: f64,
    /// 0-based epochs from which the learning rate is multiplied by `lr_gamma` (again).
    pub lr_milestones: Vec<usize>,
    /// Learning-rate factor at each milestone.
    pub lr_gamma: f64,
    /// Training augmentation (none for evaluation views, ever).
    pub augment: Option<Augment>,
    /// Master seed: init, data order, augmentation and dropout streams derive from it.
    pub seed: u64,
    /// Batch size for validation passes.
    pub eval_batch: usize,
    /// Early stopping: stop once the validation accuracy has not risen above its best for this
    /// many consecutive epochs; `epochs` is then the cap. 0 (the default) trains every epoch.
    #[serde(default)]
    pub patience: usize,
    /// With `patience` > 0, the fewest epochs a run trains before it may stop early.
    #[serde(default)]
    pub min_epochs: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 200,
            batch_size: 128,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            lr_milestones: vec![60, 120],
            lr_gamma: 0.1,
            augment: None,
            seed: 0,
            eval_batch: 256,
            patience: 0,
            min_epochs: 0,
        }
    }
}

impl TrainConfig {
    /// Learning rate of 0-based epoch `e`.
    pub fn lr_at(&self, e: usize) -> f64 {
        let steps = self.lr_milestones.iter().filter(|&&m| e >= m).count() as i32;
        self.lr * self.lr_gamma.powi(steps)
    }

    /// Whether a run whose finished epochs are `records` stops here by the patience rule:
    /// `patience` > 0, at least `min_epochs` epochs done, and the last `patience` epochs did
    /// not raise the validation accuracy above the best before them (a tie is no rise).
    /// Decided from the records alone, so a resumed run stops where an uninterrupted one does.
    ///
    /// ```
    /// use cnn_models::train::EpochRecord;
    /// let cfg = cnn_models::TrainConfig { patience: 2, min_epochs: 3, ..Default::default() };
    /// let run = |accs: &[f64]| -> Vec<EpochRecord> {
    ///     accs.iter().enumerate().map(|(e, &a)| EpochRecord {
    ///         epoch: e + 1, train_loss: 0.0, train_accuracy: 0.0, val_accuracy: a,
    ///         lr: 0.01, seconds: 0.0,
    ///     }).collect()
    /// };
    /// assert!(!cfg.stops_early_after(&run(&[0.5, 0.5])));          // fewer than min_epochs
    /// assert!(cfg.stops_early_after(&run(&[0.6, 0.5, 0.6])));      // 2 epochs without a rise
    /// assert!(!cfg.stops_early_after(&run(&[0.5, 0.5, 0.7])));     // the last epoch rose
    /// ```
    pub fn stops_early_after(&self, records: &[EpochRecord]) -> bool {
        self.patience > 0
            && records.len() >= self.min_epochs
            && epochs_without_improvement(records) >= self.patience
    }
}

/// Epochs since the validation accuracy last rose strictly above every earlier epoch's (0 when
/// the last epoch did, or when there are no epochs). The first epoch always counts as a rise.
pub fn epochs_without_improvement(records: &[EpochRecord]) -> usize {
    let mut best = f64::NEG_INFINITY;
    let mut last_rise = 0;
    for (i, r) in records.iter().enumerate() {
        if r.val_accuracy > best {
            best = r.val_accuracy;
            last_rise = i + 1;
        }
    }
    records.len() - last_rise
}

/// The data a run trains and validates on.
pub struct TrainData<'a> {
    /// The image set.
    pub set: &'a ImageSet,
    /// Indices of the training part.
    pub train: Vec<usize>,
    /// Indices of the validation part (never augmented).
    pub val: Vec<usize>,
    /// The model's input format.
    pub format: InputFormat,
}

impl TrainData<'_> {
    /// The bytes that say which images a run uses, for checkpoint [`fingerprint`]s: the
    /// training indices, `u64::MAX` as a separator, the validation indices (each a
    /// little-endian `u64`), then the image set's name.
    pub fn selection_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for i in self
            .train
            .iter()
            .chain([usize::MAX].iter())
            .chain(self.val.iter())
        {
            bytes.extend_from_slice(&(*i as u64).to_le_bytes());
        }
        bytes.extend_from_slice(self.set.name.as_bytes());
        bytes
    }
}

/// What happened in one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (on augmented views, in training mode).
    pub train_accuracy: f64,
    /// Validation accuracy (correct / total).
    pub val_accuracy: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// The outcome of a training run; the model holds the best epoch's weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Every epoch, including those before a resume.
    pub records: Vec<EpochRecord>,
    /// 1-based best epoch (highest validation accuracy; ties keep the later epoch).
    pub best_epoch: usize,
    /// Its validation accuracy.
    pub best_val_accuracy: f64,
    /// Epochs already done when this process resumed, if it did.
    pub resumed_after: Option<usize>,
    /// Epochs trained (`records.len()`), before a resume included.
    #[serde(default)]
    pub epochs_run: usize,
    /// Whether the patience rule ([`TrainConfig::stops_early_after`]) ended the run before
    /// its epoch cap.
    #[serde(default)]
    pub stopped_early: bool,
}

/// Progress of a training run, for progress bars and logs.
#[derive(Clone, Debug)]
pub enum TrainEvent {
    /// An epoch starts.
    EpochStart {
        /// 1-based epoch.
        epoch: usize,
        /// Total epochs.
        epochs: usize,
        /// Batches in the epoch.
        batches: usize,
    },
    /// A batch finished.
    Batch {
        /// 1-based batch.
        batch: usize,
        /// Its loss.
        loss: f32,
    },
    /// An epoch finished.
    EpochEnd(EpochRecord),
}

/// One SGD step as PyTorch's `torch.optim.SGD` does it (no dampening, no Nesterov):
/// d = g + wd·w; v ← μ·v + d (v = d on the first step); w ← w − lr·v. Gradients are
/// detached first, so no step's graph is kept alive by the momentum buffers.
pub fn sgd_step(
    vars: &[(String, Var)],
    grads: &candle_core::backprop::GradStore,
    momentum_buffers: &mut BTreeMap<String, Tensor>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> Result<()> {
    for (key, var) in vars {
        let Some(g) = grads.get(var) else { continue };
        let buffer = momentum_buffers.get(key).filter(|_| momentum != 0.0);
        let (w, v) = cpu_ops::sgd_update(var.as_tensor(), g, buffer, lr, momentum, weight_decay)?;
        var.set(&w)?;
        if momentum != 0.0 {
            momentum_buffers.insert(key.clone(), v);
        }
    }
    Ok(())
}

/// Metadata file of a training checkpoint; written last, it commits the checkpoint.
pub const CKPT_META: &str = "checkpoint.json";

/// Training checkpoints: `checkpoint.json` naming `checkpoint-epochN.safetensors` (format
/// version 2). Version 1 kept its tensors in `checkpoint.safetensors` and resumes like
/// version 2.
pub static TRAIN_CHECKPOINT: CheckpointKind = CheckpointKind {
    format: "cnnsplit-train-checkpoint",
    name: "training checkpoint",
    version: 2,
    versions_read: &[1, 2],
    record_file: CKPT_META,
    tensors: Some(TensorFiles {
        prefix: "checkpoint-epoch",
        version_1_file: "checkpoint.safetensors",
    }),
    layout: JsonLayout::Pretty,
};

/// A training checkpoint's own fields (the current, momentum and best tensors are in its
/// tensors file as `current.K`, `momentum.K`, `best.K`).
#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    config: TrainConfig,
    spec_name: String,
    data_fingerprint: String,
    epochs_done: usize,
    records: Vec<EpochRecord>,
    best_epoch: usize,
    best_val_accuracy: f64,
}

struct State {
    momentum: BTreeMap<String, Tensor>,
    best: BTreeMap<String, Tensor>,
    records: Vec<EpochRecord>,
    best_epoch: usize,
    best_val: f64,
}

/// Train `model` in place. With [`Checkpointing::In`], state is saved after every epoch;
/// with [`Resume::Continue`](crate::Resume::Continue), a run continues from the checkpoint
/// there (same config and data required) and ends bit-for-bit where an uninterrupted run
/// would.
pub fn train(
    model: &mut Model,
    data: &TrainData<'_>,
    cfg: &TrainConfig,
    checkpointing: Checkpointing<'_>,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<TrainReport> {
    if data.train.is_empty() {
        return Err(ModelError::Mismatch("the training split is empty".into()));
    }
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(ModelError::Mismatch(
            "batch size and epochs must be ≥ 1".into(),
        ));
    }
    let device = model.device().clone();
    let vars: Vec<(String, Var)> = model.trainable_vars()?;
    let fp = fingerprint(&[&data.selection_bytes()]);
    let checkpointer = checkpointing.open(&TRAIN_CHECKPOINT)?;
    let mut state = State {
        momentum: BTreeMap::new(),
        best: model
            .tensors()
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.copy()?)))
            .collect::<Result<_>>()?,
        records: Vec::new(),
        best_epoch: 0,
        best_val: f64::NEG_INFINITY,
    };
    let mut start_epoch = 0;
    let mut resumed_after = None;
    if let (Some(ckpt), true) = (&checkpointer, checkpointing.resumes()) {
        if let Some(done) = load_checkpoint(ckpt, model, &vars, &mut state, cfg, &fp)? {
            start_epoch = done;
            resumed_after = Some(done);
            tracing::info!(
                epochs_done = done,
                "resumed training from {}",
                ckpt.dir().display()
            );
        }
    }
    let mut stopped_early = false;
    for epoch in start_epoch..cfg.epochs {
        // checked before each epoch (not after), so a run resumed from a checkpoint of a run
        // that had already stopped stops again at once
        if cfg.stops_early_after(&state.records) {
            stopped_early = true;
            tracing::info!(
                epochs_run = epoch,
                best_epoch = state.best_epoch,
                patience = cfg.patience,
                "validation accuracy stopped improving: training stops early"
            );
            break;
        }
        let started = Instant::now();
        let lr = cfg.lr_at(epoch);
        let batches = Batches::new(
            data.set,
            data.train.clone(),
            cfg.batch_size,
            data.format.clone(),
            cfg.augment,
            true,
            epoch_rng(cfg.seed, Stream::Data, epoch),
            device.clone(),
        );
        let n_batches = batches.len();
        on_event(&TrainEvent::EpochStart {
            epoch: epoch + 1,
            epochs: cfg.epochs,
            batches: n_batches,
        });
        let mut dropout_rng = epoch_rng(cfg.seed, Stream::Dropout, epoch);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0u64, 0u64);
        for (b, batch) in batches.enumerate() {
            let (x, y) = batch?;
            let opts = ForwardOptions {
                train: true,
                dropout_rng: Some(&mut dropout_rng),
                ..Default::default()
            };
            let (logits, bn_updates) = model.forward(&x, opts)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                return Err(ModelError::NonFiniteLoss {
                    epoch: epoch + 1,
                    batch: b + 1,
                    value: loss_value,
                });
            }
            let grads = loss.backward()?;
            sgd_step(
                &vars,
                &grads,
                &mut state.momentum,
                lr,
                cfg.momentum,
                cfg.weight_decay,
            )?;
            model.apply_bn_updates(bn_updates);
            let preds = logits.detach().argmax(1)?.to_vec1::<u32>()?;
            let labels = y.to_vec1::<u32>()?;
            correct += preds.iter().zip(&labels).filter(|(p, l)| p == l).count() as u64;
            seen += labels.len() as u64;
            loss_sum += loss_value as f64 * labels.len() as f64;
            on_event(&TrainEvent::Batch {
                batch: b + 1,
                loss: loss_value,
            });
        }
        let val_accuracy = if data.val.is_empty() {
            correct as f64 / seen.max(1) as f64
        } else {
            evaluate(model, data.set, &data.val, &data.format, cfg.eval_batch)?.accuracy
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy,
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = record.epoch,
            loss = record.train_loss,
            train_acc = record.train_accuracy,
            val_acc = record.val_accuracy,
            seconds = record.seconds,
            "epoch done"
        );
        if val_accuracy >= state.best_val {
            state.best_val = val_accuracy;
            state.best_epoch = epoch + 1;
            state.best = model
                .tensors()
                .iter()
                .map(|(k, t)| Ok((k.clone(), t.copy()?)))
                .collect::<Result<_>>()?;
        }
        state.records.push(record.clone());
        if let Some(ckpt) = &checkpointer {
            save_checkpoint(ckpt, model, &state, cfg, &fp, epoch + 1)?;
        }
        on_event(&TrainEvent::EpochEnd(record));
    }
    for (k, t) in std::mem::take(&mut state.best) {
        model.set_tensor(&k, t);
    }
    model.freeze()?;
    Ok(TrainReport {
        epochs_run: state.records.len(),
        records: state.records,
        best_epoch: state.best_epoch,
        best_val_accuracy: state.best_val,
        resumed_after,
        stopped_early,
    })
}

fn save_checkpoint(
    ckpt: &Checkpointer,
    model: &Model,
    st: &State,
    cfg: &TrainConfig,
    fp: &str,
    done: usize,
) -> Result<()> {
    let mut all = BTreeMap::new();
    for (k, t) in model.tensors() {
        all.insert(format!("current.{k}"), t.clone());
    }
    for (k, t) in &st.momentum {
        all.insert(format!("momentum.{k}"), t.clone());
    }
    for (k, t) in &st.best {
        all.insert(format!("best.{k}"), t.clone());
    }
    let meta = CheckpointMeta {
        config: cfg.clone(),
        spec_name: model.spec().name.clone(),
        data_fingerprint: fp.to_string(),
        epochs_done: done,
        records: st.records.clone(),
        best_epoch: st.best_epoch,
        best_val_accuracy: st.best_val,
    };
    ckpt.commit(done, &all, &meta)
}

fn load_checkpoint(
    ckpt: &Checkpointer,
    model: &mut Model,
    vars: &[(String, Var)],
    st: &mut State,
    cfg: &TrainConfig,
    fp: &str,
) -> Result<Option<usize>> {
    let Some(saved) = ckpt.load::<CheckpointMeta>()? else {
        tracing::warn!(
            "no checkpoint in {}: starting from scratch",
            ckpt.dir().display()
        );
        return Ok(None);
    };
    let meta = &saved.body;
    if meta.config != *cfg {
        return Err(DifferentRun {
            path: saved.path.clone(),
            what: "training settings",
            differences: setting_differences(&meta.config, cfg)?,
        }
        .into());
    }
    if meta.spec_name != model.spec().name || meta.data_fingerprint != fp {
        return Err(ModelError::bad(
            &saved.path,
            "the checkpoint was made for a different model or dataset split",
        ));
    }
    let device = model.device().clone();
    let read = |name: &str| -> Result<Tensor> { Ok(saved.tensor(name)?.to_device(&device)?) };
    let keys: Vec<String> = model.tensors().keys().cloned().collect();
    for k in &keys {
        let cur = read(&format!("current.{k}"))?;
        match vars.iter().find(|(n, _)| n == k) {
            Some((_, var)) => var.set(&cur)?,
            None => model.set_tensor(k, cur),
        }
        st.best.insert(k.clone(), read(&format!("best.{k}"))?);
        if cfg.momentum != 0.0 && meta.epochs_done > 0 && vars.iter().any(|(n, _)| n == k) {
            st.momentum
                .insert(k.clone(), read(&format!("momentum.{k}"))?);
        }
    }
    let meta = saved.body;
    st.records = meta.records;
    st.best_epoch = meta.best_epoch;
    st.best_val = meta.best_val_accuracy;
    Ok(Some(meta.epochs_done))
}

/// How a training split is divided into the part a model trains on and the part that selects
/// its best epoch. Recorded in `model.json` so `eval --split val` sees the same images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DataSplit {
    /// A seeded permutation; the last `val_fraction` is validation.
    Holdout {
        /// Validation fraction in [0, 1).
        val_fraction: f64,
        /// Use only the first `limit` training images (quick runs).
        limit: Option<usize>,
    },
    /// The last `val_images` images of the training split are validation, the rest training,
    /// in file order: a split any tool can reproduce, recorded for imported models whose
    /// training held those images out (`cnnsplit import --val-last N`).
    ///
    /// ```
    /// use cnn_models::train::DataSplit;
    /// let set = cnn_data::ImageSet::new("s", cnn_data::ImageShape { channels: 1, height: 1, width: 1 },
    ///     vec![0; 5], vec![0, 1, 0, 1, 0], vec!["a".into(), "b".into()]).unwrap();
    /// let (train, val) = DataSplit::Last { val_images: 2 }.indices(&set, 0).unwrap();
    /// assert_eq!((train, val), (vec![0, 1, 2], vec![3, 4]));
    /// ```
    Last {
        /// Images at the end of the training split that form the validation part.
        val_images: usize,
    },
    /// The Dirichlet class-imbalanced estimator subset (design §2.3): 80 % train, 20 % val.
    Estimator {
        /// Estimator seed.
        seed: u64,
        /// Dirichlet concentration.
        alpha: f64,
        /// Minimum images per class.
        min_size: usize,
    },
}

impl DataSplit {
    /// (train, val) indices into `set` for master seed `seed`.
    pub fn indices(&self, set: &ImageSet, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
        match *self {
            DataSplit::Holdout {
                val_fraction,
                limit,
            } => {
                if !(0.0..1.0).contains(&val_fraction) {
                    return Err(ModelError::Mismatch(format!(
                        "validation fraction {val_fraction} is not in [0, 1)"
                    )));
                }
                let n = limit.map_or(set.len(), |l| l.min(set.len()));
                let mut rng = crate::seeded(seed, crate::Stream::Split);
                Ok(cnn_data::train_val_split(n, val_fraction, &mut rng))
            }
            DataSplit::Last { val_images } => {
                let n = set.len();
                if val_images == 0 || val_images >= n {
                    return Err(ModelError::Mismatch(format!(
                        "a validation part of the last {val_images} images needs 1 to {} of the {n} training images",
                        n.saturating_sub(1)
                    )));
                }
                Ok(((0..n - val_images).collect(), (n - val_images..n).collect()))
            }
            DataSplit::Estimator {
                seed: est,
                alpha,
                min_size,
            } => {
                if alpha <= 0.0 {
                    return Err(ModelError::Mismatch(format!(
                        "Dirichlet alpha must be > 0, got {alpha}"
                    )));
                }
                let counts = set.class_counts();
                if counts.iter().any(|&c| c < min_size) {
                    return Err(ModelError::Mismatch(format!(
                        "dataset `{}` has a class with fewer than min_size = {min_size} images: no estimator subset can be drawn",
                        set.name
                    )));
                }
                Ok(cnn_data::dirichlet_subset(
                    &set.labels,
                    set.num_classes(),
                    alpha,
                    min_size,
                    est,
                ))
            }
        }
    }
}
