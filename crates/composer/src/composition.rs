//! Composition of module scores (design §5.10, §6.8).

use crate::error::{ComposerError, Result};

/// Checks that every module has the same number of non-NaN scores; returns that number.
pub(crate) fn check_score_matrix(scores: &[Vec<f32>]) -> Result<usize> {
    let first = scores.first().ok_or(ComposerError::Empty {
        what: "module score list",
    })?;
    let images = first.len();
    for module in scores {
        if module.len() != images {
            return Err(ComposerError::LengthMismatch {
                what: "scores per module (one per image)",
                expected: images,
                found: module.len(),
            });
        }
        if let Some(index) = module.iter().position(|v| v.is_nan()) {
            return Err(ComposerError::NotFinite {
                what: "module score",
                index,
            });
        }
    }
    Ok(images)
}

/// Prediction of a composition: for every image the index of the module with the largest
/// score; ties go to the lowest module index.
///
/// `scores[m][i]` is module `m`'s score on image `i`. Every module needs the same number of
/// scores, and no score may be NaN.
pub fn compose_predictions(scores: &[Vec<f32>]) -> Result<Vec<u32>> {
    let images = check_score_matrix(scores)?;
    let mut best = scores[0].clone();
    let mut prediction = vec![0u32; images];
    for (m, module) in scores.iter().enumerate().skip(1) {
        for ((b, p), &v) in best.iter_mut().zip(prediction.iter_mut()).zip(module) {
            if v > *b {
                *b = v;
                *p = m as u32;
            }
        }
    }
    Ok(prediction)
}
