//! GA configuration (design §6.5 table, §6.6, §6.7, §11.11).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{GaError, Result};
use crate::genome::Genome;

/// How generation 0 is drawn (design §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitStrategy {
    /// Keep ⌊G·r⌋ groups per gene-layer, r from the layer's ratio list, favouring important
    /// groups.
    Heuristic,
    /// Every gene Bernoulli(0.5).
    Random,
}

/// Which data scores generations for the final choice (design §6.7, §11.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionSplit {
    /// The fitness data, as the reference does.
    Fitness,
    /// A separate holdout provided by the evaluator.
    Holdout,
}

/// Accuracy thresholds θ of the beam search by group class count (design §6.6).
///
/// Sizes missing from the table are interpolated linearly between the nearest listed sizes
/// and clamped to the first/last entry outside them \[ours\].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThetaTable {
    /// `(class count, θ)` pairs, ascending by class count.
    pub entries: Vec<(usize, f64)>,
}

impl ThetaTable {
    /// A table from `(class count, θ)` pairs (sorted here).
    pub fn new(mut entries: Vec<(usize, f64)>) -> Self {
        entries.sort_by_key(|&(size, _)| size);
        Self { entries }
    }

    /// θ for a group of `size` classes (0.0 for an empty table).
    pub fn threshold(&self, size: usize) -> f64 {
        let Some(&(first_size, first)) = self.entries.first() else {
            return 0.0;
        };
        if size <= first_size {
            return first;
        }
        for pair in self.entries.windows(2) {
            let (s0, t0) = pair[0];
            let (s1, t1) = pair[1];
            if size == s1 {
                return t1;
            }
            if size > s0 && size < s1 {
                let frac = (size - s0) as f64 / (s1 - s0) as f64;
                return t0 + frac * (t1 - t0);
            }
        }
        self.entries.last().map_or(0.0, |&(_, t)| t)
    }
}

