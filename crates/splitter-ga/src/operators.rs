//! GA operators (design §6.5): ranking, one-point crossover, mutation, next population.

use rand::seq::index;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::GaConfig;
use crate::error::{GaError, Result};

/// Solution indices from fittest to least fit; equal fitness keeps the lower index first and
/// NaN ranks last.
pub fn fitness_order(fitness: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..fitness.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (fitness[a], fitness[b]);
        match (fa.is_nan(), fb.is_nan()) {
            (false, false) => fb.total_cmp(&fa),
            (a_nan, b_nan) => a_nan.cmp(&b_nan),
        }
        .then(a.cmp(&b))
    });
    order
}

/// One-point crossover: genes `0..cut` from `first`, genes `cut..` from `second`.
///
/// Both parents must have the same length and `cut ≤ len`.
pub fn crossover(first: &[u8], second: &[u8], cut: usize) -> Vec<u8> {
    assert_eq!(first.len(), second.len(), "parents differ in length");
    let mut child = Vec::with_capacity(first.len());
    child.extend_from_slice(&first[..cut]);
    child.extend_from_slice(&second[cut..]);
    child
}

/// Positions redrawn per offspring: ⌊percent · genes / 100⌋ (SimCNN 47 at 5 %, ResCNN 31).
pub fn mutation_count(percent: f64, genes: usize) -> usize {
    ((percent * genes as f64 / 100.0 + 1e-9).floor().max(0.0) as usize).min(genes)
}

/// Sets `count` distinct positions (uniformly chosen) to a uniform draw from {0, 1}, so
/// about half of them flip. Returns the positions in draw order.
pub fn mutate(chromosome: &mut [u8], count: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let count = count.min(chromosome.len());
    let positions = index::sample(rng, chromosome.len(), count).into_vec();
    for &p in &positions {
        chromosome[p] = u8::from(rng.random_bool(0.5));
    }
    positions
}

/// The next population of one class: the `keep` fittest (best first, so row 0 is the
/// previous best) followed by `population − keep` offspring. Offspring k crosses parent
/// k mod P (genes before a uniform cut in [0, genes − 1]) with parent (k + 1) mod P (the rest),
/// parents being the P fittest, then is mutated.
pub fn next_population(
    population: &[Vec<u8>],
    fitness: &[f64],
    config: &GaConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Vec<u8>>> {
    if population.len() != config.population || fitness.len() != config.population {
        return Err(GaError::Count {
            what: "solutions and fitness values (population size)",
            expected: config.population,
            found: if population.len() != config.population {
                population.len()
            } else {
                fitness.len()
            },
        });
    }
    let genes = population.first().map_or(0, Vec::len);
    if let Some(bad) = population.iter().find(|c| c.len() != genes) {
        return Err(GaError::ChromosomeLength {
            expected: genes,
            found: bad.len(),
        });
    }
    let order = fitness_order(fitness);
    let parents = &order[..config.parents];
    let mutations = config.mutation_count(genes);
    let mut next: Vec<Vec<u8>> = order[..config.keep]
        .iter()
        .map(|&i| population[i].clone())
        .collect();
    for k in 0..config.offspring() {
        let first = &population[parents[k % parents.len()]];
        let second = &population[parents[(k + 1) % parents.len()]];
        let cut = if genes == 0 {
            0
        } else {
            rng.random_range(0..genes)
        };
        let mut child = crossover(first, second, cut);
        mutate(&mut child, mutations, rng);
        next.push(child);
    }
    Ok(next)
}
