//! The search settings (design §5.6 defaults), the epoch schedule and the choice of the final
//! epoch (design §5.7).

use serde::{Deserialize, Serialize};

/// How the real-valued masks are initialised (design §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MaskInit {
    /// All ones (every kernel retained at the start).
    #[default]
    Ones,
    /// Samples of N(0, 1) from the splitter stream of the seed.
    Normal,
    /// All zeros (every kernel removed at the start: b = 1[0 > 0] = 0).
    Zeros,
}

/// What is trained in an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Head-only warm-up (λ = 0, warm-up learning rate).
    Warmup,
    /// Masks and heads (λ > 0).
    Mask,
    /// Heads only, masks frozen but applied (λ = 0).
    Head,
}

/// Every number of a GradSplitter search. `Default` gives the paper's values (design §5.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradSplitConfig {
    /// Head-only warm-up epochs H0.
    pub warmup_epochs: usize,
    /// Epochs E_m after the warm-up, run as the repeated [mask × `pattern_mask`, head ×
    /// `pattern_head`] pattern; a last partial pattern is truncated.
    pub mask_epochs: usize,
    /// Mask epochs per pattern.
    pub pattern_mask: usize,
    /// Head epochs per pattern.
    pub pattern_head: usize,
    /// Adam learning rate of the warm-up (heads).
    pub warmup_lr: f64,
    /// Adam learning rate of mask phases (masks and heads).
    pub mask_lr: f64,
    /// Adam learning rate of later head phases.
    pub head_lr: f64,
    /// Adam learning rate of the heads in mask phases; `None` (the spec): the mask rate
    /// `mask_lr`. A large mask rate prunes in few epochs, but at that rate the heads are thrown
    /// off; this keeps them at their own pace (design §5.6).
    #[serde(default)]
    pub mask_phase_head_lr: Option<f64>,
    /// Weight λ of the kernel term in mask phases.
    pub lambda: f64,
    /// Adam β1.
    pub beta1: f64,
    /// Adam β2.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Training mini-batch size (images per module).
    pub batch_size: usize,
    /// Validation batch size (images per module).
    pub eval_batch: usize,
    /// Mask initialisation.
    pub mask_init: MaskInit,
    /// Hidden width of each module head (N → hidden → 1).
    pub head_hidden: usize,
    /// Epochs whose composed accuracy is within `tolerance` (absolute) of the model's are
    /// candidates for the final epoch.
    pub tolerance: f64,
    /// Master seed (head/mask init and data order derive from it).
    pub seed: u64,
    /// Stop the search once the mean KRR has not fallen for this many consecutive mask
    /// epochs ([`krr_stalled`]); 0 = never stop early (run all `mask_epochs`).
    #[serde(default)]
    pub krr_patience: usize,
}

impl Default for GradSplitConfig {
    fn default() -> Self {
        GradSplitConfig {
            warmup_epochs: 5,
            mask_epochs: 140,
            pattern_mask: 5,
            pattern_head: 2,
            warmup_lr: 0.01,
            mask_lr: 0.001,
            head_lr: 0.001,
            mask_phase_head_lr: None,
            lambda: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            batch_size: 64,
            eval_batch: 256,
            mask_init: MaskInit::Ones,
            head_hidden: 10,
            tolerance: 0.01,
            seed: 0,
            krr_patience: 0,
        }
    }
}

impl GradSplitConfig {
    /// The phase of every epoch, in order (warm-up, then the truncated pattern).
    ///
    /// ```
    /// use splitter_grad::{GradSplitConfig, Phase};
    /// let s = GradSplitConfig::default().schedule();
    /// assert_eq!(s.len(), 145);
    /// assert_eq!(s.iter().filter(|p| **p == Phase::Mask).count(), 100);
    /// ```
    pub fn schedule(&self) -> Vec<Phase> {
        let period = self.pattern_mask + self.pattern_head;
        let mut out = vec![Phase::Warmup; self.warmup_epochs];
        for i in 0..self.mask_epochs {
            let pos = if period == 0 { 0 } else { i % period };
            out.push(if pos < self.pattern_mask {
                Phase::Mask
            } else {
                Phase::Head
            });
        }
        out
    }

