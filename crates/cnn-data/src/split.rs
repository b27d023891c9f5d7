//! Seeded index splits: train/validation, per-class stratified, head/tail and GradSplitter's
//! Dirichlet estimator subsets (design §2.3).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

fn clamp_fraction(f: f64) -> f64 {
    if f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A random permutation of `0..n`; the first `⌊(1 − val_fraction)·n⌋` indices are the
/// training part and the rest the validation part. `val_fraction` is clamped to \[0, 1\]
/// (non-finite counts as 0).
pub fn train_val_split(
    n: usize,
    val_fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let n_train = ((1.0 - clamp_fraction(val_fraction)) * n as f64).floor() as usize;
    let val = perm.split_off(n_train.min(n));
    (perm, val)
}

/// Like [`train_val_split`] but per class: each class's indices are shuffled and its first
/// `⌊(1 − val_fraction)·k⌋` go to training. Both lists are returned sorted ascending.
pub fn stratified_split(
    labels: &[u16],
    val_fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let f = clamp_fraction(val_fraction);
    let num = labels
        .iter()
        .copied()
        .max()
        .map_or(0, |m| usize::from(m) + 1);
    let mut per_class = vec![Vec::new(); num];
    for (i, &l) in labels.iter().enumerate() {
        per_class[usize::from(l)].push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut idx in per_class {
        idx.shuffle(rng);
        let k = ((1.0 - f) * idx.len() as f64).floor() as usize;
        val.extend_from_slice(&idx[k..]);
        idx.truncate(k);
        train.extend(idx);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// At most `n` of `indices`, taken in turn from each class (a class that runs out leaves its
/// turns to the others), in the order they appear in `indices`; returned in that order.
/// `labels[i]` is the class of image `i`. On a class-imbalanced training part (a Dirichlet
/// estimator's) the first `n` indices may hold a handful of a rare class's images; this
/// sample holds `⌈n / classes⌉` of every class that has that many (design §5.6).
///
/// ```
/// use cnn_data::class_balanced_prefix;
/// // classes 0 0 0 0 0 1 2 — the first 3 indices would be all class 0
/// let labels = [0u16, 0, 0, 0, 0, 1, 2];
/// let order = [4, 0, 3, 5, 1, 6, 2];
/// assert_eq!(class_balanced_prefix(&order, &labels, 3), vec![4, 5, 6]);
/// assert_eq!(class_balanced_prefix(&order, &labels, 5), vec![4, 0, 3, 5, 6]);
/// assert_eq!(class_balanced_prefix(&order, &labels, 99), order.to_vec());
/// ```
pub fn class_balanced_prefix(indices: &[usize], labels: &[u16], n: usize) -> Vec<usize> {
    if n >= indices.len() {
        return indices.to_vec();
    }
    let num = indices
        .iter()
        .filter_map(|&i| labels.get(i))
        .copied()
        .max()
        .map_or(0, |m| usize::from(m) + 1);
    // positions in `indices` of each class's images, in order
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); num];
    for (pos, &i) in indices.iter().enumerate() {
        if let Some(&l) = labels.get(i) {
            per_class[usize::from(l)].push(pos);
        }
    }
    let mut chosen = vec![false; indices.len()];
    let (mut taken, mut round) = (0, 0);
    while taken < n {
        let mut any = false;
        for class in &per_class {
            if taken == n {
                break;
            }
            if let Some(&pos) = class.get(round) {
                chosen[pos] = true;
                taken += 1;
                any = true;
            }
        }
        if !any {
            break;
        }
        round += 1;
    }
    indices
        .iter()
        .zip(&chosen)
        .filter_map(|(&i, &c)| c.then_some(i))
        .collect()
}

/// File-order split of `0..n` (no shuffling): the first `⌊fraction·n⌋` indices and the rest.
/// With 0.2 on an official test split this gives the module-evaluation set and the test
/// set of design §2.3.
pub fn head_split(n: usize, fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let k = ((clamp_fraction(fraction) * n as f64).floor() as usize).min(n);
    ((0..k).collect(), (k..n).collect())
}

/// Result of [`dirichlet_subset_detailed`].
#[derive(Clone, Debug, PartialEq)]
pub struct DirichletSubset {
    /// First ⌊0.8·|S|⌋ indices of the shuffled subset.
    pub train: Vec<usize>,
    /// The remaining indices.
    pub val: Vec<usize>,
    /// Images kept per class.
    pub kept: Vec<usize>,
    /// Class proportions of the accepted draw (the largest is 1).
    pub proportions: Vec<f64>,
    /// Number of Dirichlet draws made (accepted one included).
    pub draws: usize,
    /// Whether the accepted draw met `min_size` for every class that has enough images.
    pub satisfied: bool,
}

/// Draws after which [`dirichlet_subset_detailed`] stops rejecting and keeps the best draw.
pub const MAX_DIRICHLET_DRAWS: usize = 10_000;

/// GradSplitter's class-imbalanced estimator subset (design §2.3), returning `(train, val)`
/// index lists into the set whose labels are given. See [`dirichlet_subset_detailed`].
pub fn dirichlet_subset(
    labels: &[u16],
    num_classes: usize,
    alpha: f64,
    min_size: usize,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let d = dirichlet_subset_detailed(labels, num_classes, alpha, min_size, seed);
    (d.train, d.val)
}

/// The loop of design §2.3 with a `ChaCha8Rng` seeded from `seed`:
///
/// ```text
/// repeat:
///     p ← Dirichlet(α·1_N);  p ← p / max p               (largest class keeps 100 %)
///     for each class c: shuffle its ascending indices, keep the first ⌊p_c·|I_c|⌋
/// until every class keeps ≥ min_size                     (rejected draws consume the rng)
/// S ← concat(kept_0 … kept_{N−1}); shuffle(S)
/// train ← S[..⌊0.8·|S|⌋], val ← the rest
/// ```
///
/// Dirichlet samples are normalised Gamma(α, 1) draws. A class with fewer than `min_size`
/// images only has to keep all of them. Labels `≥ num_classes` are ignored. If no draw is
/// accepted within [`MAX_DIRICHLET_DRAWS`], the draw with the largest minimum slack is used
/// and `satisfied` is false. A non-positive or non-finite `alpha` gives every class
/// proportion 1 (the whole set).
pub fn dirichlet_subset_detailed(
    labels: &[u16],
    num_classes: usize,
    alpha: f64,
    min_size: usize,
    seed: u64,
) -> DirichletSubset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_class = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(v) = by_class.get_mut(usize::from(l)) {
            v.push(i);
        }
    }
    let required: Vec<usize> = by_class.iter().map(|v| v.len().min(min_size)).collect();
    let gamma = if alpha.is_finite() && alpha > 0.0 {
        Gamma::new(alpha, 1.0).ok()
    } else {
        tracing::warn!(
            alpha,
            "invalid Dirichlet alpha: every class keeps all its images"
        );
        None
    };
    let mut best: Option<(i64, Vec<Vec<usize>>, Vec<f64>)> = None;
    let mut draws = 0;
    let mut satisfied = false;
    while draws < MAX_DIRICHLET_DRAWS {
        draws += 1;
        let mut p: Vec<f64> = match &gamma {
            Some(g) => (0..num_classes).map(|_| g.sample(&mut rng)).collect(),
            None => vec![1.0; num_classes],
        };
        let max = p.iter().copied().fold(0.0f64, f64::max);
        if max > 0.0 && max.is_finite() {
            for v in &mut p {
                *v /= max;
            }
        } else {
            // All Gamma draws underflowed: no class would be "largest"; treat as a rejected
            // draw that still consumed the generator.
            p = vec![0.0; num_classes];
        }
        let mut kept = Vec::with_capacity(num_classes);
        for (c, idx) in by_class.iter().enumerate() {
            let mut idx = idx.clone();
            idx.shuffle(&mut rng);
            let k = ((p[c] * idx.len() as f64).floor() as usize).min(idx.len());
            idx.truncate(k);
            kept.push(idx);
        }
        let slack = kept
            .iter()
            .zip(&required)
            .map(|(k, &r)| k.len() as i64 - r as i64)
            .min()
            .unwrap_or(0);
        let accept = slack >= 0 && max > 0.0;
        if accept || best.as_ref().is_none_or(|b| slack > b.0) {
            best = Some((slack, kept, p));
        }
        if accept {
            satisfied = true;
            break;
        }
    }
    if !satisfied {
        tracing::warn!(
            draws,
            min_size,
            alpha,
            "no Dirichlet draw met min_size; using the closest draw"
        );
    }
    let (_, kept, proportions) = best.unwrap_or_default();
    let kept_counts = kept.iter().map(Vec::len).collect();
    let mut subset: Vec<usize> = kept.into_iter().flatten().collect();
    subset.shuffle(&mut rng);
    let n_train = subset.len() * 4 / 5;
    let val = subset.split_off(n_train);
    DirichletSubset {
        train: subset,
        val,
        kept: kept_counts,
        proportions,
        draws,
        satisfied,
    }
}
