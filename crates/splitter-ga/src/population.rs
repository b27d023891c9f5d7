//! Initial populations (design §6.4).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{GaConfig, InitStrategy};
use crate::error::{GaError, Result};
use crate::genome::Genome;

/// Slack added before flooring G·r so that e.g. 100 · 0.7 keeps 70 groups, not 69 \[ours\].
const FLOOR_SLACK: f64 = 1e-9;

/// Number of groups kept for ratio `ratio` of `groups`: ⌊G·r⌋, at most G.
pub fn kept_groups(groups: usize, ratio: f64) -> usize {
    ((groups as f64 * ratio + FLOOR_SLACK).floor().max(0.0) as usize).min(groups)
}

/// Draws `amount` distinct group indices out of `groups`, without replacement, with
/// P(group i) ∝ exp((G − 1 − i)/10) renormalised over the groups still available after each
/// draw (group 0 = most important). Returned in draw order.
pub fn sample_important_groups(groups: usize, amount: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let amount = amount.min(groups);
    let mut weights: Vec<f64> = (0..groups)
        .map(|i| ((groups - 1 - i) as f64 / 10.0).exp())
        .collect();
    let mut chosen = Vec::with_capacity(amount);
    for _ in 0..amount {
        let total: f64 = weights.iter().sum();
        let mut target = rng.random::<f64>() * total;
        let mut pick = None;
        for (i, &w) in weights.iter().enumerate() {
            if w <= 0.0 {
                continue;
            }
            pick = Some(i);
            if target < w {
                break;
            }
            target -= w;
        }
        // `pick` is the last available group if rounding left `target` ≥ the remaining mass.
        let i = pick.unwrap_or(0);
        weights[i] = 0.0;
        chosen.push(i);
    }
    chosen
}

/// Heuristic population of `size` chromosomes: for every chromosome and gene-layer, draw r
/// uniformly from `sensitive_ratios` (layers in `sensitive_layers`) or `other_ratios`, and
/// keep [`kept_groups`] groups drawn by [`sample_important_groups`].
pub fn heuristic_population(
    genome: &Genome,
    size: usize,
    sensitive_layers: &[usize],
    sensitive_ratios: &[f64],
    other_ratios: &[f64],
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Vec<u8>>> {
    if sensitive_ratios.is_empty() || other_ratios.is_empty() {
        return Err(GaError::InvalidConfig(
            "heuristic initialisation needs non-empty ratio lists".into(),
        ));
    }
    let mut population = Vec::with_capacity(size);
    for _ in 0..size {
        let mut chromosome = vec![0u8; genome.gene_count()];
        for (layer, gl) in genome.layers().iter().enumerate() {
            let ratios = if sensitive_layers.contains(&layer) {
                sensitive_ratios
            } else {
                other_ratios
            };
            let ratio = ratios[rng.random_range(0..ratios.len())];
            let amount = kept_groups(gl.groups, ratio);
            let start = genome.gene_range(layer).start;
            for group in sample_important_groups(gl.groups, amount, rng) {
                chromosome[start + group] = 1;
            }
        }
        population.push(chromosome);
    }
    Ok(population)
}

/// Random population of `size` chromosomes, every gene Bernoulli(0.5).
pub fn random_population(genome: &Genome, size: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    (0..size)
        .map(|_| {
            (0..genome.gene_count())
                .map(|_| u8::from(rng.random_bool(0.5)))
                .collect()
        })
        .collect()
}

/// Generation 0 of one class as `config` asks.
pub fn initial_population(
    genome: &Genome,
    config: &GaConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Vec<u8>>> {
    match config.init {
        InitStrategy::Heuristic => heuristic_population(
            genome,
            config.population,
            &config.sensitive_layers,
            &config.sensitive_ratios,
            &config.other_ratios,
            rng,
        ),
        InitStrategy::Random => Ok(random_population(genome, config.population, rng)),
    }
}
