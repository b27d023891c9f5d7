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
use cnn_models::{Model, ModelSpec, ModuleSource, TrainData};
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

/// Every setting of [`decompose`]. `Default` gives the GA numbers of [`ga_config_for`], kernel
/// importance from images predicted with probability ≥ 0.9, seed 0, 256 images per forward
/// pass, and all of the validation part as fitness images.
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
    /// Fitness images: the first N of the validation part (`None`: all of it).
    pub fitness_images: Option<usize>,
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
        cfg
    }

    /// The fitness images among validation indices `val`: the first
    /// [`GaDecomposeConfig::fitness_images`] of them.
    pub fn fitness_indices(&self, val: &[usize]) -> Vec<usize> {
        let mut indices = val.to_vec();
        if let Some(n) = self.fitness_images {
            indices.truncate(n);
        }
        indices
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
}

/// The CNNSplitter fields of a `decomposition.json`
/// ([`cnn_models::DecompositionRecord`]`<GaRecord>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaRecord {
    /// The search settings.
    pub config: GaSplitConfig,
    /// Fitness images (the first of the validation part).
    pub fitness_images: usize,
    /// The chosen generation.
    pub chosen_generation: usize,
    /// Its composed accuracy on the fitness images.
    pub chosen_accuracy: f64,
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

/// Decomposes `parent` with CNNSplitter: the fitness images are the first
/// [`GaDecomposeConfig::fitness_images`] of `data.val`; every class gets the chosen generation's
/// module, calibrated on its class's images of all of `data.val`. `checkpointing` works
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
/// assert_eq!(d.record.method_fields.generations.len(), 3);
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
    let cfg = config.split_config(model.spec());
    let fitness = config.fitness_indices(&data.val);
    if fitness.is_empty() {
        return Err(GaError::InvalidFitnessInput(
            "no fitness images: the validation part is empty or none were asked for".into(),
        ));
    }
    let (x, labels) =
        cnn_data::to_tensor(data.set, &fitness, &meta.input_format, None, model.device())
            .map_err(cnn_models::ModelError::from)?;
    let labels: Vec<u32> = labels.to_vec1::<u32>()?;
    let started = Instant::now();
    let result = ga_split(
        model,
        &meta.weights_sha256,
        &x,
        &labels,
        &cfg,
        checkpointing,
        on_event,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let chosen = &result.outcome.chosen;
    let metrics = serde_json::json!({
        "chosen_generation": chosen.generation,
        "composed_fitness_accuracy": chosen.accuracy,
        "diversity": chosen.diversity,
    });
    let sources = vec![ModuleSource::Logit; meta.class_names.len()];
    let modules =
        parent.class_modules(data, &result.masks, sources, &metrics, config.batch_size)?;
    let resumed_generations = result.generation_seconds.len() - result.evaluation_seconds.len();
    let evaluation_total: f64 = result.evaluation_seconds.iter().sum();
    let timed_total: f64 = result.generation_seconds[resumed_generations..]
        .iter()
        .sum();
    let generations = result
        .outcome
        .history
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
            chosen_generation: chosen.generation,
            chosen_accuracy: chosen.accuracy,
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
