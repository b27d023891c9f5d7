//! Classification metrics: accuracy, per-class precision/recall/F1, confusion matrix.
//! A ratio with a zero denominator is defined as 0 (design §7, §11.12), never NaN.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Precision, recall and F1 of one class (one-vs-rest), with its support and confusion counts.
///
/// The one per-class metric type of the workspace: evaluations ([`Evaluation::per_class`]),
/// module selection and patch reports all use it. Serialised, it holds precision, recall, F1
/// and support; the confusion counts are left out (an [`Evaluation`] keeps them in its
/// confusion matrix; a report that wants them serialises them itself).
///
/// ```
/// use cnn_models::metrics::ClassMetrics;
/// // 3 true positives, 1 false positive, 2 false negatives
/// let m = ClassMetrics::from_counts(3, 1, 2);
/// assert_eq!((m.precision, m.recall, m.support), (0.75, 0.6, 5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// TP / (TP + FP), 0 when nothing was predicted as the class.
    pub precision: f64,
    /// TP / (TP + FN), 0 when the class has no samples.
    pub recall: f64,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f64,
    /// Number of samples of the class (TP + FN).
    pub support: usize,
    /// Samples of the class predicted as the class.
    #[serde(skip)]
    pub true_positives: usize,
    /// Samples of other classes predicted as the class.
    #[serde(skip)]
    pub false_positives: usize,
    /// Samples of the class predicted as another class.
    #[serde(skip)]
    pub false_negatives: usize,
}

impl ClassMetrics {
    /// Metrics from confusion counts; a ratio with a zero denominator is 0.
    pub fn from_counts(
        true_positives: usize,
        false_positives: usize,
        false_negatives: usize,
    ) -> Self {
        let tp = true_positives as u64;
        let predicted = tp + false_positives as u64;
        let support = tp + false_negatives as u64;
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
            true_positives,
            false_positives,
            false_negatives,
        }
    }

    /// Class-vs-rest metrics of `class` from labels and predictions (one per label).
    ///
    /// ```
    /// use cnn_models::metrics::ClassMetrics;
    /// let m = ClassMetrics::of_class(&[0, 1, 1], &[1, 1, 0], 1).unwrap();
    /// assert_eq!((m.true_positives, m.false_positives, m.false_negatives), (1, 1, 1));
    /// ```
    pub fn of_class(labels: &[u32], predictions: &[u32], class: u32) -> Result<Self, ModelError> {
        if labels.len() != predictions.len() {
            return Err(ModelError::Mismatch(format!(
                "predictions (one per label): expected {}, found {}",
                labels.len(),
                predictions.len()
            )));
        }
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
        ClassMetrics::from_counts(
            tp as usize,
            (predicted - tp) as usize,
            (support - tp) as usize,
        )
    }
    /// Metrics of every class.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.num_classes()).map(|c| self.class(c)).collect()
    }
    /// Balanced accuracy: the mean recall over the classes that have samples (0 for no
    /// samples). Equals [`ConfusionMatrix::accuracy`] when every class has the same support.
    ///
    /// ```
    /// use cnn_models::metrics::ConfusionMatrix;
    /// // class 0: 3 of 4 right, class 1: 0 of 1 right → (0.75 + 0) / 2
    /// let m = ConfusionMatrix::from_predictions(&[0, 0, 0, 0, 1], &[0, 0, 0, 1, 0], 2);
    /// assert_eq!(m.balanced_accuracy(), 0.375);
    /// assert_eq!(m.accuracy(), 0.6);
    /// ```
    pub fn balanced_accuracy(&self) -> f64 {
        let recalls: Vec<f64> = (0..self.num_classes())
            .filter(|&c| self.counts[c].iter().sum::<u64>() > 0)
            .map(|c| self.class(c).recall)
            .collect();
        if recalls.is_empty() {
            0.0
        } else {
            recalls.iter().sum::<f64>() / recalls.len() as f64
        }
    }
    /// The classes that have samples but F1 = 0: never predicted correctly.
    ///
    /// ```
    /// use cnn_models::metrics::ConfusionMatrix;
    /// let m = ConfusionMatrix::from_predictions(&[0, 1, 2], &[0, 0, 0], 4);
    /// assert_eq!(m.zero_f1_classes(), vec![1, 2]); // class 3 has no sample
    /// ```
    pub fn zero_f1_classes(&self) -> Vec<usize> {
        (0..self.num_classes())
            .filter(|&c| self.counts[c].iter().sum::<u64>() > 0 && self.class(c).f1 == 0.0)
            .collect()
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

/// Index of the largest value in each row of row-major `values` with `cols` columns; ties go
/// to the lowest index (a NaN never wins). The one argmax of the workspace: logits (`f32`) and
/// probabilities (`f64`) alike.
///
/// ```
/// use cnn_models::metrics::argmax_rows;
/// assert_eq!(argmax_rows(&[1.0f32, 3.0, 3.0, 2.0, 2.0, 0.0], 3), vec![1, 0]);
/// assert_eq!(argmax_rows(&[0.2f64, 0.8], 2), vec![1]);
/// ```
pub fn argmax_rows<T: PartialOrd>(values: &[T], cols: usize) -> Vec<u32> {
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

/// The largest class count divided by the smallest among `labels` of `num_classes` classes
/// (a class without a label counts 0: the ratio is infinite); 1 for no label or no class.
///
/// ```
/// use cnn_models::metrics::class_count_ratio;
/// assert_eq!(class_count_ratio(&[0, 0, 0, 1, 1], 2), 1.5);
/// assert_eq!(class_count_ratio(&[0, 0], 2), f64::INFINITY);
/// ```
pub fn class_count_ratio(labels: &[u32], num_classes: usize) -> f64 {
    if labels.is_empty() || num_classes == 0 {
        return 1.0;
    }
    let mut counts = vec![0u64; num_classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let min = counts.iter().copied().min().unwrap_or(0) as f64;
    if min == 0.0 {
        f64::INFINITY
    } else {
        max / min
    }
}

/// Composition of module scores on the same images: for every image the index of the module
/// with the largest score, ties → lowest module index (a NaN never wins). `scores[m][i]` is
/// module `m`'s score on image `i`; every module must score the same images. The rule of
/// `composer::compose_predictions` (design §5.10), for code that cannot depend on `composer`.
///
/// ```
/// use cnn_models::metrics::compose_argmax;
/// let scores = vec![vec![0.9f32, 0.1, 0.5], vec![0.2, 0.8, 0.5]];
/// assert_eq!(compose_argmax(&scores), vec![0, 1, 0]);
/// ```
pub fn compose_argmax(scores: &[Vec<f32>]) -> Vec<u32> {
    let images = scores.first().map_or(0, Vec::len);
    (0..images)
        .map(|i| {
            let mut best = 0;
            for (m, module) in scores.iter().enumerate() {
                if module[i] > scores[best][i] {
                    best = m;
                }
            }
            best as u32
        })
        .collect()
}
