//! The whole CNNSplitter pipeline on a model (design §6): kernel importance → layer
//! sensitivity → one GA per class with joint fitness → the chosen generation's kernel masks.
//! Every generation is checkpointed (with [`cnn_models::checkpoint::Checkpointer`]); a resumed
//! run continues bit for bit.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};
use cnn_models::checkpoint::{
    fingerprint, setting_differences, CheckpointKind, Checkpointing, DifferentRun, JsonLayout,
};
use cnn_models::extract::KernelMask;
use cnn_models::Model;
use serde::{Deserialize, Serialize};

use crate::config::GaConfig;
use crate::error::{GaError, Result};
use crate::evaluator::{chromosome_masks, gene_layers_of, ModelEvaluator};
use crate::genome::Genome;
use crate::importance::{kernel_importance, KernelImportance};
use crate::run::{GaOutcome, GaRun, GaState, GenerationRecord};
use crate::sensitivity::{layer_sensitivity, LayerSensitivity};

/// Format tag of the checkpoint's prelude file.
pub const CHECKPOINT_FORMAT: &str = "cnnsplit-ga-checkpoint";
/// File holding importance, sensitivity and the run's settings.
pub const PRELUDE_FILE: &str = "ga_prelude.json";
/// Format version of the prelude file this build writes and reads.
pub const PRELUDE_FORMAT_VERSION: u32 = 1;
/// File holding the GA state after the last finished generation.
pub const STATE_FILE: &str = "ga_state.json";

/// CNNSplitter checkpoints: the prelude ([`PRELUDE_FILE`]: settings, model, fitness images,
/// importance, sensitivity) is the commit record, written once a run has measured importance
/// and sensitivity; the GA's state after each generation goes to [`STATE_FILE`]. No tensors.
pub static GA_CHECKPOINT: CheckpointKind = CheckpointKind {
    format: CHECKPOINT_FORMAT,
    name: "CNNSplitter checkpoint",
    version: PRELUDE_FORMAT_VERSION,
    versions_read: &[PRELUDE_FORMAT_VERSION],
    record_file: PRELUDE_FILE,
    tensors: None,
    layout: JsonLayout::Compact,
};

/// Every number of a CNNSplitter decomposition besides the images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaSplitConfig {
    /// The GA's numbers; its `sensitive_layers` are replaced by the sensitivity rule unless
    /// `sensitive_layers` below is given.
    pub ga: GaConfig,
    /// Softmax probability an image needs to count for kernel importance (0.9).
    pub confidence: f64,
    /// Keep ratios at which layer sensitivity is measured.
    pub sensitivity_ratios: Vec<f64>,
    /// The ratio the automatic sensitivity rule looks at (0.5).
    pub sensitivity_ratio: f64,
    /// Accuracy drop (absolute) at `sensitivity_ratio` that makes a layer sensitive (0.05).
    pub sensitivity_drop: f64,
    /// Explicit sensitive gene-layers (skips the rule, not the measurement).
    pub sensitive_layers: Option<Vec<usize>>,
    /// Master seed of the GA's draws.
    pub seed: u64,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl GaSplitConfig {
    /// Defaults around a GA configuration: confidence 0.9, sensitivity at r = 0.5 with a 5 pp
    /// threshold, seed 0, batch 256.
    pub fn new(ga: GaConfig) -> Self {
        Self {
            ga,
            confidence: 0.9,
            sensitivity_ratios: vec![0.5],
            sensitivity_ratio: 0.5,
            sensitivity_drop: 0.05,
            sensitive_layers: None,
            seed: 0,
            batch_size: 256,
        }
    }
}

/// Progress of a decomposition.
#[derive(Debug)]
pub enum GaSplitEvent<'a> {
    /// Kernel importance was measured (or read from the checkpoint).
    Importance(&'a KernelImportance),
    /// Layer sensitivity was measured and the sensitive layers chosen.
    Sensitivity {
        /// The measurement.
        sensitivity: &'a LayerSensitivity,
        /// The gene-layers treated as sensitive.
        sensitive: &'a [usize],
    },
    /// A generation starts.
    GenerationStart {
        /// Generation index.
        generation: usize,
        /// Last generation index.
        last: usize,
    },
    /// A generation was evaluated.
    Generation {
        /// What was measured.
        record: &'a GenerationRecord,
        /// Seconds the generation took.
        seconds: f64,
        /// Of those, seconds spent running candidate modules on the fitness images.
        evaluation_seconds: f64,
        /// Mean kept kernels of E_g's modules.
        mean_kernels: f64,
        /// Last generation index.
        last: usize,
    },
}

