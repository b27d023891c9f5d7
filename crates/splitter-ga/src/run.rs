//! The GA driver (design §6.5–6.7): one population per class, joint fitness, generation choice,
//! checkpointable state.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{GaConfig, SelectionSplit};
use crate::error::{GaError, Result};
use crate::fitness::{
    accuracy_weight, composition_accuracy, evaluate_fitness, Composition, FitnessSettings,
    SolutionOutput,
};
use crate::genome::Genome;
use crate::operators::{fitness_order, next_population};
use crate::population::initial_population;

/// Version of the [`GaState`] checkpoint format.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// Runs the modules that chromosomes describe; the one model-dependent part of the GA.
///
/// For class `c`, a chromosome decodes (through class `c`'s importance order) to a module of
/// the model; its output is logit `c` on every fitness image plus its identifier set
/// ([`Genome::chromosome_identifier_set`]).
pub trait PopulationEvaluator {
    /// The evaluator's own error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Labels (class indices `0..num_classes`) of the fitness images, in image order.
    fn labels(&self) -> &[u32];

    /// Evaluates every chromosome of class `class`'s population, returning one output per
    /// chromosome in the same order.
    fn evaluate(
        &mut self,
        class: usize,
        chromosomes: &[Vec<u8>],
    ) -> std::result::Result<Vec<SolutionOutput>, Self::Error>;

    /// Labels of a separate generation-selection holdout, if the evaluator has one.
    fn holdout_labels(&self) -> Option<&[u32]> {
        None
    }

    /// Logit `class` of one chromosome's module on every holdout image; `None` without a
    /// holdout.
    fn evaluate_holdout(
        &mut self,
        class: usize,
        chromosome: &[u8],
    ) -> std::result::Result<Option<Vec<f32>>, Self::Error> {
        let _ = (class, chromosome);
        Ok(None)
    }
}

/// What was measured in one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// Generation index (0 = initial population).
    pub generation: usize,
    /// The shuffled class order that paired the beam-search groups.
    pub class_order: Vec<usize>,
    /// Accuracy weight w used in f.
    pub accuracy_weight: f64,
    /// Fitness per class and population row.
    pub fitness: Vec<Vec<f64>>,
    /// Highest fitness per class.
    pub best_fitness: Vec<f64>,
    /// Mean fitness per class.
    pub mean_fitness: Vec<f64>,
    /// The top-f complete composition.
    pub top: Composition,
    /// Number of complete compositions kept by the beam search.
    pub kept_compositions: usize,
    /// E_g: each class's highest-fitness row (first maximum).
    pub best_solutions: Vec<usize>,
    /// Composed accuracy of E_g on the fitness images.
    pub best_accuracy: f64,
    /// Kernels E_g's module of each class keeps (counted per physical conv).
    #[serde(default)]
    pub best_kernels: Vec<usize>,
    /// Composed accuracy of E_g on the selection split (generation ≥ 1).
    pub selection_accuracy: Option<f64>,
    /// score_g = α·selection accuracy + (1 − α)·div(top composition) (generation ≥ 1).
    pub score: Option<f64>,
}

/// The generation chosen so far (first maximum of score_g) and its modules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChosenGeneration {
    /// Generation index.
    pub generation: usize,
    /// score_g.
    pub score: f64,
    /// Composed accuracy of E_g on the selection split.
    pub accuracy: f64,
    /// Diversity of the generation's top-f composition.
    pub diversity: f64,
    /// E_g's chromosome per class.
    pub chromosomes: Vec<Vec<u8>>,
}

/// Everything needed to continue a run exactly where it stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaState {
    /// [`CHECKPOINT_FORMAT_VERSION`] at writing time.
    pub format_version: u32,
    /// Classes (one population each).
    pub num_classes: usize,
    /// Genes per chromosome.
    pub gene_count: usize,
    /// Seed from which every generation's RNG is derived ([`generation_rng`]).
    pub run_seed: u64,
    /// Next generation to evaluate.
    pub next_generation: usize,
    /// Current (not yet evaluated) population per class.
    pub populations: Vec<Vec<Vec<u8>>>,
    /// acc* of the last evaluated generation.
    pub previous_top_accuracy: Option<f64>,
    /// One record per evaluated generation.
    pub history: Vec<GenerationRecord>,
    /// Best generation so far.
    pub chosen: Option<ChosenGeneration>,
    /// Generations since `chosen` last improved.
    pub generations_without_improvement: usize,
    /// No generation is left to run.
    pub finished: bool,
}

impl GaState {
    /// Serialises the state as JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Reads a state written by [`GaState::to_json`].
    pub fn from_json(json: &str) -> Result<Self> {
        let state: GaState = serde_json::from_str(json)?;
        if state.format_version != CHECKPOINT_FORMAT_VERSION {
            return Err(GaError::CheckpointMismatch(format!(
                "format version {} (this build reads {CHECKPOINT_FORMAT_VERSION})",
                state.format_version
            )));
        }
        Ok(state)
    }
}

