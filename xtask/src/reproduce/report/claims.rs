//! The paper's claims, checked by code: for each, our figure, the paper's, and a verdict from
//! criteria fixed here before any run (design §13).
//!
//! A comparison is **voided** (verdict *not tested*, with the reason) when
//! - a baseline's accuracy is within [`MAJORITY_MARGIN`] of the majority-class share of the
//!   images it is measured on (a near-constant predictor proves nothing);
//! - a compared composed model is within [`CHANCE_MARGIN`] of chance (1 / classes);
//! - a compared decomposition has a collapsed module ([`cnn_models::module::Collapse`]);
//! - a CNNSplitter run never rose [`GA_RISE`] above chance.
//!
//! Where a claim averages over items (patches, new tasks), the items that rest on a collapsed
//! module or a voided baseline are excluded and the reason says how many; the claim is *not
//! tested* when none is left. Otherwise the verdict is *holds* or *does not hold* as the
//! numbers say, by the rule each `*_claim` function documents.

use serde::Serialize;

/// A baseline within this many accuracy points (fraction) of the majority-class share voids a
/// comparison.
pub const MAJORITY_MARGIN: f64 = 0.05;
/// A composed model within this many accuracy points (fraction) of chance voids a comparison.
pub const CHANCE_MARGIN: f64 = 0.10;
/// A CNNSplitter run whose composed accuracy never rose this far (fraction) above chance voids
/// every comparison with its modules.
pub const GA_RISE: f64 = 0.10;
/// The paper: GradSplitter modules keep 19.88 % fewer kernels than CNNSplitter's.
pub const PAPER_KERNEL_REDUCTION_PCT: f64 = 19.88;
/// The paper (TOSEM): patching with GradSplitter modules, mean target precision, recall, F1
/// change.
pub const PAPER_PATCH_GRAD: [f64; 3] = [17.13, 4.95, 11.47];
/// The paper (ASE): patching with CNNSplitter modules, mean target precision and recall change.
pub const PAPER_PATCH_GA: [f64; 2] = [12.54, 2.14];
/// The paper: modules composed into a new task are on average 2.46 % below a model trained
/// from scratch.
pub const PAPER_NEW_TASK_GAP_PP: f64 = 2.46;

/// A claim's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Our numbers meet the claim's criterion.
    Holds,
    /// Our numbers were measured validly and miss the criterion.
    DoesNotHold,
    /// No valid comparison: the reason says which rule voided it or what is missing.
    NotTested,
}

impl Verdict {
    /// The word the report prints.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::NotTested => "not tested",
        }
    }
}

/// One checked claim, as `results.json`'s `claims` list holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claim {
    /// The paper's claim, in words.
    pub claim: String,
    /// Our figure.
    pub ours: String,
    /// The paper's figure.
    pub paper: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why: the criterion met or missed, or the rule that voided the comparison.
    pub reason: String,
}

/// What the claims need of one decomposition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecompositionFacts {
    /// `grad` or `ga`.
    pub method: String,
    /// Model name.
    pub model: String,
    /// Classes of the model.
    pub classes: usize,
    /// The model's test accuracy (fraction).
    pub model_accuracy: Option<f64>,
    /// The composed modules' test accuracy (fraction).
    pub composed_accuracy: Option<f64>,
    /// Mean kernels per module.
    pub mean_kernels: f64,
    /// Collapsed modules: `class name: reasons`.
    pub collapsed: Vec<String>,
    /// CNNSplitter: the best composed accuracy of any generation (fraction).
    pub search_best: Option<f64>,
    /// CNNSplitter: the run's own near-chance flag, where its record has one.
    pub near_chance: Option<bool>,
}

impl DecompositionFacts {
    fn loss_pp(&self) -> Option<f64> {
        Some(100.0 * (self.model_accuracy? - self.composed_accuracy?))
    }

    fn label(&self) -> String {
        format!(
            "{} of {}",
            if self.method == "ga" {
                "CNNSplitter"
            } else {
                "GradSplitter"
            },
            self.model
        )
    }
}

