//! The whole CNNSplitter pipeline on a model (design §6): kernel importance → layer
//! sensitivity → one GA per class with joint fitness → the chosen generation's kernel masks.
//! Every generation is checkpointed (with [`cnn_models::checkpoint::Checkpointer`]); a resumed
//! run continues bit for bit. [`decompose`] runs it on a model's validation images and turns
//! the result into calibrated class modules and a run record ([`GaRecord`]).

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};
use cnn_models::checkpoint::{
    fingerprint, setting_differences, CheckpointKind, Checkpointing, DifferentRun, JsonLayout,
};
use cnn_models::decomposition::{Decomposition, DecompositionRecord, ModuleSummary, ParentModel};
use cnn_models::extract::KernelMask;
use cnn_models::module::Collapse;
use cnn_models::{Model, ModelSpec, ModuleSource, TrainData};
use serde::{Deserialize, Serialize};

use crate::config::{GaConfig, InitStrategy, SelectionSplit};
use crate::error::{GaError, Result};
use crate::evaluator::{chromosome_masks, gene_layers_of, ModelEvaluator};
use crate::genome::Genome;
use crate::importance::{kernel_importance, KernelImportance};
use crate::ratios::{probe_keep_ratios, InitRatios, RatioProbe};
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
    /// Where generation 0's keep ratios come from: `ga`'s lists, or measured on the model
    /// ([`probe_keep_ratios`], design §6.4).
    #[serde(default)]
    pub init_ratios: InitRatios,
}

impl GaSplitConfig {
    /// Defaults around a GA configuration: confidence 0.9, sensitivity at r = 0.5 with a 5 pp
    /// threshold, seed 0, batch 256, the configuration's own keep ratios.
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
            init_ratios: InitRatios::Config,
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
    /// Generation 0's keep ratios were measured on the model (or read from the checkpoint).
    RatioProbe(&'a RatioProbe),
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
    /// The keep-ratio measurement, when [`InitRatios::Probe`] chose generation 0's ratios.
    pub ratio_probe: Option<RatioProbe>,
    /// Holdout images the generation choice used (0: it used the fitness images).
    pub holdout_images: usize,
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
    #[serde(default)]
    ratio_probe: Option<RatioProbe>,
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
    ga_split_with_holdout(
        model,
        model_sha256,
        x,
        labels,
        None,
        config,
        checkpointing,
        on_event,
    )
}

/// The bytes the checkpoint recognises a set of images by: labels, then values.
fn image_bytes(x: &Tensor, labels: &[u32]) -> Result<(Vec<u8>, Vec<u8>)> {
    let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let values: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let value_bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
    Ok((label_bytes, value_bytes))
}

/// [`ga_split`] with a generation-selection holdout (design §6.7): with `holdout` =
/// `Some((images, labels))` and at least one image, every generation's modules E_g are also
/// composed on those images, which the fitness never sees, and the generation is chosen by that
/// accuracy ([`SelectionSplit::Holdout`]); otherwise on the fitness images, as the reference
/// does. With [`InitRatios::Probe`] and the heuristic initialisation, generation 0's keep
/// ratios are measured on the fitness images first ([`probe_keep_ratios`]).
#[allow(clippy::too_many_arguments)]
pub fn ga_split_with_holdout(
    model: &Model,
    model_sha256: &str,
    x: &Tensor,
    labels: &[u32],
    holdout: Option<(&Tensor, &[u32])>,
    config: &GaSplitConfig,
    checkpointing: Checkpointing<'_>,
    on_event: &mut dyn FnMut(&GaSplitEvent),
) -> Result<GaSplitResult> {
    let classes = model.spec().num_classes;
    let genome = Genome::new(gene_layers_of(model.analysis()))?;
    let holdout = holdout.filter(|(_, l)| !l.is_empty());
    // the checkpoint recognises its fitness (and holdout) images by their labels and values
    let (label_bytes, value_bytes) = image_bytes(x, labels)?;
    let data_sha256 = match holdout {
        None => fingerprint(&[&label_bytes, &value_bytes]),
        Some((hx, hl)) => {
            let (hl_bytes, hv_bytes) = image_bytes(hx, hl)?;
            fingerprint(&[&label_bytes, &value_bytes, &hl_bytes, &hv_bytes])
        }
    };
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
    let probes = matches!(config.init_ratios, InitRatios::Probe { .. })
        && config.ga.init == InitStrategy::Heuristic;
    let (importance, sensitivity, sensitive_layers, ratio_probe) = match resumed {
        Some(p) => (
            p.importance,
            p.sensitivity,
            p.sensitive_layers,
            p.ratio_probe,
        ),
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
            let ratio_probe = match config.init_ratios {
                InitRatios::Probe { tolerance } if probes => Some(probe_keep_ratios(
                    model,
                    x,
                    labels,
                    &genome,
                    &orders,
                    &sensitive,
                    sensitivity.full_accuracy,
                    tolerance,
                    &mut cnn_models::epoch_rng(config.seed, cnn_models::Stream::Genetic, 1),
                    config.batch_size,
                )?),
                _ => None,
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
                    ratio_probe: ratio_probe.clone(),
                })?;
            }
            (importance, sensitivity, sensitive, ratio_probe)
        }
    };
    if resume {
        on_event(&GaSplitEvent::Importance(&importance));
    }
    on_event(&GaSplitEvent::Sensitivity {
        sensitivity: &sensitivity,
        sensitive: &sensitive_layers,
    });
    if let Some(probe) = &ratio_probe {
        on_event(&GaSplitEvent::RatioProbe(probe));
    }
    let mut ga = config.ga.clone();
    ga.sensitive_layers = sensitive_layers.clone();
    if let Some(probe) = &ratio_probe {
        ga.sensitive_ratios = probe.sensitive_ratios.clone();
        ga.other_ratios = probe.other_ratios.clone();
    }
    ga.selection_split = if holdout.is_some() {
        SelectionSplit::Holdout
    } else {
        SelectionSplit::Fitness
    };
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
    if let Some((hx, hl)) = holdout {
        evaluator = evaluator.with_holdout(hx.clone(), hl.to_vec())?;
    }
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
        ratio_probe,
        holdout_images: holdout.map_or(0, |(_, l)| l.len()),
        generation_seconds,
        evaluation_seconds,
        evaluations: (evaluator.evaluated, evaluator.reused),
    })
}

