//! Classification metrics: accuracy, per-class precision/recall/F1, confusion matrix.
//! A ratio with a zero denominator is defined as 0 (design §7, §11.12), never NaN.

use serde::{Deserialize, Serialize};

/// Precision, recall and F1 of one class (one-vs-rest), with its support.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// TP / (TP + FP), 0 when nothing was predicted as the class.
    pub precision: f64,
    /// TP / (TP + FN), 0 when the class has no samples.
    pub recall: f64,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f64,
    /// Number of samples of the class.
    pub support: usize,
}

/// A confusion matrix: `counts[true][predicted]`.
///
/// ```
/// use cnn_models::metrics::ConfusionMatrix;
/// let m = ConfusionMatrix::from_predictions(&[0, 1, 1, 2], &[0, 1, 2, 2], 3);
/// assert_eq!(m.accuracy(), 0.75);
/// assert_eq!(m.class(1).recall, 0.5);
/// assert_eq!(m.class(2).precision, 0.5);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Row = true class, column = predicted class.
    pub counts: Vec<Vec<u64>>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl ConfusionMatrix {
    /// Count predictions. Labels or predictions ≥ `num_classes` are ignored.
    pub fn from_predictions(labels: &[u32], predictions: &[u32], num_classes: usize) -> Self {
        let mut counts = vec![vec![0u64; num_classes]; num_classes];
        for (&t, &p) in labels.iter().zip(predictions) {
            if (t as usize) < num_classes && (p as usize) < num_classes {
                counts[t as usize][p as usize] += 1;
            }
        }
        ConfusionMatrix { counts }
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }
    /// Total samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }
    /// Fraction of samples on the diagonal (0 for no samples).
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.num_classes()).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }
    /// One-vs-rest metrics of class `c`.
    pub fn class(&self, c: usize) -> ClassMetrics {
        let tp = self.counts[c][c];
        let support: u64 = self.counts[c].iter().sum();
        let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        ClassMetrics {
            precision,
            recall,
            f1,
            support: support as usize,
        }
    }
    /// Metrics of every class.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.num_classes()).map(|c| self.class(c)).collect()
    }
    /// Accuracy over the samples whose true class is not `c`.
    pub fn accuracy_excluding(&self, c: usize) -> f64 {
        let mut correct = 0;
        let mut total = 0;
        for (t, row) in self.counts.iter().enumerate() {
            if t != c {
                correct += row[t];
                total += row.iter().sum::<u64>();
            }
        }
        ratio(correct, total)
    }
}

/// The outcome of evaluating a classifier on a labelled set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Number of samples.
    pub samples: usize,
    /// Fraction correct.
    pub accuracy: f64,
    /// Per-class metrics.
    pub per_class: Vec<ClassMetrics>,
    /// Confusion matrix.
    pub confusion: ConfusionMatrix,
}

impl Evaluation {
    /// Evaluate predictions against labels.
    pub fn new(labels: &[u32], predictions: &[u32], num_classes: usize) -> Self {
        let confusion = ConfusionMatrix::from_predictions(labels, predictions, num_classes);
        Evaluation {
            samples: labels.len(),
            accuracy: confusion.accuracy(),
            per_class: confusion.per_class(),
            confusion,
        }
    }
}

/// Index of the largest value per row; ties go to the lowest index.
pub fn argmax_rows(values: &[f32], cols: usize) -> Vec<u32> {
    values
        .chunks(cols.max(1))
        .map(|row| {
            let mut best = 0;
            for (i, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}