    /// Total epochs.
    pub fn epochs(&self) -> usize {
        self.warmup_epochs + self.mask_epochs
    }

    /// Learning rate and λ of a phase.
    pub fn phase_params(&self, phase: Phase) -> (f64, f64) {
        match phase {
            Phase::Warmup => (self.warmup_lr, 0.0),
            Phase::Mask => (self.mask_lr, self.lambda),
            Phase::Head => (self.head_lr, 0.0),
        }
    }

    /// Check the settings; errors say which one is wrong.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::GradSplitError::Invalid(m));
        if self.epochs() == 0 {
            return bad("warmup_epochs + mask_epochs must be ≥ 1".into());
        }
        if self.mask_epochs > 0 && self.pattern_mask + self.pattern_head == 0 {
            return bad("the mask/head pattern is empty (pattern_mask + pattern_head = 0)".into());
        }
        if self.batch_size == 0 || self.eval_batch == 0 {
            return bad("batch sizes must be ≥ 1".into());
        }
        if self.head_hidden == 0 {
            return bad("head_hidden must be ≥ 1".into());
        }
        for (name, v) in [
            ("warmup_lr", self.warmup_lr),
            ("mask_lr", self.mask_lr),
            ("head_lr", self.head_lr),
            (
                "mask_phase_head_lr",
                self.mask_phase_head_lr.unwrap_or(self.mask_lr),
            ),
            ("eps", self.eps),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be a positive number, got {v}"));
            }
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return bad(format!("lambda must be ≥ 0, got {}", self.lambda));
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{name} must be in [0, 1), got {v}"));
            }
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return bad(format!("tolerance must be ≥ 0, got {}", self.tolerance));
        }
        Ok(())
    }
}

/// Metrics of one finished epoch of the mask search (a training epoch is
/// [`cnn_models::train::EpochRecord`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Its phase.
    pub phase: Phase,
    /// Mean training loss (CE + λ·K) over the epoch's batches.
    pub train_loss: f64,
    /// Composed validation accuracy acc_e (argmax of the module scores).
    pub val_accuracy: f64,
    /// Mean kernel count k_e over modules (design §5.8).
    pub mean_kernels: f64,
    /// Mean kernel retention rate over modules.
    pub mean_krr: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
    /// Composed balanced validation accuracy (mean per-class recall); absent in records
    /// written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_balanced_accuracy: Option<f64>,
    /// Classes whose module would be collapsed at this epoch (design §13): a physical conv
    /// without a kept kernel in its binary masks, or F1 = 0 in the composed validation
    /// predictions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collapsed_classes: Vec<usize>,
}

impl SearchEpoch {
    /// The epoch's composed validation score under `metric` (balanced accuracy falls back to
    /// accuracy for a record without it).
    pub fn score(&self, metric: SelectionMetric) -> f64 {
        match metric {
            SelectionMetric::Accuracy => self.val_accuracy,
            SelectionMetric::BalancedAccuracy => {
                self.val_balanced_accuracy.unwrap_or(self.val_accuracy)
            }
        }
    }
}

/// The validation score the epoch choice compares (design §5.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionMetric {
    /// Fraction of validation images classified right.
    #[default]
    Accuracy,
    /// Mean per-class recall: used when the validation part is class-imbalanced
    /// ([`IMBALANCE_RATIO`]).
    BalancedAccuracy,
}

/// A validation part whose largest class count exceeds this multiple of its smallest (a class
/// without image counts 0) is *class-imbalanced*, and the epoch choice uses balanced accuracy
/// (design §5.7).
pub const IMBALANCE_RATIO: f64 = 1.5;