/// The `method` of a CNNSplitter record.
pub const METHOD: &str = "ga";

/// The GA numbers used when none are given: the paper's CIFAR-10 preset of a 10-class SimCNN or
/// ResCNN (by the spec's name), else [`GaConfig::scaled_for`] the model's class count.
pub fn ga_config_for(spec: &ModelSpec) -> GaConfig {
    let classes = spec.num_classes;
    if spec.name.starts_with("simcnn") && classes == 10 {
        GaConfig::simcnn_cifar10()
    } else if spec.name.starts_with("rescnn") && classes == 10 {
        GaConfig::rescnn_cifar10()
    } else {
        GaConfig::scaled_for(classes)
    }
}

/// Every setting of [`decompose`]. `Default` gives the GA numbers of [`ga_config_for`] with
/// generation 0's keep ratios measured on the model ([`InitRatios::Probe`], 5 pp tolerance),
/// kernel importance from images predicted with probability ≥ 0.9, seed 0, 256 images per
/// forward pass, and the validation part halved into fitness images and a holdout that
/// chooses the generation ([`GaDecomposeConfig::split_indices`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GaDecomposeConfig {
    /// The GA's numbers; `None`: [`ga_config_for`] the model.
    pub ga: Option<GaConfig>,
    /// Softmax probability an image needs to count for kernel importance.
    pub confidence: f64,
    /// Explicit sensitive gene-layers (skips the sensitivity rule, not the measurement).
    pub sensitive_layers: Option<Vec<usize>>,
    /// Master seed of the GA's draws.
    pub seed: u64,
    /// Images per forward pass, when searching and when calibrating the modules.
    pub batch_size: usize,
    /// Fitness images: the first N of the validation part (`None`: all of it that the holdout
    /// leaves).
    pub fitness_images: Option<usize>,
    /// Holdout images choosing the generation, taken from the validation part right after the
    /// fitness images, so the two never overlap (`None`: as many as the fitness images, or half
    /// the validation part when `fitness_images` is `None`; `Some(0)`: no holdout, the
    /// generation is chosen on the fitness images, as the reference does).
    pub holdout_images: Option<usize>,
    /// Where generation 0's keep ratios come from.
    pub init_ratios: InitRatios,
}