/// What a decomposition found.
#[derive(Clone, Debug)]
pub struct GaSplitResult {
    /// Per class, the chosen generation's kernel mask per site.
    pub masks: Vec<Vec<KernelMask>>,
    /// Chosen generation and history.
    pub outcome: GaOutcome,
    /// Kernel importance.
    pub importance: KernelImportance,
    /// Layer sensitivity.
    pub sensitivity: LayerSensitivity,
    /// Gene-layers treated as sensitive.
    pub sensitive_layers: Vec<usize>,
    /// Seconds per evaluated generation (of this process; a resumed run keeps the earlier ones).
    pub generation_seconds: Vec<f64>,
    /// Of those, seconds spent running candidate modules (this process's generations only).
    pub evaluation_seconds: Vec<f64>,
    /// Chromosomes run through the model, and answered from the cache.
    pub evaluations: (usize, usize),
}

/// The prelude's own fields.
#[derive(Serialize, Deserialize)]
struct Prelude {
    config: GaSplitConfig,
    model_sha256: String,
    data_sha256: String,
    importance: KernelImportance,
    sensitivity: LayerSensitivity,
    sensitive_layers: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    state: GaState,
    generation_seconds: Vec<f64>,
}

/// Decode the state file `path`, its format version checked first (so a file of another
/// version is named as such, not as unreadable).
fn read_state(path: &Path, value: serde_json::Value) -> Result<Saved> {
    cnn_models::files::check_version(
        path,
        value.get("state").and_then(|s| s.get("format_version")),
        &[crate::run::CHECKPOINT_FORMAT_VERSION],
        "CNNSplitter state",
    )?;
    serde_json::from_value(value).map_err(|e| GaError::File {
        path: path.to_path_buf(),
        message: format!("not a readable GA checkpoint: {e}"),
    })
}