/// Class counts of the groups formed at each level of the beam search for `num_classes`
/// classes, sorted ascending without repeats (10 → [2, 4, 8, 10]; 5 → [2, 4, 5]).
pub fn beam_group_sizes(num_classes: usize) -> Vec<usize> {
    let mut groups = vec![1usize; num_classes];
    let mut sizes = Vec::new();
    while groups.len() > 1 {
        let mut next = Vec::with_capacity(groups.len().div_ceil(2));
        for pair in groups.chunks(2) {
            if pair.len() == 2 {
                sizes.push(pair[0] + pair[1]);
                next.push(pair[0] + pair[1]);
            } else {
                next.push(pair[0]);
            }
        }
        groups = next;
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Every number of one CNNSplitter GA run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaConfig {
    /// Generations of evolution; generations 0..=generations are evaluated.
    pub generations: usize,
    /// Solutions per class.
    pub population: usize,
    /// Parents P: the P fittest solutions breed.
    pub parents: usize,
    /// Solutions copied unchanged (best first) into the next population.
    pub keep: usize,
    /// Mutation percentage: ⌊pct·genes/100⌋ positions redrawn per offspring.
    pub mutation_percent: f64,
    /// Gene-layer indices treated as sensitive by the heuristic initialisation.
    pub sensitive_layers: Vec<usize>,
    /// Keep ratios drawn for sensitive gene-layers.
    pub sensitive_ratios: Vec<f64>,
    /// Keep ratios drawn for the other gene-layers.
    pub other_ratios: Vec<f64>,
    /// α: accuracy weight at generation 0; 1 − α weighs diversity.
    pub alpha: f64,
    /// γ: accuracy target raising the accuracy weight to α + max(0, γ − acc*).
    pub gamma: f64,
    /// θ by group class count.
    pub theta: ThetaTable,
    /// Lower clamp of the beam width per level (50 in the reference).
    pub min_keep: usize,
    /// Upper clamp of the beam width per level (500 in the reference).
    pub max_keep: usize,
    /// Initial population strategy.
    pub init: InitStrategy,
    /// Divide the fitness by w + (1 − α) so the weights sum to 1 (design §11.11; off = reference).
    pub normalise_weights: bool,
    /// Stop after this many generations without a better generation score.
    pub early_stop: Option<usize>,
    /// Data on which generations are scored for the final choice.
    pub selection_split: SelectionSplit,
}

impl GaConfig {
    const THETA_10: [(usize, f64); 4] = [(2, 0.95), (4, 0.95), (8, 0.85), (10, 0.80)];

    /// SimCNN on CIFAR-10 (design §6.5 row 1); the other presets change some of its values.
    pub fn simcnn_cifar10() -> Self {
        Self {
            generations: 200,
            population: 100,
            parents: 50,
            keep: 20,
            mutation_percent: 5.0,
            sensitive_layers: (0..=6).collect(),
            sensitive_ratios: vec![0.6, 0.7, 0.8],
            other_ratios: vec![0.4, 0.5, 0.6, 0.7],
            alpha: 0.9,
            gamma: 0.9,
            theta: ThetaTable::new(Self::THETA_10.to_vec()),
            min_keep: 50,
            max_keep: 500,
            init: InitStrategy::Heuristic,
            normalise_weights: false,
            early_stop: None,
            selection_split: SelectionSplit::Fitness,
        }
    }

    /// ResCNN on CIFAR-10 (design §6.5 row 2).
    pub fn rescnn_cifar10() -> Self {
        Self {
            sensitive_layers: vec![0, 2, 3, 5],
            sensitive_ratios: vec![0.5, 0.6, 0.7],
            other_ratios: vec![0.2, 0.3, 0.4],
            ..Self::simcnn_cifar10()
        }
    }

    /// SimCNN on SVHN (design §6.5 row 3).
    pub fn simcnn_svhn() -> Self {
        Self {
            mutation_percent: 10.0,
            sensitive_ratios: vec![0.4, 0.5, 0.6],
            other_ratios: vec![0.1, 0.2, 0.3, 0.4],
            gamma: 0.95,
            ..Self::simcnn_cifar10()
        }
    }

    /// ResCNN on SVHN (design §6.5 row 4).
    pub fn rescnn_svhn() -> Self {
        Self {
            mutation_percent: 10.0,
            sensitive_layers: vec![2, 3, 5],
            sensitive_ratios: vec![0.3, 0.4, 0.5],
            other_ratios: vec![0.2, 0.3],
            theta: ThetaTable::new(vec![(2, 0.95), (4, 0.95), (8, 0.90), (10, 0.85)]),
            ..Self::simcnn_cifar10()
        }
    }

    /// SimCNN on SVHN digits 0–4 (design §6.5 row 5).
    pub fn simcnn_svhn5() -> Self {
        Self {
            generations: 100,
            population: 50,
            mutation_percent: 10.0,
            sensitive_layers: (0..=4).collect(),
            sensitive_ratios: vec![0.4, 0.5, 0.6, 0.7],
            other_ratios: vec![0.3, 0.4],
            gamma: 0.95,
            theta: ThetaTable::new(vec![(2, 0.95), (4, 0.90), (5, 0.85)]),
            ..Self::simcnn_cifar10()
        }
    }

    /// ResCNN on SVHN digits 0–4 (design §6.5 row 6).
    pub fn rescnn_svhn5() -> Self {
        Self {
            generations: 100,
            population: 50,
            mutation_percent: 10.0,
            sensitive_layers: vec![3, 5],
            sensitive_ratios: vec![0.3, 0.4, 0.5],
            other_ratios: vec![0.2, 0.3],
            theta: ThetaTable::new(vec![(2, 0.95), (4, 0.90), (5, 0.85)]),
            ..Self::simcnn_cifar10()
        }
    }

    /// Default for a task of `num_classes` classes \[ours\]: the SimCNN CIFAR-10 numbers, no
    /// sensitive layers (fill them from the layer-sensitivity rule), and θ listed for every
    /// group size the beam search forms, interpolated on the CIFAR-10 table by size.
    pub fn scaled_for(num_classes: usize) -> Self {
        let reference = ThetaTable::new(Self::THETA_10.to_vec());
        let theta: Vec<(usize, f64)> = beam_group_sizes(num_classes)
            .into_iter()
            .map(|s| (s, reference.threshold(s)))
            .collect();
        let mut config = Self::simcnn_cifar10();
        config.sensitive_layers.clear();
        config.theta = ThetaTable::new(theta);
        config
    }

    /// Offspring per generation: population − keep.
    pub fn offspring(&self) -> usize {
        self.population - self.keep
    }

    /// Positions mutated per offspring for a genome of `genes` genes.
    pub fn mutation_count(&self, genes: usize) -> usize {
        crate::operators::mutation_count(self.mutation_percent, genes)
    }

    /// Checks every value, and the sensitive layers against `genome`.
    pub fn validate(&self, genome: &Genome) -> Result<()> {
        let bad = |msg: String| Err(GaError::InvalidConfig(msg));
        if self.generations == 0 {
            return bad("generations must be ≥ 1 (generation choice starts at 1)".into());
        }
        if self.population == 0 {
            return bad("population must be ≥ 1".into());
        }
        if self.parents == 0 || self.parents > self.population {
            return bad(format!(
                "parents = {} must be in 1..={}",
                self.parents, self.population
            ));
        }
        if self.keep == 0 || self.keep > self.population {
            return bad(format!(
                "keep = {} must be in 1..={}",
                self.keep, self.population
            ));
        }
        if !(0.0..=100.0).contains(&self.mutation_percent) {
            return bad(format!(
                "mutation_percent = {} must be in [0, 100]",
                self.mutation_percent
            ));
        }
        for (name, v) in [("alpha", self.alpha), ("gamma", self.gamma)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} = {v} must be in [0, 1]"));
            }
        }
        if self.init == InitStrategy::Heuristic {
            for (name, list) in [
                ("sensitive_ratios", &self.sensitive_ratios),
                ("other_ratios", &self.other_ratios),
            ] {
                if list.is_empty() {
                    return bad(format!("{name} is empty"));
                }
                if let Some(r) = list.iter().find(|r| !(0.0..=1.0).contains(*r)) {
                    return bad(format!("{name} holds {r}, outside [0, 1]"));
                }
            }
        }
        if let Some(&l) = self
            .sensitive_layers
            .iter()
            .find(|&&l| l >= genome.layers().len())
        {
            return bad(format!(
                "sensitive gene-layer {l} does not exist (the genome has {})",
                genome.layers().len()
            ));
        }
        if self.theta.entries.is_empty() {
            return bad("theta table is empty".into());
        }
        if self.max_keep == 0 || self.min_keep > self.max_keep {
            return bad(format!(
                "beam clamp [{}, {}] is empty",
                self.min_keep, self.max_keep
            ));
        }
        if self.early_stop == Some(0) {
            return bad("early_stop must be ≥ 1 when set".into());
        }
        Ok(())
    }
}