/// One patch: the module's method, class, collapse reasons and the target's changes (pp).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatchFacts {
    /// `grad` or `ga`.
    pub method: String,
    /// Target class name.
    pub class: String,
    /// The module's collapse reasons (empty: fine).
    pub collapsed: Vec<String>,
    /// Target precision change, pp.
    pub delta_precision: f64,
    /// Target recall change, pp.
    pub delta_recall: f64,
    /// Target F1 change, pp.
    pub delta_f1: f64,
    /// Accuracy change on the other classes, pp.
    pub delta_other: Option<f64>,
}

/// The weak model that the patches patch, as a baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// Its name in the report.
    pub name: String,
    /// Its test accuracy (fraction).
    pub accuracy: f64,
    /// The majority-class share of its test images (fraction).
    pub majority_share: f64,
}

/// One new task.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewTaskFacts {
    /// Task number.
    pub task: usize,
    /// Classes of the task.
    pub classes: usize,
    /// Composed accuracy on the task's test part (fraction).
    pub composed: f64,
    /// From-scratch accuracy on the same images (fraction).
    pub scratch: f64,
    /// Majority-class share of the task's test part (fraction).
    pub majority_share: f64,
    /// Collapsed source modules: `class name: reasons`.
    pub collapsed: Vec<String>,
}

/// One same-task selection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelectFacts {
    /// `intra` or `inter`.
    pub scope: String,
    /// Classes.
    pub classes: usize,
    /// Best single model's accuracy on the test part (fraction).
    pub best_model: f64,
    /// Composed accuracy on the test part (fraction).
    pub composed: f64,
    /// Majority-class share of the test part (fraction).
    pub majority_share: f64,
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

/// Void reason when `accuracy` is within [`MAJORITY_MARGIN`] of `majority_share`.
pub fn baseline_void(name: &str, accuracy: f64, majority_share: f64) -> Option<String> {
    (accuracy - majority_share < MAJORITY_MARGIN).then(|| {
        format!(
            "the baseline {name} ({}) is within {:.0} pp of the majority-class share ({})",
            pct(accuracy),
            100.0 * MAJORITY_MARGIN,
            pct(majority_share)
        )
    })
}

/// Void reason when a composed `accuracy` over `classes` classes is within [`CHANCE_MARGIN`]
/// of chance.
pub fn chance_void(name: &str, accuracy: f64, classes: usize) -> Option<String> {
    let chance = 1.0 / classes.max(1) as f64;
    (accuracy - chance < CHANCE_MARGIN).then(|| {
        format!(
            "the composed model {name} ({}) is within {:.0} pp of chance ({})",
            pct(accuracy),
            100.0 * CHANCE_MARGIN,
            pct(chance)
        )
    })
}

/// Void reason when a decomposition has a collapsed module.
pub fn collapsed_void(d: &DecompositionFacts) -> Option<String> {
    (!d.collapsed.is_empty()).then(|| {
        format!(
            "{} has {} collapsed module(s) ({})",
            d.label(),
            d.collapsed.len(),
            d.collapsed.join("; ")
        )
    })
}

/// Void reason when a CNNSplitter run never rose [`GA_RISE`] above chance: its own flag where
/// recorded, else its best generation's composed accuracy.
pub fn ga_void(d: &DecompositionFacts) -> Option<String> {
    if d.method != "ga" {
        return None;
    }
    let chance = 1.0 / d.classes.max(1) as f64;
    let never_rose = match (d.near_chance, d.search_best) {
        (Some(flag), _) => flag,
        (None, Some(best)) => best - chance < GA_RISE,
        (None, None) => false,
    };
    never_rose.then(|| {
        format!(
            "the CNNSplitter run on {} never rose {:.0} pp above chance ({}; best composed accuracy of any generation {})",
            d.model,
            100.0 * GA_RISE,
            pct(chance),
            d.search_best.map_or("not recorded".into(), pct)
        )
    })
}

/// Every void reason of a decomposition used in a comparison: collapsed modules, composed
/// accuracy near chance, a CNNSplitter run that never rose above chance.
fn decomposition_voids(d: &DecompositionFacts) -> Vec<String> {
    let mut v: Vec<String> = collapsed_void(d).into_iter().collect();
    if let Some(acc) = d.composed_accuracy {
        v.extend(chance_void(&d.label(), acc, d.classes));
    }
    v.extend(ga_void(d));
    v
}

