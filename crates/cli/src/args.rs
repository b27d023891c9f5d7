//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Take trained CNN image classifiers apart into per-class modules and put modules back
/// together. Datasets are given as NAME or NAME=DIR (fashion-mnist, mnist, mnist-5k, cifar10,
/// cifar100, svhn, folder); NAME alone is datasets/NAME (or $CNNSPLIT_DATA_DIR/NAME), where
/// `cargo xtask datasets fetch|import` puts it; fashion-mnist alone, or no dataset, is the
/// bundled subset.
#[derive(Parser, Debug)]
#[command(name = "cnnsplit", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress bars or logs, only results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Where to compute: auto takes CUDA when this binary has it and a GPU is present.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto, global = true)]
    pub device: DeviceChoice,
    /// Op implementations on CPU: the fast fused ops, or candle's own (slower; for checking).
    #[arg(long, default_value = "fast", global = true)]
    pub ops: cnn_models::OpsBackend,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Compute device.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA if compiled in and available, else CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

/// Training augmentation choice.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AugmentChoice {
    /// The dataset's default (flip + crop for Fashion-MNIST, CIFAR and SVHN; crop for digits).
    Auto,
    /// No augmentation.
    None,
    /// Random crop with padding 4 only.
    Crop,
    /// Horizontal flip and random crop with padding 4.
    FlipCrop,
}

/// Which split to evaluate.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitChoice {
    /// The official test split.
    Test,
    /// The validation part the model was selected on.
    Val,
    /// The training part.
    Train,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model (SGD, step schedule, best epoch by validation accuracy, checkpoints).
    Train(TrainArgs),
    /// Evaluate a model: accuracy, per-class precision/recall/F1, confusion matrix.
    Eval(EvalArgs),
    /// Write a model's logits for images (safetensors `images`, an IDX file, or an image folder).
    Predict(PredictArgs),
    /// Wrap a PyTorch state_dict saved as safetensors into a model directory.
    Import(ImportArgs),
    /// Show a model's layers, output shapes, parameters, kernels and MACs.
    Inspect(InspectArgs),
    /// Split a trained model into one module per class (GradSplitter or CNNSplitter) and save
    /// them.
    Decompose(Box<DecomposeArgs>),
    /// Evaluate a composition of modules: argmax over module scores.
    Compose(ComposeArgs),
    /// Patch a weak model with a module for one class and report the class's precision,
    /// recall and F1 before and after.
    Patch(PatchArgs),
    /// Reuse modules: a better model for the same task (`select`), or a classifier for a new
    /// task built from modules of different models (`new-task`), saved as a composed model.
    Reuse(ReuseArgs),
    /// The main job on the bundled data: train a small SimCNN, decompose it, compose the
    /// modules, and compare.
    Demo(DemoArgs),
}

