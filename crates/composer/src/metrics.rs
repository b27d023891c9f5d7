//! Accuracy and per-class precision, recall and F1 (design §7, §8), with 0/0 defined as 0.

use cnn_models::metrics::ClassMetrics;

use crate::error::{ComposerError, Result};

/// a / b, or 0 with a warning naming `what` when b = 0.
pub(crate) fn ratio_or_zero(a: f64, b: f64, what: &str) -> f64 {
    if b == 0.0 {
        tracing::warn!(metric = what, "0/0 in a metric; defined as 0");
        0.0
    } else {
        a / b
    }
}

/// Warns about each ratio of `m` that was 0/0 (and is defined as 0).
fn warn_undefined_ratios(m: &ClassMetrics) {
    let tp = m.true_positives as f64;
    ratio_or_zero(tp, tp + m.false_positives as f64, "precision");
    ratio_or_zero(tp, tp + m.false_negatives as f64, "recall");
}

/// [`ClassMetrics::from_counts`], warning about every ratio that is 0/0.
pub(crate) fn metrics_of_counts(
    true_positives: usize,
    false_positives: usize,
    false_negatives: usize,
) -> ClassMetrics {
    let m = ClassMetrics::from_counts(true_positives, false_positives, false_negatives);
    warn_undefined_ratios(&m);
    m
}

/// [`ClassMetrics::of_class`], warning about 0/0 ratios.
pub(crate) fn metrics_of_class(
    labels: &[u32],
    predictions: &[u32],
    class: u32,
) -> Result<ClassMetrics> {
    check_same_length(labels, predictions)?;
    let m = ClassMetrics::of_class(labels, predictions, class)
        .map_err(|e| ComposerError::Incompatible(e.to_string()))?;
    warn_undefined_ratios(&m);
    Ok(m)
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
        .map(|c| metrics_of_counts(tp[c], fp[c], fneg[c]))
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
    Ok(metrics_of_counts(tp, fp, fneg))
}
