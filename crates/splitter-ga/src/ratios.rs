//! Initial keep ratios measured on the model at hand (design §6.4) \[ours\].
//!
//! The paper's ratio lists were tuned on full-width CIFAR-10 models. On a narrow or weakly
//! trained model they prune so much that every module of generation 0 is near chance, and the
//! search never recovers. The probe instead draws generation-0 chromosomes exactly as the
//! heuristic initialisation does, for a descending ladder of base ratios ρ, and keeps the
//! lowest ρ whose composed accuracy stays within a tolerance of the unpruned model's.

use candle_core::Tensor;
use cnn_models::Model;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{GaError, Result};
use crate::evaluator::chromosome_masks;
use crate::genome::Genome;
use crate::population::heuristic_population;
use crate::sensitivity::composed_masked_accuracy;

/// Base ratios the probe tries, highest first.
pub const PROBE_LADDER: [f64; 8] = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3];

/// Generation-0 draws averaged per rung of the ladder.
pub const PROBE_DRAWS: usize = 2;

/// Where the initial population's keep ratios come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum InitRatios {
    /// The lists of the GA configuration (a named preset's are the paper's); the default, so a
    /// configuration's lists are used as given.
    #[default]
    Config,
    /// Measured by [`probe_keep_ratios`]: the lowest base ratio whose generation-0 draws keep
    /// the composed accuracy within `tolerance` (absolute) of the model's.
    Probe {
        /// Accuracy the draws may lose against the unpruned model (fraction).
        tolerance: f64,
    },
}

/// The ratio lists of base ratio `rho`: other gene-layers draw from {ρ − 0.1, ρ, ρ + 0.1},
/// sensitive ones from {ρ, ρ + 0.1, ρ + 0.2}, each clamped to [0.1, 1] without repeats.
///
/// ```
/// let (sensitive, other) = splitter_ga::ratio_lists(0.9);
/// assert_eq!(sensitive, vec![0.9, 1.0]);
/// assert_eq!(other, vec![0.8, 0.9, 1.0]);
/// ```
pub fn ratio_lists(rho: f64) -> (Vec<f64>, Vec<f64>) {
    let list = |offsets: [f64; 3]| {
        let mut v: Vec<f64> = offsets
            .iter()
            .map(|o| ((rho + o).clamp(0.1, 1.0) * 100.0).round() / 100.0)
            .collect();
        v.dedup();
        v
    };
    (list([0.0, 0.1, 0.2]), list([-0.1, 0.0, 0.1]))
}

/// What [`probe_keep_ratios`] measured and chose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioProbe {
    /// Accuracy the draws were allowed to lose.
    pub tolerance: f64,
    /// Composed accuracy of the unpruned model on the probe images.
    pub full_accuracy: f64,
    /// `(ρ, mean composed accuracy of the draws)` for every rung tried, highest ρ first; the
    /// probe stops at the first rung below the tolerance.
    pub tried: Vec<(f64, f64)>,
    /// The chosen base ratio (the highest rung when none met the tolerance).
    pub chosen: f64,
    /// Ratio list of the sensitive gene-layers ([`ratio_lists`] of `chosen`).
    pub sensitive_ratios: Vec<f64>,
    /// Ratio list of the other gene-layers.
    pub other_ratios: Vec<f64>,
}

/// Measures the initial keep ratios on `model`: for each ρ of [`PROBE_LADDER`], draws
/// [`PROBE_DRAWS`] heuristic chromosomes per class with [`ratio_lists`]`(ρ)` (importance orders
/// `orders[c]`, sensitive gene-layers `sensitive_layers`), composes the masked modules on the
/// images `x`/`labels` and averages the accuracy. Returns the lowest ρ before the first rung
/// that loses more than `tolerance` against `full_accuracy`.
#[allow(clippy::too_many_arguments)]
pub fn probe_keep_ratios(
    model: &Model,
    x: &Tensor,
    labels: &[u32],
    genome: &Genome,
    orders: &[Vec<Vec<usize>>],
    sensitive_layers: &[usize],
    full_accuracy: f64,
    tolerance: f64,
    rng: &mut ChaCha8Rng,
    batch: usize,
) -> Result<RatioProbe> {
    if !(0.0..=1.0).contains(&tolerance) {
        return Err(GaError::InvalidConfig(format!(
            "ratio probe tolerance {tolerance} is outside [0, 1]"
        )));
    }
    let mut tried = Vec::new();
    let mut chosen = PROBE_LADDER[0];
    for &rho in &PROBE_LADDER {
        let (sensitive, other) = ratio_lists(rho);
        let mut total = 0.0;
        for _ in 0..PROBE_DRAWS {
            let masks = orders
                .iter()
                .map(|class_orders| {
                    let chromosome =
                        heuristic_population(genome, 1, sensitive_layers, &sensitive, &other, rng)?
                            .remove(0);
                    chromosome_masks(genome, &chromosome, class_orders)
                })
                .collect::<Result<Vec<_>>>()?;
            total += composed_masked_accuracy(model, x, labels, &masks, batch)?;
        }
        let accuracy = total / PROBE_DRAWS as f64;
        tracing::debug!(rho, accuracy, "keep-ratio probe");
        tried.push((rho, accuracy));
        if full_accuracy - accuracy > tolerance {
            break;
        }
        chosen = rho;
    }
    let (sensitive_ratios, other_ratios) = ratio_lists(chosen);
    Ok(RatioProbe {
        tolerance,
        full_accuracy,
        tried,
        chosen,
        sensitive_ratios,
        other_ratios,
    })
}
