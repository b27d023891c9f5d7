//! A whole training run as `cnnsplit train` and the demo do it: initialise a model from its
//! spec, train it with checkpoints (design §4), evaluate the best epoch on the test split, and
//! save the model with a `model.json` that records the recipe, the split and every epoch.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use cnn_data::{DatasetSplits, InputFormat};
use serde_json::json;

use crate::checkpoint::{Checkpointing, Resume};
use crate::error::Result;
use crate::files::{save_model, ModelMeta};
use crate::metrics::Evaluation;
use crate::model::Model;
use crate::ops::OpsBackend;
use crate::spec::ModelSpec;
use crate::train::{train, DataSplit, TrainConfig, TrainData, TrainEvent, TrainReport};

/// What to train, on which data, and where to save it.
///
/// ```no_run
/// use candle_core::Device;
/// use cnn_data::{DatasetSpec, InputFormat};
/// use cnn_models::train::DataSplit;
/// use cnn_models::training_run::{train_and_save, TrainRun};
/// use cnn_models::{presets, OpsBackend, Resume, TrainConfig};
///
/// let dataset: DatasetSpec = "fashion-mnist".parse().unwrap();
/// let data = cnn_data::load_dataset(&dataset).unwrap();
/// let format = InputFormat::for_dataset(dataset.kind);
/// let run = TrainRun {
///     spec: presets::simcnn(0.25, 1, 10, true),
///     dataset: dataset.to_string(),
///     data: &data,
///     format,
///     split: DataSplit::Holdout { val_fraction: 0.1, limit: None },
///     config: TrainConfig { epochs: 1, lr_milestones: vec![], ..Default::default() },
///     out: "runs/model".as_ref(),
///     resume: Resume::Fresh,
///     ops: OpsBackend::Fast,
///     device: &Device::Cpu,
/// };
/// let trained = train_and_save(&run, &mut |_| {}).unwrap();
/// println!("test accuracy {:.4}", trained.test.accuracy);
/// ```
pub struct TrainRun<'a> {
    /// The architecture, already checked against the data.
    pub spec: ModelSpec,
    /// The dataset as named in `model.json` (`fashion-mnist=/path`).
    pub dataset: String,
    /// Its train and test splits.
    pub data: &'a DatasetSplits,
    /// The input format the model takes.
    pub format: InputFormat,
    /// How the training split is divided into training and validation parts.
    pub split: DataSplit,
    /// The training recipe; its seed also seeds the split and the initial weights.
    pub config: TrainConfig,
    /// The model directory to write (its `checkpoint/` holds the per-epoch checkpoints).
    pub out: &'a Path,
    /// Whether to continue from the checkpoint in `out/checkpoint`.
    pub resume: Resume,
    /// The op implementations to train with.
    pub ops: OpsBackend,
    /// Where to compute.
    pub device: &'a Device,
}

impl TrainRun<'_> {
    /// The training and validation indices of the training split that the run uses (the split
    /// is seeded by the recipe's seed, so this is what [`train_and_save`] will train on).
    pub fn parts(&self) -> Result<(Vec<usize>, Vec<usize>)> {
        self.split.indices(&self.data.train, self.config.seed)
    }
}

/// The outcome of [`train_and_save`]: the saved model (best epoch) and what was measured.
pub struct TrainedModel {
    /// The model, holding the best epoch's weights.
    pub model: Model,
    /// Its `model.json` as written.
    pub meta: ModelMeta,
    /// Every epoch and the chosen one.
    pub report: TrainReport,
    /// Evaluation of the best epoch on the whole test split.
    pub test: Evaluation,
    /// Size of the training part.
    pub train_images: usize,
    /// Size of the validation part.
    pub val_images: usize,
    /// Wall time of the training loop.
    pub train_seconds: f64,
    /// SHA-256 of the saved weights.
    pub weights_sha256: String,
}

impl TrainedModel {
    /// The summary `cnnsplit train --json` prints and the Python `train` returns: where the
    /// model went (`out`), its architecture name and `width`, size and cost, the data parts,
    /// every epoch, the chosen one, the test evaluation, time and weights hash.
    pub fn summary_json(&self, out: &Path, width: f64) -> serde_json::Value {
        let an = self.model.analysis();
        json!({
            "model": out,
            "arch": self.model.spec().name,
            "width": width,
            "params": an.params(),
            "kernels": an.total_kernels(),
            "macs": an.macs(),
            "train_images": self.train_images,
            "val_images": self.val_images,
            "epochs": self.report.records,
            "best_epoch": self.report.best_epoch,
            "epochs_run": self.report.epochs_run,
            "stopped_early": self.report.stopped_early,
            "best_val_accuracy": self.report.best_val_accuracy,
            "test_accuracy": self.test.accuracy,
            "test_images": self.test.samples,
            "test_per_class": self.test.per_class,
            "train_seconds": self.train_seconds,
            "weights_sha256": self.weights_sha256,
        })
    }
}

/// Train `run.spec` from its seed's initial weights, evaluate the best epoch on the test split,
/// and save it to `run.out`; `on_event` sees every epoch and batch (for progress bars).
pub fn train_and_save(
    run: &TrainRun<'_>,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<TrainedModel> {
    let seed = run.config.seed;
    let (train_idx, val_idx) = run.parts()?;
    // temp files of a run that was killed mid-write are never read; clear them away
    crate::files::remove_stale_temp_files(run.out, 1)?;
    let mut model = Model::init(run.spec.clone(), seed, run.device)?;
    model.set_ops(run.ops);
    let tdata = TrainData {
        set: &run.data.train,
        train: train_idx,
        val: val_idx,
        format: run.format.clone(),
    };
    let ckpt = run.out.join("checkpoint");
    let started = Instant::now();
    let checkpointing = Checkpointing::In {
        dir: &ckpt,
        resume: run.resume,
    };
    let report = train(&mut model, &tdata, &run.config, checkpointing, on_event)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let all_test: Vec<usize> = (0..run.data.test.len()).collect();
    let test = crate::evaluate(&model, &run.data.test, &all_test, &run.format, 256)?;
    let mut meta = ModelMeta::new(
        run.spec.clone(),
        run.format.clone(),
        run.dataset.clone(),
        run.data.train.class_names.clone(),
    );
    meta.seed = Some(seed);
    meta.training = Some(json!({
        "config": run.config,
        "split": run.split,
        "records": report.records,
        "best_epoch": report.best_epoch,
        "epochs_run": report.epochs_run,
        "stopped_early": report.stopped_early,
        "seconds": train_seconds,
        "ops": model.ops(),
    }));
    meta.metrics = Some(json!({
        "val_accuracy": report.best_val_accuracy,
        "test_accuracy": test.accuracy,
        "test_images": test.samples,
    }));
    let weights_sha256 = save_model(run.out, &model, &meta)?;
    meta.weights_sha256 = weights_sha256.clone();
    Ok(TrainedModel {
        model,
        meta,
        report,
        test,
        train_images: tdata.train.len(),
        val_images: tdata.val.len(),
        train_seconds,
        weights_sha256,
    })
}