/// The six configurations of the spec's table, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GaPreset {
    /// SimCNN, CIFAR-10.
    SimcnnCifar10,
    /// ResCNN, CIFAR-10.
    RescnnCifar10,
    /// SimCNN, SVHN.
    SimcnnSvhn,
    /// ResCNN, SVHN.
    RescnnSvhn,
    /// SimCNN, SVHN digits 0–4.
    SimcnnSvhn5,
    /// ResCNN, SVHN digits 0–4.
    RescnnSvhn5,
}

impl GaPreset {
    /// All presets in table order.
    pub const ALL: [GaPreset; 6] = [
        GaPreset::SimcnnCifar10,
        GaPreset::RescnnCifar10,
        GaPreset::SimcnnSvhn,
        GaPreset::RescnnSvhn,
        GaPreset::SimcnnSvhn5,
        GaPreset::RescnnSvhn5,
    ];

    /// The preset's name, e.g. `simcnn-cifar10`.
    pub fn name(self) -> &'static str {
        match self {
            GaPreset::SimcnnCifar10 => "simcnn-cifar10",
            GaPreset::RescnnCifar10 => "rescnn-cifar10",
            GaPreset::SimcnnSvhn => "simcnn-svhn",
            GaPreset::RescnnSvhn => "rescnn-svhn",
            GaPreset::SimcnnSvhn5 => "simcnn-svhn5",
            GaPreset::RescnnSvhn5 => "rescnn-svhn5",
        }
    }

    /// The preset's configuration.
    pub fn config(self) -> GaConfig {
        match self {
            GaPreset::SimcnnCifar10 => GaConfig::simcnn_cifar10(),
            GaPreset::RescnnCifar10 => GaConfig::rescnn_cifar10(),
            GaPreset::SimcnnSvhn => GaConfig::simcnn_svhn(),
            GaPreset::RescnnSvhn => GaConfig::rescnn_svhn(),
            GaPreset::SimcnnSvhn5 => GaConfig::simcnn_svhn5(),
            GaPreset::RescnnSvhn5 => GaConfig::rescnn_svhn5(),
        }
    }
}

impl fmt::Display for GaPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GaPreset {
    type Err = GaError;

    fn from_str(s: &str) -> Result<Self> {
        GaPreset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = GaPreset::ALL.iter().map(|p| p.name()).collect();
                GaError::InvalidConfig(format!(
                    "unknown GA preset {s:?}; known: {}",
                    names.join(", ")
                ))
            })
    }
}