/// Architecture selection shared by train and import.
#[derive(Args, Debug, Clone)]
pub struct ArchArgs {
    /// simcnn, rescnn, incecnn, simcnn-cs, rescnn-cs, simcnn-weak, simcnn-cs-poorfit,
    /// rescnn-cs-poorfit, or a ModelSpec JSON file.
    #[arg(long, default_value = "simcnn")]
    pub arch: String,
    /// Width multiplier of every conv and hidden FC (1.0 = the paper's sizes).
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Dataset NAME[=DIR] (default: the bundled Fashion-MNIST subset).
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// Epochs (the cap when --patience is given).
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Stop early once the validation accuracy has not risen above its best for N consecutive
    /// epochs (0: train every epoch); the best epoch is kept either way.
    #[arg(long, default_value_t = 0)]
    pub patience: usize,
    /// With --patience, train at least this many epochs before stopping early.
    #[arg(long, default_value_t = 0)]
    pub min_epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Epochs (0-based) from which the learning rate is multiplied by 0.1, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![60usize, 120])]
    pub milestones: Vec<usize>,
    /// Fraction of the training split held out for validation (best-epoch choice).
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Train on the spec's Dirichlet class-imbalanced subset with this estimator seed
    /// (80 % train / 20 % val of the subset) instead of a plain split.
    #[arg(long)]
    pub estimator: Option<u64>,
    /// Dirichlet concentration for --estimator.
    #[arg(long, default_value_t = 1.0)]
    pub dirichlet_alpha: f64,
    /// Minimum images per class for --estimator.
    #[arg(long, default_value_t = 100)]
    pub min_size: usize,
    /// Training augmentation.
    #[arg(long, value_enum, default_value_t = AugmentChoice::Auto)]
    pub augment: AugmentChoice,
    /// Master seed (init, split, order, augmentation, dropout).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue an interrupted run from OUT/checkpoint (same flags required).
    #[arg(long)]
    pub resume: bool,
    /// Use only the first N images of the training split (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset NAME[=DIR] (default: the one the model was trained on).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Which split.
    #[arg(long, value_enum, default_value_t = SplitChoice::Test)]
    pub split: SplitChoice,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Images: a safetensors file with `images` [N,C,H,W] f32 (normalised), an IDX image file,
    /// or a folder of png/jpg images.
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors file with a `logits` tensor [N, classes].
    #[arg(long)]
    pub output: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Number of classes [default: 10; with --onnx, the file's, and a different number is an
    /// error].
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// The PyTorch state_dict as safetensors (with --arch and --width).
    #[arg(long, required_unless_present = "onnx")]
    pub weights: Option<PathBuf>,
    /// An ONNX model (opset 11–23, as torch.onnx.export writes it, BatchNorm folded or kept):
    /// the architecture and the weights come from the file, layer names from its initialisers.
    #[arg(long, conflicts_with_all = ["weights", "arch", "width"])]
    pub onnx: Option<PathBuf>,
    /// Dataset the model was trained on (sets input format, normalisation and class names).
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// The model was trained on all training images but the last N: record that split, so
    /// decompositions choose masks, epochs and generations on those N images (without it they
    /// assume a 20 % holdout the model may have trained on).
    #[arg(long, value_name = "N")]
    pub val_last: Option<usize>,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model directory (or use --arch and --width to inspect a preset without weights).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Module directory: kept kernels per layer, retention, size.
    #[arg(long, conflicts_with_all = ["model", "arch"])]
    pub module: Option<PathBuf>,
    /// Preset name or ModelSpec JSON (when no --model).
    #[arg(long)]
    pub arch: Option<String>,
    /// Width multiplier (with --arch).
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Classes (with --arch).
    #[arg(long, default_value_t = 10)]
    pub num_classes: usize,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo writes its model.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// GradSplitter epochs after its 2 warm-up epochs, in a [2 mask, 2 head] pattern (the demo
    /// uses a short schedule with λ = 1.0).
    #[arg(long, default_value_t = 8)]
    pub split_epochs: usize,
    /// Training images the GradSplitter demo run uses.
    #[arg(long, default_value_t = 1024)]
    pub split_images: usize,
    /// Width multiplier of the SimCNN.
    #[arg(long, default_value_t = 0.25)]
    pub width: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Decomposition method.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GradSplitter: kernel masks learned by gradient descent.
    Grad,
    /// CNNSplitter: kernel groups chosen by a genetic algorithm.
    Ga,
}

/// Which images of the training part `decompose --limit N` keeps (design §5.6).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSampling {
    /// Class-balanced when the part's largest class count exceeds 1.5× its smallest (a
    /// Dirichlet estimator's), else the first N.
    Auto,
    /// The first N images of the part.
    First,
    /// ⌈N / classes⌉ of every class in turn, in the part's order.
    Balanced,
}

/// Initial population of CNNSplitter.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitChoice {
    /// Keep ratios from the preset's lists, important groups more likely (design §6.4).
    Heuristic,
    /// Every gene Bernoulli(0.5).
    Random,
}

/// Where CNNSplitter's initial keep ratios come from.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitRatiosChoice {
    /// Measured on the model: the lowest ratio whose generation-0 draws stay within 5 pp of
    /// the model's accuracy (design §6.4).
    Probe,
    /// The preset's lists (the paper's, tuned on full-width CIFAR-10 models).
    Preset,
}

/// Mask initialisation of GradSplitter.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskInitChoice {
    /// All ones (every kernel kept at the start).
    Ones,
    /// N(0, 1) samples.
    Normal,
    /// All zeros.
    Zeros,
}

