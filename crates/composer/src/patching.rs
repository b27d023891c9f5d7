//! Patching a weak model with one strong-model module (design §7).

use cnn_models::metrics::{argmax_rows, ClassMetrics};
use serde::{Deserialize, Serialize};

use crate::calibration::Calibration;
use crate::error::{ComposerError, Result};
use crate::metrics::{metrics_of_class, ratio_or_zero};

/// Row-wise softmax of row-major logits `[n, columns]`, computed in f64 with the row maximum
/// subtracted.
pub fn softmax_rows(logits: &[f32], columns: usize) -> Result<Vec<f64>> {
    check_logits(logits, columns)?;
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(columns) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        out.extend(exps.iter().map(|e| e / sum));
    }
    Ok(out)
}

fn check_logits(logits: &[f32], columns: usize) -> Result<()> {
    if columns == 0 {
        return Err(ComposerError::Empty {
            what: "weak-model class list",
        });
    }
    if !logits.len().is_multiple_of(columns) {
        return Err(ComposerError::LengthMismatch {
            what: "weak logits (a multiple of the class count)",
            expected: logits.len().div_ceil(columns) * columns,
            found: logits.len(),
        });
    }
    if let Some(index) = logits.iter().position(|v| !v.is_finite()) {
        return Err(ComposerError::NotFinite {
            what: "weak logit",
            index,
        });
    }
    Ok(())
}

/// How a module patches a weak model: p = softmax(weak logits), column `target_column` of p
/// replaced by the module's calibrated score, prediction = argmax (ties → lowest column).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchRule {
    /// The weak model's target-class column (the last one in the spec's tasks).
    pub target_column: usize,
    /// Calibration of the module's raw score.
    pub calibration: Calibration,
    /// Clip the calibrated score to [0, 1] (off = reference behaviour).
    pub clip: bool,
}

impl PatchRule {
    /// A rule replacing the last of `num_weak_classes` columns, as in the spec's tasks.
    pub fn last_column(num_weak_classes: usize, calibration: Calibration, clip: bool) -> Self {
        Self {
            target_column: num_weak_classes.saturating_sub(1),
            calibration,
            clip,
        }
    }

    fn check(
        &self,
        weak_logits: &[f32],
        num_weak_classes: usize,
        module_scores: &[f32],
    ) -> Result<()> {
        check_logits(weak_logits, num_weak_classes)?;
        if self.target_column >= num_weak_classes {
            return Err(ComposerError::ColumnOutOfRange {
                column: self.target_column,
                columns: num_weak_classes,
            });
        }
        let images = weak_logits.len() / num_weak_classes;
        if module_scores.len() != images {
            return Err(ComposerError::LengthMismatch {
                what: "module scores (one per weak-model row)",
                expected: images,
                found: module_scores.len(),
            });
        }
        if let Some(index) = module_scores.iter().position(|v| v.is_nan()) {
            return Err(ComposerError::NotFinite {
                what: "module score",
                index,
            });
        }
        self.calibration.validate()
    }

    /// The patched score matrix `[n, num_weak_classes]` (row-major): the weak model's softmax
    /// with the target column replaced by the calibrated module score.
    pub fn patched_scores(
        &self,
        weak_logits: &[f32],
        num_weak_classes: usize,
        module_scores: &[f32],
    ) -> Result<Vec<f64>> {
        self.check(weak_logits, num_weak_classes, module_scores)?;
        let mut p = softmax_rows(weak_logits, num_weak_classes)?;
        for (row, &score) in p.chunks_mut(num_weak_classes).zip(module_scores) {
            row[self.target_column] = self.calibration.apply(score, self.clip);
        }
        Ok(p)
    }

    /// Predictions of the patched model.
    pub fn predict(
        &self,
        weak_logits: &[f32],
        num_weak_classes: usize,
        module_scores: &[f32],
    ) -> Result<Vec<u32>> {
        let p = self.patched_scores(weak_logits, num_weak_classes, module_scores)?;
        Ok(argmax_rows(&p, num_weak_classes))
    }
}

/// Predictions of the unpatched weak model: argmax of its softmax (ties → lowest column).
pub fn weak_predictions(weak_logits: &[f32], num_weak_classes: usize) -> Result<Vec<u32>> {
    let p = softmax_rows(weak_logits, num_weak_classes)?;
    Ok(argmax_rows(&p, num_weak_classes))
}

