//! The from-scratch baseline of a new task (design §8): the network of a chosen module's parent,
//! with the task's class count, trained on the task's training images until its validation
//! accuracy stops improving.

use std::time::Instant;

use cnn_data::ImageSet;
use cnn_models::metrics::Evaluation;
use cnn_models::{Model, Module, OpsBackend, TrainConfig};
use serde::{Deserialize, Serialize};

use super::task::TaskSets;
use super::ReuseEvent;
use crate::error::{ComposerError, Result};

/// Fraction of each class's training images that [`scratch_split`] holds out for validation.
pub const SCRATCH_VAL_FRACTION: f64 = 0.2;

/// A baseline whose test accuracy is less than this far (5 pp) above the test part's
/// majority-class share is flagged [`ScratchReport::near_majority`]: it has learnt little more
/// than a constant prediction would score.
pub const NEAR_MAJORITY_MARGIN: f64 = 0.05;

/// Settings of [`train_scratch`]: SGD with momentum 0.9 and weight decay 1e-4, no
/// augmentation, no learning-rate steps, early stopping after `patience` epochs without a rise
/// of the validation accuracy (the spec's 5 by default).
///
/// ```
/// let cfg = composer::reuse::ScratchConfig { epochs: 100, ..Default::default() };
/// assert_eq!((cfg.batch_size, cfg.lr, cfg.patience), (64, 0.01, 5));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ScratchConfig {
    /// Most training epochs (0: no baseline).
    pub epochs: usize,
    /// Stop once the validation accuracy has not risen above its best for this many
    /// consecutive epochs (0: train all `epochs`).
    pub patience: usize,
    /// Train at least this many epochs before stopping early.
    pub min_epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Seed of initialisation and data order.
    pub seed: u64,
    /// Batch size of evaluation passes.
    pub eval_batch_size: usize,
    /// Which conv/BN/pool implementation the network runs with.
    pub ops: OpsBackend,
}

impl Default for ScratchConfig {
    fn default() -> Self {
        ScratchConfig {
            epochs: 0,
            patience: 5,
            min_epochs: 1,
            batch_size: 64,
            lr: 0.01,
            seed: 0,
            eval_batch_size: 256,
            ops: OpsBackend::default(),
        }
    }
}

/// What [`train_scratch`] measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScratchReport {
    /// Architecture name.
    pub arch: String,
    /// The epoch cap (`ScratchConfig::epochs`).
    pub epochs: usize,
    /// Epochs actually trained.
    pub epochs_run: usize,
    /// Whether the patience rule ended training before the cap.
    pub stopped_early: bool,
    /// 1-based epoch of highest validation accuracy (the weights evaluated on the test part).
    pub best_epoch: usize,
    /// Its validation accuracy.
    pub val_accuracy: f64,
    /// Accuracy on the task's test part.
    pub test_accuracy: f64,
    /// The full evaluation on the test part.
    pub evaluation: Evaluation,
    /// Training images.
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// Training images per task class (label order).
    pub train_class_counts: Vec<usize>,
    /// Validation images per task class.
    pub val_class_counts: Vec<usize>,
    /// Test images per task class.
    pub test_class_counts: Vec<usize>,
    /// Share of the test part that the most frequent class holds: the accuracy of a constant
    /// prediction of that class.
    pub majority_share: f64,
    /// Whether `test_accuracy` is less than [`NEAR_MAJORITY_MARGIN`] above `majority_share`
    /// (a warning is logged when it is).
    pub near_majority: bool,
    /// Seconds of training.
    pub seconds: f64,
    /// The training settings.
    pub config: TrainConfig,
}

/// The from-scratch baseline's training and validation parts of the task's training images:
/// [`SCRATCH_VAL_FRACTION`] of each class, drawn with a `rand_chacha` generator seeded from
/// `seed`, validates and the rest trains (indices into `train`, ascending). Every class with at
/// least two images is in both parts, however the images are ordered (the task's images come
/// dataset by dataset, so a cut by index would leave whole classes out of training).
///
/// ```
/// use cnn_data::{ImageSet, ImageShape};
/// let shape = ImageShape { channels: 1, height: 1, width: 1 };
/// // 10 images of class 0, then 10 of class 1
/// let labels: Vec<u16> = (0..20).map(|i| (i / 10) as u16).collect();
/// let set = ImageSet::new("t", shape, vec![0; 20], labels, vec!["a".into(), "b".into()]).unwrap();
/// let (train, val) = composer::reuse::scratch_split(&set, 7);
/// assert_eq!((train.len(), val.len()), (16, 4));
/// assert_eq!(val.iter().filter(|&&i| set.labels[i] == 1).count(), 2);
/// ```
pub fn scratch_split(train: &ImageSet, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = cnn_models::seeded(seed, cnn_models::Stream::Split);
    cnn_data::stratified_split(&train.labels, SCRATCH_VAL_FRACTION, &mut rng)
}

