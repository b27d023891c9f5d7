//! What each preset runs: the steps (one `cnnsplit` command each), their artefacts, and a time
//! estimate.

use serde::Serialize;

/// The reproduction presets.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The bundled data, tiny widths and schedules: every table and plot in minutes.
    Smoke,
    /// Full Fashion-MNIST at width 0.25, and Fashion-MNIST classes with mnist-5k digits for the
    /// new task.
    Fashion,
    /// CIFAR-10 and SVHN with the paper's settings (10 estimators per architecture, 200
    /// epochs).
    Paper,
    /// The smoke preset's steps at the smallest sizes that still run (one epoch, a few hundred
    /// images): seconds per step, for checking the machinery (executors, a cluster); its numbers
    /// mean nothing.
    Tiny,
}

impl Preset {
    /// Lower-case name (the output folder).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Fashion => "fashion",
            Preset::Paper => "paper",
            Preset::Tiny => "tiny",
        }
    }
}

/// What a step produces, so the report knows where to look.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepKind {
    /// A trained model (`models/<name>`).
    Train {
        /// Role in the report: `estimator`, `inter`, `weak`, `second`.
        role: String,
        /// Architecture name.
        arch: String,
        /// Dataset specification.
        dataset: String,
        /// Dirichlet estimator seed, if any.
        estimator: Option<u64>,
    },
    /// A decomposition of a model (`modules/<method>-<model>`).
    Decompose {
        /// `grad` or `ga`.
        method: String,
        /// Model name.
        model: String,
    },
    /// Composing a decomposition's modules on the test split.
    Compose {
        /// `grad` or `ga`.
        method: String,
        /// Model name.
        model: String,
    },
    /// Patching the weak model with one module.
    Patch {
        /// `grad` or `ga`.
        method: String,
        /// Target class index.
        class: usize,
    },
    /// `reuse select` over several models.
    Select {
        /// `intra` or `inter`.
        scope: String,
        /// Model names.
        models: Vec<String>,
    },
    /// `reuse new-task`.
    NewTask {
        /// Task number.
        task: usize,
    },
}

/// One step: a `cnnsplit` command run in the preset's work folder.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Unique name; the record is `records/<id>.json`.
    pub id: String,
    /// What it produces.
    pub kind: StepKind,
    /// Arguments after `cnnsplit --json`.
    pub args: Vec<String>,
    /// Folder the command writes (relative to the work folder), if any.
    pub out: Option<String>,
    /// Whether a half-done `out` continues with `--resume` (train, decompose); otherwise it is
    /// removed and the step rerun.
    pub resumable: bool,
    /// Estimated seconds on a 2-core laptop-class CPU (release build).
    pub estimate_s: f64,
    /// Ids of the earlier steps whose outputs this step reads (its edges in the step graph;
    /// filled by [`steps`] from the paths in the arguments).
    pub deps: Vec<String>,
}

/// Settings of one preset. Where a setting differs from the spec (`docs/algorithms.md`, the
/// values in [`super::report::settings::SPEC_SETTINGS`]) the preset names the reason in
/// [`PresetConfig::reasons`]; the report lists every difference with its reason.
#[derive(Clone, Debug, Serialize)]
pub struct PresetConfig {
    /// Dataset of the same-task scenarios (CLI name).
    pub dataset: String,
    /// Images in its training split (for estimates).
    pub train_images: usize,
    /// Images in its test split (for estimates).
    pub test_images: usize,
    /// Classes.
    pub class_names: Vec<String>,
    /// Width multiplier.
    pub width: f64,
    /// Dirichlet estimator seeds of the SimCNN estimators.
    pub estimators: Vec<u64>,
    /// Dirichlet α.
    pub alpha: f64,
    /// Minimum kept images per class of a Dirichlet subset.
    pub min_size: usize,
    /// Most training epochs of every model (a cap when `patience` > 0).
    pub epochs: usize,
    /// Stop training after this many epochs without a better validation accuracy (0: train
    /// all `epochs`).
    pub patience: usize,
    /// Never stop training before this many epochs.
    pub min_epochs: usize,
    /// Epochs from which the training learning rate is multiplied by 0.1 (empty: constant).
    pub milestones: Vec<usize>,
    /// Training batch size.
    pub batch: usize,
    /// Validation fraction of every model's training images.
    pub val_fraction: f64,
    /// Architecture of the second model of the inter-network selection.
    pub inter_arch: String,
    /// Training images of the strong model whose modules patch the weak model (`None`: the
    /// whole training split).
    pub strong_limit: Option<usize>,
    /// GradSplitter head-only warm-up epochs.
    pub gs_warmup: usize,
    /// GradSplitter epochs after the warm-up (a cap when `gs_krr_patience` > 0).
    pub gs_epochs: usize,
    /// GradSplitter pattern: mask epochs, then head epochs.
    pub gs_pattern: (usize, usize),
    /// GradSplitter kernel-loss weight λ.
    pub gs_lambda: f64,
    /// GradSplitter mask learning rate.
    pub gs_mask_lr: f64,
    /// GradSplitter learning rate of the later head phases.
    pub gs_head_lr: f64,
    /// GradSplitter heads' learning rate in mask phases (`None`: the mask rate, as the spec).
    pub gs_mask_phase_head_lr: Option<f64>,
    /// GradSplitter training images (`--limit`).
    pub gs_limit: usize,
    /// Stop GradSplitter when the mean KRR has not fallen for this many epochs (0: run all).
    pub gs_krr_patience: usize,
    /// Also decompose this model with the spec's λ and mask learning rate (same images and
    /// cap), so that the report shows both curves where the preset changes them.
    pub gs_spec_ablation: Option<String>,
    /// CNNSplitter generations.
    pub ga_generations: usize,
    /// CNNSplitter population per class.
    pub ga_population: usize,
    /// CNNSplitter parents per generation.
    pub ga_parents: usize,
    /// CNNSplitter solutions kept per generation.
    pub ga_keep: usize,
    /// CNNSplitter fitness images.
    pub ga_fitness_images: usize,
    /// CNNSplitter holdout images that choose the generation (never seen by the fitness).
    pub ga_holdout_images: usize,
    /// Weak model: training images.
    pub weak_limit: usize,
    /// Width multiplier of the weak model (`simcnn-weak` is small already).
    pub weak_width: f64,
    /// Weak-model epochs (a cap when `patience` > 0).
    pub weak_epochs: usize,
    /// Calibration of the patch (`minmax`, `percentile`, `none`).
    pub patch_calibration: String,
    /// Second dataset of the new task (`None`: the new task draws its classes from different
    /// models of the same dataset).
    pub second_dataset: Option<String>,
    /// New tasks: (class name, source model, class index) per class.
    pub tasks: Vec<Vec<(String, String, usize)>>,
    /// Most epochs of the new task's from-scratch baseline.
    pub scratch_epochs: usize,
    /// The baseline stops after this many epochs without a better validation accuracy.
    pub scratch_patience: usize,
    /// Classes the weak model is patched on (each with both methods' modules).
    pub patch_classes: Vec<usize>,
    /// Seconds per training image-epoch at this width (the unit of the estimates).
    pub train_cost_s: f64,
    /// Why each setting that differs from the spec differs: (setting id of
    /// [`super::report::settings::SPEC_SETTINGS`], reason).
    pub reasons: Vec<(String, String)>,
}