/// Decomposes `model` with CNNSplitter on normalised fitness images `x` `[n, C, H, W]`
/// (`labels` their classes): importance, sensitivity and generation choice use the same images,
/// as the reference does. With [`Checkpointing::In`], the state is written there after
/// every generation, and [`Resume::Continue`](cnn_models::Resume::Continue) continues from it
/// (same model, images and settings required; only the number of generations may change, to
/// stop a run early or to run it longer). `model_sha256` identifies the model in the
/// checkpoint.
pub fn ga_split(
    model: &Model,
    model_sha256: &str,
    x: &Tensor,
    labels: &[u32],
    config: &GaSplitConfig,
    checkpointing: Checkpointing<'_>,
    on_event: &mut dyn FnMut(&GaSplitEvent),
) -> Result<GaSplitResult> {
    let classes = model.spec().num_classes;
    let genome = Genome::new(gene_layers_of(model.analysis()))?;
    // the checkpoint recognises its fitness images by their labels and values
    let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let values: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let value_bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
    let data_sha256 = fingerprint(&[&label_bytes, &value_bytes]);
    let resume = checkpointing.resumes();
    if let Some(dir) = checkpointing.dir() {
        std::fs::create_dir_all(dir).map_err(|e| cnn_models::ModelError::write(dir, e))?;
    }
    let checkpointer = checkpointing.open(&GA_CHECKPOINT)?;
    let saved_prelude = match &checkpointer {
        Some(ckpt) if resume => ckpt.load::<Prelude>()?,
        _ => None,
    };
    let resumed: Option<Prelude> = match saved_prelude {
        Some(saved) => {
            let prelude = saved.body;
            let mut diffs = setting_differences(&prelude.config, config)?;
            // the generation count may change on resume (stop early or run longer)
            diffs.retain(|d| !d.starts_with("ga.generations:"));
            if prelude.model_sha256 != model_sha256 {
                diffs.push("model weights".into());
            }
            if prelude.data_sha256 != data_sha256 {
                diffs.push("fitness images".into());
            }
            if !diffs.is_empty() {
                return Err(DifferentRun {
                    path: saved.path,
                    what: "settings",
                    differences: diffs,
                }
                .into());
            }
            Some(prelude)
        }
        None => None,
    };
    let (importance, sensitivity, sensitive_layers) = match resumed {
        Some(p) => (p.importance, p.sensitivity, p.sensitive_layers),
        None => {
            let importance =
                kernel_importance(model, x, labels, config.confidence, config.batch_size)?;
            on_event(&GaSplitEvent::Importance(&importance));
            let orders = importance.orders();
            let sensitivity = layer_sensitivity(
                model,
                x,
                labels,
                &orders,
                &config.sensitivity_ratios,
                config.batch_size,
            )?;
            let sensitive = match &config.sensitive_layers {
                Some(list) => list.clone(),
                None => {
                    sensitivity.sensitive_layers(config.sensitivity_ratio, config.sensitivity_drop)
                }
            };
            if let Some(ckpt) = &checkpointer {
                // the old state goes first: a crash before the new prelude is written must not
                // leave an old run's state next to this run's prelude
                ckpt.remove_file(STATE_FILE)?;
                ckpt.commit_record(&Prelude {
                    config: config.clone(),
                    model_sha256: model_sha256.into(),
                    data_sha256: data_sha256.clone(),
                    importance: importance.clone(),
                    sensitivity: sensitivity.clone(),
                    sensitive_layers: sensitive.clone(),
                })?;
            }
            (importance, sensitivity, sensitive)
        }
    };
    if resume {
        on_event(&GaSplitEvent::Importance(&importance));
    }
    on_event(&GaSplitEvent::Sensitivity {
        sensitivity: &sensitivity,
        sensitive: &sensitive_layers,
    });
    let mut ga = config.ga.clone();
    ga.sensitive_layers = sensitive_layers.clone();
    let orders = importance.orders();
    let saved: Option<Saved> = match &checkpointer {
        Some(ckpt) if resume => match ckpt.read_file(STATE_FILE)? {
            Some((path, value)) => Some(read_state(&path, value)?),
            None => None,
        },
        _ => None,
    };
    let (mut run, mut generation_seconds) = match saved {
        Some(s) => (
            GaRun::resume(ga.clone(), genome.clone(), s.state)?,
            s.generation_seconds,
        ),
        None => {
            let mut rng = cnn_models::seeded(config.seed, cnn_models::Stream::Genetic);
            (
                GaRun::new(ga.clone(), genome.clone(), classes, &mut rng)?,
                Vec::new(),
            )
        }
    };
    let mut evaluation_seconds = Vec::new();
    let mut evaluator = ModelEvaluator::new(
        model,
        genome.clone(),
        orders.clone(),
        x.clone(),
        labels.to_vec(),
        config.batch_size,
    )?;
    while !run.is_finished() {
        let generation = run.state().next_generation;
        on_event(&GaSplitEvent::GenerationStart {
            generation,
            last: ga.generations,
        });
        let started = Instant::now();
        let evaluating_before = evaluator.seconds;
        run.step(&mut evaluator)?;
        let seconds = started.elapsed().as_secs_f64();
        let evaluation = evaluator.seconds - evaluating_before;
        generation_seconds.push(seconds);
        evaluation_seconds.push(evaluation);
        let record = run
            .state()
            .history
            .last()
            .expect("a generation was recorded");
        let mean_kernels = record.best_kernels.iter().sum::<usize>() as f64
            / record.best_kernels.len().max(1) as f64;
        on_event(&GaSplitEvent::Generation {
            record,
            seconds,
            evaluation_seconds: evaluation,
            mean_kernels,
            last: ga.generations,
        });
        if let Some(ckpt) = &checkpointer {
            ckpt.write_file(
                STATE_FILE,
                &Saved {
                    state: run.state().clone(),
                    generation_seconds: generation_seconds.clone(),
                },
            )?;
        }
    }
    let outcome = run.outcome()?;
    let masks = outcome
        .chosen
        .chromosomes
        .iter()
        .enumerate()
        .map(|(c, chromosome)| chromosome_masks(&genome, chromosome, &orders[c]))
        .collect::<Result<Vec<_>>>()?;
    Ok(GaSplitResult {
        masks,
        outcome,
        importance,
        sensitivity,
        sensitive_layers,
        generation_seconds,
        evaluation_seconds,
        evaluations: (evaluator.evaluated, evaluator.reused),
    })
}
