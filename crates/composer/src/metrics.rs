//! Accuracy and per-class precision, recall and F1 (design §7, §8), with 0/0 defined as 0.

use serde::{Deserialize, Serialize};

use crate::error::{ComposerError, Result};

/// Precision, recall and F1 of one class treated as class-vs-rest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// tp / (tp + fp); 0 when nothing was predicted positive.
    pub precision: f64,
    /// tp / (tp + fn); 0 when nothing is actually positive.
    pub recall: f64,
    /// 2·P·R / (P + R); 0 when P + R = 0.
    pub f1: f64,
    /// Positives predicted positive.
    pub true_positives: usize,
    /// Negatives predicted positive.
    pub false_positives: usize,
    /// Positives predicted negative.
    pub false_negatives: usize,
}

/// a / b, or 0 with a warning naming `what` when b = 0.
pub(crate) fn ratio_or_zero(a: f64, b: f64, what: &str) -> f64 {
    if b == 0.0 {
        tracing::warn!(metric = what, "0/0 in a metric; defined as 0");
        0.0
    } else {
        a / b
    }
}

impl ClassMetrics {
    /// Metrics from confusion counts; every 0/0 is 0 (with a tracing warning).
    pub fn from_counts(
        true_positives: usize,
        false_positives: usize,
        false_negatives: usize,
    ) -> Self {
        let tp = true_positives as f64;
        let precision = ratio_or_zero(tp, tp + false_positives as f64, "precision");
        let recall = ratio_or_zero(tp, tp + false_negatives as f64, "recall");
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Self {
            precision,
            recall,
            f1,
            true_positives,
            false_positives,
            false_negatives,
        }
    }

    /// Class-vs-rest metrics of `class` from labels and predictions.
    pub fn of_class(labels: &[u32], predictions: &[u32], class: u32) -> Result<Self> {
        check_same_length(labels, predictions)?;
        let (mut tp, mut fp, mut fneg) = (0, 0, 0);
        for (&y, &p) in labels.iter().zip(predictions) {
            match (y == class, p == class) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fneg += 1,
                (false, false) => {}
            }
        }
        Ok(Self::from_counts(tp, fp, fneg))
    }
}

fn check_same_length(labels: &[u32], predictions: &[u32]) -> Result<()> {
    if labels.len() != predictions.len() {
        return Err(ComposerError::LengthMismatch {
            what: "predictions (one per label)",
            expected: labels.len(),
            found: predictions.len(),
        });
    }
    Ok(())
}

/// Fraction of predictions equal to their label; 0 (with a warning) for no images.
pub fn accuracy(labels: &[u32], predictions: &[u32]) -> Result<f64> {
    check_same_length(labels, predictions)?;
    let correct = labels
        .iter()
        .zip(predictions)
        .filter(|(y, p)| y == p)
        .count();
    Ok(ratio_or_zero(
        correct as f64,
        labels.len() as f64,
        "accuracy",
    ))
}

/// Class-vs-rest metrics of every class `0..num_classes`; labels and predictions must be
/// below `num_classes`.
pub fn class_metrics(
    labels: &[u32],
    predictions: &[u32],
    num_classes: usize,
) -> Result<Vec<ClassMetrics>> {
    check_same_length(labels, predictions)?;
    for values in [labels, predictions] {
        if let Some((index, &label)) = values
            .iter()
            .enumerate()
            .find(|(_, &v)| v as usize >= num_classes)
        {
            return Err(ComposerError::LabelOutOfRange {
                label,
                index,
                classes: num_classes,
            });
        }
    }
    let mut tp = vec![0usize; num_classes];
    let mut fp = vec![0usize; num_classes];
    let mut fneg = vec![0usize; num_classes];
    for (&y, &p) in labels.iter().zip(predictions) {
        if y == p {
            tp[y as usize] += 1;
        } else {
            fp[p as usize] += 1;
            fneg[y as usize] += 1;
        }
    }
    Ok((0..num_classes)
        .map(|c| ClassMetrics::from_counts(tp[c], fp[c], fneg[c]))
        .collect())
}

/// Metrics of a module as a binary classifier of `class` (design §8): an image is predicted
/// positive ⇔ its score > 0.5, and is actually positive ⇔ its label is `class`.
pub fn binary_module_metrics(scores: &[f32], labels: &[u32], class: u32) -> Result<ClassMetrics> {
    if scores.len() != labels.len() {
        return Err(ComposerError::LengthMismatch {
            what: "module scores (one per label)",
            expected: labels.len(),
            found: scores.len(),
        });
    }
    if let Some(index) = scores.iter().position(|v| v.is_nan()) {
        return Err(ComposerError::NotFinite {
            what: "module score",
            index,
        });
    }
    let (mut tp, mut fp, mut fneg) = (0, 0, 0);
    for (&s, &y) in scores.iter().zip(labels) {
        match (y == class, s > 0.5) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fneg += 1,
            (false, false) => {}
        }
    }
    Ok(ClassMetrics::from_counts(tp, fp, fneg))
}