#[derive(Args, Debug, Clone)]
pub struct DecomposeArgs {
    /// The trained model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Decomposition method.
    #[arg(long, value_enum, default_value_t = Method::Grad)]
    pub method: Method,
    /// Dataset NAME[=DIR] (default: the one the model was trained on). The masks train on the
    /// model's own training part and the epoch is chosen on its validation part.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Output directory: one `module_<c>/` per class plus `decomposition.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Head-only warm-up epochs [default: 5].
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Epochs after the warm-up (the mask/head pattern repeats over them) [default: 140].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mask epochs per pattern [default: 5].
    #[arg(long)]
    pub pattern_mask: Option<usize>,
    /// Head-only epochs per pattern [default: 2].
    #[arg(long)]
    pub pattern_head: Option<usize>,
    /// Weight of the kept-kernel term in mask phases [default: 0.1].
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Accuracy loss (fraction, absolute) an epoch may have against the model to be a candidate
    /// [default: 0.01].
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Stop the search once the mean KRR has not fallen for N consecutive mask epochs (the
    /// pattern's head epochs still run); --epochs is then the cap. 0 = run every epoch
    /// [default: 0].
    #[arg(long)]
    pub krr_patience: Option<usize>,
    /// Mask initialisation [default: ones].
    #[arg(long, value_enum)]
    pub mask_init: Option<MaskInitChoice>,
    /// Learning rate of the warm-up (heads) [default: 0.01].
    #[arg(long)]
    pub warmup_lr: Option<f64>,
    /// Learning rate of mask phases (masks + heads) [default: 0.001].
    #[arg(long)]
    pub mask_lr: Option<f64>,
    /// Learning rate of later head phases [default: 0.001].
    #[arg(long)]
    pub head_lr: Option<f64>,
    /// Learning rate of the heads in mask phases [default: the mask rate, as the spec].
    #[arg(long)]
    pub mask_phase_head_lr: Option<f64>,
    /// Mini-batch size [default: 64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed (heads, mask init, data order; the GA's draws) [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use only N images of the training part (quick runs); which ones: --limit-sampling.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Which N images --limit keeps: `auto` (class-balanced on a class-imbalanced training
    /// part, else the first N), `first`, or `balanced`.
    #[arg(long, value_enum, default_value_t = LimitSampling::Auto)]
    pub limit_sampling: LimitSampling,
    /// Continue an interrupted run from OUT/checkpoint (same flags required, except --epochs
    /// (grad) and --generations (ga), which may change to stop a run early or run it longer).
    #[arg(long)]
    pub resume: bool,
    /// CNNSplitter configuration preset (simcnn-cifar10, rescnn-cifar10, simcnn-svhn,
    /// rescnn-svhn, simcnn-svhn5, rescnn-svhn5); default: by the model's architecture.
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub ga_preset: Option<String>,
    /// Generations of evolution (preset: 200).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub generations: Option<usize>,
    /// Solutions per class (preset: 100).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub population: Option<usize>,
    /// Parents: the fittest solutions that breed (preset: 50).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub parents: Option<usize>,
    /// Solutions kept unchanged into the next generation (preset: 20).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub keep: Option<usize>,
    /// Mutation percentage of the genes redrawn per offspring (preset: 5 or 10).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub mutation: Option<f64>,
    /// α: accuracy weight of the fitness; 1 − α weighs diversity (preset: 0.9).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub alpha: Option<f64>,
    /// γ: accuracy target raising the accuracy weight (preset: 0.9 or 0.95).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub gamma: Option<f64>,
    /// Initial population.
    #[arg(long, value_enum, help_heading = "CNNSplitter (--method ga)")]
    pub init: Option<InitChoice>,
    /// Keep ratios the initial population draws for sensitive gene-layers, e.g. 0.6,0.7,0.8.
    #[arg(
        long,
        value_delimiter = ',',
        help_heading = "CNNSplitter (--method ga)"
    )]
    pub sensitive_ratios: Option<Vec<f64>>,
    /// Keep ratios the initial population draws for the other gene-layers.
    #[arg(
        long,
        value_delimiter = ',',
        help_heading = "CNNSplitter (--method ga)"
    )]
    pub other_ratios: Option<Vec<f64>>,
    /// Sensitive gene-layers, e.g. 0,1,2 (default: the layer-sensitivity rule).
    #[arg(
        long,
        value_delimiter = ',',
        help_heading = "CNNSplitter (--method ga)"
    )]
    pub sensitive_layers: Option<Vec<usize>>,
    /// Stop after this many generations without a better generation score.
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub early_stop: Option<usize>,
    /// Divide the fitness by its weights' sum (off = the reference's weights).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub normalise_weights: bool,
    /// Fitness images: the first N of the model's validation part (default: what the
    /// holdout leaves).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub fitness_images: Option<usize>,
    /// Holdout images, right after the fitness images in the validation part, on which the
    /// generation is chosen; the fitness never sees them (default: as many as the fitness
    /// images, or half the validation part; 0: choose on the fitness images, optimistic).
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub holdout_images: Option<usize>,
    /// Initial keep ratios: measured on the model (probe), or the preset's lists (default:
    /// preset when --ga-preset, --sensitive-ratios or --other-ratios is given, else probe).
    #[arg(long, value_enum, help_heading = "CNNSplitter (--method ga)")]
    pub init_ratios: Option<InitRatiosChoice>,
    /// Softmax probability an image needs to count for kernel importance [default: 0.9].
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub confidence: Option<f64>,
    /// Images per forward pass when scoring candidate modules [default: 256].
    #[arg(long, help_heading = "CNNSplitter (--method ga)")]
    pub eval_batch: Option<usize>,
}

/// Calibration of a module's score when patching.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationChoice {
    /// (score − min) / (max − min) with the range stored in the module file (design §7).
    Minmax,
    /// (score − lo) / (hi − lo) with lo, hi the `--percentiles` of the module's calibration
    /// scores, stored in the module file.
    Percentile,
    /// The raw score.
    None,
}

