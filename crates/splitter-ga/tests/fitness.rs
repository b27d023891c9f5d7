//! Joint fitness by level-wise beam search (design §6.6), checked on hand-computed examples and
//! against brute force.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use splitter_ga::{
    accuracy_weight, composition_accuracy, diversity, evaluate_fitness, jaccard_distance,
    FitnessSettings, SolutionOutput, ThetaTable,
};

fn out(scores: &[f32], ids: &[u32]) -> SolutionOutput {
    SolutionOutput {
        scores: scores.to_vec(),
        ids: ids.to_vec(),
    }
}

fn settings(theta: f64, min_keep: usize, max_keep: usize, elitism: bool) -> FitnessSettings {
    FitnessSettings {
        alpha: 0.9,
        accuracy_weight: 0.9,
        normalise: false,
        theta: ThetaTable::new(vec![(2, theta)]),
        min_keep,
        max_keep,
        elitism,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn jaccard_and_diversity_by_hand() {
    assert!(close(jaccard_distance(&[0, 1], &[0, 1]), 0.0));
    assert!(close(jaccard_distance(&[0], &[0, 1]), 0.5));
    assert!(close(jaccard_distance(&[1, 2, 3], &[3, 4]), 0.75));
    assert!(close(jaccard_distance(&[], &[]), 0.0));
    // Pairs: ({0,1},{1}) 0.5, ({0,1},{2}) 1, ({1},{2}) 1 → mean 5/6.
    assert!(close(diversity(&[&[0, 1], &[1], &[2]]), 5.0 / 6.0));
    assert!(close(diversity(&[&[0, 1]]), 0.0));
}

#[test]
fn composition_accuracy_breaks_ties_towards_lower_class() {
    let labels = [0, 1, 1, 2];
    let s0 = [1.0f32, 2.0, 0.0, 5.0];
    let s1 = [0.0f32, 2.0, 1.0, 0.0];
    // Image 1 ties 2.0 vs 2.0 → class 0 (wrong); image 3 has label 2, not composed → skipped.
    assert!(close(
        composition_accuracy(&labels, &[(0, &s0), (1, &s1)]),
        2.0 / 3.0
    ));
    // Module order does not matter, only class indices.
    assert!(close(
        composition_accuracy(&labels, &[(1, &s1), (0, &s0)]),
        2.0 / 3.0
    ));
}

#[test]
fn accuracy_weight_rises_below_gamma() {
    assert!(close(accuracy_weight(0.9, 0.9, None), 0.9));
    assert!(close(accuracy_weight(0.9, 0.9, Some(0.8)), 1.0));
    assert!(close(accuracy_weight(0.9, 0.9, Some(0.95)), 0.9));
    let mut s = settings(0.5, 1, 10, false);
    s.accuracy_weight = 1.0;
    assert!(close(s.combine(0.8, 0.5), 0.85));
    s.normalise = true;
    assert!(close(s.combine(0.8, 0.5), 0.85 / 1.1));
}

/// Two classes, two solutions each, labels [0, 0, 1, 1]. By hand (f = 0.9·acc + 0.1·div):
/// (0,0): acc 1, div 0 → 0.9; (0,1): acc .75, div 1 → .775;
/// (1,0): acc 1 (image 1 ties 0 vs 0 → class 0), div .5 → .95; (1,1): acc .75, div 1 → .775.
fn two_class_example() -> (Vec<u32>, Vec<Vec<SolutionOutput>>) {
    let labels = vec![0, 0, 1, 1];
    let classes = vec![
        vec![
            out(&[2.0, 2.0, 0.0, 0.0], &[0, 1]),
            out(&[1.0, 0.0, 0.0, 0.0], &[0]),
        ],
        vec![
            out(&[0.0, 0.0, 1.0, 1.0], &[0, 1]),
            out(&[3.0, 0.0, 2.0, 2.0], &[2]),
        ],
    ];
    (labels, classes)
}

#[test]
fn two_classes_by_hand() {
    let (labels, classes) = two_class_example();
    // θ = 0.95: two compositions pass; kept by f: (1,0) then (0,0).
    let table =
        evaluate_fitness(&labels, &classes, &[0, 1], &settings(0.95, 1, 10, false)).unwrap();
    assert_eq!(table.compositions.len(), 2);
    assert_eq!(table.compositions[0].solutions, vec![1, 0]);
    assert_eq!(table.compositions[1].solutions, vec![0, 0]);
    assert!(close(table.compositions[0].accuracy, 1.0));
    assert!(close(table.compositions[0].diversity, 0.5));
    assert!(close(table.compositions[0].fitness, 0.95));
    assert_eq!(table.top, 0);
    assert!(close(table.fitness[0][0], 0.9));
    assert!(close(table.fitness[0][1], 0.95));
    assert!(close(table.fitness[1][0], 0.95));
    assert!(
        close(table.fitness[1][1], 0.0),
        "solution in no kept composition"
    );

    // min_keep 3: the third by accuracy is (0,1) (ties with (1,1), earlier enumeration).
    let table =
        evaluate_fitness(&labels, &classes, &[0, 1], &settings(0.95, 3, 10, false)).unwrap();
    let kept: Vec<Vec<usize>> = table
        .compositions
        .iter()
        .map(|c| c.solutions.clone())
        .collect();
    assert_eq!(kept, vec![vec![1, 0], vec![0, 0], vec![0, 1]]);
    assert!(close(table.fitness[1][1], 0.775));

    // The class order only changes the pairing, not the result here.
    let swapped =
        evaluate_fitness(&labels, &classes, &[1, 0], &settings(0.95, 1, 10, false)).unwrap();
    assert_eq!(
        swapped.fitness,
        evaluate_fitness(&labels, &classes, &[0, 1], &settings(0.95, 1, 10, false))
            .unwrap()
            .fitness
    );
}

/// Three classes, one image each (labels 0, 1, 2); solution 0 of every class scores 0
/// everywhere, solution 1 scores 1 on its own image; all identifier sets are disjoint, so every
/// diversity is 1 and f = 0.9·acc + 0.1. Class order [0, 1, 2]: level 1 merges {0, 1} and
/// carries {2}.
///
/// Level 1 (images 0, 1): (0,0) acc .5 (ties → class 0), (0,1) 1, (1,0) .5, (1,1) 1; one kept:
/// (0,1). Elitism appends (0,0).
/// Level 2 over [(0,1), (0,0)] × [0, 1]: ((0,1),0) 2/3, ((0,1),1) 1, ((0,0),0) 1/3,
/// ((0,0),1) 2/3; one kept: [0,1,1] (f 1.0); elitism appends [0,0,0] (f .9/3 + .1 = .4).
fn three_class_example() -> (Vec<u32>, Vec<Vec<SolutionOutput>>) {
    let labels = vec![0, 1, 2];
    let classes = (0..3u32)
        .map(|c| {
            let mut good = [0.0f32; 3];
            good[c as usize] = 1.0;
            vec![out(&[0.0; 3], &[c * 10]), out(&good, &[c * 10 + 1])]
        })
        .collect();
    (labels, classes)
}

fn three_class_settings(elitism: bool) -> FitnessSettings {
    FitnessSettings {
        theta: ThetaTable::new(vec![(2, 0.5), (3, 0.5)]),
        ..settings(0.5, 1, 1, elitism)
    }
}

#[test]
fn three_classes_with_carry_and_elitism_by_hand() {
    let (labels, classes) = three_class_example();
    let table =
        evaluate_fitness(&labels, &classes, &[0, 1, 2], &three_class_settings(true)).unwrap();
    let kept: Vec<Vec<usize>> = table
        .compositions
        .iter()
        .map(|c| c.solutions.clone())
        .collect();
    assert_eq!(kept, vec![vec![0, 1, 1], vec![0, 0, 0]]);
    assert!(close(table.compositions[0].fitness, 1.0));
    assert!(close(table.compositions[1].accuracy, 1.0 / 3.0));
    assert!(close(table.compositions[1].fitness, 0.4));
    assert!(close(table.compositions[1].diversity, 1.0));
    assert_eq!(table.top, 0);
    let expected = [[1.0, 0.0], [0.4, 1.0], [0.4, 1.0]];
    for (c, row) in expected.iter().enumerate() {
        for (s, &f) in row.iter().enumerate() {
            assert!(
                close(table.fitness[c][s], f),
                "class {c} solution {s}: {}",
                table.fitness[c][s]
            );
        }
    }

    let table =
        evaluate_fitness(&labels, &classes, &[0, 1, 2], &three_class_settings(false)).unwrap();
    let kept: Vec<Vec<usize>> = table
        .compositions
        .iter()
        .map(|c| c.solutions.clone())
        .collect();
    assert_eq!(kept, vec![vec![0, 1, 1]]);
    let expected = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]];
    for (c, row) in expected.iter().enumerate() {
        for (s, &f) in row.iter().enumerate() {
            assert!(close(table.fitness[c][s], f), "class {c} solution {s}");
        }
    }
}

