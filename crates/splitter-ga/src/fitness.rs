//! Joint fitness of all classes' populations (design §6.6): accuracy and diversity of
//! compositions, found by a level-wise beam search over precomputed module outputs.
//!
//! Everything here works on precomputed numbers, so it is independent of any model: for each
//! class `c` and solution `s`, [`SolutionOutput`] holds logit `c` of that solution's module on
//! every fitness image and the solution's identifier set.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{GaConfig, ThetaTable};
use crate::error::{GaError, Result};

/// What one solution's module produced on the fitness data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolutionOutput {
    /// Raw logit of the module's own class on every fitness image, in image order.
    pub scores: Vec<f32>,
    /// Sorted, duplicate-free identifiers of the retained kernels
    /// ([`crate::Genome::identifier_set`]).
    pub ids: Vec<u32>,
}

/// Numbers that shape one generation's fitness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitnessSettings {
    /// α: 1 − α weighs diversity.
    pub alpha: f64,
    /// w: the accuracy weight of this generation ([`accuracy_weight`]).
    pub accuracy_weight: f64,
    /// Divide f by w + (1 − α) so the weights sum to 1.
    pub normalise: bool,
    /// θ by group class count.
    pub theta: ThetaTable,
    /// Lower clamp of the beam width.
    pub min_keep: usize,
    /// Upper clamp of the beam width.
    pub max_keep: usize,
    /// Append the composition of every class's row 0 when the filter dropped it (generation
    /// ≥ 1).
    pub elitism: bool,
}

impl FitnessSettings {
    /// Settings from a GA configuration for a generation with accuracy weight `w`.
    pub fn from_config(config: &GaConfig, accuracy_weight: f64, elitism: bool) -> Self {
        Self {
            alpha: config.alpha,
            accuracy_weight,
            normalise: config.normalise_weights,
            theta: config.theta.clone(),
            min_keep: config.min_keep,
            max_keep: config.max_keep,
            elitism,
        }
    }

    /// f = w·acc + (1 − α)·div, divided by w + 1 − α when normalising.
    pub fn combine(&self, accuracy: f64, diversity: f64) -> f64 {
        let diversity_weight = 1.0 - self.alpha;
        let f = self.accuracy_weight * accuracy + diversity_weight * diversity;
        let sum = self.accuracy_weight + diversity_weight;
        if self.normalise && sum > 0.0 {
            f / sum
        } else {
            f
        }
    }
}

/// The accuracy weight w: α at generation 0 (`previous_top_accuracy = None`), afterwards
/// α + max(0, γ − acc*) with acc* the previous generation's top-f composition accuracy.
pub fn accuracy_weight(alpha: f64, gamma: f64, previous_top_accuracy: Option<f64>) -> f64 {
    match previous_top_accuracy {
        None => alpha,
        Some(acc) => alpha + (gamma - acc).max(0.0),
    }
}

/// A complete composition kept by the beam search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Composition {
    /// Chosen solution (population row) per class, indexed by class.
    pub solutions: Vec<usize>,
    /// Composed accuracy on the fitness images.
    pub accuracy: f64,
    /// Mean pairwise Jaccard distance of the identifier sets.
    pub diversity: f64,
    /// f(E).
    pub fitness: f64,
}

/// Result of one generation's fitness computation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitnessTable {
    /// Fitness per class and solution: max f over the kept complete compositions containing
    /// the solution, 0 if none.
    pub fitness: Vec<Vec<f64>>,
    /// The kept complete compositions, f-ordered, then the appended elite if any.
    pub compositions: Vec<Composition>,
    /// Index in `compositions` of the top-f composition (first maximum, so the elite only wins
    /// when strictly better) \[ours\].
    pub top: usize,
}

impl FitnessTable {
    /// The top-f complete composition.
    pub fn top_composition(&self) -> &Composition {
        &self.compositions[self.top]
    }
}

/// Jaccard distance 1 − |a ∩ b| / |a ∪ b| of two sorted, duplicate-free sets; 0 when both are
/// empty.
pub fn jaccard_distance(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut inter) = (0usize, 0usize, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    distance_from_counts(inter, a.len() + b.len() - inter)
}

