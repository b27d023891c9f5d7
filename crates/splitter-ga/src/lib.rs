//! CNNSplitter's genetic search (design §6.3–6.7), independent of any model.
//!
//! One binary chromosome per class says which kernel groups of each gene-layer its module
//! keeps ([`Genome`]). Populations start heuristically ([`initial_population`]), breed by
//! one-point crossover and mutation ([`next_population`]), and are scored jointly: a
//! level-wise beam search over compositions of one solution per class weighs composed
//! accuracy against kernel diversity ([`evaluate_fitness`]). [`GaRun`] drives the generations
//! and picks the best one; the model enters only through a [`PopulationEvaluator`], which
//! turns chromosomes into module scores and identifier sets.
//!
//! Everything random draws from a `ChaCha8Rng` derived from one seed, and parallel work is
//! collected in a fixed order, so a run is identical for a seed whatever the thread count.
//!
//! ```
//! use rand::SeedableRng;
//! use rand_chacha::ChaCha8Rng;
//! use splitter_ga::{GaConfig, GaRun, GeneLayer, Genome, PopulationEvaluator, SolutionOutput};
//!
//! /// A stand-in for a model: a module's own-class score grows with the genes it keeps.
//! struct Toy {
//!     genome: Genome,
//!     labels: Vec<u32>,
//! }
//!
//! impl PopulationEvaluator for Toy {
//!     type Error = std::convert::Infallible;
//!     fn labels(&self) -> &[u32] {
//!         &self.labels
//!     }
//!     fn evaluate(
//!         &mut self,
//!         class: usize,
//!         chromosomes: &[Vec<u8>],
//!     ) -> Result<Vec<SolutionOutput>, Self::Error> {
//!         let orders = self.genome.identity_orders();
//!         Ok(chromosomes
//!             .iter()
//!             .map(|chromosome| {
//!                 let kept = chromosome.iter().filter(|&&g| g == 1).count() as f32;
//!                 let scores = self
//!                     .labels
//!                     .iter()
//!                     .enumerate()
//!                     .map(|(i, &y)| if y as usize == class { kept } else { (i % 7) as f32 })
//!                     .collect();
//!                 let ids = self
//!                     .genome
//!                     .chromosome_identifier_set(chromosome, &orders)
//!                     .expect("chromosomes come from the same genome");
//!                 SolutionOutput { scores, ids }
//!             })
//!             .collect())
//!     }
//! }
//!
//! # fn main() -> Result<(), splitter_ga::GaError> {
//! let genome = Genome::new(vec![GeneLayer::new(vec![0], 8), GeneLayer::new(vec![1], 16)])?;
//! assert_eq!(genome.gene_count(), 18);
//! let mut config = GaConfig::scaled_for(3);
//! config.generations = 3;
//! config.population = 6;
//! config.parents = 4;
//! config.keep = 2;
//! config.min_keep = 4;
//! config.max_keep = 10;
//! let labels: Vec<u32> = (0..30).map(|i| i % 3).collect();
//! let mut evaluator = Toy { genome: genome.clone(), labels };
//! let mut rng = ChaCha8Rng::seed_from_u64(7);
//! let mut run = GaRun::new(config, genome, 3, &mut rng)?;
//! let outcome = run.run(&mut evaluator)?;
//! assert_eq!(outcome.history.len(), 4); // generations 0..=3
//! assert!((1..=3).contains(&outcome.chosen.generation));
//! assert_eq!(outcome.chosen.chromosomes.len(), 3); // one module per class
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod config;
mod decompose;
mod error;
mod evaluator;
mod fitness;
mod genome;
mod importance;
mod operators;
mod population;
mod ratios;
mod run;
mod sensitivity;

pub use cnn_models::checkpoint::{Checkpointing, Resume};
pub use config::{beam_group_sizes, GaConfig, GaPreset, InitStrategy, SelectionSplit, ThetaTable};
pub use decompose::{
    decompose, ga_config_for, ga_split, ga_split_with_holdout, near_chance, GaDecomposeConfig,
    GaRecord, GaSplitConfig, GaSplitEvent, GaSplitResult, GenerationSummary, CHECKPOINT_FORMAT,
    DEFAULT_PROBE_TOLERANCE, GA_CHECKPOINT, NEAR_CHANCE_MARGIN, PRELUDE_FILE,
    PRELUDE_FORMAT_VERSION, STATE_FILE,
};
pub use error::{GaError, Result};
pub use evaluator::{chromosome_masks, gene_layers_of, ModelEvaluator};
pub use fitness::{
    accuracy_weight, composition_accuracy, diversity, evaluate_fitness, jaccard_distance,
    Composition, FitnessSettings, FitnessTable, SolutionOutput,
};
pub use genome::{
    array_split_sizes, group_count, rescnn_gene_layers, simcnn_gene_layers, GeneLayer, Genome,
};
pub use importance::{kernel_importance, KernelImportance};
pub use operators::{crossover, fitness_order, mutate, mutation_count, next_population};
pub use population::{
    heuristic_population, initial_population, kept_groups, random_population,
    sample_important_groups,
};
pub use ratios::{
    probe_keep_ratios, ratio_lists, InitRatios, RatioProbe, PROBE_DRAWS, PROBE_LADDER,
};
pub use run::{
    generation_rng, ChosenGeneration, GaOutcome, GaRun, GaState, GenerationRecord,
    PopulationEvaluator, CHECKPOINT_FORMAT_VERSION,
};
pub use sensitivity::{composed_masked_accuracy, layer_sensitivity, LayerSensitivity};