/// Final result of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaOutcome {
    /// The chosen generation and its chromosome per class.
    pub chosen: ChosenGeneration,
    /// Per-generation records.
    pub history: Vec<GenerationRecord>,
}

/// RNG of stream `stream` of a run: stream 0 draws the initial populations, stream g + 1
/// generation g's class order and offspring. Re-derivable, so checkpoints store only the seed.
pub fn generation_rng(run_seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(run_seed);
    rng.set_stream(stream);
    rng
}

/// One CNNSplitter GA over all classes.
#[derive(Clone, Debug)]
pub struct GaRun {
    config: GaConfig,
    genome: Genome,
    state: GaState,
}

impl GaRun {
    /// Starts a run: draws the run seed from `rng`, then every class's generation 0.
    pub fn new(
        config: GaConfig,
        genome: Genome,
        num_classes: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        config.validate(&genome)?;
        if num_classes < 2 {
            return Err(GaError::InvalidConfig(format!(
                "{num_classes} classes; the GA composes at least 2"
            )));
        }
        let run_seed: u64 = rng.random();
        let mut init_rng = generation_rng(run_seed, 0);
        let populations = (0..num_classes)
            .map(|_| initial_population(&genome, &config, &mut init_rng))
            .collect::<Result<Vec<_>>>()?;
        let state = GaState {
            format_version: CHECKPOINT_FORMAT_VERSION,
            num_classes,
            gene_count: genome.gene_count(),
            run_seed,
            next_generation: 0,
            populations,
            previous_top_accuracy: None,
            history: Vec::new(),
            chosen: None,
            generations_without_improvement: 0,
            finished: false,
        };
        Ok(Self {
            config,
            genome,
            state,
        })
    }