fn distance_from_counts(inter: usize, union: usize) -> f64 {
    if union == 0 {
        0.0
    } else {
        1.0 - inter as f64 / union as f64
    }
}

/// div(E): mean Jaccard distance over all pairs of the given identifier sets; 0 with fewer
/// than two sets.
pub fn diversity(sets: &[&[u32]]) -> f64 {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            sum += jaccard_distance(sets[i], sets[j]);
            pairs += 1;
        }
    }
    if pairs == 0 {
        0.0
    } else {
        sum / pairs as f64
    }
}

/// acc(E): on the images whose label is one of the modules' classes, predict the class whose
/// module score is largest (ties → lowest class index); fraction correct (0 when no image
/// qualifies). `modules` holds `(class, scores per image)`.
pub fn composition_accuracy(labels: &[u32], modules: &[(usize, &[f32])]) -> f64 {
    let mut correct = 0usize;
    let mut total = 0usize;
    for (i, &y) in labels.iter().enumerate() {
        if !modules.iter().any(|&(c, _)| c == y as usize) {
            continue;
        }
        total += 1;
        let mut best: Option<(f32, usize)> = None;
        for &(c, scores) in modules {
            let v = scores[i];
            best = match best {
                Some((m, bc)) if v < m || (v == m && c > bc) => Some((m, bc)),
                _ => Some((v, c)),
            };
        }
        if best.map(|(_, c)| c) == Some(y as usize) {
            correct += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64
    }
}

/// Identifier set as a bitset, for fast intersections.
struct IdBits {
    words: Vec<u64>,
    count: usize,
}

impl IdBits {
    fn new(ids: &[u32], words: usize) -> Self {
        let mut bits = vec![0u64; words];
        for &id in ids {
            bits[id as usize / 64] |= 1 << (id % 64);
        }
        Self {
            words: bits,
            count: ids.len(),
        }
    }

    fn distance(&self, other: &IdBits) -> f64 {
        let inter: usize = self
            .words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a & b).count_ones() as usize)
            .sum();
        distance_from_counts(inter, self.count + other.count - inter)
    }
}

/// A partial composition of a group's classes.
#[derive(Clone, Debug)]
struct Candidate {
    /// Solution index per class, in the group's class order.
    members: Vec<u32>,
    accuracy: f64,
    /// Sum of pairwise distances within the group.
    div_sum: f64,
    fitness: f64,
}

/// Classes merged so far and the compositions kept for them.
struct Group {
    classes: Vec<usize>,
    kept: Vec<Candidate>,
}

impl Group {
    fn elite_position(&self) -> Option<usize> {
        self.kept
            .iter()
            .position(|c| c.members.iter().all(|&m| m == 0))
    }
}

struct FitnessData<'a> {
    labels: &'a [u32],
    classes: &'a [Vec<SolutionOutput>],
    bits: Vec<Vec<IdBits>>,
}

fn validate(labels: &[u32], classes: &[Vec<SolutionOutput>], class_order: &[usize]) -> Result<()> {
    let bad = |msg: String| Err(GaError::InvalidFitnessInput(msg));
    let n = classes.len();
    if n < 2 {
        return bad(format!("{n} classes; compositions need at least 2"));
    }
    if n > u16::MAX as usize {
        return bad(format!("{n} classes exceed the supported {}", u16::MAX));
    }
    let mut seen = vec![false; n];
    if class_order.len() != n
        || class_order
            .iter()
            .any(|&c| c >= n || std::mem::replace(&mut seen[c], true))
    {
        return bad(format!(
            "class order {class_order:?} is not a permutation of 0..{n}"
        ));
    }
    if let Some((i, &y)) = labels.iter().enumerate().find(|(_, &y)| y as usize >= n) {
        return bad(format!("label {y} of image {i} is not a class (< {n})"));
    }
    for (c, solutions) in classes.iter().enumerate() {
        if solutions.is_empty() {
            return bad(format!("class {c} has no solutions"));
        }
        if solutions.len() > u32::MAX as usize {
            return bad(format!("class {c} has too many solutions"));
        }
        for (s, out) in solutions.iter().enumerate() {
            if out.scores.len() != labels.len() {
                return bad(format!(
                    "class {c} solution {s}: {} scores for {} images",
                    out.scores.len(),
                    labels.len()
                ));
            }
            if let Some(i) = out.scores.iter().position(|v| v.is_nan()) {
                return bad(format!("class {c} solution {s}: score of image {i} is NaN"));
            }
            if out.ids.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!(
                    "class {c} solution {s}: identifier set is not strictly ascending"
                ));
            }
        }
    }
    Ok(())
}

