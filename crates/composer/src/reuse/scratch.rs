//! The from-scratch baseline of a new task (design §8): the network of a chosen module's parent,
//! with the task's class count, trained on the task's training images.

use std::time::Instant;

use cnn_models::metrics::Evaluation;
use cnn_models::{Model, Module, OpsBackend, TrainConfig};
use serde::{Deserialize, Serialize};

use super::task::TaskSets;
use super::ReuseEvent;
use crate::error::{ComposerError, Result};

/// Settings of [`train_scratch`]: SGD with momentum 0.9 and weight decay 1e-4, no
/// augmentation, no learning-rate steps.
///
/// ```
/// let cfg = composer::reuse::ScratchConfig { epochs: 5, ..Default::default() };
/// assert_eq!((cfg.batch_size, cfg.lr), (64, 0.01));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ScratchConfig {
    /// Training epochs (0: no baseline).
    pub epochs: usize,
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
    /// Epochs trained.
    pub epochs: usize,
    /// 1-based epoch of highest validation accuracy.
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
    /// Seconds of training.
    pub seconds: f64,
    /// The training settings.
    pub config: TrainConfig,
}

/// Trains `module`'s parent architecture, with the task's class count, from scratch on the
/// task's training images (the first 80 % by index train, the rest validate) and evaluates
/// it on the test part. Runs on the module's device.
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
    let n = sets.train.len();
    let cut = (0.8 * n as f64).floor() as usize;
    let tdata = cnn_models::TrainData {
        set: &sets.train,
        train: (0..cut).collect(),
        val: (cut..n).collect(),
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
    };
    let mut model = Model::init(spec.clone(), cfg.seed, module.model.device()).map_err(run)?;
    model.set_ops(cfg.ops);
    on_event(ReuseEvent::ScratchStart {
        arch: &spec.name,
        train_images: cut,
        val_images: n - cut,
        epochs: cfg.epochs,
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
    Ok(ScratchReport {
        arch: spec.name,
        epochs: cfg.epochs,
        best_epoch: report.best_epoch,
        val_accuracy: report.best_val_accuracy,
        test_accuracy: test.accuracy,
        evaluation: test,
        train_images: cut,
        val_images: n - cut,
        seconds,
        config: train_cfg,
    })
}