#[test]
fn invalid_inputs_are_rejected() {
    let (labels, classes) = two_class_example();
    let s = settings(0.5, 1, 10, false);
    assert!(evaluate_fitness(&labels, &classes[..1], &[0], &s).is_err());
    assert!(evaluate_fitness(&labels, &classes, &[0, 0], &s).is_err());
    assert!(evaluate_fitness(&[0, 0, 1, 5], &classes, &[0, 1], &s).is_err());
    assert!(evaluate_fitness(&labels[..3], &classes, &[0, 1], &s).is_err());
    let mut unsorted = classes.clone();
    unsorted[0][0].ids = vec![1, 0];
    assert!(evaluate_fitness(&labels, &unsorted, &[0, 1], &s).is_err());
    let mut nan = classes;
    nan[1][1].scores[2] = f32::NAN;
    let err = evaluate_fitness(&labels, &nan, &[0, 1], &s).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
}

/// Every composition of one solution per class, by brute force.
fn all_compositions(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut all = vec![Vec::new()];
    for &n in sizes {
        all = all
            .into_iter()
            .flat_map(|prefix| {
                (0..n).map(move |s| {
                    let mut v = prefix.clone();
                    v.push(s);
                    v
                })
            })
            .collect();
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With a beam wide enough to keep everything, each solution's fitness is the maximum f of
    /// all compositions containing it.
    #[test]
    fn wide_beam_equals_brute_force(seed in any::<u64>(), n in 2usize..=5, pop in 1usize..=3, images in 1usize..=12) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<u32> = (0..images).map(|_| rng.random_range(0..n as u32)).collect();
        let classes: Vec<Vec<SolutionOutput>> = (0..n)
            .map(|_| {
                (0..pop)
                    .map(|_| {
                        // Small integer scores make ties frequent.
                        let scores = (0..images).map(|_| rng.random_range(0..3) as f32).collect();
                        let ids = (0..12u32).filter(|_| rng.random_bool(0.4)).collect();
                        SolutionOutput { scores, ids }
                    })
                    .collect()
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        let s = FitnessSettings {
            accuracy_weight: 0.95,
            theta: ThetaTable::new(vec![(2, 0.9)]),
            ..settings(0.9, 10_000, 10_000, false)
        };
        let table = evaluate_fitness(&labels, &classes, &order, &s).unwrap();
        prop_assert_eq!(table.compositions.len(), pop.pow(n as u32));
        let mut expected: Vec<Vec<f64>> = vec![vec![0.0; pop]; n];
        for comp in all_compositions(&vec![pop; n]) {
            let modules: Vec<(usize, &[f32])> =
                comp.iter().enumerate().map(|(c, &sol)| (c, classes[c][sol].scores.as_slice())).collect();
            let sets: Vec<&[u32]> = comp.iter().enumerate().map(|(c, &sol)| classes[c][sol].ids.as_slice()).collect();
            let f = s.combine(composition_accuracy(&labels, &modules), diversity(&sets));
            for (c, &sol) in comp.iter().enumerate() {
                expected[c][sol] = expected[c][sol].max(f);
            }
        }
        for (c, (got, want)) in table.fitness.iter().zip(&expected).enumerate() {
            for (sol, (g, w)) in got.iter().zip(want).enumerate() {
                prop_assert!((g - w).abs() < 1e-9, "class {} solution {}: {} vs {}", c, sol, g, w);
            }
        }
        let best = expected.iter().flatten().copied().fold(0.0, f64::max);
        prop_assert!((table.top_composition().fitness - best).abs() < 1e-9);
    }
}

/// Paper-scale timing (10 classes × 100 solutions, 10,000 images, every candidate passing θ so
/// each level keeps 500): `cargo test -p splitter-ga --release --test fitness -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn paper_scale_beam_search_timing() {
    let (n, pop, images) = (10usize, 100usize, 10_000usize);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let labels: Vec<u32> = (0..images).map(|i| (i % n) as u32).collect();
    let classes: Vec<Vec<SolutionOutput>> = (0..n)
        .map(|c| {
            (0..pop)
                .map(|_| SolutionOutput {
                    scores: labels
                        .iter()
                        .map(|&y| rng.random::<f32>() + if y as usize == c { 0.9 } else { 0.0 })
                        .collect(),
                    ids: (0..4224u32).filter(|_| rng.random_bool(0.5)).collect(),
                })
                .collect()
        })
        .collect();
    let s = FitnessSettings {
        theta: ThetaTable::new(vec![(2, 0.5)]),
        ..settings(0.5, 50, 500, true)
    };
    let order: Vec<usize> = (0..n).collect();
    let start = std::time::Instant::now();
    let table = evaluate_fitness(&labels, &classes, &order, &s).unwrap();
    println!(
        "beam search: {:.2?}, {} kept, top acc {:.4}",
        start.elapsed(),
        table.compositions.len(),
        table.top_composition().accuracy
    );
}