/// Computes one generation's fitness table by the level-wise beam search of design §6.6.
///
/// `labels[i]` is the class of fitness image `i`; `classes[c][s]` is solution `s` of class
/// `c`; `class_order` is this generation's shuffled class order, which fixes the pairing of
/// groups. Level 1 pairs adjacent classes over all solution pairs; every later level takes the
/// Cartesian product of adjacent groups' kept lists, an odd last group being carried. At each
/// merge the candidates are sorted by accuracy (ties keep enumeration order), the first
/// n = clamp(#{acc ≥ θ_|C|}, min_keep, max_keep) are kept (all if fewer) and ordered by f
/// (stable), and with elitism the all-row-0 composition is appended if it was dropped. At
/// least one candidate is always kept.
pub fn evaluate_fitness(
    labels: &[u32],
    classes: &[Vec<SolutionOutput>],
    class_order: &[usize],
    settings: &FitnessSettings,
) -> Result<FitnessTable> {
    validate(labels, classes, class_order)?;
    let universe = classes
        .iter()
        .flatten()
        .filter_map(|o| o.ids.last())
        .max()
        .map_or(0, |&m| m as usize + 1);
    let words = universe.div_ceil(64);
    let bits: Vec<Vec<IdBits>> = classes
        .par_iter()
        .map(|sols| sols.iter().map(|o| IdBits::new(&o.ids, words)).collect())
        .collect();
    let data = FitnessData {
        labels,
        classes,
        bits,
    };

    let mut groups: Vec<Group> = class_order
        .iter()
        .map(|&c| Group {
            classes: vec![c],
            kept: (0..classes[c].len())
                .map(|s| Candidate {
                    members: vec![s as u32],
                    accuracy: 0.0,
                    div_sum: 0.0,
                    fitness: 0.0,
                })
                .collect(),
        })
        .collect();
    while groups.len() > 1 {
        let carried = if groups.len() % 2 == 1 {
            groups.pop()
        } else {
            None
        };
        let mut pairs = Vec::with_capacity(groups.len() / 2);
        let mut it = groups.into_iter();
        while let (Some(a), Some(b)) = (it.next(), it.next()) {
            pairs.push((a, b));
        }
        let mut next: Vec<Group> = pairs
            .par_iter()
            .map(|(a, b)| merge(a, b, &data, settings))
            .collect();
        next.extend(carried);
        groups = next;
    }
    let last = groups
        .pop()
        .ok_or_else(|| GaError::InvalidFitnessInput("beam search produced no group".into()))?;

    let n = classes.len();
    let pair_count = (n * (n - 1) / 2) as f64;
    let compositions: Vec<Composition> = last
        .kept
        .iter()
        .map(|cand| {
            let mut solutions = vec![0usize; n];
            for (&c, &m) in last.classes.iter().zip(&cand.members) {
                solutions[c] = m as usize;
            }
            Composition {
                solutions,
                accuracy: cand.accuracy,
                diversity: cand.div_sum / pair_count,
                fitness: cand.fitness,
            }
        })
        .collect();
    let mut fitness: Vec<Vec<f64>> = classes.iter().map(|s| vec![0.0; s.len()]).collect();
    for comp in &compositions {
        for (c, &s) in comp.solutions.iter().enumerate() {
            if comp.fitness > fitness[c][s] {
                fitness[c][s] = comp.fitness;
            }
        }
    }
    let mut top = 0usize;
    for (i, comp) in compositions.iter().enumerate() {
        if comp.fitness > compositions[top].fitness {
            top = i;
        }
    }
    Ok(FitnessTable {
        fitness,
        compositions,
        top,
    })
}