/// Whether these labels among `num_classes` classes are class-imbalanced: the largest class
/// count over [`IMBALANCE_RATIO`] × the smallest. The one rule behind the epoch choice's metric
/// and `decompose --limit-sampling auto`.
///
/// ```
/// use splitter_grad::class_imbalanced;
/// assert!(!class_imbalanced(&[0, 0, 0, 1, 1], 2));
/// assert!(class_imbalanced(&[0, 0, 0, 0, 1, 1], 2));
/// ```
pub fn class_imbalanced(labels: &[u32], num_classes: usize) -> bool {
    cnn_models::metrics::class_count_ratio(labels, num_classes) > IMBALANCE_RATIO
}

/// Which images of the training part a decomposition limited to N images keeps (design §5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitSampling {
    /// Class-balanced when the part is [`class_imbalanced`] (a Dirichlet estimator's), else
    /// the first N.
    #[default]
    Auto,
    /// The first N images of the part.
    First,
    /// ⌈N / classes⌉ of every class in turn, in the part's order
    /// ([`cnn_data::class_balanced_prefix`]).
    Balanced,
}

/// The training part `part` (indices into `labels`) cut to `limit` images by `sampling`, and
/// how (`decomposition.json`'s `train_sample`: `first-N`, `class-balanced-M`, or empty when
/// `limit` is `None` or not below the part's size, and the part is kept whole).
///
/// ```
/// use splitter_grad::{limit_training_part, LimitSampling};
/// let labels = [0u16, 0, 0, 0, 0, 0, 1, 1];
/// let part: Vec<usize> = (0..8).collect();
/// let (first, how) = limit_training_part(part.clone(), &labels, 2, Some(4), LimitSampling::First);
/// assert_eq!((first, how.as_str()), (vec![0, 1, 2, 3], "first-4"));
/// let (auto, how) = limit_training_part(part.clone(), &labels, 2, Some(4), LimitSampling::Auto);
/// assert_eq!((auto, how.as_str()), (vec![0, 1, 6, 7], "class-balanced-4"));
/// assert_eq!(limit_training_part(part.clone(), &labels, 2, None, LimitSampling::Auto), (part, String::new()));
/// ```
pub fn limit_training_part(
    mut part: Vec<usize>,
    labels: &[u16],
    num_classes: usize,
    limit: Option<usize>,
    sampling: LimitSampling,
) -> (Vec<usize>, String) {
    let Some(limit) = limit.filter(|&l| l < part.len()) else {
        return (part, String::new());
    };
    let balanced = match sampling {
        LimitSampling::First => false,
        LimitSampling::Balanced => true,
        LimitSampling::Auto => {
            let part_labels: Vec<u32> = part.iter().map(|&i| u32::from(labels[i])).collect();
            class_imbalanced(&part_labels, num_classes)
        }
    };
    if balanced {
        let kept = cnn_data::class_balanced_prefix(&part, labels, limit);
        let how = format!("class-balanced-{}", kept.len());
        (kept, how)
    } else {
        part.truncate(limit);
        (part, format!("first-{limit}"))
    }
}

impl SelectionMetric {
    /// The metric for a validation part with these labels among `num_classes` classes:
    /// balanced accuracy when its class counts are imbalanced ([`IMBALANCE_RATIO`]).
    ///
    /// ```
    /// use splitter_grad::SelectionMetric;
    /// assert_eq!(SelectionMetric::for_labels(&[0, 0, 0, 1, 1], 2), SelectionMetric::Accuracy);
    /// assert_eq!(SelectionMetric::for_labels(&[0, 0, 0, 0, 1, 1], 2), SelectionMetric::BalancedAccuracy);
    /// ```
    pub fn for_labels(labels: &[u32], num_classes: usize) -> Self {
        if class_imbalanced(labels, num_classes) {
            SelectionMetric::BalancedAccuracy
        } else {
            SelectionMetric::Accuracy
        }
    }
}

