//! Calibration of module scores before patching (design §7).

use cnn_models::module::percentile_of_sorted;
use serde::{Deserialize, Serialize};

use crate::error::{ComposerError, Result};

/// Maps a module's raw score onto the weak model's probability scale.
///
/// A range (lo, hi) maps `score` to (score − lo)/(hi − lo), so lo → 0 and hi → 1, and values
/// outside the range leave [0, 1] unless clipped. A range needs lo < hi: a degenerate range
/// (lo ≥ hi, e.g. a module whose score is constant on the calibration images) carries no
/// information, and [`Calibration::validate`] refuses it, so patching with one is an error
/// (design §7, §13).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Calibration {
    /// The raw score is used as it is.
    None,
    /// Range = (min, max) of the calibration scores.
    MinMax {
        /// Smallest calibration score (maps to 0).
        min: f32,
        /// Largest calibration score (maps to 1).
        max: f32,
    },
    /// Range = two percentiles of the calibration scores (numpy's linear interpolation).
    Percentile {
        /// Lower percentile in [0, 100].
        p_lo: f64,
        /// Upper percentile in [0, 100].
        p_hi: f64,
        /// Score at `p_lo` (maps to 0).
        lo: f32,
        /// Score at `p_hi` (maps to 1).
        hi: f32,
    },
}

fn check_scores(scores: &[f32]) -> Result<()> {
    if scores.is_empty() {
        return Err(ComposerError::Empty {
            what: "calibration score list",
        });
    }
    if let Some(index) = scores.iter().position(|v| !v.is_finite()) {
        return Err(ComposerError::NotFinite {
            what: "calibration score",
            index,
        });
    }
    Ok(())
}

impl Calibration {
    /// Min–max calibration fitted on the module's scores over the calibration images.
    pub fn fit_minmax(scores: &[f32]) -> Result<Self> {
        check_scores(scores)?;
        let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Ok(Calibration::MinMax { min, max })
    }

    /// Percentile calibration: range = the `p_lo`-th and `p_hi`-th percentiles (0–100).
    pub fn fit_percentile(scores: &[f32], p_lo: f64, p_hi: f64) -> Result<Self> {
        check_scores(scores)?;
        if !(0.0..=100.0).contains(&p_lo) || !(0.0..=100.0).contains(&p_hi) || p_lo > p_hi {
            return Err(ComposerError::InvalidPercentile { lo: p_lo, hi: p_hi });
        }
        let mut sorted: Vec<f64> = scores.iter().map(|&v| f64::from(v)).collect();
        sorted.sort_by(f64::total_cmp);
        Ok(Calibration::Percentile {
            p_lo,
            p_hi,
            lo: percentile_of_sorted(&sorted, p_lo) as f32,
            hi: percentile_of_sorted(&sorted, p_hi) as f32,
        })
    }

    /// The (lo, hi) range, if any.
    pub fn range(&self) -> Option<(f32, f32)> {
        match *self {
            Calibration::None => None,
            Calibration::MinMax { min, max } => Some((min, max)),
            Calibration::Percentile { lo, hi, .. } => Some((lo, hi)),
        }
    }

    /// Checks a calibration: a finite range with lo < hi. A range with hi ≤ lo (a constant
    /// score) is [`ComposerError::DegenerateCalibration`].
    ///
    /// ```
    /// use composer::Calibration;
    /// assert!(Calibration::fit_minmax(&[1.0, 2.0]).unwrap().validate().is_ok());
    /// let constant = Calibration::fit_minmax(&[0.5, 0.5]).unwrap();
    /// assert!(constant.validate().unwrap_err().to_string().contains("max ≤ min"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if let Some((lo, hi)) = self.range() {
            if !lo.is_finite() || !hi.is_finite() {
                return Err(ComposerError::InvalidCalibration(format!(
                    "range ({lo}, {hi}) must be finite"
                )));
            }
            if hi <= lo {
                return Err(ComposerError::DegenerateCalibration {
                    module: "the module".into(),
                    lo: f64::from(lo),
                    hi: f64::from(hi),
                });
            }
        }
        Ok(())
    }

    /// Calibrated value of `score`, clipped to [0, 1] when `clip` is set. A degenerate range,
    /// which [`Calibration::validate`] refuses and patching never applies, maps `score ≥ hi`
    /// to 1 and anything lower to 0 rather than to NaN or infinity.
    pub fn apply(&self, score: f32, clip: bool) -> f64 {
        let score = f64::from(score);
        let value = match self.range() {
            None => score,
            Some((lo, hi)) => {
                let (lo, hi) = (f64::from(lo), f64::from(hi));
                if hi > lo {
                    (score - lo) / (hi - lo)
                } else if score >= hi {
                    1.0
                } else {
                    0.0
                }
            }
        };
        if clip {
            value.clamp(0.0, 1.0)
        } else {
            value
        }
    }

    /// [`Calibration::apply`] over many scores.
    pub fn apply_all(&self, scores: &[f32], clip: bool) -> Vec<f64> {
        scores.iter().map(|&s| self.apply(s, clip)).collect()
    }
}
