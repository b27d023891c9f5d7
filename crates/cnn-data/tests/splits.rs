//! Seeded splits and the Dirichlet estimator sampler (design §2.3, §12.10).

use std::collections::HashSet;

use cnn_data::{
    class_balanced_prefix, dirichlet_subset, dirichlet_subset_detailed, head_split,
    stratified_split, train_val_split,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn train_val_split_is_a_seeded_partition() {
    let mut r1 = ChaCha8Rng::seed_from_u64(1009);
    let (t, v) = train_val_split(103, 0.2, &mut r1);
    assert_eq!((t.len(), v.len()), (82, 21));
    let all: HashSet<usize> = t.iter().chain(&v).copied().collect();
    assert_eq!(all.len(), 103);
    let mut r2 = ChaCha8Rng::seed_from_u64(1009);
    assert_eq!(train_val_split(103, 0.2, &mut r2), (t, v));
    let mut r3 = ChaCha8Rng::seed_from_u64(0);
    assert_eq!(train_val_split(5, f64::NAN, &mut r3).1.len(), 0);
    assert_eq!(train_val_split(0, 0.2, &mut r3), (vec![], vec![]));
}

#[test]
fn stratified_and_head_splits() {
    let labels: Vec<u16> = (0..100).map(|i| (i % 4) as u16).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (t, v) = stratified_split(&labels, 0.2, &mut rng);
    assert_eq!((t.len(), v.len()), (80, 20));
    for c in 0..4 {
        assert_eq!(v.iter().filter(|&&i| labels[i] == c).count(), 5);
    }
    assert!(t.windows(2).all(|w| w[0] < w[1]));
    let (a, b) = head_split(26032, 0.2);
    assert_eq!((a.len(), b.len()), (5206, 20826));
    assert_eq!((a[0], b[0]), (0, 5206));
}

#[test]
fn dirichlet_detail_reports_a_valid_draw() {
    // 10 classes of 500.
    let labels: Vec<u16> = (0..5000).map(|i| (i % 10) as u16).collect();
    let d = dirichlet_subset_detailed(&labels, 10, 1.0, 100, 1);
    assert!(d.satisfied);
    assert!(d.kept.iter().all(|&k| k >= 100));
    assert!(d.kept.contains(&500));
    assert_eq!(d.train.len(), (d.train.len() + d.val.len()) * 4 / 5);
    assert!(d.proportions.contains(&1.0));
    // Infeasible min_size (a class has 3 images): the class only has to keep all of them.
    let mut small = labels.clone();
    small.extend([10u16; 3]);
    let d = dirichlet_subset_detailed(&small, 11, 1.0, 50, 2);
    assert!(d.satisfied);
    assert_eq!(d.kept[10], 3);
    // Invalid alpha: every class keeps everything.
    let d = dirichlet_subset_detailed(&labels, 10, -1.0, 10, 0);
    assert_eq!(d.train.len() + d.val.len(), 5000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn dirichlet_subset_invariants(
        counts in proptest::collection::vec(20usize..200, 2..8),
        alpha in 0.3f64..3.0,
        min_size in 0usize..15,
        seed in any::<u64>(),
    ) {
        let n = counts.len();
        // Interleave the classes so indices of a class are not contiguous.
        let mut labels = Vec::new();
        let mut left = counts.clone();
        while left.iter().any(|&c| c > 0) {
            for (c, l) in left.iter_mut().enumerate() {
                if *l > 0 { labels.push(c as u16); *l -= 1; }
            }
        }
        let (train, val) = dirichlet_subset(&labels, n, alpha, min_size, seed);
        let d = dirichlet_subset_detailed(&labels, n, alpha, min_size, seed);
        prop_assert_eq!(&train, &d.train);
        prop_assert_eq!(&val, &d.val);
        let t: HashSet<usize> = train.iter().copied().collect();
        let v: HashSet<usize> = val.iter().copied().collect();
        prop_assert_eq!(t.len(), train.len());
        prop_assert_eq!(v.len(), val.len());
        prop_assert!(t.is_disjoint(&v));
        let total = train.len() + val.len();
        prop_assert_eq!(train.len(), total * 4 / 5);
        let mut kept = vec![0usize; n];
        for &i in train.iter().chain(&val) {
            prop_assert!(i < labels.len());
            kept[labels[i] as usize] += 1;
        }
        prop_assert_eq!(&kept, &d.kept);
        if d.satisfied {
            for &k in &kept { prop_assert!(k >= min_size); }
        }
        // The largest-proportion class keeps all its images.
        let (imax, _) = d.proportions.iter().enumerate().fold((0, f64::MIN), |a, (i, &p)| if p > a.1 { (i, p) } else { a });
        prop_assert_eq!(d.proportions[imax], 1.0);
        prop_assert_eq!(kept[imax], counts[imax]);
        // Same seed, same subset.
        prop_assert_eq!(dirichlet_subset(&labels, n, alpha, min_size, seed), (train, val));
    }
}

/// A Dirichlet estimator's training part: class 0 has 500 images, class 9 has 8. The first
/// 100 indices hold about one image of class 9; the balanced sample holds all 8 of
/// class 9 and 10 or 11 of the others (the regression behind `decompose --limit-sampling`, design §5.6).
#[test]
fn class_balanced_prefix_gives_rare_classes_their_share() {
    let counts = [500usize, 300, 200, 150, 100, 60, 40, 20, 12, 8];
    let mut labels = Vec::new();
    for (c, &k) in counts.iter().enumerate() {
        labels.extend(std::iter::repeat_n(c as u16, k));
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    use rand::seq::SliceRandom;
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(7));
    let per_class = |idx: &[usize]| {
        let mut k = [0usize; 10];
        for &i in idx {
            k[usize::from(labels[i])] += 1;
        }
        k
    };
    let first = per_class(&order[..100]);
    assert!(first[9] <= 2, "{first:?}");
    let balanced = class_balanced_prefix(&order, &labels, 100);
    assert_eq!(
        per_class(&balanced),
        [11, 11, 10, 10, 10, 10, 10, 10, 10, 8]
    );
    // 200 images: class 9 has only 8, its turns go to the others in class order
    let balanced = class_balanced_prefix(&order, &labels, 200);
    assert_eq!(balanced.len(), 200);
    assert_eq!(
        per_class(&balanced),
        [23, 23, 23, 23, 23, 23, 22, 20, 12, 8]
    );
}

proptest! {
    /// The sample is a subsequence of the indices, of size min(n, len), made of each class's
    /// first images, and fair: a class that did not run out has at most one image fewer than
    /// any other class.
    #[test]
    fn class_balanced_prefix_is_a_fair_ordered_subsample(
        labels in prop::collection::vec(0u16..6, 0..120),
        n in 0usize..150,
        seed in 0u64..1000,
    ) {
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let out = class_balanced_prefix(&order, &labels, n);
        prop_assert_eq!(out.len(), n.min(order.len()));
        // a subsequence of `order`
        let mut it = order.iter();
        for i in &out {
            prop_assert!(it.any(|j| j == i));
        }
        let count = |c: u16, idx: &[usize]| idx.iter().filter(|&&i| labels[i] == c).count();
        for c in 0..6u16 {
            // each class's images are its first ones in `order`
            let mine: Vec<usize> = out.iter().copied().filter(|&i| labels[i] == c).collect();
            let firsts: Vec<usize> =
                order.iter().copied().filter(|&i| labels[i] == c).take(mine.len()).collect();
            prop_assert_eq!(&mine, &firsts);
            if count(c, &out) < count(c, &order) {
                for d in 0..6u16 {
                    prop_assert!(count(d, &out) <= count(c, &out) + 1);
                }
            }
        }
    }
}