/// Winner keys of every kept candidate of `group` on the images `rel`, candidate-major
/// (`keys[candidate * rel.len() + r]`).
///
/// A key packs the winning score, the winning class and whether that class is the image's
/// label, so that for two disjoint class groups the larger key is the merged winner (higher
/// score; on equal scores the lower class) and its lowest bit says whether the merged
/// prediction is correct.
fn winner_keys(
    group: &Group,
    rel: &[usize],
    rel_labels: &[u16],
    data: &FitnessData<'_>,
) -> Vec<u64> {
    let len = rel.len();
    let per_candidate: Vec<Vec<u64>> = group
        .kept
        .par_iter()
        .map(|cand| {
            let mut max = vec![f32::NEG_INFINITY; len];
            let mut class = vec![u16::MAX; len];
            for (&c, &m) in group.classes.iter().zip(&cand.members) {
                let scores = &data.classes[c][m as usize].scores;
                let c16 = c as u16;
                for (r, &i) in rel.iter().enumerate() {
                    let v = scores[i];
                    if v > max[r] || (v == max[r] && c16 < class[r]) {
                        max[r] = v;
                        class[r] = c16;
                    }
                }
            }
            max.iter()
                .zip(&class)
                .zip(rel_labels)
                .map(|((&v, &c), &y)| winner_key(v, c, c == y))
                .collect()
        })
        .collect();
    per_candidate.concat()
}

/// Packs (score, class, correct) into an integer ordered like the composition's argmax.
fn winner_key(score: f32, class: u16, correct: bool) -> u64 {
    // Map -0.0 to +0.0 (they compare equal), then to bits whose unsigned order is the float
    // order.
    let bits = (score + 0.0).to_bits();
    let ordered = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(ordered) << 17) | (u64::from(u16::MAX - class) << 1) | u64::from(correct)
}

/// Correct predictions when two disjoint groups' winners are merged.
fn count_correct_portable(a: &[u64], b: &[u64]) -> u64 {
    a.iter().zip(b).map(|(&x, &y)| x.max(y) & 1).sum()
}

/// [`count_correct_portable`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn count_correct_avx2(a: &[u64], b: &[u64]) -> u64 {
    a.iter().zip(b).map(|(&x, &y)| x.max(y) & 1).sum()
}

fn count_correct(a: &[u64], b: &[u64], avx2: bool) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is only true when the CPU reported AVX2 support at run time.
        return unsafe { count_correct_avx2(a, b) };
    }
    let _ = avx2;
    count_correct_portable(a, b)
}

fn cpu_has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Candidates of `a` per parallel task when counting pair accuracies.
const A_TILE: usize = 16;
/// Images per cache block when counting pair accuracies.
const IMAGE_CHUNK: usize = 1024;

/// Correct predictions of every (a, b) candidate pair, a-major, computed in cache-sized tiles.
fn pair_correct_counts(
    keys_a: &[u64],
    na: usize,
    keys_b: &[u64],
    nb: usize,
    len: usize,
) -> Vec<u64> {
    let avx2 = cpu_has_avx2();
    let tiles: Vec<Vec<u64>> = (0..na.div_ceil(A_TILE))
        .into_par_iter()
        .map(|tile| {
            let a_range = tile * A_TILE..((tile + 1) * A_TILE).min(na);
            let mut counts = vec![0u64; a_range.len() * nb];
            let mut start = 0;
            while start < len {
                let end = (start + IMAGE_CHUNK).min(len);
                for ib in 0..nb {
                    let kb = &keys_b[ib * len + start..ib * len + end];
                    for (t, ia) in a_range.clone().enumerate() {
                        let ka = &keys_a[ia * len + start..ia * len + end];
                        counts[t * nb + ib] += count_correct(ka, kb, avx2);
                    }
                }
                start = end;
            }
            counts
        })
        .collect();
    tiles.concat()
}