/// Whether the mean KRR has stalled: over the mask epochs of `log` (head and warm-up epochs do
/// not change the masks), the last `patience` in a row did not bring the mean KRR below the
/// lowest one before them by more than 1e-9. The lowest starts at the warm-up's KRR. Never
/// with `patience` 0.
///
/// ```
/// use splitter_grad::{krr_stalled, Phase, SearchEpoch};
/// let rec = |phase, mean_krr| SearchEpoch { epoch: 0, phase, train_loss: 0.0, val_accuracy: 0.0,
///     mean_kernels: 0.0, mean_krr, seconds: 0.0, val_balanced_accuracy: None,
///     collapsed_classes: vec![] };
/// let log = [rec(Phase::Warmup, 1.0), rec(Phase::Mask, 0.8), rec(Phase::Mask, 0.8),
///     rec(Phase::Head, 0.8), rec(Phase::Mask, 0.8)];
/// assert!(krr_stalled(&log, 2));
/// assert!(!krr_stalled(&log, 3));
/// assert!(!krr_stalled(&log[..3], 2));
/// ```
pub fn krr_stalled(log: &[SearchEpoch], patience: usize) -> bool {
    if patience == 0 {
        return false;
    }
    let mut lowest = f64::INFINITY;
    let mut stalled = 0;
    for r in log {
        match r.phase {
            Phase::Warmup => lowest = lowest.min(r.mean_krr),
            Phase::Head => {}
            Phase::Mask => {
                if r.mean_krr < lowest - 1e-9 {
                    lowest = r.mean_krr;
                    stalled = 0;
                } else {
                    stalled += 1;
                }
            }
        }
    }
    stalled >= patience
}

