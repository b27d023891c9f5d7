//! The [`PopulationEvaluator`] of a real model: each chromosome is decoded through its class's
//! importance order, extracted into a smaller network (design §6.8) and run on the fitness images.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use cnn_models::extract::{extract_module, KernelMask};
use cnn_models::Model;
use rayon::prelude::*;

use crate::error::{GaError, Result};
use crate::fitness::SolutionOutput;
use crate::genome::{GeneLayer, Genome};
use crate::run::PopulationEvaluator;

/// Gene-layers of a model: one per mask site, in site order, so coupled convs (residual adds)
/// share one gene-layer.
///
/// ```
/// use cnn_models::presets;
/// let spec = presets::rescnn(0.25, 3, 10, false);
/// let genome = splitter_ga::Genome::new(splitter_ga::gene_layers_of(&spec.analyse().unwrap())).unwrap();
/// assert_eq!(genome.layers().len(), 9); // 12 convs, 3 coupled pairs
/// ```
pub fn gene_layers_of(analysis: &cnn_models::Analysis) -> Vec<GeneLayer> {
    analysis
        .sites
        .iter()
        .map(|s| GeneLayer::new(s.convs.clone(), s.channels))
        .collect()
}

/// Per-site kernel masks of a chromosome of class `class`.
pub fn chromosome_masks(
    genome: &Genome,
    chromosome: &[u8],
    orders: &[Vec<usize>],
) -> Result<Vec<KernelMask>> {
    let retained = genome.decode(chromosome, orders)?;
    Ok(retained
        .iter()
        .zip(genome.layers())
        .map(|(kept, layer)| {
            let mut m = vec![false; layer.channels];
            for &k in kept {
                m[k] = true;
            }
            m
        })
        .collect())
}

/// Evaluates chromosomes on a model: extraction, then logit `class` on every fitness image.
/// Chromosomes seen in the previous generation (the elites) are not evaluated again.
pub struct ModelEvaluator<'m> {
    model: &'m Model,
    genome: Genome,
    orders: Vec<Vec<Vec<usize>>>,
    x: Tensor,
    labels: Vec<u32>,
    holdout: Option<(Tensor, Vec<u32>)>,
    batch: usize,
    cache: Vec<HashMap<Vec<u8>, SolutionOutput>>,
    /// Chromosomes run through the model so far.
    pub evaluated: usize,
    /// Chromosomes answered from the cache so far.
    pub reused: usize,
    /// Wall-clock seconds spent evaluating so far.
    pub seconds: f64,
}

impl<'m> ModelEvaluator<'m> {
    /// An evaluator of `model` on normalised images `x` with `labels`; `orders[c][s]` is class
    /// c's importance order of site s.
    pub fn new(
        model: &'m Model,
        genome: Genome,
        orders: Vec<Vec<Vec<usize>>>,
        x: Tensor,
        labels: Vec<u32>,
        batch: usize,
    ) -> Result<Self> {
        let classes = model.spec().num_classes;
        if orders.len() != classes {
            return Err(GaError::Count {
                what: "importance orders (one per class)",
                expected: classes,
                found: orders.len(),
            });
        }
        for o in &orders {
            genome.check_importance_orders(o)?;
        }
        if x.dim(0)? != labels.len() {
            return Err(GaError::Count {
                what: "labels (one per fitness image)",
                expected: x.dim(0)?,
                found: labels.len(),
            });
        }
        Ok(Self {
            model,
            genome,
            orders,
            x,
            labels,
            holdout: None,
            batch: batch.max(1),
            cache: vec![HashMap::new(); classes],
            evaluated: 0,
            reused: 0,
            seconds: 0.0,
        })
    }

    /// Adds a generation-selection holdout (design §6.7): normalised images `x` with `labels`,
    /// disjoint from the fitness images. [`PopulationEvaluator::evaluate_holdout`] then runs
    /// the chosen modules on them; the fitness never sees them.
    pub fn with_holdout(mut self, x: Tensor, labels: Vec<u32>) -> Result<Self> {
        if x.dim(0)? != labels.len() {
            return Err(GaError::Count {
                what: "labels (one per holdout image)",
                expected: x.dim(0)?,
                found: labels.len(),
            });
        }
        self.holdout = Some((x, labels));
        Ok(self)
    }

    fn class_scores(
        &self,
        class: usize,
        chromosome: &[u8],
        x: &Tensor,
    ) -> Result<(Vec<f32>, Vec<u32>)> {
        let orders = &self.orders[class];
        let masks = chromosome_masks(&self.genome, chromosome, orders)?;
        let ids = self.genome.chromosome_identifier_set(chromosome, orders)?;
        let (module, _) = extract_module(self.model, &masks)?;
        let logits = module.predict_logits(x, self.batch)?;
        let scores: Vec<f32> = logits
            .narrow(1, class, 1)?
            .squeeze(1)?
            .to_dtype(DType::F32)?
            .to_vec1()?;
        Ok((scores, ids))
    }

    fn run_one(&self, class: usize, chromosome: &[u8]) -> Result<SolutionOutput> {
        let (scores, ids) = self.class_scores(class, chromosome, &self.x)?;
        Ok(SolutionOutput { scores, ids })
    }
}

impl PopulationEvaluator for ModelEvaluator<'_> {
    type Error = GaError;

    fn labels(&self) -> &[u32] {
        &self.labels
    }

    fn evaluate(
        &mut self,
        class: usize,
        chromosomes: &[Vec<u8>],
    ) -> std::result::Result<Vec<SolutionOutput>, GaError> {
        let started = std::time::Instant::now();
        let unseen: Vec<&Vec<u8>> = {
            let mut seen = std::collections::HashSet::new();
            chromosomes
                .iter()
                .filter(|c| !self.cache[class].contains_key(*c) && seen.insert(*c))
                .collect()
        };
        let fresh: Vec<(Vec<u8>, SolutionOutput)> = unseen
            .par_iter()
            .map(|c| Ok(((*c).clone(), self.run_one(class, c)?)))
            .collect::<Result<_>>()?;
        self.evaluated += fresh.len();
        self.reused += chromosomes.len() - fresh.len();
        let mut next: HashMap<Vec<u8>, SolutionOutput> = HashMap::new();
        let mut out = Vec::with_capacity(chromosomes.len());
        let mut old = std::mem::take(&mut self.cache[class]);
        old.extend(fresh);
        for c in chromosomes {
            let o = old
                .get(c)
                .cloned()
                .expect("every chromosome was evaluated or cached");
            next.insert(c.clone(), o.clone());
            out.push(o);
        }
        self.cache[class] = next;
        self.seconds += started.elapsed().as_secs_f64();
        Ok(out)
    }

    fn holdout_labels(&self) -> Option<&[u32]> {
        self.holdout.as_ref().map(|(_, labels)| labels.as_slice())
    }

    fn evaluate_holdout(
        &mut self,
        class: usize,
        chromosome: &[u8],
    ) -> std::result::Result<Option<Vec<f32>>, GaError> {
        let Some((x, _)) = &self.holdout else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let (scores, _) = self.class_scores(class, chromosome, x)?;
        self.seconds += started.elapsed().as_secs_f64();
        Ok(Some(scores))
    }
}