fn merge(a: &Group, b: &Group, data: &FitnessData<'_>, settings: &FitnessSettings) -> Group {
    let classes: Vec<usize> = a.classes.iter().chain(&b.classes).copied().collect();
    let k = classes.len();
    let pair_count = (k * (k - 1) / 2) as f64;
    let mut in_group = vec![false; data.classes.len()];
    for &c in &classes {
        in_group[c] = true;
    }
    let rel: Vec<usize> = data
        .labels
        .iter()
        .enumerate()
        .filter(|(_, &y)| in_group[y as usize])
        .map(|(i, _)| i)
        .collect();
    if rel.is_empty() {
        tracing::warn!(
            ?classes,
            "no fitness image carries any of these classes; accuracy is 0"
        );
    }
    let rel_labels: Vec<u16> = rel.iter().map(|&i| data.labels[i] as u16).collect();
    let keys_a = winner_keys(a, &rel, &rel_labels, data);
    let keys_b = winner_keys(b, &rel, &rel_labels, data);
    let correct = pair_correct_counts(&keys_a, a.kept.len(), &keys_b, b.kept.len(), rel.len());

    // Distances between every solution of a class of `a` and every solution of a class of `b`.
    let nb_classes = b.classes.len();
    let distances: Vec<Vec<f64>> = a
        .classes
        .iter()
        .flat_map(|&ca| b.classes.iter().map(move |&cb| (ca, cb)))
        .collect::<Vec<_>>()
        .par_iter()
        .map(|&(ca, cb)| {
            let (xa, xb) = (&data.bits[ca], &data.bits[cb]);
            xa.iter()
                .flat_map(|sa| xb.iter().map(move |sb| sa.distance(sb)))
                .collect()
        })
        .collect();
    let sizes_b: Vec<usize> = b.classes.iter().map(|&c| data.classes[c].len()).collect();

    let nb = b.kept.len();
    let scored: Vec<Vec<(f64, f64, f64)>> = a
        .kept
        .par_iter()
        .enumerate()
        .map(|(ia, cand_a)| {
            b.kept
                .iter()
                .enumerate()
                .map(|(ib, cand_b)| {
                    let accuracy = if rel.is_empty() {
                        0.0
                    } else {
                        correct[ia * nb + ib] as f64 / rel.len() as f64
                    };
                    let mut cross = 0.0;
                    for (i, &ma) in cand_a.members.iter().enumerate() {
                        for (j, &mb) in cand_b.members.iter().enumerate() {
                            cross += distances[i * nb_classes + j]
                                [ma as usize * sizes_b[j] + mb as usize];
                        }
                    }
                    let div_sum = cand_a.div_sum + cand_b.div_sum + cross;
                    let fitness = settings.combine(accuracy, div_sum / pair_count);
                    (accuracy, div_sum, fitness)
                })
                .collect()
        })
        .collect();
    let scored: Vec<(f64, f64, f64)> = scored.into_iter().flatten().collect();

    let total = scored.len();
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by(|&x, &y| scored[y].0.total_cmp(&scored[x].0).then(x.cmp(&y)));
    let theta = settings.theta.threshold(k);
    let passing = scored.iter().filter(|s| s.0 >= theta).count();
    let n = passing
        .clamp(settings.min_keep.min(settings.max_keep), settings.max_keep)
        .clamp(1, total);
    let mut kept: Vec<usize> = order[..n].to_vec();
    kept.sort_by(|&x, &y| scored[y].2.total_cmp(&scored[x].2));
    if settings.elitism {
        if let (Some(ea), Some(eb)) = (a.elite_position(), b.elite_position()) {
            let elite = ea * nb + eb;
            if !kept.contains(&elite) {
                kept.push(elite);
            }
        }
    }
    let kept = kept
        .into_iter()
        .map(|idx| {
            let (ia, ib) = (idx / nb, idx % nb);
            let (accuracy, div_sum, fitness) = scored[idx];
            Candidate {
                members: a.kept[ia]
                    .members
                    .iter()
                    .chain(&b.kept[ib].members)
                    .copied()
                    .collect(),
                accuracy,
                div_sum,
                fitness,
            }
        })
        .collect();
    Group { classes, kept }
}