/// One metric before and after patching.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricChange {
    /// Value before patching, in [0, 1].
    pub before: f64,
    /// Value after patching, in [0, 1].
    pub after: f64,
    /// (after − before) × 100, in percentage points.
    pub delta_pp: f64,
    /// (after − before) / before × 100, in percent; `None` when `before` is 0.
    pub relative_percent: Option<f64>,
}

impl MetricChange {
    /// The change from `before` to `after`.
    pub fn new(before: f64, after: f64) -> Self {
        Self {
            before,
            after,
            delta_pp: (after - before) * 100.0,
            relative_percent: (before != 0.0).then(|| (after - before) / before * 100.0),
        }
    }
}

/// Effect of a patch on the weak task's test set (design §7 metrics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchReport {
    /// Label of the target class.
    pub target_class: u32,
    /// Target-class precision (TC vs rest).
    pub precision: MetricChange,
    /// Target-class recall.
    pub recall: MetricChange,
    /// Target-class F1.
    pub f1: MetricChange,
    /// Accuracy on the images whose label is not the target class.
    pub non_target_accuracy: MetricChange,
    /// Metrics before patching; serialised with its confusion counts.
    #[serde(with = "with_counts")]
    pub target_before: ClassMetrics,
    /// Metrics after patching; serialised with its confusion counts.
    #[serde(with = "with_counts")]
    pub target_after: ClassMetrics,
    /// Test images.
    pub images: usize,
    /// Test images of the target class.
    pub target_images: usize,
}

impl PatchReport {
    /// Compares predictions before and after patching against `labels`.
    pub fn compute(
        labels: &[u32],
        before: &[u32],
        after: &[u32],
        target_class: u32,
    ) -> Result<Self> {
        for (what, preds) in [
            ("predictions before patching", before),
            ("predictions after patching", after),
        ] {
            if preds.len() != labels.len() {
                return Err(ComposerError::LengthMismatch {
                    what,
                    expected: labels.len(),
                    found: preds.len(),
                });
            }
        }
        let target_before = metrics_of_class(labels, before, target_class)?;
        let target_after = metrics_of_class(labels, after, target_class)?;
        let non_target = |preds: &[u32]| {
            let (mut correct, mut total) = (0usize, 0usize);
            for (&y, &p) in labels.iter().zip(preds) {
                if y != target_class {
                    total += 1;
                    correct += usize::from(y == p);
                }
            }
            ratio_or_zero(correct as f64, total as f64, "non-target accuracy")
        };
        Ok(Self {
            target_class,
            precision: MetricChange::new(target_before.precision, target_after.precision),
            recall: MetricChange::new(target_before.recall, target_after.recall),
            f1: MetricChange::new(target_before.f1, target_after.f1),
            non_target_accuracy: MetricChange::new(non_target(before), non_target(after)),
            target_before,
            target_after,
            images: labels.len(),
            target_images: labels.iter().filter(|&&y| y == target_class).count(),
        })
    }
}

/// Patches the weak model and reports the effect: returns the patched predictions and the
/// report, the target class being `rule.target_column`.
pub fn patch_and_report(
    labels: &[u32],
    weak_logits: &[f32],
    num_weak_classes: usize,
    module_scores: &[f32],
    rule: &PatchRule,
) -> Result<(Vec<u32>, PatchReport)> {
    let after = rule.predict(weak_logits, num_weak_classes, module_scores)?;
    let before = weak_predictions(weak_logits, num_weak_classes)?;
    let report = PatchReport::compute(labels, &before, &after, rule.target_column as u32)?;
    Ok((after, report))
}

/// Serialises a [`ClassMetrics`] as precision, recall, F1 and its three confusion counts (the
/// shape a [`PatchReport`] has always had), instead of precision, recall, F1 and support.
mod with_counts {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ClassMetrics;

    #[derive(Serialize, Deserialize)]
    struct Counted {
        precision: f64,
        recall: f64,
        f1: f64,
        true_positives: usize,
        false_positives: usize,
        false_negatives: usize,
    }

    pub fn serialize<S: Serializer>(m: &ClassMetrics, s: S) -> Result<S::Ok, S::Error> {
        Counted {
            precision: m.precision,
            recall: m.recall,
            f1: m.f1,
            true_positives: m.true_positives,
            false_positives: m.false_positives,
            false_negatives: m.false_negatives,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ClassMetrics, D::Error> {
        let c = Counted::deserialize(d)?;
        Ok(ClassMetrics {
            precision: c.precision,
            recall: c.recall,
            f1: c.f1,
            support: c.true_positives + c.false_negatives,
            true_positives: c.true_positives,
            false_positives: c.false_positives,
            false_negatives: c.false_negatives,
        })
    }
}
