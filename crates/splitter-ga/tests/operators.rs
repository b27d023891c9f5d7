//! Initial population and GA operators (design §6.4, §6.5).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use splitter_ga::{
    crossover, fitness_order, heuristic_population, kept_groups, mutate, mutation_count,
    next_population, random_population, rescnn_gene_layers, sample_important_groups,
    simcnn_gene_layers, GaConfig, Genome,
};

fn random_chromosome(genes: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    (0..genes).map(|_| u8::from(rng.random_bool(0.5))).collect()
}

#[test]
fn mutation_counts_match_the_spec() {
    assert_eq!(mutation_count(5.0, 940), 47);
    assert_eq!(mutation_count(10.0, 940), 94);
    assert_eq!(mutation_count(5.0, 630), 31);
    assert_eq!(mutation_count(10.0, 630), 63);
    assert_eq!(mutation_count(0.0, 630), 0);
}

#[test]
fn crossover_takes_prefix_and_suffix_from_the_right_parents() {
    let a = vec![1u8; 10];
    let b = vec![0u8; 10];
    for cut in 0..10 {
        let child = crossover(&a, &b, cut);
        assert_eq!(child.len(), 10);
        assert!(child[..cut].iter().all(|&g| g == 1));
        assert!(child[cut..].iter().all(|&g| g == 0));
    }
}

#[test]
fn fitness_order_is_descending_with_lower_index_first_on_ties() {
    assert_eq!(
        fitness_order(&[0.5, 0.9, 0.5, f64::NAN, 1.0]),
        vec![4, 1, 0, 2, 3]
    );
}

#[test]
fn kept_groups_floors_without_float_slips() {
    assert_eq!(kept_groups(100, 0.7), 70);
    assert_eq!(kept_groups(10, 0.7), 7);
    assert_eq!(kept_groups(100, 0.29), 29);
    assert_eq!(kept_groups(8, 0.5), 4);
    assert_eq!(kept_groups(10, 1.0), 10);
}

#[test]
fn important_groups_are_drawn_more_often() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut first = 0;
    let mut last = 0;
    for _ in 0..2000 {
        let picks = sample_important_groups(100, 10, &mut rng);
        let mut sorted = picks.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 10, "groups are drawn without replacement");
        first += usize::from(picks.contains(&0));
        last += usize::from(picks.contains(&99));
    }
    // P(group i) ∝ exp((99 − i)/10): group 0 is ~e^9.9 times likelier than group 99.
    assert!(first > 500, "group 0 drawn {first} times");
    assert!(last < 20, "group 99 drawn {last} times");
    // Asking for all groups returns a permutation.
    let mut all = sample_important_groups(10, 10, &mut rng);
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
}

#[test]
fn heuristic_population_keeps_floor_of_ratio_groups_per_layer() {
    let genome = Genome::new(rescnn_gene_layers(1.0)).unwrap();
    let config = GaConfig::rescnn_cifar10();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let population = heuristic_population(
        &genome,
        30,
        &config.sensitive_layers,
        &config.sensitive_ratios,
        &config.other_ratios,
        &mut rng,
    )
    .unwrap();
    assert_eq!(population.len(), 30);
    for chromosome in &population {
        for (l, layer) in genome.layers().iter().enumerate() {
            let ones = chromosome[genome.gene_range(l)]
                .iter()
                .filter(|&&g| g == 1)
                .count();
            let ratios = if config.sensitive_layers.contains(&l) {
                &config.sensitive_ratios
            } else {
                &config.other_ratios
            };
            assert!(
                ratios.iter().any(|&r| kept_groups(layer.groups, r) == ones),
                "layer {l} keeps {ones} of {} groups",
                layer.groups
            );
        }
    }
}

#[test]
fn random_population_is_about_half_ones() {
    let genome = Genome::new(simcnn_gene_layers(1.0)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let population = random_population(&genome, 20, &mut rng);
    let ones: usize = population.iter().flatten().map(|&g| g as usize).sum();
    let share = ones as f64 / (20.0 * 940.0);
    assert!((share - 0.5).abs() < 0.03, "{share}");
}

fn small_config() -> GaConfig {
    GaConfig {
        population: 12,
        parents: 5,
        keep: 3,
        ..GaConfig::simcnn_cifar10()
    }
}

#[test]
fn elites_survive_best_first() {
    let config = small_config();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let population: Vec<Vec<u8>> = (0..12).map(|_| random_chromosome(40, &mut rng)).collect();
    let fitness: Vec<f64> = (0..12).map(|i| ((i * 7) % 12) as f64 / 10.0).collect();
    let next = next_population(&population, &fitness, &config, &mut rng).unwrap();
    assert_eq!(next.len(), 12);
    let order = fitness_order(&fitness);
    for row in 0..3 {
        assert_eq!(next[row], population[order[row]], "elite row {row}");
    }
}

#[test]
fn offspring_cross_parents_k_and_k_plus_one_without_mutation() {
    let config = GaConfig {
        mutation_percent: 0.0,
        ..small_config()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let population: Vec<Vec<u8>> = (0..12).map(|_| random_chromosome(64, &mut rng)).collect();
    let fitness: Vec<f64> = (0..12).map(|i| i as f64).collect();
    let next = next_population(&population, &fitness, &config, &mut rng).unwrap();
    let parents = &fitness_order(&fitness)[..config.parents];
    for (k, child) in next[config.keep..].iter().enumerate() {
        let first = &population[parents[k % config.parents]];
        let second = &population[parents[(k + 1) % config.parents]];
        assert_eq!(child.len(), 64);
        assert!(
            (0..64).any(|cut| crossover(first, second, cut) == *child),
            "offspring {k} is no crossover of parents {} and {}",
            k % config.parents,
            (k + 1) % config.parents
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutation_touches_at_most_the_mutation_count(seed in any::<u64>(), pct in 0.0f64..=100.0) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let original = random_chromosome(630, &mut rng);
        let count = mutation_count(pct, 630);
        let mut mutated = original.clone();
        let positions = mutate(&mut mutated, count, &mut rng);
        prop_assert_eq!(positions.len(), count);
        let mut distinct = positions.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), count);
        let changed = original.iter().zip(&mutated).filter(|(a, b)| a != b).count();
        prop_assert!(changed <= count);
        for (i, (a, b)) in original.iter().zip(&mutated).enumerate() {
            if a != b {
                prop_assert!(positions.contains(&i));
            }
        }
        prop_assert!(mutated.iter().all(|&g| g <= 1));
    }
}
