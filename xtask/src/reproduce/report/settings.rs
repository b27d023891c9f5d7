//! The spec's settings (`docs/algorithms.md` §4–§8) against a preset's: the report's "Settings
//! that differ from the spec" section, each difference with the preset's reason.

use serde::Serialize;

use super::super::plan::PresetConfig;

/// One setting of the spec, and how to read the same setting from a preset.
pub struct SpecSetting {
    /// Short id; a preset's reason names it ([`PresetConfig::reasons`]).
    pub id: &'static str,
    /// What the setting is.
    pub what: &'static str,
    /// The spec's value, as text.
    pub spec: &'static str,
    /// The preset's value, as text in the same form (equal text = no difference).
    pub ours: fn(&PresetConfig) -> String,
}

fn joined<T: ToString>(xs: &[T], sep: &str) -> String {
    xs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

fn capped(cap: usize, patience: usize, min: usize) -> String {
    if patience == 0 {
        format!("{cap}, no early stop")
    } else {
        format!("≤ {cap}, stop after {patience} epochs without a better validation accuracy (at least {min})")
    }
}

/// The spec's settings that a preset chooses, in report order.
pub const SPEC_SETTINGS: &[SpecSetting] = &[
    SpecSetting {
        id: "dataset",
        what: "datasets",
        spec: "cifar10 (new tasks: + svhn)",
        ours: |c| match &c.second_dataset {
            Some(s) => format!("{} (new tasks: + {s})", c.dataset.trim_end_matches("-full")),
            None => c.dataset.trim_end_matches("-full").to_string(),
        },
    },
    SpecSetting {
        id: "width",
        what: "width multiplier of the models",
        spec: "1",
        ours: |c| c.width.to_string(),
    },
    SpecSetting {
        id: "estimators",
        what: "SimCNN estimators (Dirichlet subsets)",
        spec: "10",
        ours: |c| c.estimators.len().to_string(),
    },
    SpecSetting {
        id: "train-epochs",
        what: "training epochs of the estimators and the strong model",
        spec: "200, no early stop",
        ours: |c| capped(c.epochs, c.patience, c.min_epochs),
    },
    SpecSetting {
        id: "train-milestones",
        what: "learning rate ×0.1 from epochs",
        spec: "60, 120",
        ours: |c| {
            if c.milestones.is_empty() {
                "none (constant)".into()
            } else {
                joined(&c.milestones, ", ")
            }
        },
    },
    SpecSetting {
        id: "train-val",
        what: "validation part of each model's training images",
        spec: "20 %",
        ours: |c| format!("{} %", 100.0 * c.val_fraction),
    },
    SpecSetting {
        id: "train-batch",
        what: "training batch",
        spec: "128",
        ours: |c| c.batch.to_string(),
    },
    SpecSetting {
        id: "strong-model",
        what: "strong model whose modules patch (CNNSplitter's decomposed model)",
        spec: "no-BN SimCNN-CS on the full training split",
        ours: |c| {
            format!(
                "SimCNN (BN) width {} on {}",
                c.width,
                c.strong_limit
                    .map_or("the full training split".into(), |l| format!("{l} images"))
            )
        },
    },
    SpecSetting {
        id: "weak-model",
        what: "weak models",
        spec: "one per target class: 9 CIFAR-100 classes + the target, 100 epochs",
        ours: |c| {
            format!(
                "one simcnn-weak on {} images, {} epochs",
                c.weak_limit,
                capped(c.weak_epochs, c.patience, c.min_epochs)
            )
        },
    },
    SpecSetting {
        id: "gs-warmup",
        what: "GradSplitter head-only warm-up epochs",
        spec: "5",
        ours: |c| c.gs_warmup.to_string(),
    },
    SpecSetting {
        id: "gs-epochs",
        what: "GradSplitter epochs after the warm-up",
        spec: "140, no early stop",
        ours: |c| {
            if c.gs_krr_patience == 0 {
                format!("{}, no early stop", c.gs_epochs)
            } else {
                format!(
                    "≤ {}, stop when the mean KRR has not fallen for {} epochs",
                    c.gs_epochs, c.gs_krr_patience
                )
            }
        },
    },
    SpecSetting {
        id: "gs-pattern",
        what: "GradSplitter pattern (mask epochs + head epochs)",
        spec: "5 + 2",
        ours: |c| format!("{} + {}", c.gs_pattern.0, c.gs_pattern.1),
    },
    SpecSetting {
        id: "gs-lambda",
        what: "GradSplitter λ (kernel-loss weight)",
        spec: "0.1",
        ours: |c| c.gs_lambda.to_string(),
    },
    SpecSetting {
        id: "gs-mask-lr",
        what: "GradSplitter mask learning rate",
        spec: "0.001",
        ours: |c| c.gs_mask_lr.to_string(),
    },
    SpecSetting {
        id: "gs-head-lr",
        what: "GradSplitter learning rate of the later head phases",
        spec: "0.001",
        ours: |c| c.gs_head_lr.to_string(),
    },
    SpecSetting {
        id: "gs-mask-head-lr",
        what: "GradSplitter heads' learning rate in mask phases",
        spec: "the mask rate",
        ours: |c| match c.gs_mask_phase_head_lr {
            None => "the mask rate".into(),
            Some(lr) => lr.to_string(),
        },
    },
    SpecSetting {
        id: "gs-images",
        what: "GradSplitter training images",
        spec: "the estimator's whole 80 % training part",
        ours: |c| {
            if c.gs_limit as f64 >= 0.8 * c.train_images as f64 {
                "the estimator's whole 80 % training part".into()
            } else {
                format!("{} of it, class-balanced", c.gs_limit)
            }
        },
    },
    SpecSetting {
        id: "ga-generations",
        what: "CNNSplitter generations",
        spec: "200",
        ours: |c| c.ga_generations.to_string(),
    },
    SpecSetting {
        id: "ga-population",
        what: "CNNSplitter population per class",
        spec: "100",
        ours: |c| c.ga_population.to_string(),
    },
    SpecSetting {
        id: "ga-parents",
        what: "CNNSplitter parents",
        spec: "50",
        ours: |c| c.ga_parents.to_string(),
    },
    SpecSetting {
        id: "ga-keep",
        what: "CNNSplitter solutions kept per generation",
        spec: "20",
        ours: |c| c.ga_keep.to_string(),
    },
    SpecSetting {
        id: "ga-fitness",
        what: "CNNSplitter fitness images",
        spec: "the whole validation split",
        ours: |c| format!("{} images", c.ga_fitness_images),
    },
    SpecSetting {
        id: "ga-choice",
        what: "images that choose CNNSplitter's generation",
        spec: "the fitness images",
        ours: |c| {
            if c.ga_holdout_images == 0 {
                "the fitness images".into()
            } else {
                format!(
                    "{} holdout images the fitness never sees",
                    c.ga_holdout_images
                )
            }
        },
    },
    SpecSetting {
        id: "patch-classes",
        what: "target classes patched",
        spec: "every class",
        ours: |c| {
            if c.patch_classes.len() == c.class_names.len() {
                "every class".into()
            } else {
                format!("classes {}", joined(&c.patch_classes, ", "))
            }
        },
    },
    SpecSetting {
        id: "patch-calibration",
        what: "patch calibration",
        spec: "minmax",
        ours: |c| c.patch_calibration.clone(),
    },
    SpecSetting {
        id: "new-tasks",
        what: "new tasks per architecture",
        spec: "100",
        ours: |c| c.tasks.len().to_string(),
    },
    SpecSetting {
        id: "scratch",
        what: "from-scratch baseline epochs",
        spec: "≤ 100, stop after 5 epochs without a better validation accuracy",
        ours: |c| {
            format!(
                "≤ {}, stop after {} epochs without a better validation accuracy",
                c.scratch_epochs, c.scratch_patience
            )
        },
    },
    SpecSetting {
        id: "inter",
        what: "inter-network combinations",
        spec: "SimCNN–ResCNN, SimCNN–InceCNN, ResCNN–InceCNN, all three",
        ours: |c| format!("SimCNN–{}", arch_label(&c.inter_arch)),
    },
];

fn arch_label(arch: &str) -> &str {
    match arch {
        "rescnn" => "ResCNN",
        "incecnn" => "InceCNN",
        other => other,
    }
}

/// A setting where the preset differs from the spec.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    /// [`SpecSetting::id`].
    pub setting: String,
    /// What the setting is.
    pub what: String,
    /// The spec's value.
    pub spec: String,
    /// The preset's value.
    pub ours: String,
    /// The preset's reason; `None` when it gives none (the report says so).
    pub why: Option<String>,
}

