//! The GA driver: determinism across seeds and thread counts, checkpoints, elites, generation
//! choice, configuration presets (design §6.5–6.7, invariant 12).

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use splitter_ga::{
    beam_group_sizes, fitness_order, rescnn_gene_layers, simcnn_gene_layers, GaConfig, GaError,
    GaPreset, GaRun, GaState, GeneLayer, Genome, InitStrategy, PopulationEvaluator, SelectionSplit,
    SolutionOutput,
};

/// Deterministic stand-in for a model: a module scores its own class higher the more groups of
/// the first gene-layer it keeps, plus a hash-derived jitter of the whole chromosome.
struct FakeEvaluator {
    genome: Genome,
    labels: Vec<u32>,
    holdout: Option<Vec<u32>>,
    calls: usize,
}

impl FakeEvaluator {
    fn new(genome: Genome, num_classes: u32, images: u32) -> Self {
        Self {
            genome,
            labels: (0..images).map(|i| (i * 7 + 3) % num_classes).collect(),
            holdout: None,
            calls: 0,
        }
    }

    fn scores(&self, class: usize, chromosome: &[u8], labels: &[u32]) -> Vec<f32> {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ class as u64;
        for &g in chromosome {
            hash = (hash ^ u64::from(g)).wrapping_mul(0x0100_0000_01b3);
        }
        let range = self.genome.gene_range(0);
        let kept = chromosome[range.clone()]
            .iter()
            .filter(|&&g| g == 1)
            .count() as f32;
        let strength = kept / range.len() as f32;
        labels
            .iter()
            .enumerate()
            .map(|(i, &y)| {
                let h = (hash ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
                    .wrapping_mul(0x0100_0000_01b3);
                let jitter = (h >> 40) as f32 / (1u64 << 24) as f32;
                if y as usize == class {
                    strength + 0.6 * jitter
                } else {
                    0.8 * jitter
                }
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("fake evaluator failure")]
struct FakeError;

impl PopulationEvaluator for FakeEvaluator {
    type Error = FakeError;

    fn labels(&self) -> &[u32] {
        &self.labels
    }

    fn evaluate(
        &mut self,
        class: usize,
        chromosomes: &[Vec<u8>],
    ) -> Result<Vec<SolutionOutput>, FakeError> {
        self.calls += 1;
        let orders = self.genome.identity_orders();
        Ok(chromosomes
            .iter()
            .map(|c| SolutionOutput {
                scores: self.scores(class, c, &self.labels),
                ids: self.genome.chromosome_identifier_set(c, &orders).unwrap(),
            })
            .collect())
    }

    fn holdout_labels(&self) -> Option<&[u32]> {
        self.holdout.as_deref()
    }

    fn evaluate_holdout(
        &mut self,
        class: usize,
        chromosome: &[u8],
    ) -> Result<Option<Vec<f32>>, FakeError> {
        Ok(self
            .holdout
            .as_ref()
            .map(|labels| self.scores(class, chromosome, labels)))
    }
}

fn toy_genome() -> Genome {
    Genome::new(vec![
        GeneLayer::new(vec![0], 16),
        GeneLayer::new(vec![1, 2], 24),
        GeneLayer::new(vec![3], 8),
    ])
    .unwrap()
}

fn toy_config() -> GaConfig {
    GaConfig {
        generations: 5,
        population: 10,
        parents: 6,
        keep: 3,
        mutation_percent: 10.0,
        sensitive_layers: vec![0],
        min_keep: 5,
        max_keep: 20,
        ..GaConfig::scaled_for(5)
    }
}

fn run_with_threads(seed: u64, threads: usize, config: GaConfig) -> GaState {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let genome = toy_genome();
        let mut evaluator = FakeEvaluator::new(genome.clone(), 5, 60);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut run = GaRun::new(config, genome, 5, &mut rng).unwrap();
        run.run(&mut evaluator).unwrap();
        run.state().clone()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn same_seed_same_run_with_one_or_two_threads(seed in any::<u64>()) {
        let one = run_with_threads(seed, 1, toy_config());
        let two = run_with_threads(seed, 2, toy_config());
        prop_assert_eq!(&one, &two);
        let again = run_with_threads(seed, 2, toy_config());
        prop_assert_eq!(&one, &again);
        prop_assert_eq!(one.history.len(), 6);
    }
}

#[test]
fn different_seeds_give_different_populations() {
    let a = run_with_threads(1, 1, toy_config());
    let b = run_with_threads(2, 1, toy_config());
    assert_ne!(a.populations, b.populations);
}

#[test]
fn elites_survive_from_generation_to_generation() {
    let genome = toy_genome();
    let mut evaluator = FakeEvaluator::new(genome.clone(), 5, 60);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let config = toy_config();
    let keep = config.keep;
    let mut run = GaRun::new(config, genome, 5, &mut rng).unwrap();
    for _ in 0..4 {
        let before = run.state().populations.clone();
        assert!(run.step(&mut evaluator).unwrap());
        let record = run.state().history.last().unwrap().clone();
        for (c, population) in before.iter().enumerate() {
            let order = fitness_order(&record.fitness[c]);
            let next = &run.state().populations[c];
            assert_eq!(
                next[0], population[record.best_solutions[c]],
                "row 0 of class {c}"
            );
            for row in 0..keep {
                assert_eq!(next[row], population[order[row]]);
            }
        }
        // From generation 1 on, the composition of every class's row 0 is kept (elitism),
        // so row 0's fitness is never 0.
        if record.generation >= 1 {
            for c in 0..5 {
                assert!(
                    record.fitness[c][0] > 0.0,
                    "class {c} row 0 at {}",
                    record.generation
                );
            }
        }
    }
}

#[test]
fn chosen_generation_is_the_first_maximum_and_weights_follow_gamma() {
    let state = run_with_threads(8, 2, toy_config());
    let scored: Vec<(usize, f64)> = state
        .history
        .iter()
        .filter_map(|r| r.score.map(|s| (r.generation, s)))
        .collect();
    assert_eq!(scored.first().map(|s| s.0), Some(1));
    assert!(state.history[0].score.is_none());
    let best = scored.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
    let first = scored.iter().find(|s| s.1 == best).unwrap().0;
    let chosen = state.chosen.as_ref().unwrap();
    assert_eq!(chosen.generation, first);
    assert_eq!(chosen.score, best);
    let config = toy_config();
    assert_eq!(state.history[0].accuracy_weight, config.alpha);
    for pair in state.history.windows(2) {
        let expected = config.alpha + (config.gamma - pair[0].top.accuracy).max(0.0);
        assert!((pair[1].accuracy_weight - expected).abs() < 1e-12);
    }
    let record = &state.history[chosen.generation];
    let expected =
        config.alpha * record.best_accuracy + (1.0 - config.alpha) * record.top.diversity;
    assert!((chosen.score - expected).abs() < 1e-12);
    assert_eq!(chosen.chromosomes.len(), 5);
}

#[test]
fn checkpoint_resume_matches_an_uninterrupted_run() {
    let genome = toy_genome();
    let config = toy_config();
    let uninterrupted = run_with_threads(21, 2, config.clone());

    let mut evaluator = FakeEvaluator::new(genome.clone(), 5, 60);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut run = GaRun::new(config.clone(), genome.clone(), 5, &mut rng).unwrap();
    for _ in 0..3 {
        run.step(&mut evaluator).unwrap();
    }
    let json = run.state().to_json().unwrap();
    drop(run);
    let state = GaState::from_json(&json).unwrap();
    let mut resumed = GaRun::resume(config, genome, state).unwrap();
    resumed.run(&mut evaluator).unwrap();
    assert_eq!(resumed.state(), &uninterrupted);
    assert!(
        !resumed.step(&mut evaluator).unwrap(),
        "a finished run does nothing"
    );
}

#[test]
fn resume_rejects_a_foreign_checkpoint() {
    let state = run_with_threads(3, 1, toy_config());
    let other = Genome::new(vec![GeneLayer::new(vec![0], 16)]).unwrap();
    let err = GaRun::resume(
        GaConfig {
            sensitive_layers: vec![],
            ..toy_config()
        },
        other,
        state,
    )
    .unwrap_err();
    assert!(matches!(err, GaError::CheckpointMismatch(_)), "{err}");
}

#[test]
fn early_stop_ends_the_run() {
    let config = GaConfig {
        generations: 40,
        early_stop: Some(2),
        ..toy_config()
    };
    let state = run_with_threads(5, 1, config);
    assert!(state.finished);
    let chosen = state.chosen.unwrap().generation;
    assert!(state.history.len() <= 41);
    if state.history.len() < 41 {
        assert_eq!(
            state.history.len(),
            chosen + 3,
            "stops 2 generations after the best"
        );
    }
}

#[test]
fn holdout_selection_needs_a_holdout() {
    let config = GaConfig {
        selection_split: SelectionSplit::Holdout,
        generations: 2,
        ..toy_config()
    };
    let genome = toy_genome();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut evaluator = FakeEvaluator::new(genome.clone(), 5, 60);
    let mut run = GaRun::new(config.clone(), genome.clone(), 5, &mut rng).unwrap();
    let err = run.run(&mut evaluator).unwrap_err();
    assert!(matches!(err, GaError::HoldoutUnavailable), "{err}");

    evaluator.holdout = Some((0..40).map(|i| i % 5).collect());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut run = GaRun::new(config, genome, 5, &mut rng).unwrap();
    let outcome = run.run(&mut evaluator).unwrap();
    let record = &outcome.history[1];
    assert!(record.selection_accuracy.is_some());
    assert!(evaluator.calls > 0);
}

#[test]
fn random_init_and_evaluator_errors() {
    struct Failing;
    impl PopulationEvaluator for Failing {
        type Error = FakeError;
        fn labels(&self) -> &[u32] {
            &[0, 1]
        }
        fn evaluate(&mut self, _: usize, _: &[Vec<u8>]) -> Result<Vec<SolutionOutput>, FakeError> {
            Err(FakeError)
        }
    }
    let config = GaConfig {
        init: InitStrategy::Random,
        ..toy_config()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut run = GaRun::new(config, toy_genome(), 2, &mut rng).unwrap();
    let err = run.step(&mut Failing).unwrap_err();
    assert!(err.to_string().contains("class 0"), "{err}");
    assert!(matches!(run.outcome(), Err(GaError::NoScoredGeneration)));
}

#[test]
fn presets_match_the_spec_table_and_validate() {
    let simcnn = Genome::new(simcnn_gene_layers(1.0)).unwrap();
    let rescnn = Genome::new(rescnn_gene_layers(1.0)).unwrap();
    for preset in GaPreset::ALL {
        let config = preset.config();
        let genome = if preset.name().starts_with("simcnn") {
            &simcnn
        } else {
            &rescnn
        };
        config.validate(genome).unwrap();
        assert_eq!(preset.name().parse::<GaPreset>().unwrap(), preset);
        assert_eq!((config.parents, config.keep, config.alpha), (50, 20, 0.9));
    }
    let c = GaConfig::simcnn_cifar10();
    assert_eq!(
        (c.generations, c.population, c.mutation_percent),
        (200, 100, 5.0)
    );
    assert_eq!(c.mutation_count(940), 47);
    assert_eq!(GaConfig::rescnn_svhn().mutation_count(630), 63);
    assert_eq!(GaConfig::rescnn_cifar10().mutation_count(630), 31);
    let svhn5 = GaConfig::simcnn_svhn5();
    assert_eq!(
        (svhn5.generations, svhn5.population, svhn5.gamma),
        (100, 50, 0.95)
    );
    assert_eq!(svhn5.theta.threshold(5), 0.85);
    assert_eq!(GaConfig::rescnn_svhn().theta.threshold(10), 0.85);
    assert!("simcnn-mnist".parse::<GaPreset>().is_err());
}

#[test]
fn theta_and_group_sizes_for_any_class_count() {
    assert_eq!(beam_group_sizes(10), vec![2, 4, 8, 10]);
    assert_eq!(beam_group_sizes(5), vec![2, 4, 5]);
    assert_eq!(beam_group_sizes(7), vec![2, 3, 4, 7]);
    assert_eq!(beam_group_sizes(2), vec![2]);
    let c = GaConfig::scaled_for(10);
    assert_eq!(c.theta.entries, GaConfig::simcnn_cifar10().theta.entries);
    let c = GaConfig::scaled_for(7);
    let sizes: Vec<usize> = c.theta.entries.iter().map(|e| e.0).collect();
    assert_eq!(sizes, vec![2, 3, 4, 7]);
    assert!((c.theta.threshold(7) - 0.875).abs() < 1e-12);
    assert!((c.theta.threshold(3) - 0.95).abs() < 1e-12);
    assert!((GaConfig::simcnn_cifar10().theta.threshold(20) - 0.80).abs() < 1e-12);
}

#[test]
fn invalid_configurations_are_rejected() {
    let genome = toy_genome();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for config in [
        GaConfig {
            parents: 0,
            ..toy_config()
        },
        GaConfig {
            keep: 11,
            ..toy_config()
        },
        GaConfig {
            generations: 0,
            ..toy_config()
        },
        GaConfig {
            sensitive_layers: vec![3],
            ..toy_config()
        },
        GaConfig {
            alpha: 1.5,
            ..toy_config()
        },
        GaConfig {
            other_ratios: vec![],
            ..toy_config()
        },
    ] {
        assert!(matches!(
            GaRun::new(config, genome.clone(), 5, &mut rng),
            Err(GaError::InvalidConfig(_))
        ));
    }
    assert!(GaRun::new(toy_config(), genome, 1, &mut rng).is_err());
}