    /// Continues a run from a checkpointed state. `config.generations` may differ from the
    /// interrupted run's: fewer ends the run at the last evaluated generation (the best one so
    /// far is kept), more continues an unfinished run further.
    pub fn resume(config: GaConfig, genome: Genome, mut state: GaState) -> Result<Self> {
        config.validate(&genome)?;
        if state.finished && state.next_generation <= config.generations {
            return Err(GaError::CheckpointMismatch(format!(
                "the run already finished after generation {}; it cannot be extended to {}",
                state.next_generation.saturating_sub(1),
                config.generations
            )));
        }
        if state.next_generation > config.generations && state.chosen.is_some() {
            state.finished = true;
        }
        let mismatch = |msg: String| Err(GaError::CheckpointMismatch(msg));
        if state.format_version != CHECKPOINT_FORMAT_VERSION {
            return mismatch(format!("format version {}", state.format_version));
        }
        if state.gene_count != genome.gene_count() {
            return mismatch(format!(
                "{} genes in the checkpoint, {} in the genome",
                state.gene_count,
                genome.gene_count()
            ));
        }
        if state.populations.len() != state.num_classes || state.num_classes < 2 {
            return mismatch(format!(
                "{} populations for {} classes",
                state.populations.len(),
                state.num_classes
            ));
        }
        if state.history.len() != state.next_generation {
            return mismatch(format!(
                "{} records for {} evaluated generations",
                state.history.len(),
                state.next_generation
            ));
        }
        for population in &state.populations {
            if population.len() != config.population {
                return mismatch(format!(
                    "population of {} rows, configuration says {}",
                    population.len(),
                    config.population
                ));
            }
            for chromosome in population {
                genome.check_chromosome(chromosome)?;
            }
        }
        Ok(Self {
            config,
            genome,
            state,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GaConfig {
        &self.config
    }

    /// The genome layout.
    pub fn genome(&self) -> &Genome {
        &self.genome
    }

    /// The checkpointable state.
    pub fn state(&self) -> &GaState {
        &self.state
    }

    /// Whether every generation has run (or the run stopped early).
    pub fn is_finished(&self) -> bool {
        self.state.finished
    }

    /// Evaluates the current generation, records it, updates the chosen generation and breeds
    /// the next one. Returns `false` (doing nothing) once the run is finished.
    pub fn step<E: PopulationEvaluator>(&mut self, evaluator: &mut E) -> Result<bool> {
        if self.state.finished {
            return Ok(false);
        }
        let g = self.state.next_generation;
        let n = self.state.num_classes;
        let labels = evaluator.labels().to_vec();
        let mut outputs = Vec::with_capacity(n);
        for (class, population) in self.state.populations.iter().enumerate() {
            let out = evaluator
                .evaluate(class, population)
                .map_err(|e| GaError::Evaluator {
                    class,
                    source: Box::new(e),
                })?;
            if out.len() != population.len() {
                return Err(GaError::Count {
                    what: "evaluator outputs (one per chromosome)",
                    expected: population.len(),
                    found: out.len(),
                });
            }
            outputs.push(out);
        }

        let mut rng = generation_rng(self.state.run_seed, g as u64 + 1);
        let mut class_order: Vec<usize> = (0..n).collect();
        class_order.shuffle(&mut rng);
        let w = accuracy_weight(
            self.config.alpha,
            self.config.gamma,
            self.state.previous_top_accuracy,
        );
        let settings = FitnessSettings::from_config(&self.config, w, g >= 1);
        let table = evaluate_fitness(&labels, &outputs, &class_order, &settings)?;
        let top = table.top_composition().clone();

        let best_solutions: Vec<usize> =
            table.fitness.iter().map(|f| fitness_order(f)[0]).collect();
        let modules: Vec<(usize, &[f32])> = best_solutions
            .iter()
            .enumerate()
            .map(|(c, &s)| (c, outputs[c][s].scores.as_slice()))
            .collect();
        let best_accuracy = composition_accuracy(&labels, &modules);
        let (selection_accuracy, score) = if g >= 1 {
            let acc = match self.config.selection_split {
                SelectionSplit::Fitness => best_accuracy,
                SelectionSplit::Holdout => self.holdout_accuracy(evaluator, &best_solutions)?,
            };
            let alpha = self.config.alpha;
            (Some(acc), Some(alpha * acc + (1.0 - alpha) * top.diversity))
        } else {
            (None, None)
        };

        let record = GenerationRecord {
            generation: g,
            class_order,
            accuracy_weight: w,
            best_fitness: table
                .fitness
                .iter()
                .map(|f| f.iter().copied().fold(f64::NEG_INFINITY, f64::max))
                .collect(),
            mean_fitness: table
                .fitness
                .iter()
                .map(|f| f.iter().sum::<f64>() / f.len() as f64)
                .collect(),
            fitness: table.fitness.clone(),
            top: top.clone(),
            kept_compositions: table.compositions.len(),
            best_kernels: best_solutions
                .iter()
                .enumerate()
                .map(|(c, &s)| self.genome.kept_kernel_count(&self.state.populations[c][s]))
                .collect::<Result<Vec<_>>>()?,
            best_solutions: best_solutions.clone(),
            best_accuracy,
            selection_accuracy,
            score,
        };
        tracing::info!(
            generation = g,
            top_accuracy = top.accuracy,
            top_diversity = top.diversity,
            best_accuracy,
            score = ?score,
            "CNNSplitter generation evaluated"
        );

        if let (Some(score), Some(accuracy)) = (score, selection_accuracy) {
            let improved = self.state.chosen.as_ref().is_none_or(|c| score > c.score);
            if improved {
                self.state.chosen = Some(ChosenGeneration {
                    generation: g,
                    score,
                    accuracy,
                    diversity: top.diversity,
                    chromosomes: best_solutions
                        .iter()
                        .enumerate()
                        .map(|(c, &s)| self.state.populations[c][s].clone())
                        .collect(),
                });
                self.state.generations_without_improvement = 0;
            } else {
                self.state.generations_without_improvement += 1;
            }
        }
        self.state.history.push(record);
        self.state.previous_top_accuracy = Some(top.accuracy);
        self.state.next_generation = g + 1;

        let stop_early = self
            .config
            .early_stop
            .is_some_and(|k| self.state.generations_without_improvement >= k);
        if stop_early {
            tracing::info!(generation = g, "CNNSplitter stops early: no improvement");
        }
        if g >= self.config.generations || stop_early {
            self.state.finished = true;
        } else {
            self.state.populations = self
                .state
                .populations
                .iter()
                .zip(&table.fitness)
                .map(|(population, fitness)| {
                    next_population(population, fitness, &self.config, &mut rng)
                })
                .collect::<Result<Vec<_>>>()?;
        }
        Ok(true)
    }

    /// Runs the remaining generations and returns the outcome.
    pub fn run<E: PopulationEvaluator>(&mut self, evaluator: &mut E) -> Result<GaOutcome> {
        while self.step(evaluator)? {}
        self.outcome()
    }

    /// The chosen generation so far and the history.
    pub fn outcome(&self) -> Result<GaOutcome> {
        let chosen = self
            .state
            .chosen
            .clone()
            .ok_or(GaError::NoScoredGeneration)?;
        Ok(GaOutcome {
            chosen,
            history: self.state.history.clone(),
        })
    }

    fn holdout_accuracy<E: PopulationEvaluator>(
        &self,
        evaluator: &mut E,
        best_solutions: &[usize],
    ) -> Result<f64> {
        let labels = evaluator
            .holdout_labels()
            .ok_or(GaError::HoldoutUnavailable)?
            .to_vec();
        let mut scores = Vec::with_capacity(best_solutions.len());
        for (class, &s) in best_solutions.iter().enumerate() {
            let out = evaluator
                .evaluate_holdout(class, &self.state.populations[class][s])
                .map_err(|e| GaError::Evaluator {
                    class,
                    source: Box::new(e),
                })?
                .ok_or(GaError::HoldoutUnavailable)?;
            if out.len() != labels.len() {
                return Err(GaError::Count {
                    what: "holdout scores (one per holdout image)",
                    expected: labels.len(),
                    found: out.len(),
                });
            }
            scores.push(out);
        }
        let modules: Vec<(usize, &[f32])> = scores
            .iter()
            .enumerate()
            .map(|(c, s)| (c, s.as_slice()))
            .collect();
        Ok(composition_accuracy(&labels, &modules))
    }
}