// Per-image costs on the 2-core machine, relative to one training image-epoch (`c` =
// `PresetConfig::train_cost_s`): a forward pass of one network over one image costs `c / 3`;
// GS_COST and GA_COST below. Measured with the release binary on Fashion-MNIST at width 0.25
// (other builds sharing the CPU, so only the ratios are used; the absolute `c` comes from a run
// on a quiet machine). GradSplitter, 1,200 training and 1,200 validation images: a mask epoch
// cost 13.6 training image-epochs per training image beside the validation forward passes, a
// head epoch 7; over the [5 mask, 2 head] pattern about 12. CNNSplitter: 40 candidate modules
// over 200 fitness images took 0.26 training image-epochs per module and image, and the kernel
// importance and layer sensitivity about 300 module evaluations.

/// GradSplitter seconds per training image-epoch, in training image-epochs.
pub const GS_COST: f64 = 12.0;
/// CNNSplitter seconds per candidate module and fitness image, in training image-epochs.
pub const GA_COST: f64 = 0.3;

fn reasons(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reasons shared by the presets that run on Fashion-MNIST on a 2-core CPU.
const CPU_BUDGET: &str = "the whole preset must finish in 2.5 h on a 2-core CPU";

impl PresetConfig {
    /// The settings of `preset`.
    pub fn of(preset: Preset) -> Self {
        let fashion: Vec<String> = cnn_data::DatasetKind::FashionMnist
            .class_names()
            .map(|n| n.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        match preset {
            Preset::Smoke => PresetConfig {
                dataset: "fashion-mnist".into(),
                train_images: 6000,
                test_images: 1000,
                class_names: fashion,
                width: 0.125,
                estimators: vec![1, 2],
                alpha: 1.0,
                min_size: 50,
                epochs: 5,
                patience: 2,
                min_epochs: 2,
                milestones: vec![],
                batch: 64,
                val_fraction: 0.2,
                inter_arch: "rescnn".into(),
                strong_limit: None,
                gs_warmup: 1,
                gs_epochs: 3,
                gs_pattern: (2, 1),
                gs_lambda: 1.0,
                gs_mask_lr: 0.08,
                gs_head_lr: 0.005,
                gs_mask_phase_head_lr: Some(0.005),
                gs_limit: 1536,
                gs_krr_patience: 2,
                gs_spec_ablation: None,
                ga_generations: 3,
                ga_population: 8,
                ga_parents: 4,
                ga_keep: 2,
                ga_fitness_images: 200,
                ga_holdout_images: 100,
                weak_limit: 1200,
                weak_width: 1.0,
                weak_epochs: 3,
                patch_calibration: "minmax".into(),
                second_dataset: None,
                tasks: vec![
                    vec![
                        ("Trouser".into(), "simcnn-est1".into(), 1),
                        ("Bag".into(), "simcnn-est2".into(), 8),
                    ],
                    vec![
                        ("Sneaker".into(), "simcnn-est2".into(), 7),
                        ("Shirt".into(), "simcnn-est1".into(), 6),
                        ("Coat".into(), "rescnn-est1".into(), 4),
                    ],
                ],
                scratch_epochs: 2,
                scratch_patience: 2,
                patch_classes: (0..10).collect(),
                train_cost_s: 0.0012,
                reasons: reasons(&[("*", "smoke checks that every step and table works end to end in minutes; its numbers are not evidence")]),
            },
            Preset::Tiny => PresetConfig {
                width: 0.125,
                estimators: vec![1, 2],
                epochs: 1,
                patience: 0,
                min_epochs: 0,
                gs_warmup: 1,
                gs_epochs: 1,
                gs_pattern: (1, 1),
                gs_limit: 256,
                gs_krr_patience: 0,
                strong_limit: Some(1200),
                ga_generations: 1,
                ga_population: 4,
                ga_parents: 2,
                ga_keep: 1,
                ga_fitness_images: 50,
                ga_holdout_images: 50,
                weak_limit: 300,
                weak_epochs: 1,
                tasks: vec![vec![
                    ("Trouser".into(), "simcnn-est1".into(), 1),
                    ("Bag".into(), "simcnn-est2".into(), 8),
                ]],
                scratch_epochs: 1,
                scratch_patience: 1,
                patch_classes: vec![0, 1],
                reasons: reasons(&[("*", "tiny checks the machinery (executors, a cluster) in seconds per step; its numbers mean nothing")]),
                ..PresetConfig::of(Preset::Smoke)
            },
            Preset::Fashion => PresetConfig {
                dataset: "fashion-mnist-full".into(),
                train_images: 60_000,
                test_images: 10_000,
                class_names: fashion,
                width: 0.25,
                estimators: vec![1, 2],
                alpha: 1.0,
                min_size: 100,
                epochs: 8,
                patience: 2,
                min_epochs: 5,
                milestones: vec![6],
                batch: 128,
                val_fraction: 0.1,
                inter_arch: "rescnn".into(),
                strong_limit: None,
                gs_warmup: 1,
                gs_epochs: 8,
                gs_pattern: (2, 2),
                gs_lambda: 1.0,
                gs_mask_lr: 0.05,
                gs_head_lr: 0.005,
                gs_mask_phase_head_lr: Some(0.005),
                gs_limit: 1200,
                gs_krr_patience: 3,
                gs_spec_ablation: Some("simcnn-second".into()),
                ga_generations: 20,
                ga_population: 20,
                ga_parents: 10,
                ga_keep: 4,
                ga_fitness_images: 300,
                ga_holdout_images: 300,
                weak_limit: 5400,
                weak_width: 1.0,
                weak_epochs: 8,
                patch_calibration: "minmax".into(),
                second_dataset: Some("mnist-5k".into()),
                tasks: vec![
                    vec![
                        ("Trouser".into(), "simcnn-est1".into(), 1),
                        ("seven".into(), "simcnn-second".into(), 7),
                    ],
                    vec![
                        ("Bag".into(), "simcnn-est2".into(), 8),
                        ("three".into(), "simcnn-second".into(), 3),
                    ],
                    vec![
                        ("Sneaker".into(), "simcnn-est1".into(), 7),
                        ("zero".into(), "simcnn-second".into(), 0),
                    ],
                    vec![
                        ("Dress".into(), "simcnn-est2".into(), 3),
                        ("five".into(), "simcnn-second".into(), 5),
                    ],
                    vec![
                        ("Sandal".into(), "simcnn-est1".into(), 5),
                        ("nine".into(), "simcnn-second".into(), 9),
                    ],
                ],
                scratch_epochs: 8,
                scratch_patience: 2,
                patch_classes: (0..10).collect(),
                train_cost_s: 0.0022,
                reasons: reasons(&[
                    ("dataset", "CIFAR-10 and SVHN at the paper's width do not fit a 2-core CPU; Fashion-MNIST (and mnist-5k digits for the new tasks) is the data at hand"),
                    ("width", CPU_BUDGET),
                    ("estimators", CPU_BUDGET),
                    ("train-epochs", "every model trains until validation stops improving and keeps its best validation epoch (the spec's checkpoint rule); the 8-epoch cap keeps the preset in 2.5 h; T1 shows at which epoch each model stopped"),
                    ("train-milestones", "the spec decays at 30 % and 60 % of its 200 epochs; here once, after epoch 6 of the 8-epoch cap. Measured: with decays after epochs 3 and 5 (the spec's fractions of the cap) simcnn-est1's validation accuracy was still rising at the cap with the learning rate already at 1e-4 (84.5 %, aborted run at a904bfc), so early stopping never had a plateau to find"),
                    ("train-val", "every GradSplitter epoch runs the model and its 10 modules over the validation part; 10 % instead of 20 % halves that cost"),
                    ("strong-model", "the spec patches with a no-BN CNNSplitter model of CIFAR-10; here the full-data SimCNN (with BN) of Fashion-MNIST, decomposed by both methods so that their modules patch the same weak model"),
                    ("weak-model", "the spec's weak tasks mix CIFAR-100 classes with one CIFAR-10 class; here one small model trained on few Fashion-MNIST images, patched once per class"),
                    ("gs-warmup", CPU_BUDGET),
                    ("gs-epochs", "the spec runs 140 epochs; here GradSplitter stops when the mean KRR has not fallen for 3 epochs (more than a head phase, in which masks do not move), at most 9 epochs after the warm-up (2 mask phases), to fit 6 decompositions in the budget"),
                    ("gs-lambda", "with 10 epochs instead of 145, the spec's 0.1 barely prunes (mean KRR 93 % after 5 mask epochs at mask lr 0.05 on a weak model); on the demo's model λ 0.5 kept 78.4 % of the kernels at −0.8 pp test accuracy and λ 1.0 kept 61.5 % at −2.1 pp with pattern [2, 1] and 62.1 % at −0.8 pp with [2, 2] (docs/results/gs-settings/); the spec run beside it (`grad-spec-simcnn-second`) shows λ 0.1"),
                    ("gs-pattern", "[2 mask, 2 head] puts a head phase, which recovers accuracy with the masks fixed, after every two mask epochs of the short cap (the spec's [5, 2] would leave one pattern and a cut one); on the demo's model [2, 2] kept 62.1 % of the kernels at −0.8 pp where [2, 1] kept 61.5 % at −2.1 pp (docs/results/gs-settings/)"),
                    ("gs-head-lr", "0.005, the head rate of the measurements in docs/results/gs-settings/; the heads retrain from a fresh optimiser in each short head phase"),
                    ("gs-mask-head-lr", "at the large mask rate the spec's shared rate throws the heads off in every mask phase: on the demo's model, λ 0.5 with shared rate 0.05 kept 83.2 % of the kernels at −2.4 pp, with heads at 0.005 78.4 % at −0.8 pp (docs/results/gs-settings/, docs/results/demo/)"),
                    ("gs-mask-lr", "at the spec's 0.001 a mask entry starting at 1 needs about 1,000 Adam steps to reach 0, and 9 epochs of 1,200 images give under 200; the preset runs the spec's 0.001 beside 0.05 on simcnn-second (`grad-spec-simcnn-second` in T2 and the GradSplitter plot) so the report shows the KRR and accuracy curves of both"),
                    ("gs-images", "1,200 images per decomposition fit the CPU budget; they are a class-balanced sample of the training part (`--limit-sampling balanced`), because the first 1,200 images of a Dirichlet estimator's part hold a handful of its rare classes: measured at 2ac8eca/c96963c, simcnn-est1 then had 3 collapsed modules of 10 and composed to 49.0 % test accuracy against the model's 76.9 %, est2 had 2; with a class-balanced 1,200 est1 had none, kept 65.8 % of its kernels and composed to 75.3 % (design §5.6)"),
                    ("ga-generations", CPU_BUDGET),
                    ("ga-population", CPU_BUDGET),
                    ("ga-parents", "half the population, as the spec's 50 of 100"),
                    ("ga-keep", "a fifth of the population, as the spec's 20 of 100"),
                    ("ga-fitness", CPU_BUDGET),
                    ("ga-choice", "the spec chooses the generation on the fitness images themselves, which overstates accuracy (96.2 % fitness against 86.97 % test in an earlier run); a holdout the fitness never sees chooses instead"),
                    ("new-tasks", CPU_BUDGET),
                    ("scratch", CPU_BUDGET),
                    ("inter", "only SimCNN and ResCNN estimators are trained here (InceCNN does not fit the time budget)"),
                ]),
            },
            Preset::Paper => PresetConfig {
                dataset: "cifar10".into(),
                train_images: 50_000,
                test_images: 10_000,
                class_names: cnn_data::DatasetKind::Cifar10
                    .class_names()
                    .map(|n| n.iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default(),
                width: 1.0,
                estimators: vec![1, 3, 4, 6, 8, 10, 11, 14, 15, 16],
                alpha: 1.0,
                min_size: 100,
                epochs: 200,
                patience: 0,
                min_epochs: 0,
                milestones: vec![60, 120],
                batch: 128,
                val_fraction: 0.2,
                inter_arch: "rescnn".into(),
                strong_limit: None,
                gs_warmup: 5,
                gs_epochs: 140,
                gs_pattern: (5, 2),
                gs_lambda: 0.1,
                gs_mask_lr: 0.001,
                gs_head_lr: 0.001,
                gs_mask_phase_head_lr: None,
                gs_limit: 40_000,
                gs_krr_patience: 0,
                gs_spec_ablation: None,
                ga_generations: 200,
                ga_population: 100,
                ga_parents: 50,
                ga_keep: 20,
                ga_fitness_images: 10_000,
                ga_holdout_images: 2_000,
                weak_limit: 4_500,
                weak_width: 1.0,
                weak_epochs: 100,
                patch_calibration: "minmax".into(),
                second_dataset: Some("svhn".into()),
                tasks: (0..10)
                    .map(|c| {
                        vec![
                            (format!("cifar-{c}"), "simcnn-est1".into(), c),
                            (format!("svhn-{c}"), "simcnn-second".into(), c),
                        ]
                    })
                    .collect(),
                scratch_epochs: 100,
                scratch_patience: 5,
                patch_classes: (0..10).collect(),
                train_cost_s: 0.058,
                reasons: reasons(&[
                    ("strong-model", "the BN SimCNN of CIFAR-10 is decomposed by both methods so that their modules patch the same weak model"),
                    ("weak-model", "the weak tasks of §7 (CIFAR-100 classes) are not built by the preset; one weak CIFAR-10 model is patched once per class"),
                    ("ga-fitness", "at most 10,000 images of the validation split (all of it where it is smaller)"),
                    ("ga-choice", "a holdout the fitness never sees chooses the generation (choosing on the fitness images overstates accuracy)"),
                    ("new-tasks", "10 tasks (CIFAR class c with SVHN digit c) instead of all 100 pairs, to bound the time"),
                    ("inter", "only SimCNN and ResCNN estimators are trained"),
                ]),
            },
        }
    }

    /// The preset's reason for differing from the spec in `setting` (a
    /// [`super::report::settings::SPEC_SETTINGS`] id); `*` gives a reason for every setting.
    pub fn reason(&self, setting: &str) -> Option<&str> {
        self.reasons
            .iter()
            .find(|(k, _)| k == setting || k == "*")
            .map(|(_, v)| v.as_str())
    }
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// `--milestones` value: the list, or one epoch past any cap (constant learning rate).
fn milestones_arg(m: &[usize]) -> String {
    if m.is_empty() {
        "100000".into()
    } else {
        m.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Expected epochs of a capped run with early stopping: the cap, since the estimate must not
/// undershoot (a run that stops early finishes sooner).
fn planned_epochs(cap: usize) -> f64 {
    cap as f64
}

/// Training images of the second dataset's model (mnist-5k: 5,000), for estimates.
const SECOND_IMAGES: f64 = 5000.0;

/// Name of the strong model whose modules patch the weak model.
pub const STRONG: &str = "simcnn-strong";

/// The steps of a preset, in order.
pub fn steps(cfg: &PresetConfig) -> Vec<Step> {
    let mut out = Vec::new();
    let w = s(cfg.width);
    let subset = |n: usize| n as f64 * 0.4; // a Dirichlet subset keeps about 40 % of the images
    let c = cfg.train_cost_s;
    // seconds of one training epoch over `images` (80 % train, 20 % validation forward) plus
    // the final test evaluation
    let train = |name: &str,
                 arch: &str,
                 dataset: &str,
                 extra: &[String],
                 images: f64,
                 role: &str,
                 estimator: Option<u64>| {
        let mut a = args(&["train", "--arch", arch, "--width"]);
        a.push(w.clone());
        a.extend(args(&["--dataset", dataset, "--epochs"]));
        a.push(s(cfg.epochs));
        a.extend(args(&["--batch-size"]));
        a.push(s(cfg.batch));
        a.push("--milestones".into());
        a.push(milestones_arg(&cfg.milestones));
        if cfg.patience > 0 {
            a.extend(args(&["--patience"]));
            a.push(s(cfg.patience));
            a.extend(args(&["--min-epochs"]));
            a.push(s(cfg.min_epochs));
        }
        a.push("--val-fraction".into());
        a.push(s(cfg.val_fraction));
        a.extend(args(&["--out"]));
        a.push(format!("models/{name}"));
        a.extend(extra.iter().cloned());
        let v = cfg.val_fraction;
        let per_epoch = images * (1.0 - v) * c + images * v * c / 3.0;
        Step {
            id: format!("train-{name}"),
            kind: StepKind::Train {
                role: role.into(),
                arch: arch.into(),
                dataset: dataset.into(),
                estimator,
            },
            args: a,
            out: Some(format!("models/{name}")),
            resumable: true,
            estimate_s: per_epoch * planned_epochs(cfg.epochs) + forward_cost(cfg, 1.0),
            deps: Vec::new(),
        }
    };
    let estimator_names: Vec<String> = cfg
        .estimators
        .iter()
        .map(|e| format!("simcnn-est{e}"))
        .collect();
    let dirichlet = |e: u64| {
        vec![
            s("--estimator"),
            s(e),
            s("--dirichlet-alpha"),
            s(cfg.alpha),
            s("--min-size"),
            s(cfg.min_size),
            s("--seed"),
            s(e),
        ]
    };
    for (e, name) in cfg.estimators.iter().zip(&estimator_names) {
        out.push(train(
            name,
            "simcnn",
            &cfg.dataset,
            &dirichlet(*e),
            subset(cfg.train_images),
            "estimator",
            Some(*e),
        ));
    }
    let first = cfg.estimators[0];
    let inter_name = format!("{}-est{first}", cfg.inter_arch);
    out.push(train(
        &inter_name,
        &cfg.inter_arch,
        &cfg.dataset,
        &dirichlet(first),
        subset(cfg.train_images) * 1.3,
        "inter",
        Some(first),
    ));
    // the strong model: the whole training split (or `strong_limit` images of it)
    let mut strong_extra = vec![s("--seed"), s(3)];
    if let Some(l) = cfg.strong_limit {
        strong_extra.extend([s("--limit"), s(l)]);
    }
    out.push(train(
        STRONG,
        "simcnn",
        &cfg.dataset,
        &strong_extra,
        cfg.strong_limit.unwrap_or(cfg.train_images) as f64,
        "strong",
        None,
    ));
    let mut weak = train(
        "weak",
        "simcnn-weak",
        &cfg.dataset,
        &[s("--limit"), s(cfg.weak_limit), s("--seed"), s(7)],
        cfg.weak_limit as f64 * 0.3,
        "weak",
        None,
    );
    // the weak model trains for its own number of epochs at its own width
    for (flag, value) in [
        ("--epochs", s(cfg.weak_epochs)),
        ("--width", s(cfg.weak_width)),
    ] {
        if let Some(i) = weak.args.iter().position(|a| a == flag) {
            weak.args[i + 1] = value;
        }
    }
    out.push(weak);
    let mut decomposed = estimator_names.clone();
    decomposed.push(inter_name.clone());
    decomposed.push(STRONG.into());
    if let Some(second) = &cfg.second_dataset {
        out.push(train(
            "simcnn-second",
            "simcnn",
            second,
            &[s("--seed"), s(1)],
            SECOND_IMAGES,
            "second",
            None,
        ));
        decomposed.push("simcnn-second".into());
    }
    // GradSplitter on every model; on the strong model also with the spec's λ and mask lr
    // per epoch: the training images, and the modules and the model over the validation part
    let gs_cost = |model: &str| {
        let val = cfg.val_fraction
            * if model == STRONG {
                cfg.strong_limit.unwrap_or(cfg.train_images) as f64
            } else if model == "simcnn-second" {
                SECOND_IMAGES
            } else {
                subset(cfg.train_images)
            };
        let epochs = (cfg.gs_warmup + cfg.gs_epochs) as f64;
        epochs
            * (cfg.gs_limit as f64 * GS_COST * c
                + val * (cfg.class_names.len() as f64 + 1.0) * c / 3.0)
    };
    // (model, label, λ, mask lr, head lr, heads' rate in mask phases)
    type GradRun = (String, String, f64, f64, f64, Option<f64>);
    let mut grad_runs: Vec<GradRun> = decomposed
        .iter()
        .map(|m| {
            (
                m.clone(),
                format!("grad-{m}"),
                cfg.gs_lambda,
                cfg.gs_mask_lr,
                cfg.gs_head_lr,
                cfg.gs_mask_phase_head_lr,
            )
        })
        .collect();
    if let Some(m) = cfg
        .gs_spec_ablation
        .as_ref()
        .filter(|m| decomposed.contains(m))
    {
        // the spec's λ and learning rates, for the curves that justify the preset's
        grad_runs.push((m.clone(), format!("grad-spec-{m}"), 0.1, 0.001, 0.001, None));
    }
    for (m, label, lambda, mask_lr, head_lr, mask_head_lr) in &grad_runs {
        let dataset_arg = if m == "simcnn-second" {
            cfg.second_dataset.clone().unwrap_or_default()
        } else {
            cfg.dataset.clone()
        };
        let mut a = args(&["decompose", "--method", "grad", "--model"]);
        a.push(format!("models/{m}"));
        a.extend(args(&["--out"]));
        a.push(format!("modules/{label}"));
        for (k, v) in [
            ("--warmup-epochs", s(cfg.gs_warmup)),
            ("--epochs", s(cfg.gs_epochs)),
            ("--pattern-mask", s(cfg.gs_pattern.0)),
            ("--pattern-head", s(cfg.gs_pattern.1)),
            ("--lambda", s(lambda)),
            ("--mask-lr", s(mask_lr)),
            ("--head-lr", s(head_lr)),
            ("--limit", s(cfg.gs_limit)),
            ("--limit-sampling", s("balanced")),
            ("--krr-patience", s(cfg.gs_krr_patience)),
        ] {
            a.push(k.into());
            a.push(v);
        }
        if let Some(lr) = mask_head_lr {
            a.push("--mask-phase-head-lr".into());
            a.push(s(lr));
        }
        let method = label.trim_end_matches(&format!("-{m}")).to_string();
        out.push(Step {
            id: format!("decompose-{label}"),
            kind: StepKind::Decompose {
                method: method.clone(),
                model: m.clone(),
            },
            args: a,
            out: Some(format!("modules/{label}")),
            resumable: true,
            estimate_s: gs_cost(m),
            deps: Vec::new(),
        });
        out.push(compose_step(&method, m, &dataset_arg, cfg));
    }
    // CNNSplitter on the strong model
    let mut a = args(&["decompose", "--method", "ga", "--model"]);
    a.push(format!("models/{STRONG}"));
    a.push("--out".into());
    a.push(format!("modules/ga-{STRONG}"));
    for (k, v) in [
        ("--generations", s(cfg.ga_generations)),
        ("--population", s(cfg.ga_population)),
        ("--parents", s(cfg.ga_parents)),
        ("--keep", s(cfg.ga_keep)),
        ("--fitness-images", s(cfg.ga_fitness_images)),
        ("--holdout-images", s(cfg.ga_holdout_images)),
    ] {
        a.push(k.into());
        a.push(v);
    }
    // generation 0 evaluates the whole population, later ones the offspring; the holdout
    // evaluates each class's best solution; importance and sensitivity about 300 modules
    let n = cfg.class_names.len() as f64;
    let offspring = (cfg.ga_population - cfg.ga_keep.min(cfg.ga_population)) as f64;
    let modules_run = n * (cfg.ga_population as f64 + cfg.ga_generations as f64 * offspring);
    out.push(Step {
        id: format!("decompose-ga-{STRONG}"),
        kind: StepKind::Decompose {
            method: "ga".into(),
            model: STRONG.into(),
        },
        args: a,
        out: Some(format!("modules/ga-{STRONG}")),
        resumable: true,
        estimate_s: (modules_run + 300.0) * cfg.ga_fitness_images as f64 * GA_COST * c
            + (cfg.ga_generations + 1) as f64 * n * cfg.ga_holdout_images as f64 * GA_COST * c,
        deps: Vec::new(),
    });
    out.push(compose_step("ga", STRONG, &cfg.dataset, cfg));
    // patching the weak model, every class, with both methods' modules of the strong model
    for method in ["grad", "ga"] {
        for &class in &cfg.patch_classes {
            let mut a = args(&["patch", "--model", "models/weak", "--module"]);
            a.push(format!("modules/{method}-{STRONG}/module_{class}"));
            a.push("--dataset".into());
            a.push(cfg.dataset.clone());
            a.push("--calibration".into());
            a.push(cfg.patch_calibration.clone());
            out.push(Step {
                id: format!("patch-{method}-{class}"),
                kind: StepKind::Patch {
                    method: method.into(),
                    class,
                },
                args: a,
                out: None,
                resumable: false,
                estimate_s: forward_cost(cfg, 2.0) + 5.0,
                deps: Vec::new(),
            });
        }
    }
    // same-task reuse: intra (the SimCNN estimators) and inter (SimCNN and the other arch)
    let select = |scope: &str, models: Vec<String>| {
        let mut a = args(&["reuse", "select", "--models"]);
        a.extend(models.iter().map(|m| format!("models/{m}")));
        a.push("--modules".into());
        a.extend(models.iter().map(|m| format!("modules/grad-{m}")));
        a.push("--dataset".into());
        a.push(cfg.dataset.clone());
        a.push("--out".into());
        a.push(format!("composed/select-{scope}"));
        Step {
            id: format!("select-{scope}"),
            kind: StepKind::Select {
                scope: scope.into(),
                models: models.clone(),
            },
            args: a,
            out: Some(format!("composed/select-{scope}")),
            resumable: false,
            estimate_s: forward_cost(cfg, models.len() as f64 * (n + 1.0)),
            deps: Vec::new(),
        }
    };
    out.push(select("intra", estimator_names.clone()));
    out.push(select(
        "inter",
        vec![estimator_names[0].clone(), inter_name],
    ));
    // new tasks
    for (t, task) in cfg.tasks.iter().enumerate() {
        let mut a = args(&["reuse", "new-task"]);
        for (name, model, class) in task {
            a.push("--module".into());
            a.push(format!("{name}=modules/grad-{model}/module_{class}"));
        }
        a.push("--dataset".into());
        a.push(cfg.dataset.clone());
        if let Some(second) = &cfg.second_dataset {
            a.push("--dataset".into());
            a.push(second.clone());
        }
        a.extend(args(&["--scratch-epochs"]));
        a.push(s(cfg.scratch_epochs));
        a.extend(args(&["--scratch-patience"]));
        a.push(s(cfg.scratch_patience));
        a.push("--out".into());
        a.push(format!("composed/task-{t}"));
        let images: f64 = task
            .iter()
            .map(|(_, model, _)| {
                if model == "simcnn-second" {
                    SECOND_IMAGES / n
                } else {
                    cfg.train_images as f64 / n
                }
            })
            .sum();
        out.push(Step {
            id: format!("new-task-{t}"),
            kind: StepKind::NewTask { task: t },
            args: a,
            out: Some(format!("composed/task-{t}")),
            resumable: false,
            estimate_s: images * planned_epochs(cfg.scratch_epochs) * c * 1.1
                + forward_cost(cfg, task.len() as f64 + 1.0),
            deps: Vec::new(),
        });
    }
    link_dependencies(&mut out);
    out
}

/// Whether the argument `arg` names the folder `out` or something inside it; an argument
/// `NAME=PATH` (a new task's `--module`) names its `PATH`.
fn reads(arg: &str, out: &str) -> bool {
    let path = arg.split_once('=').map_or(arg, |(_, p)| p);
    path == out
        || path
            .strip_prefix(out)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Fills every step's `deps`: the earlier steps whose output folder one of its arguments
/// names (other than its own `--out`). A preset lists a step after everything it reads, so the
/// plan order is a topological order of the graph.
fn link_dependencies(plan: &mut [Step]) {
    for i in 0..plan.len() {
        let deps: Vec<String> = plan[..i]
            .iter()
            .filter(|earlier| {
                earlier.out.as_deref().is_some_and(|o| {
                    plan[i].out.as_deref() != Some(o) && plan[i].args.iter().any(|a| reads(a, o))
                })
            })
            .map(|earlier| earlier.id.clone())
            .collect();
        plan[i].deps = deps;
    }
}

/// Seconds to run `networks` networks over the test split (a forward pass costs about a third
/// of a training step per image).
fn forward_cost(cfg: &PresetConfig, networks: f64) -> f64 {
    networks * cfg.test_images as f64 * cfg.train_cost_s / 3.0
}

fn compose_step(method: &str, model: &str, dataset: &str, cfg: &PresetConfig) -> Step {
    let dir = format!("{method}-{model}");
    Step {
        id: format!("compose-{dir}"),
        kind: StepKind::Compose {
            method: method.into(),
            model: model.into(),
        },
        args: vec![
            "compose".into(),
            "--modules".into(),
            format!("modules/{dir}"),
            "--model".into(),
            format!("models/{model}"),
            "--dataset".into(),
            dataset.into(),
        ],
        out: None,
        resumable: false,
        estimate_s: forward_cost(cfg, cfg.class_names.len() as f64 + 1.0),
        deps: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag<'a>(step: &'a Step, name: &str) -> Option<&'a str> {
        let i = step.args.iter().position(|a| a == name)?;
        step.args.get(i + 1).map(String::as_str)
    }

    #[test]
    fn the_fashion_preset_is_faithful_where_the_issue_asks_and_fits_its_budget() {
        let cfg = PresetConfig::of(Preset::Fashion);
        let plan = steps(&cfg);
        let total: f64 = plan.iter().map(|s| s.estimate_s).sum();
        assert!(total <= 2.5 * 3600.0, "planned {total:.0} s");
        for s in plan
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Train { .. }))
        {
            assert_eq!(flag(s, "--patience"), Some("2"), "{}", s.id);
            assert_eq!(flag(s, "--min-epochs"), Some("5"), "{}", s.id);
            assert_ne!(flag(s, "--milestones"), Some("1000"), "{}", s.id);
        }
        let strong = plan.iter().find(|s| s.id == "train-simcnn-strong").unwrap();
        assert_eq!(
            flag(strong, "--limit"),
            None,
            "the strong model sees every image"
        );
        assert!(flag(strong, "--estimator").is_none());
        // the changed GradSplitter settings are stated with reasons (report settings test); every
        // run stops by KRR patience
        for s in plan.iter().filter(|s| s.id.starts_with("decompose-grad")) {
            assert!(flag(s, "--krr-patience").is_some(), "{}", s.id);
        }
        // the spec's mask learning rate runs beside the changed one, on the second model
        let spec = plan
            .iter()
            .find(|s| s.id == "decompose-grad-spec-simcnn-second")
            .expect("the spec-settings GradSplitter run");
        assert_eq!(flag(spec, "--mask-lr"), Some("0.001"));
        assert_eq!(flag(spec, "--lambda"), Some("0.1"));
        assert_eq!(flag(spec, "--mask-phase-head-lr"), None);
        assert!(plan
            .iter()
            .any(|s| s.id == "compose-grad-spec-simcnn-second"));
        let ga = plan
            .iter()
            .find(|s| s.id == "decompose-ga-simcnn-strong")
            .unwrap();
        let num = |s: &Step, f: &str| flag(s, f).unwrap().parse::<usize>().unwrap();
        assert!(num(ga, "--generations") >= 20 && num(ga, "--population") >= 20);
        assert!(num(ga, "--holdout-images") > 0);
        for method in ["grad", "ga"] {
            for c in 0..10 {
                let p = plan
                    .iter()
                    .find(|s| s.id == format!("patch-{method}-{c}"))
                    .unwrap_or_else(|| panic!("patch-{method}-{c}"));
                assert_eq!(
                    flag(p, "--module"),
                    Some(format!("modules/{method}-simcnn-strong/module_{c}").as_str())
                );
            }
        }
        let tasks: Vec<&Step> = plan
            .iter()
            .filter(|s| matches!(s.kind, StepKind::NewTask { .. }))
            .collect();
        assert!(tasks.len() >= 5);
        for t in tasks {
            assert_eq!(flag(t, "--scratch-patience"), Some("2"));
        }
        assert!(plan.iter().any(|s| s.id == "select-intra"));
        assert!(plan.iter().any(|s| s.id == "select-inter"));
    }

    #[test]
    fn step_ids_are_unique_and_the_smoke_preset_uses_the_new_flags() {
        for preset in [Preset::Smoke, Preset::Fashion, Preset::Paper] {
            let plan = steps(&PresetConfig::of(preset));
            let mut ids: Vec<&str> = plan.iter().map(|s| s.id.as_str()).collect();
            ids.sort();
            let n = ids.len();
            ids.dedup();
            assert_eq!(ids.len(), n, "{preset:?}");
        }
        let plan = steps(&PresetConfig::of(Preset::Smoke));
        assert!(plan.iter().any(|s| flag(s, "--patience").is_some()));
        assert!(plan.iter().any(|s| flag(s, "--krr-patience").is_some()));
        assert!(plan.iter().any(|s| flag(s, "--holdout-images").is_some()));
        assert!(plan.iter().any(|s| flag(s, "--scratch-patience").is_some()));
        assert!(plan.iter().any(|s| flag(s, "--calibration").is_some()));
    }
}
