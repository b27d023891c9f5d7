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
}

impl Preset {
    /// Lower-case name (the output folder).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Fashion => "fashion",
            Preset::Paper => "paper",
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
}

/// Settings of one preset.
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
    /// Dirichlet α and minimum images per class.
    pub alpha: f64,
    /// Minimum kept images per class of a Dirichlet subset.
    pub min_size: usize,
    /// Training epochs of every model.
    pub epochs: usize,
    /// Training batch size.
    pub batch: usize,
    /// Architecture of the second model of the inter-network selection.
    pub inter_arch: String,
    /// GradSplitter: warm-up epochs, mask epochs, images.
    pub gs_warmup: usize,
    /// GradSplitter mask-phase epochs.
    pub gs_epochs: usize,
    /// GradSplitter training images.
    pub gs_limit: usize,
    /// GradSplitter mask learning rate.
    pub gs_mask_lr: f64,
    /// GA generations, population, fitness images.
    pub ga_generations: usize,
    /// GA population per class.
    pub ga_population: usize,
    /// GA fitness images.
    pub ga_fitness_images: usize,
    /// Weak model: training images and epochs.
    pub weak_limit: usize,
    /// Width multiplier of the weak model (`simcnn-weak` is small already).
    pub weak_width: f64,
    /// Weak-model epochs.
    pub weak_epochs: usize,
    /// Second dataset of the new task (`None`: the new task draws its classes from different
    /// models of the same dataset).
    pub second_dataset: Option<String>,
    /// New tasks: (class name, model, class index in that model's dataset).
    pub tasks: Vec<Vec<(String, String, usize)>>,
    /// Epochs of each from-scratch baseline.
    pub scratch_epochs: usize,
    /// Classes the weak model is patched on (each with both methods' modules).
    pub patch_classes: Vec<usize>,
    /// Seconds per training image-epoch at this width (estimates).
    pub train_cost_s: f64,
}

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
                batch: 64,
                inter_arch: "rescnn".into(),
                gs_warmup: 1,
                gs_epochs: 3,
                gs_limit: 1536,
                gs_mask_lr: 0.08,
                ga_generations: 3,
                ga_population: 8,
                ga_fitness_images: 200,
                weak_limit: 1200,
                weak_width: 1.0,
                weak_epochs: 3,
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
                patch_classes: (0..10).collect(),
                train_cost_s: 0.0012,
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
                epochs: 2,
                batch: 64,
                inter_arch: "rescnn".into(),
                gs_warmup: 1,
                gs_epochs: 3,
                gs_limit: 2400,
                gs_mask_lr: 0.05,
                ga_generations: 4,
                ga_population: 8,
                ga_fitness_images: 300,
                weak_limit: 5400,
                weak_width: 1.0,
                weak_epochs: 3,
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
                ],
                scratch_epochs: 1,
                patch_classes: vec![0, 2, 4, 6, 8],
                train_cost_s: 0.0072,
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
                batch: 128,
                inter_arch: "rescnn".into(),
                gs_warmup: 5,
                gs_epochs: 140,
                gs_limit: 20_000,
                gs_mask_lr: 0.005,
                ga_generations: 200,
                ga_population: 100,
                ga_fitness_images: 10_000,
                weak_limit: 4_500,
                weak_width: 1.0,
                weak_epochs: 100,
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
                patch_classes: (0..10).collect(),
                train_cost_s: 0.058,
            },
        }
    }
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// The steps of a preset, in order.
pub fn steps(cfg: &PresetConfig) -> Vec<Step> {
    let mut out = Vec::new();
    let w = s(cfg.width);
    let subset = |n: usize| n as f64 * 0.5; // a Dirichlet subset keeps about half the images
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
        a.extend(args(&["--milestones", "1000", "--out"]));
        a.push(format!("models/{name}"));
        a.extend(extra.iter().cloned());
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
            estimate_s: images * cfg.epochs as f64 * cfg.train_cost_s * 1.2,
        }
    };
    let estimator_names: Vec<String> = cfg
        .estimators
        .iter()
        .map(|e| format!("simcnn-est{e}"))
        .collect();
    for (e, name) in cfg.estimators.iter().zip(&estimator_names) {
        let extra = vec![
            s("--estimator"),
            s(e),
            s("--dirichlet-alpha"),
            s(cfg.alpha),
            s("--min-size"),
            s(cfg.min_size),
            s("--seed"),
            s(e),
        ];
        out.push(train(
            name,
            "simcnn",
            &cfg.dataset,
            &extra,
            subset(cfg.train_images),
            "estimator",
            Some(*e),
        ));
    }
    let first = cfg.estimators[0];
    let inter_name = format!("{}-est{first}", cfg.inter_arch);
    let extra = vec![
        s("--estimator"),
        s(first),
        s("--dirichlet-alpha"),
        s(cfg.alpha),
        s("--min-size"),
        s(cfg.min_size),
        s("--seed"),
        s(first),
    ];
    out.push(train(
        &inter_name,
        &cfg.inter_arch,
        &cfg.dataset,
        &extra,
        subset(cfg.train_images) * 1.4,
        "inter",
        Some(first),
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
    if let Some(second) = &cfg.second_dataset {
        out.push(train(
            "simcnn-second",
            "simcnn",
            second,
            &[s("--seed"), s(1)],
            4000.0,
            "second",
            None,
        ));
        decomposed.push("simcnn-second".into());
    }
    let gs_cost =
        cfg.gs_limit as f64 * (cfg.gs_warmup + cfg.gs_epochs) as f64 * cfg.train_cost_s * 4.0;
    for m in &decomposed {
        let dataset_arg = if m == "simcnn-second" {
            cfg.second_dataset.clone().unwrap_or_default()
        } else {
            cfg.dataset.clone()
        };
        let mut a = args(&["decompose", "--method", "grad", "--model"]);
        a.push(format!("models/{m}"));
        a.extend(args(&["--out"]));
        a.push(format!("modules/grad-{m}"));
        for (k, v) in [
            ("--warmup-epochs", s(cfg.gs_warmup)),
            ("--epochs", s(cfg.gs_epochs)),
            ("--pattern-mask", s(2)),
            ("--pattern-head", s(1)),
            ("--lambda", s(1.0)),
            ("--mask-lr", s(cfg.gs_mask_lr)),
            ("--head-lr", s(0.005)),
            ("--limit", s(cfg.gs_limit)),
        ] {
            a.push(k.into());
            a.push(v);
        }
        out.push(Step {
            id: format!("decompose-grad-{m}"),
            kind: StepKind::Decompose {
                method: "grad".into(),
                model: m.clone(),
            },
            args: a,
            out: Some(format!("modules/grad-{m}")),
            resumable: true,
            estimate_s: gs_cost,
        });
        out.push(compose_step("grad", m, &dataset_arg, cfg));
    }
    // CNNSplitter on the first estimator
    let ga_model = &estimator_names[0];
    let mut a = args(&["decompose", "--method", "ga", "--model"]);
    a.push(format!("models/{ga_model}"));
    a.push("--out".into());
    a.push(format!("modules/ga-{ga_model}"));
    for (k, v) in [
        ("--generations", s(cfg.ga_generations)),
        ("--population", s(cfg.ga_population)),
        ("--parents", s(cfg.ga_population / 2)),
        ("--keep", s((cfg.ga_population / 4).max(1))),
        ("--fitness-images", s(cfg.ga_fitness_images)),
    ] {
        a.push(k.into());
        a.push(v);
    }
    out.push(Step {
        id: format!("decompose-ga-{ga_model}"),
        kind: StepKind::Decompose {
            method: "ga".into(),
            model: ga_model.clone(),
        },
        args: a,
        out: Some(format!("modules/ga-{ga_model}")),
        resumable: true,
        estimate_s: (cfg.ga_generations + 2) as f64
            * cfg.ga_population as f64
            * cfg.class_names.len() as f64
            * cfg.ga_fitness_images as f64
            * cfg.train_cost_s
            * 0.4,
    });
    out.push(compose_step("ga", ga_model, &cfg.dataset, cfg));
    // patching the weak model, every class, with both methods' modules of the first estimator
    for method in ["grad", "ga"] {
        for &c in &cfg.patch_classes {
            let mut a = args(&["patch", "--model", "models/weak", "--module"]);
            a.push(format!("modules/{method}-{ga_model}/module_{c}"));
            a.push("--dataset".into());
            a.push(cfg.dataset.clone());
            out.push(Step {
                id: format!("patch-{method}-{c}"),
                kind: StepKind::Patch {
                    method: method.into(),
                    class: c,
                },
                args: a,
                out: None,
                resumable: false,
                estimate_s: forward_cost(cfg, 2.0),
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
            estimate_s: forward_cost(
                cfg,
                models.len() as f64 * (cfg.class_names.len() as f64 + 1.0),
            ),
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
        a.push("--out".into());
        a.push(format!("composed/task-{t}"));
        let images = cfg.train_images as f64 / cfg.class_names.len() as f64 * task.len() as f64;
        out.push(Step {
            id: format!("new-task-{t}"),
            kind: StepKind::NewTask { task: t },
            args: a,
            out: Some(format!("composed/task-{t}")),
            resumable: false,
            estimate_s: images * cfg.scratch_epochs as f64 * cfg.train_cost_s * 1.2,
        });
    }
    out
}

/// Seconds to run `modules` networks over the test split (a forward pass costs about a third
/// of a training step per image).
fn forward_cost(cfg: &PresetConfig, networks: f64) -> f64 {
    networks * cfg.test_images as f64 * cfg.train_cost_s / 3.0
}

fn compose_step(method: &str, model: &str, dataset: &str, cfg: &PresetConfig) -> Step {
    Step {
        id: format!("compose-{method}-{model}"),
        kind: StepKind::Compose {
            method: method.into(),
            model: model.into(),
        },
        args: vec![
            "compose".into(),
            "--modules".into(),
            format!("modules/{method}-{model}"),
            "--model".into(),
            format!("models/{model}"),
            "--dataset".into(),
            dataset.into(),
        ],
        out: None,
        resumable: false,
        estimate_s: forward_cost(cfg, cfg.class_names.len() as f64 + 1.0),
    }
}