/// Tolerance of the default keep-ratio probe: generation 0 may lose 5 pp against the model.
pub const DEFAULT_PROBE_TOLERANCE: f64 = 0.05;

/// A CNNSplitter run is *near chance* when no composition it measured rose this far (absolute)
/// above chance, 1 / N (design §13).
pub const NEAR_CHANCE_MARGIN: f64 = 0.10;

/// Whether a run whose best composed accuracy was `best_accuracy` on `classes` classes stayed
/// near chance ([`NEAR_CHANCE_MARGIN`]).
///
/// ```
/// assert!(splitter_ga::near_chance(0.19, 10));
/// assert!(!splitter_ga::near_chance(0.21, 10));
/// ```
pub fn near_chance(best_accuracy: f64, classes: usize) -> bool {
    best_accuracy < 1.0 / classes.max(1) as f64 + NEAR_CHANCE_MARGIN
}

impl Default for GaDecomposeConfig {
    fn default() -> Self {
        let defaults = GaSplitConfig::new(GaConfig::simcnn_cifar10());
        GaDecomposeConfig {
            ga: None,
            confidence: defaults.confidence,
            sensitive_layers: defaults.sensitive_layers,
            seed: defaults.seed,
            batch_size: defaults.batch_size,
            fitness_images: None,
            holdout_images: None,
            init_ratios: InitRatios::Probe {
                tolerance: DEFAULT_PROBE_TOLERANCE,
            },
        }
    }
}

impl GaDecomposeConfig {
    /// The settings [`ga_split`] gets for a model of `spec`.
    pub fn split_config(&self, spec: &ModelSpec) -> GaSplitConfig {
        let mut cfg = GaSplitConfig::new(self.ga.clone().unwrap_or_else(|| ga_config_for(spec)));
        cfg.confidence = self.confidence;
        cfg.sensitive_layers = self.sensitive_layers.clone();
        cfg.seed = self.seed;
        cfg.batch_size = self.batch_size.max(1);
        cfg.init_ratios = self.init_ratios;
        cfg
    }

    /// The holdout size asked for (before the validation part limits it): the explicit
    /// [`GaDecomposeConfig::holdout_images`], else as many as the fitness images, else half of
    /// `val_len`.
    pub fn requested_holdout(&self, val_len: usize) -> usize {
        self.holdout_images
            .unwrap_or_else(|| self.fitness_images.unwrap_or(val_len / 2))
    }

    /// The fitness and holdout images among validation indices `val` (in the seeded order of
    /// the model's split): the fitness images are the first
    /// [`GaDecomposeConfig::fitness_images`] (default: all the holdout leaves), the holdout the
    /// [`GaDecomposeConfig::requested_holdout`] right after them, fewer if `val` runs out.
    ///
    /// ```
    /// let val: Vec<usize> = (100..110).collect();
    /// let mut cfg = splitter_ga::GaDecomposeConfig::default();
    /// assert_eq!(cfg.split_indices(&val), ((100..105).collect(), (105..110).collect()));
    /// cfg.fitness_images = Some(3);
    /// assert_eq!(cfg.split_indices(&val), (vec![100, 101, 102], vec![103, 104, 105]));
    /// cfg.holdout_images = Some(0);
    /// assert_eq!(cfg.split_indices(&val).1, Vec::<usize>::new());
    /// ```
    pub fn split_indices(&self, val: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let requested = self.requested_holdout(val.len());
        let fitness = self
            .fitness_images
            .unwrap_or(val.len().saturating_sub(requested))
            .min(val.len());
        let holdout_end = (fitness + requested).min(val.len());
        (val[..fitness].to_vec(), val[fitness..holdout_end].to_vec())
    }