fn not_tested(claim: &str, ours: String, paper: &str, reasons: Vec<String>) -> Claim {
    Claim {
        claim: claim.into(),
        ours,
        paper: paper.into(),
        verdict: Verdict::NotTested,
        reason: reasons.join("; "),
    }
}

fn decided(claim: &str, ours: String, paper: &str, holds: bool, reason: String) -> Claim {
    Claim {
        claim: claim.into(),
        ours,
        paper: paper.into(),
        verdict: if holds {
            Verdict::Holds
        } else {
            Verdict::DoesNotHold
        },
        reason,
    }
}

/// Claim (a): GradSplitter's modules keep fewer kernels than CNNSplitter's *and* lose less
/// accuracy, on the same model. Holds iff GS mean kernels < GA mean kernels and GS loss < GA
/// loss (the size of the reduction is reported, not required).
pub fn kernels_claim(gs: Option<&DecompositionFacts>, ga: Option<&DecompositionFacts>) -> Claim {
    const CLAIM: &str =
        "GradSplitter modules keep fewer kernels than CNNSplitter's, with less accuracy loss";
    let paper = format!("{PAPER_KERNEL_REDUCTION_PCT:.2} % fewer kernels, less loss");
    let (Some(gs), Some(ga)) = (gs, ga) else {
        return not_tested(
            CLAIM,
            "–".into(),
            &paper,
            vec![
                "no GradSplitter and CNNSplitter decomposition of the same model was recorded"
                    .into(),
            ],
        );
    };
    let reduction = 100.0 * (1.0 - gs.mean_kernels / ga.mean_kernels.max(f64::MIN_POSITIVE));
    let loss = |d: &DecompositionFacts| d.loss_pp().map_or("–".into(), |l| format!("{l:.2} pp"));
    let ours = format!(
        "{reduction:.2} % fewer ({:.1} vs {:.1} kernels per module on {}); loss {} vs {}",
        gs.mean_kernels,
        ga.mean_kernels,
        gs.model,
        loss(gs),
        loss(ga)
    );
    let mut voids = decomposition_voids(gs);
    voids.extend(decomposition_voids(ga));
    if let Some(m) = gs.model_accuracy {
        voids.extend(baseline_void(
            &format!("model {}", gs.model),
            m,
            1.0 / gs.classes.max(1) as f64,
        ));
    }
    let (Some(gs_loss), Some(ga_loss)) = (gs.loss_pp(), ga.loss_pp()) else {
        voids.push("a composition of either decomposition was not recorded".into());
        return not_tested(CLAIM, ours, &paper, voids);
    };
    if !voids.is_empty() {
        return not_tested(CLAIM, ours, &paper, voids);
    }
    let fewer = gs.mean_kernels < ga.mean_kernels;
    let less_loss = gs_loss < ga_loss;
    let reason = format!(
        "criterion: GS kernels < GA kernels ({}) and GS loss < GA loss ({})",
        if fewer { "yes" } else { "no" },
        if less_loss { "yes" } else { "no" }
    );
    decided(CLAIM, ours, &paper, fewer && less_loss, reason)
}