/// Images of each of `set`'s classes among `indices`.
fn class_counts_of(set: &ImageSet, indices: &[usize]) -> Vec<usize> {
    let mut counts = vec![0; set.num_classes()];
    for &i in indices {
        if let Some(c) = counts.get_mut(usize::from(set.labels[i])) {
            *c += 1;
        }
    }
    counts
}

/// Trains `module`'s parent architecture, with the task's class count, from scratch on the
/// task's training images ([`scratch_split`]: ~80 % of each class trains, the rest validates)
/// until the validation accuracy stops improving (`cfg.patience`, at most `cfg.epochs`), keeps
/// the best validation epoch, and evaluates it on the test part. Warns when its test accuracy
/// is within [`NEAR_MAJORITY_MARGIN`] of the majority-class share. Runs on the module's device.
pub fn train_scratch(
    module: &Module,
    sets: &TaskSets,
    cfg: &ScratchConfig,
    on_event: &mut dyn FnMut(ReuseEvent<'_>),
) -> Result<ScratchReport> {
    let run = |e: cnn_models::ModelError| ComposerError::Model(e.to_string());
    let spec = module
        .meta
        .parent_spec
        .with_classes(sets.test.num_classes())
        .map_err(run)?;
    let format = module.meta.input_format.clone();
    let (train_idx, val_idx) = scratch_split(&sets.train, cfg.seed);
    let train_class_counts = class_counts_of(&sets.train, &train_idx);
    let val_class_counts = class_counts_of(&sets.train, &val_idx);
    let tdata = cnn_models::TrainData {
        set: &sets.train,
        train: train_idx,
        val: val_idx,
        format: format.clone(),
    };
    let train_cfg = TrainConfig {
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        momentum: 0.9,
        weight_decay: 1e-4,
        lr_milestones: vec![],
        lr_gamma: 0.1,
        augment: None,
        seed: cfg.seed,
        eval_batch: cfg.eval_batch_size,
        patience: cfg.patience,
        min_epochs: cfg.min_epochs,
    };
    let mut model = Model::init(spec.clone(), cfg.seed, module.model.device()).map_err(run)?;
    model.set_ops(cfg.ops);
    on_event(ReuseEvent::ScratchStart {
        arch: &spec.name,
        train_images: tdata.train.len(),
        val_images: tdata.val.len(),
        epochs: cfg.epochs,
        patience: cfg.patience,
    });
    let started = Instant::now();
    let report = cnn_models::train(
        &mut model,
        &tdata,
        &train_cfg,
        cnn_models::Checkpointing::Off,
        &mut |e| on_event(ReuseEvent::Train(e)),
    )
    .map_err(run)?;
    let seconds = started.elapsed().as_secs_f64();
    let idx: Vec<usize> = (0..sets.test.len()).collect();
    let test = cnn_models::evaluate(&model, &sets.test, &idx, &format, cfg.eval_batch_size)
        .map_err(run)?;
    let test_class_counts = sets.test.class_counts();
    let majority_share =
        test_class_counts.iter().copied().max().unwrap_or(0) as f64 / sets.test.len().max(1) as f64;
    let near_majority = test.accuracy < majority_share + NEAR_MAJORITY_MARGIN;
    if near_majority {
        tracing::warn!(
            "the from-scratch baseline ({}) scores {:.2}% on the task's test part, within {:.0} pp of \
             its majority-class share {:.2}%: it is little better than a constant prediction, \
             and comparisons with it say little",
            spec.name,
            100.0 * test.accuracy,
            100.0 * NEAR_MAJORITY_MARGIN,
            100.0 * majority_share
        );
    }
    Ok(ScratchReport {
        arch: spec.name,
        epochs: cfg.epochs,
        epochs_run: report.epochs_run,
        stopped_early: report.stopped_early,
        best_epoch: report.best_epoch,
        val_accuracy: report.best_val_accuracy,
        test_accuracy: test.accuracy,
        evaluation: test,
        train_images: tdata.train.len(),
        val_images: tdata.val.len(),
        train_class_counts,
        val_class_counts,
        test_class_counts,
        majority_share,
        near_majority,
        seconds,
        config: train_cfg,
    })
}