    /// The fitness images among validation indices `val` ([`GaDecomposeConfig::split_indices`]).
    pub fn fitness_indices(&self, val: &[usize]) -> Vec<usize> {
        self.split_indices(val).0
    }
}

/// One generation as a CNNSplitter record lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationSummary {
    /// Generation index.
    pub generation: usize,
    /// Composed accuracy of the generation's best composition E_g.
    pub composed_accuracy: f64,
    /// Accuracy of the top composition of the beam search.
    pub top_accuracy: f64,
    /// Diversity of the top composition.
    pub top_diversity: f64,
    /// Generation score (absent for generation 0).
    pub score: Option<f64>,
    /// Best fitness per class.
    pub best_fitness: Vec<f64>,
    /// Mean fitness per class.
    pub mean_fitness: Vec<f64>,
    /// Mean kept kernels of E_g's modules.
    pub mean_kernels: f64,
    /// Accuracy weight of the fitness in this generation.
    pub accuracy_weight: f64,
    /// Wall time of the generation.
    pub seconds: f64,
    /// Composed accuracy of E_g on the holdout images (generation ≥ 1 of a run with a
    /// holdout), the number the generation choice compares.
    #[serde(default)]
    pub holdout_accuracy: Option<f64>,
}

/// The CNNSplitter fields of a `decomposition.json`
/// ([`cnn_models::DecompositionRecord`]`<GaRecord>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaRecord {
    /// The search settings.
    pub config: GaSplitConfig,
    /// Fitness images (the first of the validation part).
    pub fitness_images: usize,
    /// Holdout images that chose the generation (right after the fitness images in the
    /// validation part); 0 when the generation was chosen on the fitness images.
    #[serde(default)]
    pub holdout_images: usize,
    /// The chosen generation.
    pub chosen_generation: usize,
    /// Its composed accuracy on the fitness images.
    pub chosen_accuracy: f64,
    /// Its composed accuracy on the holdout images (`None` without a holdout).
    #[serde(default)]
    pub chosen_holdout_accuracy: Option<f64>,
    /// The best composed accuracy any generation reached on any images it was measured on
    /// (fitness or holdout).
    #[serde(default)]
    pub peak_accuracy: f64,
    /// The run never rose [`NEAR_CHANCE_MARGIN`] above chance: its modules are flagged
    /// collapsed ([`cnn_models::module::Collapse::NearChance`]).
    #[serde(default)]
    pub near_chance: bool,
    /// How generation 0's keep ratios were measured (`None`: the configuration's lists).
    #[serde(default)]
    pub ratio_probe: Option<RatioProbe>,
    /// Its diversity.
    pub chosen_diversity: f64,
    /// Confident images per class kernel importance was measured on.
    pub importance_images: Vec<usize>,
    /// Classes whose importance fell back to all their images.
    pub importance_fallback: Vec<usize>,
    /// Layer sensitivity.
    pub sensitivity: LayerSensitivity,
    /// Gene-layers treated as sensitive.
    pub sensitive_layers: Vec<usize>,
    /// Every generation.
    pub generations: Vec<GenerationSummary>,
    /// Chromosomes run through the model (this process).
    pub evaluated_modules: usize,
    /// Chromosomes answered from the cache (this process).
    pub reused_modules: usize,
    /// Generations per minute of wall time.
    pub generations_per_minute: f64,
    /// Share of this process's generation time spent running candidate modules (`None` when
    /// this process timed no generation).
    pub evaluation_fraction: Option<f64>,
}