/// Claim (b): patching raises the target class's precision, recall and (GradSplitter) F1.
/// Collapsed modules are excluded; holds iff the mean ΔP and ΔR (and, for GradSplitter, ΔF1)
/// over the remaining patches are all > 0. Voided when the weak model is within
/// [`MAJORITY_MARGIN`] of its majority share, when no patch is left, or when the modules come
/// from a decomposition voided by [`ga_void`].
pub fn patch_claim(
    method: &str,
    patches: &[PatchFacts],
    weak: Option<&Baseline>,
    source: Option<&DecompositionFacts>,
) -> Claim {
    let grad = method == "grad";
    let claim = if grad {
        "patching with GradSplitter modules raises the target class's precision, recall and F1"
    } else {
        "patching with CNNSplitter modules raises the target class's precision and recall"
    };
    let paper = if grad {
        format!(
            "+{:.2} / +{:.2} / +{:.2} (P / R / F1, mean)",
            PAPER_PATCH_GRAD[0], PAPER_PATCH_GRAD[1], PAPER_PATCH_GRAD[2]
        )
    } else {
        format!(
            "+{:.2} / +{:.2} (P / R, mean)",
            PAPER_PATCH_GA[0], PAPER_PATCH_GA[1]
        )
    };
    let mine: Vec<&PatchFacts> = patches.iter().filter(|p| p.method == method).collect();
    let kept: Vec<&PatchFacts> = mine
        .iter()
        .copied()
        .filter(|p| p.collapsed.is_empty())
        .collect();
    let excluded: Vec<&str> = mine
        .iter()
        .filter(|p| !p.collapsed.is_empty())
        .map(|p| p.class.as_str())
        .collect();
    let mean = |f: fn(&PatchFacts) -> f64| {
        (!kept.is_empty()).then(|| kept.iter().map(|p| f(p)).sum::<f64>() / kept.len() as f64)
    };
    let (dp, dr, df1) = (
        mean(|p| p.delta_precision),
        mean(|p| p.delta_recall),
        mean(|p| p.delta_f1),
    );
    let others: Vec<f64> = kept.iter().filter_map(|p| p.delta_other).collect();
    let ours = match (dp, dr, df1) {
        (Some(p), Some(r), Some(f)) => format!(
            "{p:+.2} / {r:+.2} / {f:+.2} pp (P / R / F1, mean of {} patches){}",
            kept.len(),
            if others.is_empty() {
                String::new()
            } else {
                format!(
                    "; other classes {:+.2} pp",
                    others.iter().sum::<f64>() / others.len() as f64
                )
            }
        ),
        _ => "–".into(),
    };
    let exclusion = (!excluded.is_empty()).then(|| {
        format!(
            "{} of {} patches excluded: collapsed module ({})",
            excluded.len(),
            mine.len(),
            excluded.join(", ")
        )
    });
    let mut voids = Vec::new();
    if mine.is_empty() {
        voids.push(format!("no patch with {method} modules was recorded"));
    } else if kept.is_empty() {
        voids.push(format!(
            "every one of the {} modules is collapsed",
            mine.len()
        ));
    }
    if let Some(w) = weak {
        voids.extend(baseline_void(&w.name, w.accuracy, w.majority_share));
    }
    if let Some(src) = source {
        voids.extend(ga_void(src));
    }
    if !voids.is_empty() {
        voids.extend(exclusion);
        return not_tested(claim, ours, &paper, voids);
    }
    let (p, r, f) = (dp.unwrap_or(0.0), dr.unwrap_or(0.0), df1.unwrap_or(0.0));
    let holds = p > 0.0 && r > 0.0 && (!grad || f > 0.0);
    let mut reason = format!(
        "criterion: mean ΔP > 0 and ΔR > 0{} over the non-collapsed modules",
        if grad { " and ΔF1 > 0" } else { "" }
    );
    if let Some(e) = exclusion {
        reason.push_str("; ");
        reason.push_str(&e);
    }
    decided(claim, ours, &paper, holds, reason)
}

/// Claim (c): modules composed into a new task come within 2.46 % of a model trained from
/// scratch. Tasks with a collapsed source module, a from-scratch baseline within
/// [`MAJORITY_MARGIN`] of the majority share, or a composed model within [`CHANCE_MARGIN`] of
/// chance are excluded; holds iff the mean (composed − scratch) over the rest is ≥ −2.46 pp.
pub fn new_task_claim(tasks: &[NewTaskFacts]) -> Claim {
    const CLAIM: &str =
        "modules composed into a new task come within 2.46 % of a model trained from scratch";
    let paper = format!("−{PAPER_NEW_TASK_GAP_PP:.2} % (mean composed − scratch)");
    let mut excluded = Vec::new();
    let mut diffs = Vec::new();
    for t in tasks {
        let mut why: Vec<String> = Vec::new();
        if !t.collapsed.is_empty() {
            why.push(format!(
                "collapsed source module ({})",
                t.collapsed.join("; ")
            ));
        }
        why.extend(baseline_void("from scratch", t.scratch, t.majority_share));
        why.extend(chance_void("", t.composed, t.classes).map(|_| {
            format!(
                "composed {} within {:.0} pp of chance",
                pct(t.composed),
                100.0 * CHANCE_MARGIN
            )
        }));
        if why.is_empty() {
            diffs.push(100.0 * (t.composed - t.scratch));
        } else {
            excluded.push(format!("task {}: {}", t.task, why.join(", ")));
        }
    }
    let mean = (!diffs.is_empty()).then(|| diffs.iter().sum::<f64>() / diffs.len() as f64);
    let ours = mean.map_or("–".into(), |m| {
        format!(
            "{m:+.2} pp (mean of {} of {} tasks)",
            diffs.len(),
            tasks.len()
        )
    });
    if tasks.is_empty() {
        return not_tested(CLAIM, ours, &paper, vec!["no new task was recorded".into()]);
    }
    let Some(m) = mean else {
        return not_tested(
            CLAIM,
            ours,
            &paper,
            vec![format!("every task is excluded: {}", excluded.join("; "))],
        );
    };
    let mut reason = format!("criterion: mean composed − scratch ≥ −{PAPER_NEW_TASK_GAP_PP:.2} pp");
    if !excluded.is_empty() {
        reason.push_str(&format!(
            "; {} of {} tasks excluded: {}",
            excluded.len(),
            tasks.len(),
            excluded.join("; ")
        ));
    }
    decided(CLAIM, ours, &paper, m >= -PAPER_NEW_TASK_GAP_PP, reason)
}