/// The final-epoch rule of design §5.7, on the validation score `metric` of every epoch and
/// of the model (`model_score`, measured with the same metric).
///
/// Candidates are the epochs with `model_score − score_e < tolerance`. Epochs with a collapsed
/// module (`collapsed_classes` non-empty, design §13) are left out of the candidates when
/// another candidate has none. Among the candidates the fewest mean kernels wins, ties →
/// higher score → earlier epoch. With no candidate, the epoch with the fewest collapsed
/// classes wins, then the highest score (earliest on ties). Returns an index into `log`,
/// `None` for an empty log.
///
/// ```
/// use splitter_grad::{choose_epoch, SearchEpoch, Phase, SelectionMetric};
/// let rec = |epoch, val_accuracy, mean_kernels, collapsed_classes| SearchEpoch {
///     epoch, phase: Phase::Mask, train_loss: 0.0, val_accuracy, mean_kernels, mean_krr: 0.0,
///     seconds: 0.0, val_balanced_accuracy: None, collapsed_classes,
/// };
/// let acc = SelectionMetric::Accuracy;
/// let log = [rec(1, 0.90, 100.0, vec![]), rec(2, 0.895, 60.0, vec![]), rec(3, 0.85, 10.0, vec![])];
/// assert_eq!(choose_epoch(&log, 0.90, 0.01, acc), Some(1));
/// assert_eq!(choose_epoch(&log, 0.99, 0.01, acc), Some(0));
/// // epoch 2 has the fewest kernels but its class-4 module collapsed: epoch 1 is chosen
/// let log = [rec(1, 0.90, 100.0, vec![]), rec(2, 0.895, 60.0, vec![4])];
/// assert_eq!(choose_epoch(&log, 0.90, 0.01, acc), Some(0));
/// ```
pub fn choose_epoch(
    log: &[SearchEpoch],
    model_score: f64,
    tolerance: f64,
    metric: SelectionMetric,
) -> Option<usize> {
    let score = |i: usize| log[i].score(metric);
    let within: Vec<usize> = (0..log.len())
        .filter(|&i| model_score - score(i) < tolerance)
        .collect();
    let clean: Vec<usize> = within
        .iter()
        .copied()
        .filter(|&i| log[i].collapsed_classes.is_empty())
        .collect();
    let candidates = if clean.is_empty() { within } else { clean };
    if candidates.is_empty() {
        let mut best: Option<usize> = None;
        for i in 0..log.len() {
            let better = best.is_none_or(|b| {
                let (ci, cb) = (
                    log[i].collapsed_classes.len(),
                    log[b].collapsed_classes.len(),
                );
                ci < cb || (ci == cb && score(i) > score(b))
            });
            if better {
                best = Some(i);
            }
        }
        return best;
    }
    let mut best = candidates[0];
    for &i in &candidates[1..] {
        let (a, b) = (&log[i], &log[best]);
        if a.mean_kernels < b.mean_kernels
            || (a.mean_kernels == b.mean_kernels && score(i) > score(best))
        {
            best = i;
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, acc: f64, k: f64) -> SearchEpoch {
        SearchEpoch {
            epoch,
            phase: Phase::Mask,
            train_loss: 0.0,
            val_accuracy: acc,
            mean_kernels: k,
            mean_krr: 0.0,
            seconds: 0.0,
            val_balanced_accuracy: None,
            collapsed_classes: vec![],
        }
    }

    fn collapsed(mut r: SearchEpoch, classes: &[usize]) -> SearchEpoch {
        r.collapsed_classes = classes.to_vec();
        r
    }

    const ACC: SelectionMetric = SelectionMetric::Accuracy;

    #[test]
    fn default_schedule_is_145_epochs() {
        let cfg = GradSplitConfig::default();
        let s = cfg.schedule();
        assert_eq!(s.len(), 145);
        assert!(s[..5].iter().all(|p| *p == Phase::Warmup));
        assert_eq!(s.iter().filter(|p| **p == Phase::Mask).count(), 100);
        assert_eq!(s.iter().filter(|p| **p == Phase::Head).count(), 40);
        assert_eq!(
            &s[5..12],
            &[
                Phase::Mask,
                Phase::Mask,
                Phase::Mask,
                Phase::Mask,
                Phase::Mask,
                Phase::Head,
                Phase::Head
            ]
        );
        assert_eq!(s.last(), Some(&Phase::Head));
    }

    #[test]
    fn non_multiple_of_seven_truncates_the_last_pattern() {
        let cfg = GradSplitConfig {
            mask_epochs: 10,
            ..Default::default()
        };
        let s = cfg.schedule();
        assert_eq!(s.len(), 15);
        let tail: Vec<Phase> = s[5..].to_vec();
        use Phase::{Head as H, Mask as M};
        assert_eq!(tail, vec![M, M, M, M, M, H, H, M, M, M]);
        let cfg = GradSplitConfig {
            mask_epochs: 13,
            warmup_epochs: 0,
            ..Default::default()
        };
        assert_eq!(
            cfg.schedule().iter().filter(|p| **p == Phase::Mask).count(),
            10
        );
    }

    #[test]
    fn epoch_choice_rule() {
        // model accuracy 0.90: candidates are > 0.89
        let log = vec![
            rec(1, 0.91, 300.0),
            rec(2, 0.895, 200.0),
            rec(3, 0.90, 200.0), // same kernels as epoch 2, more accurate → wins the tie
            rec(4, 0.85, 50.0),  // fewest kernels but not a candidate
            rec(5, 0.90, 200.0), // full tie with epoch 3 → earlier epoch kept
        ];
        assert_eq!(choose_epoch(&log, 0.90, 0.01, ACC), Some(2));
        // exactly 1 pp below is not a candidate (strict <)
        let log2 = vec![rec(1, 0.80, 10.0), rec(2, 0.95, 100.0)];
        assert_eq!(choose_epoch(&log2, 0.96, 0.01, ACC), Some(1));
        // no candidate → most accurate, earliest on ties
        let log3 = vec![rec(1, 0.5, 10.0), rec(2, 0.7, 100.0), rec(3, 0.7, 5.0)];
        assert_eq!(choose_epoch(&log3, 0.99, 0.01, ACC), Some(1));
        assert_eq!(choose_epoch(&[], 0.9, 0.01, ACC), None);
    }

    #[test]
    fn an_epoch_with_a_collapsed_module_is_not_chosen_when_a_clean_one_is_within_tolerance() {
        // model 0.90: epochs 2 and 4 are the leanest candidates but have a collapsed module
        let log = vec![
            rec(1, 0.91, 300.0),
            collapsed(rec(2, 0.90, 100.0), &[3]),
            rec(3, 0.895, 200.0),
            collapsed(rec(4, 0.90, 50.0), &[1, 3]),
        ];
        assert_eq!(choose_epoch(&log, 0.90, 0.01, ACC), Some(2));
        // a collapsed epoch outside the tolerance changes nothing
        let log = vec![rec(1, 0.90, 300.0), collapsed(rec(2, 0.5, 10.0), &[0])];
        assert_eq!(choose_epoch(&log, 0.90, 0.01, ACC), Some(0));
    }

    #[test]
    fn when_every_candidate_is_collapsed_the_rule_runs_on_all_of_them() {
        let log = vec![
            collapsed(rec(1, 0.90, 300.0), &[2]),
            collapsed(rec(2, 0.90, 100.0), &[2, 3]),
            rec(3, 0.70, 10.0), // clean but not a candidate
        ];
        assert_eq!(choose_epoch(&log, 0.90, 0.01, ACC), Some(1));
        // no candidate at all: fewest collapsed classes first, then the most accurate
        let log = vec![
            collapsed(rec(1, 0.80, 300.0), &[2]),
            rec(2, 0.60, 100.0),
            rec(3, 0.65, 100.0),
        ];
        assert_eq!(choose_epoch(&log, 0.99, 0.01, ACC), Some(2));
    }

    #[test]
    fn balanced_accuracy_chooses_when_asked() {
        let with_balanced = |mut r: SearchEpoch, b: f64| {
            r.val_balanced_accuracy = Some(b);
            r
        };
        // accuracy says epoch 2 is within 1 pp of the model; balanced accuracy says it lost
        // 20 pp (a minority class collapsed to the majority)
        let log = vec![
            with_balanced(rec(1, 0.90, 300.0), 0.80),
            with_balanced(rec(2, 0.90, 100.0), 0.60),
        ];
        assert_eq!(choose_epoch(&log, 0.90, 0.01, ACC), Some(1));
        let balanced = SelectionMetric::BalancedAccuracy;
        assert_eq!(choose_epoch(&log, 0.80, 0.01, balanced), Some(0));
        assert_eq!(
            serde_json::to_value(balanced).unwrap(),
            serde_json::json!("balanced-accuracy")
        );
    }

    #[test]
    fn krr_patience_counts_mask_epochs_without_a_new_low() {
        let at = |phase, krr| SearchEpoch {
            phase,
            mean_krr: krr,
            ..rec(0, 0.0, 0.0)
        };
        use Phase::{Head as H, Mask as M, Warmup as W};
        let log = vec![
            at(W, 1.0),
            at(M, 0.9),
            at(M, 0.9),
            at(H, 0.9),
            at(M, 0.85),
            at(M, 0.85),
            at(H, 0.85),
            at(M, 0.85 + 1e-12),
        ];
        assert!(!krr_stalled(&log[..5], 1));
        assert!(krr_stalled(&log[..6], 1));
        assert!(!krr_stalled(&log[..6], 2));
        assert!(krr_stalled(&log, 2));
        assert!(!krr_stalled(&log, 3));
        assert!(!krr_stalled(&log, 0));
        // a warm-up only log has nothing to stall
        assert!(!krr_stalled(&log[..1], 1));
    }

    #[test]
    fn config_round_trips_and_validates() {
        let cfg = GradSplitConfig::default();
        let back: GradSplitConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert!(cfg.validate().is_ok());
        assert!(GradSplitConfig {
            batch_size: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