/// Every setting where `cfg` differs from the spec, in [`SPEC_SETTINGS`] order.
pub fn differences(cfg: &PresetConfig) -> Vec<Difference> {
    SPEC_SETTINGS
        .iter()
        .filter_map(|s| {
            let ours = (s.ours)(cfg);
            (ours != s.spec).then(|| Difference {
                setting: s.id.into(),
                what: s.what.into(),
                spec: s.spec.into(),
                ours,
                why: cfg.reason(s.id).map(str::to_string),
            })
        })
        .collect()
}

/// The report section: a table of the differences.
pub fn markdown(diffs: &[Difference]) -> String {
    let mut s = String::from("## Settings that differ from the spec\n\n");
    if diffs.is_empty() {
        s.push_str("None: every setting is the spec's (`docs/algorithms.md`).\n\n");
        return s;
    }
    s.push_str("Generated from the preset's configuration against the spec's values (`docs/algorithms.md` §4–§8), each with the reason the preset states.\n\n| setting | spec | here | why |\n|---|---|---|---|\n");
    for d in diffs {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            d.what,
            d.spec,
            d.ours,
            d.why
                .as_deref()
                .unwrap_or("**no reason given by the preset**")
                .replace('|', "/")
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::plan::Preset;

    #[test]
    fn the_paper_preset_differs_only_where_it_says_why() {
        let cfg = PresetConfig::of(Preset::Paper);
        let diffs = differences(&cfg);
        let ids: Vec<&str> = diffs.iter().map(|d| d.setting.as_str()).collect();
        // the paper preset keeps the spec's schedules and GA sizes
        for kept in [
            "train-epochs",
            "train-milestones",
            "gs-lambda",
            "gs-mask-lr",
            "gs-pattern",
            "ga-generations",
            "ga-keep",
        ] {
            assert!(!ids.contains(&kept), "{kept} differs: {diffs:?}");
        }
        assert!(ids.contains(&"new-tasks"));
        for d in &diffs {
            assert!(d.why.is_some(), "paper: no reason for {}", d.setting);
        }
    }

    #[test]
    fn every_fashion_difference_has_a_reason_and_a_change_shows_up() {
        let mut cfg = PresetConfig::of(Preset::Fashion);
        for d in differences(&cfg) {
            assert!(d.why.is_some(), "fashion: no reason for {}", d.setting);
        }
        // fashion changes λ with a reason; a change without one is reported as such
        assert!(differences(&cfg).iter().any(|d| d.setting == "gs-lambda"));
        cfg.reasons.retain(|(id, _)| id != "gs-lambda");
        let d = differences(&cfg)
            .into_iter()
            .find(|d| d.setting == "gs-lambda")
            .expect("λ 1.0 differs from the spec's 0.1");
        assert_eq!((d.spec.as_str(), d.ours.as_str()), ("0.1", "1"));
        assert_eq!(d.why, None);
        assert!(markdown(&[d]).contains("**no reason given by the preset**"));
    }
}