/// Claims (d) and (e): composing the best module per class of several models beats the best
/// of those models on the same task (intra- or inter-network). Voided when a compared
/// decomposition has a collapsed module, the best model is within [`MAJORITY_MARGIN`] of the
/// majority share, or the composed model is within [`CHANCE_MARGIN`] of chance; holds iff
/// composed accuracy > best model accuracy.
pub fn select_claim(
    scope: &str,
    select: Option<&SelectFacts>,
    compared: &[&DecompositionFacts],
) -> Claim {
    let claim = format!("same-task reuse ({scope}-network) beats the best model");
    let paper = "the composed model beats the best model".to_string();
    let Some(s) = select else {
        return not_tested(
            &claim,
            "–".into(),
            &paper,
            vec![format!("no {scope}-network selection was recorded")],
        );
    };
    let ours = format!(
        "composed {} vs best model {} ({:+.2} pp)",
        pct(s.composed),
        pct(s.best_model),
        100.0 * (s.composed - s.best_model)
    );
    let mut voids: Vec<String> = compared.iter().filter_map(|d| collapsed_void(d)).collect();
    voids.extend(baseline_void("best model", s.best_model, s.majority_share));
    voids.extend(chance_void(
        &format!("{scope}-network composition"),
        s.composed,
        s.classes,
    ));
    if !voids.is_empty() {
        return not_tested(&claim, ours, &paper, voids);
    }
    decided(
        &claim,
        ours,
        &paper,
        s.composed > s.best_model,
        "criterion: composed accuracy > best model's accuracy on the same test part".into(),
    )
}