#[derive(Args, Debug)]
pub struct PatchArgs {
    /// The weak model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The module (from a stronger model) that patches it.
    #[arg(long)]
    pub module: PathBuf,
    /// The weak model's class whose column the module replaces, by name or index (default: the
    /// class the module recognises, found by name).
    #[arg(long)]
    pub target: Option<String>,
    /// Dataset NAME[=DIR] whose test split is evaluated (default: the weak model's).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Calibration of the module's score.
    #[arg(long, value_enum, default_value_t = CalibrationChoice::Minmax)]
    pub calibration: CalibrationChoice,
    /// Percentiles LO,HI (0–100) of `--calibration percentile`.
    #[arg(long, value_delimiter = ',', value_name = "LO,HI", default_values_t = [5.0, 95.0])]
    pub percentiles: Vec<f64>,
    /// Clip calibrated scores to [0, 1] (off = the reference's rule).
    #[arg(long)]
    pub clip: bool,
    /// Patch with a collapsed module (empty layer, F1 = 0 or constant score; design §13)
    /// anyway, with a warning; without it such a module is refused.
    #[arg(long)]
    pub force: bool,
    /// Save the patched model here, as a directory `predict` and `eval` accept.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Module directories, or directories holding `module_*` directories.
    #[arg(long, num_args = 1.., required = true)]
    pub modules: Vec<PathBuf>,
    /// Dataset NAME[=DIR] to evaluate on (its test split).
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// The parent model: checks each module's parent hash and reports the model's accuracy.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

#[derive(Args, Debug)]
pub struct ReuseArgs {
    #[command(subcommand)]
    pub command: ReuseCommand,
}

#[derive(Subcommand, Debug)]
pub enum ReuseCommand {
    /// Better model for one task: pick per class the module with the best F1 on the
    /// module-selection images among several models' modules, compose them, and compare with
    /// the best model and the models' ensemble (mean softmax).
    Select(ReuseSelectArgs),
    /// New task: compose modules of classes that come from different models (and datasets)
    /// into one classifier, with no training; optionally compare with a model trained from
    /// scratch on the task.
    NewTask(ReuseNewTaskArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ReuseSelectArgs {
    /// Model directories of one task (e.g. Dirichlet estimators or different architectures).
    #[arg(long, num_args = 1.., required = true)]
    pub models: Vec<PathBuf>,
    /// Their modules: decomposition directories (`module_*` inside) or module directories;
    /// each module is matched to its model by the parent hash.
    #[arg(long, num_args = 1.., required = true)]
    pub modules: Vec<PathBuf>,
    /// Dataset NAME[=DIR] (default: the first model's).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Fraction of the test split, from its start, on which modules are chosen; the rest is
    /// the test part every accuracy is reported on.
    #[arg(long, default_value_t = 0.2)]
    pub selection_fraction: f64,
    /// Save the composed model in this directory (runs with eval, predict and inspect).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

#[derive(Args, Debug, Clone)]
pub struct ReuseNewTaskArgs {
    /// CLASSNAME=MODULE_DIR, once per candidate; the task's classes are the names in order of
    /// first appearance, and a class named several times takes its best-F1 candidate.
    #[arg(long = "module", num_args = 1.., required = true)]
    pub modules: Vec<String>,
    /// Datasets NAME[=DIR] the task's classes come from (one per kind; all with one image
    /// format).
    #[arg(long = "dataset", num_args = 1.., required = true)]
    pub datasets: Vec<String>,
    /// Fraction of each test split, from its start, on which modules are chosen; the rest is
    /// the test part.
    #[arg(long, default_value_t = 0.2)]
    pub selection_fraction: f64,
    /// Save the composed model in this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Train the first module's architecture from scratch on the task and compare, for at most
    /// this many epochs (0: no baseline). Its training and validation parts are an 80/20 split
    /// of each class's training images.
    #[arg(long, default_value_t = 0)]
    pub scratch_epochs: usize,
    /// The from-scratch training stops once its validation accuracy has not risen for this
    /// many consecutive epochs (the spec's 5; 0: train all --scratch-epochs).
    #[arg(long, default_value_t = 5)]
    pub scratch_patience: usize,
    /// The from-scratch training runs at least this many epochs before stopping early.
    #[arg(long, default_value_t = 1)]
    pub scratch_min_epochs: usize,
    /// Batch size of the from-scratch training.
    #[arg(long, default_value_t = 64)]
    pub scratch_batch_size: usize,
    /// Learning rate of the from-scratch training (SGD, momentum 0.9, weight decay 1e-4).
    #[arg(long, default_value_t = 0.01)]
    pub scratch_lr: f64,
    /// Seed of the from-scratch training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}