/// Decomposes `parent` with CNNSplitter: the fitness and holdout images are cut from `data.val`
/// by [`GaDecomposeConfig::split_indices`]; the generation is chosen on the holdout (on the
/// fitness images, with a warning that the choice is optimistic, when there is none). Every
/// class gets the chosen generation's module, calibrated on its class's images of all of
/// `data.val`. A run that never rose [`NEAR_CHANCE_MARGIN`] above chance says so (a warning
/// and [`GaRecord::near_chance`]) and every module is flagged
/// [`Collapse::NearChance`](cnn_models::module::Collapse::NearChance). `checkpointing` works
/// as in [`ga_split`]; `on_event` sees its progress.
///
/// ```
/// use std::path::Path;
/// use candle_core::Device;
/// use cnn_data::{ImageSet, ImageShape};
/// use cnn_models::files::ModelMeta;
/// use cnn_models::{presets, Model, ParentModel, TrainData};
/// use splitter_ga::{Checkpointing, GaConfig, GaDecomposeConfig};
///
/// let set = ImageSet::new("toy", ImageShape { channels: 1, height: 28, width: 28 },
///     (0..24).flat_map(|i| vec![(i * 10) as u8; 784]).collect(),
///     (0..24).map(|i| (i % 2) as u16).collect(), vec!["even".into(), "odd".into()]).unwrap();
/// let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
/// let model = Model::init(presets::simcnn(0.0625, 3, 2, true), 0, &Device::Cpu).unwrap();
/// let meta = ModelMeta::new(model.spec().clone(), format.clone(), "toy".into(), set.class_names.clone());
/// let parent = ParentModel { model: &model, meta: &meta, path: Path::new("model"), dataset: "toy" };
/// let data = TrainData { set: &set, train: vec![], val: (0..24).collect(), format };
/// let mut ga = GaConfig::scaled_for(2);
/// (ga.generations, ga.population, ga.parents, ga.keep) = (2, 4, 2, 2);
/// let cfg = GaDecomposeConfig { ga: Some(ga), ..Default::default() };
/// let d = splitter_ga::decompose(&parent, &data, &cfg, Checkpointing::Off, &mut |_| {}).unwrap();
/// assert_eq!(d.modules.len(), 2);
/// assert_eq!(d.record.method, "ga");
/// let ga = &d.record.method_fields;
/// assert_eq!(ga.generations.len(), 3);
/// assert_eq!((ga.fitness_images, ga.holdout_images), (12, 12));
/// assert!(ga.generations[1].holdout_accuracy.is_some());
/// ```
pub fn decompose(
    parent: &ParentModel<'_>,
    data: &TrainData<'_>,
    config: &GaDecomposeConfig,
    checkpointing: Checkpointing<'_>,
    on_event: &mut dyn FnMut(&GaSplitEvent),
) -> Result<Decomposition<GaRecord>> {
    let model = parent.model;
    let meta = parent.meta;
    let classes = meta.class_names.len();
    let mut cfg = config.split_config(model.spec());
    let (fitness, holdout) = config.split_indices(&data.val);
    if fitness.is_empty() {
        return Err(GaError::InvalidFitnessInput(
            "no fitness images: the validation part is empty or none were asked for".into(),
        ));
    }
    let requested = config.requested_holdout(data.val.len());
    if holdout.is_empty() {
        tracing::warn!(
            "CNNSplitter chooses its generation on the fitness images it optimises (no holdout \
             images{}): the chosen generation's accuracy is optimistic",
            if requested == 0 {
                String::new()
            } else {
                format!(
                    "; the validation part has {} images, all of them fitness images",
                    data.val.len()
                )
            }
        );
    } else if holdout.len() < requested {
        tracing::warn!(
            "CNNSplitter holdout: {requested} images asked for, the validation part leaves {} \
             after the {} fitness images",
            holdout.len(),
            fitness.len()
        );
    }
    let (x, labels) =
        cnn_data::to_tensor(data.set, &fitness, &meta.input_format, None, model.device())
            .map_err(cnn_models::ModelError::from)?;
    let labels: Vec<u32> = labels.to_vec1::<u32>()?;
    let holdout_data = if holdout.is_empty() {
        None
    } else {
        let (hx, hl) =
            cnn_data::to_tensor(data.set, &holdout, &meta.input_format, None, model.device())
                .map_err(cnn_models::ModelError::from)?;
        Some((hx, hl.to_vec1::<u32>()?))
    };
    cfg.ga.selection_split = if holdout_data.is_some() {
        SelectionSplit::Holdout
    } else {
        SelectionSplit::Fitness
    };
    let started = Instant::now();
    let result = ga_split_with_holdout(
        model,
        &meta.weights_sha256,
        &x,
        &labels,
        holdout_data.as_ref().map(|(hx, hl)| (hx, hl.as_slice())),
        &cfg,
        checkpointing,
        on_event,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let chosen = &result.outcome.chosen;
    let history = &result.outcome.history;
    let chosen_record = history
        .iter()
        .find(|r| r.generation == chosen.generation)
        .ok_or(GaError::NoScoredGeneration)?;
    let with_holdout = result.holdout_images > 0;
    let chosen_holdout_accuracy = with_holdout.then_some(chosen.accuracy);
    let peak_accuracy = history
        .iter()
        .flat_map(|r| {
            [
                Some(r.best_accuracy),
                Some(r.top.accuracy),
                r.selection_accuracy,
            ]
        })
        .flatten()
        .fold(0.0f64, f64::max);
    let is_near_chance = near_chance(peak_accuracy, classes);
    let metrics = serde_json::json!({
        "chosen_generation": chosen.generation,
        "composed_fitness_accuracy": chosen_record.best_accuracy,
        "composed_holdout_accuracy": chosen_holdout_accuracy,
        "diversity": chosen.diversity,
        "near_chance": is_near_chance,
    });
    let sources = vec![ModuleSource::Logit; classes];
    let mut modules =
        parent.class_modules(data, &result.masks, sources, &metrics, config.batch_size)?;
    if is_near_chance {
        let chance = 1.0 / classes.max(1) as f64;
        tracing::warn!(
            "CNNSplitter stayed near chance: the best composed accuracy it reached is {:.2} %, \
             chance is {:.2} %; every module is flagged collapsed (near chance)",
            100.0 * peak_accuracy,
            100.0 * chance
        );
        for module in &mut modules {
            module.meta.collapsed.push(Collapse::NearChance {
                accuracy: peak_accuracy,
                chance,
            });
        }
    }
    let resumed_generations = result.generation_seconds.len() - result.evaluation_seconds.len();
    let evaluation_total: f64 = result.evaluation_seconds.iter().sum();
    let timed_total: f64 = result.generation_seconds[resumed_generations..]
        .iter()
        .sum();
    let generations = history
        .iter()
        .zip(&result.generation_seconds)
        .map(|(r, s)| GenerationSummary {
            generation: r.generation,
            composed_accuracy: r.best_accuracy,
            top_accuracy: r.top.accuracy,
            top_diversity: r.top.diversity,
            score: r.score,
            best_fitness: r.best_fitness.clone(),
            mean_fitness: r.mean_fitness.clone(),
            mean_kernels: r.best_kernels.iter().sum::<usize>() as f64
                / r.best_kernels.len().max(1) as f64,
            accuracy_weight: r.accuracy_weight,
            seconds: *s,
            holdout_accuracy: if with_holdout {
                r.selection_accuracy
            } else {
                None
            },
        })
        .collect();
    let generations_per_minute = 60.0 * result.generation_seconds.len() as f64
        / result.generation_seconds.iter().sum::<f64>().max(1e-9);
    let record = DecompositionRecord {
        method: METHOD.into(),
        model: parent.path.to_path_buf(),
        model_sha256: meta.weights_sha256.clone(),
        dataset: parent.dataset.to_string(),
        val_images: data.val.len(),
        model_val_accuracy: result.sensitivity.full_accuracy,
        modules: modules.iter().map(ModuleSummary::of).collect(),
        seconds,
        ..DecompositionRecord::new(GaRecord {
            config: cfg,
            fitness_images: fitness.len(),
            holdout_images: result.holdout_images,
            chosen_generation: chosen.generation,
            chosen_accuracy: chosen_record.best_accuracy,
            chosen_holdout_accuracy,
            peak_accuracy,
            near_chance: is_near_chance,
            ratio_probe: result.ratio_probe,
            chosen_diversity: chosen.diversity,
            importance_images: result.importance.images,
            importance_fallback: result.importance.fallback,
            sensitivity: result.sensitivity,
            sensitive_layers: result.sensitive_layers,
            generations,
            evaluated_modules: result.evaluations.0,
            reused_modules: result.evaluations.1,
            generations_per_minute,
            evaluation_fraction: (timed_total > 0.0).then(|| evaluation_total / timed_total),
        })
    };
    Ok(Decomposition { modules, record })
}