/// The Markdown "Claims" section.
pub fn markdown(claims: &[Claim]) -> String {
    let mut s = String::from("## Claims\n\nEach of the paper's claims against our figure, with a verdict from criteria fixed in code before the run (`xtask/src/reproduce/report/claims.rs`): a comparison is *not tested* when a baseline is within 5 pp of the majority-class share, a compared composed model is within 10 pp of chance, a compared decomposition has a collapsed module, or a CNNSplitter run never rose 10 pp above chance.\n\n| claim | ours | paper | verdict | reason |\n|---|---|---|---|---|\n");
    for c in claims {
        s.push_str(&format!(
            "| {} | {} | {} | **{}** | {} |\n",
            c.claim,
            c.ours,
            c.paper,
            c.verdict.word(),
            c.reason.replace('|', "/")
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decomposition(method: &str, kernels: f64, model: f64, composed: f64) -> DecompositionFacts {
        DecompositionFacts {
            method: method.into(),
            model: "simcnn-strong".into(),
            classes: 10,
            model_accuracy: Some(model),
            composed_accuracy: Some(composed),
            mean_kernels: kernels,
            collapsed: vec![],
            search_best: (method == "ga").then_some(0.85),
            near_chance: None,
        }
    }

    #[test]
    fn healthy_kernel_comparisons_hold_or_not_as_the_numbers_say() {
        let gs = decomposition("grad", 600.0, 0.90, 0.89);
        let ga = decomposition("ga", 800.0, 0.90, 0.86);
        let c = kernels_claim(Some(&gs), Some(&ga));
        assert_eq!(c.verdict, Verdict::Holds, "{c:?}");
        assert!(c.ours.starts_with("25.00 % fewer"), "{}", c.ours);
        // more kernels than the GA: does not hold
        let big = decomposition("grad", 900.0, 0.90, 0.89);
        assert_eq!(
            kernels_claim(Some(&big), Some(&ga)).verdict,
            Verdict::DoesNotHold
        );
        // fewer kernels but more loss: does not hold
        let lossy = decomposition("grad", 600.0, 0.90, 0.80);
        assert_eq!(
            kernels_claim(Some(&lossy), Some(&ga)).verdict,
            Verdict::DoesNotHold
        );
    }

    #[test]
    fn a_collapsed_module_voids_the_kernel_comparison() {
        let mut gs = decomposition("grad", 100.0, 0.90, 0.89);
        gs.collapsed = vec!["Coat: convs [3] kept no kernel".into()];
        let ga = decomposition("ga", 800.0, 0.90, 0.86);
        let c = kernels_claim(Some(&gs), Some(&ga));
        assert_eq!(c.verdict, Verdict::NotTested);
        assert!(c.reason.contains("collapsed module"), "{}", c.reason);
        assert!(c.reason.contains("Coat"), "{}", c.reason);
    }

    #[test]
    fn a_ga_run_that_never_rose_above_chance_voids_its_comparisons() {
        let gs = decomposition("grad", 600.0, 0.90, 0.89);
        // composed test accuracy is fine, but the search's best generation was at 15 %
        let mut ga = decomposition("ga", 800.0, 0.90, 0.86);
        ga.search_best = Some(0.15);
        let c = kernels_claim(Some(&gs), Some(&ga));
        assert_eq!(c.verdict, Verdict::NotTested);
        assert!(
            c.reason.contains("never rose 10 pp above chance"),
            "{}",
            c.reason
        );
        // the run's own flag wins over the computed one
        ga.search_best = Some(0.9);
        ga.near_chance = Some(true);
        assert_eq!(
            kernels_claim(Some(&gs), Some(&ga)).verdict,
            Verdict::NotTested
        );
        ga.near_chance = Some(false);
        ga.search_best = Some(0.15);
        assert_eq!(kernels_claim(Some(&gs), Some(&ga)).verdict, Verdict::Holds);
    }

    #[test]
    fn a_composed_model_near_chance_voids_the_comparison() {
        let gs = decomposition("grad", 600.0, 0.90, 0.89);
        let ga = decomposition("ga", 800.0, 0.90, 0.1537);
        let c = kernels_claim(Some(&gs), Some(&ga));
        assert_eq!(c.verdict, Verdict::NotTested);
        assert!(c.reason.contains("within 10 pp of chance"), "{}", c.reason);
    }

    fn patch(method: &str, class: &str, d: [f64; 3], collapsed: bool) -> PatchFacts {
        PatchFacts {
            method: method.into(),
            class: class.into(),
            collapsed: if collapsed {
                vec!["F1 = 0".into()]
            } else {
                vec![]
            },
            delta_precision: d[0],
            delta_recall: d[1],
            delta_f1: d[2],
            delta_other: Some(-1.0),
        }
    }

    fn weak(accuracy: f64) -> Baseline {
        Baseline {
            name: "weak".into(),
            accuracy,
            majority_share: 0.1,
        }
    }

    #[test]
    fn patch_means_exclude_collapsed_modules_and_say_how_many() {
        let patches = vec![
            patch("grad", "Trouser", [10.0, 2.0, 6.0], false),
            patch("grad", "Bag", [20.0, 4.0, 8.0], false),
            // the collapsed module would pull the means below zero
            patch("grad", "Coat", [-64.0, 92.0, -40.0], true),
        ];
        let c = patch_claim("grad", &patches, Some(&weak(0.7)), None);
        assert_eq!(c.verdict, Verdict::Holds, "{c:?}");
        assert!(
            c.ours.starts_with("+15.00 / +3.00 / +7.00 pp"),
            "{}",
            c.ours
        );
        assert!(c.reason.contains("1 of 3 patches excluded"), "{}", c.reason);
        assert!(c.reason.contains("Coat"), "{}", c.reason);
        // precision falls on average: does not hold
        let falls = vec![patch("grad", "Trouser", [-5.0, 20.0, 3.0], false)];
        assert_eq!(
            patch_claim("grad", &falls, Some(&weak(0.7)), None).verdict,
            Verdict::DoesNotHold
        );
        // every module collapsed: not tested
        let all = vec![patch("grad", "Coat", [1.0, 1.0, 1.0], true)];
        let c = patch_claim("grad", &all, Some(&weak(0.7)), None);
        assert_eq!(c.verdict, Verdict::NotTested);
        assert!(c.reason.contains("collapsed"), "{}", c.reason);
    }

    #[test]
    fn a_weak_model_at_the_majority_share_voids_patching() {
        let patches = vec![patch("grad", "Trouser", [10.0, 2.0, 6.0], false)];
        let c = patch_claim("grad", &patches, Some(&weak(0.13)), None);
        assert_eq!(c.verdict, Verdict::NotTested);
        assert!(c.reason.contains("majority-class share"), "{}", c.reason);
    }

    #[test]
    fn a_constant_scratch_baseline_voids_its_new_task() {
        // the old fashion run: 90.909 % = 800/880, the Fashion share of the test part
        let constant = NewTaskFacts {
            task: 0,
            classes: 2,
            composed: 0.8841,
            scratch: 800.0 / 880.0,
            majority_share: 800.0 / 880.0,
            collapsed: vec![],
        };
        let c = new_task_claim(std::slice::from_ref(&constant));
        assert_eq!(c.verdict, Verdict::NotTested);
        assert!(c.reason.contains("majority-class share"), "{}", c.reason);
        // a healthy task within 2.46 pp holds; one 5 pp below does not
        let healthy = NewTaskFacts {
            task: 1,
            scratch: 0.97,
            composed: 0.96,
            ..constant.clone()
        };
        let c = new_task_claim(&[constant.clone(), healthy.clone()]);
        assert_eq!(c.verdict, Verdict::Holds, "{c:?}");
        assert!(c.reason.contains("1 of 2 tasks excluded"), "{}", c.reason);
        let far = NewTaskFacts {
            composed: 0.92,
            ..healthy.clone()
        };
        assert_eq!(new_task_claim(&[far]).verdict, Verdict::DoesNotHold);
        // a collapsed source module excludes its task
        let collapsed = NewTaskFacts {
            collapsed: vec!["Trouser: F1 = 0".into()],
            ..healthy
        };
        assert_eq!(new_task_claim(&[collapsed]).verdict, Verdict::NotTested);
    }

    #[test]
    fn selection_claims_follow_the_gain_and_the_voiding_rules() {
        let s = SelectFacts {
            scope: "intra".into(),
            classes: 10,
            best_model: 0.85,
            composed: 0.87,
            majority_share: 0.1,
        };
        let gs = decomposition("grad", 600.0, 0.85, 0.84);
        assert_eq!(
            select_claim("intra", Some(&s), &[&gs]).verdict,
            Verdict::Holds
        );
        let worse = SelectFacts {
            composed: 0.70,
            ..s.clone()
        };
        assert_eq!(
            select_claim("inter", Some(&worse), &[&gs]).verdict,
            Verdict::DoesNotHold
        );
        let mut collapsed = gs.clone();
        collapsed.collapsed = vec!["Coat: F1 = 0".into()];
        let c = select_claim("intra", Some(&s), &[&gs, &collapsed]);
        assert_eq!(c.verdict, Verdict::NotTested);
        assert!(c.reason.contains("collapsed"), "{}", c.reason);
        let chance = SelectFacts {
            composed: 0.15,
            best_model: 0.12,
            ..s
        };
        let c = select_claim("intra", Some(&chance), &[&gs]);
        assert_eq!(c.verdict, Verdict::NotTested);
        assert!(c.reason.contains("majority-class share") && c.reason.contains("chance"));
        assert_eq!(select_claim("inter", None, &[]).verdict, Verdict::NotTested);
    }

    #[test]
    fn verdicts_serialise_as_the_documented_words() {
        assert_eq!(
            serde_json::to_value([Verdict::Holds, Verdict::DoesNotHold, Verdict::NotTested])
                .unwrap(),
            serde_json::json!(["holds", "does-not-hold", "not-tested"])
        );
    }
}
