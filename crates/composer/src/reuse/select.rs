//! `select`: the best module per class among the modules of several models of one task, with
//! the models and their ensemble as baselines (design §8).

use std::path::{Path, PathBuf};
use std::time::Instant;

use cnn_models::metrics::{argmax_rows, ClassMetrics, Evaluation};
use cnn_models::{Model, ModelMeta, Module, ModuleMeta};
use serde::{Deserialize, Serialize};

use super::task::{
    check_reusable, check_selection_fraction, evaluate_composition, labels_of, selection_metrics,
    ClassSource, TaskDatasets,
};
use super::{check_free, prf_table, save_reuse, Reused};
use crate::composed::{check_composable, ComposedClass};
use crate::error::{ComposerError, Result};
use crate::patching::softmax_rows;
use crate::selection::best_by_f1;

/// Settings of [`Selector::run`].
///
/// ```
/// let cfg = composer::reuse::SelectConfig { selection_fraction: 0.3, ..Default::default() };
/// assert_eq!(cfg.batch_size, 256);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SelectConfig {
    /// Fraction of each class's test images, from the start of the test split, on which the
    /// modules are chosen; the rest is the test part every accuracy is reported on.
    pub selection_fraction: f64,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            selection_fraction: 0.2,
            batch_size: 256,
        }
    }
}

/// One of the models a selection chooses among.
#[derive(Debug)]
pub struct CandidateModel {
    /// Its directory.
    pub dir: PathBuf,
    /// The model.
    pub model: Model,
    /// Its metadata.
    pub meta: ModelMeta,
}

/// What [`Selector::run`] measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectReport {
    /// Always `select`.
    pub scenario: String,
    /// The task's dataset.
    pub dataset: String,
    /// Its class names.
    pub class_names: Vec<String>,
    /// The candidate models' directories.
    pub models: Vec<PathBuf>,
    /// Each model's accuracy on the test part.
    pub model_test_accuracy: Vec<f64>,
    /// The best of them.
    pub best_model_accuracy: f64,
    /// Their mean.
    pub mean_model_accuracy: f64,
    /// Accuracy of the models' ensemble (mean softmax) on the test part.
    pub ensemble_accuracy: f64,
    /// Accuracy of the composition of the chosen modules on the test part.
    pub composed_accuracy: f64,
    /// `composed_accuracy − best_model_accuracy`.
    pub gain_over_best: f64,
    /// For every class, the model whose module was chosen.
    pub chosen_model: Vec<usize>,
    /// `selection_f1[model][class]`: each module's F1 on the selection part.
    pub selection_f1: Vec<Vec<f64>>,
    /// `selection_metrics[model][class]`: precision, recall and F1 on the selection part.
    #[serde(with = "prf_table")]
    pub selection_metrics: Vec<Vec<ClassMetrics>>,
    /// Images of the selection part.
    pub selection_images: usize,
    /// Images of the test part.
    pub test_images: usize,
    /// The selection fraction used.
    pub selection_fraction: f64,
    /// The composition's evaluation on the test part.
    pub composed: Evaluation,
    /// Seconds spent scoring and evaluating.
    pub seconds: f64,
    /// Where the composition was saved, if it was.
    pub out: Option<PathBuf>,
}

/// Chooses, for every class of one task, the best module among several models' modules.
///
/// Give it the models and the task's dataset ([`Selector::new`]), then their modules
/// ([`Selector::add_modules`]; each is matched to its model by the parent hash), then
/// [`Selector::run`].
#[derive(Debug)]
pub struct Selector {
    models: Vec<CandidateModel>,
    data: TaskDatasets,
    names: Vec<String>,
    /// `candidates[model][class]`: the module and where it was found.
    candidates: Vec<Vec<Option<(PathBuf, Module)>>>,
}

impl Selector {
    /// A selection among `models` on the first dataset of `data`; every model must have as
    /// many classes as the dataset.
    pub fn new(models: Vec<CandidateModel>, data: TaskDatasets) -> Result<Self> {
        let Some(split) = data.splits().first() else {
            return Err(ComposerError::Empty {
                what: "task dataset list",
            });
        };
        let names = split.test.class_names.clone();
        for m in &models {
            if m.model.spec().num_classes != names.len() {
                return Err(ComposerError::Reuse(format!(
                    "{}: the model has {} classes, dataset `{}` has {}",
                    m.dir.display(),
                    m.model.spec().num_classes,
                    data.specs()[0],
                    names.len()
                )));
            }
        }
        let candidates = (0..models.len()).map(|_| vec![None; names.len()]).collect();
        Ok(Selector {
            models,
            data,
            names,
            candidates,
        })
    }

    /// Adds the modules loaded from `dir` (a decomposition directory with `module_<c>`
    /// inside, or one module directory). Fails for a module whose parent is not one of the
    /// models, or whose class does not match the dataset's class of its index.
    pub fn add_modules(&mut self, dir: &Path, modules: Vec<Module>) -> Result<()> {
        for m in modules {
            let here = dir.join(format!("module_{}", m.meta.class_index));
            let place = if here.exists() {
                here
            } else {
                dir.to_path_buf()
            };
            let Some(i) = self
                .models
                .iter()
                .position(|c| c.meta.weights_sha256 == m.meta.parent_sha256)
            else {
                return Err(ComposerError::ForeignModule {
                    dir: place,
                    class: m.meta.class_name.clone(),
                    parent_sha256: m.meta.parent_sha256.clone(),
                });
            };
            let c = m.meta.class_index;
            if self.names.get(c) != Some(&m.meta.class_name) {
                return Err(ComposerError::Reuse(format!(
                    "{}: module of class {c} {:?}, but class {c} of {} is {:?}",
                    place.display(),
                    m.meta.class_name,
                    self.data.specs()[0],
                    self.names.get(c)
                )));
            }
            self.candidates[i][c] = Some((place, m));
        }
        Ok(())
    }

    /// Chooses the module of highest F1 on the selection part for every class (ties → the
    /// earlier model), and measures the composition, every model and the models' ensemble
    /// (mean softmax) on the test part.
    pub fn run(self, cfg: &SelectConfig) -> Result<Reused<SelectReport>> {
        check_selection_fraction(cfg.selection_fraction)?;
        let Selector {
            models,
            data,
            names,
            candidates,
        } = self;
        for (i, per_class) in candidates.iter().enumerate() {
            if let Some(c) = per_class.iter().position(Option::is_none) {
                return Err(ComposerError::MissingModule {
                    model: models[i].dir.clone(),
                    class: c,
                    name: names[c].clone(),
                });
            }
        }
        let flat: Vec<(PathBuf, Module)> = candidates.into_iter().flatten().flatten().collect();
        let pairs: Vec<(PathBuf, &Module)> = flat.iter().map(|(p, m)| (p.clone(), m)).collect();
        check_reusable(&pairs)?;
        let metas: Vec<(PathBuf, &ModuleMeta)> =
            flat.iter().map(|(p, m)| (p.clone(), &m.meta)).collect();
        check_composable(&metas)?;
        let sources: Vec<ClassSource> = (0..names.len())
            .map(|class| ClassSource { dataset: 0, class })
            .collect();
        let sets = data.task_sets(&sources, &names, cfg.selection_fraction)?;
        let started = Instant::now();
        let n = names.len();
        let modules: Vec<Module> = flat.iter().map(|(_, m)| m.clone()).collect();
        let task_labels: Vec<u32> = flat
            .iter()
            .map(|(_, m)| m.meta.class_index as u32)
            .collect();
        let metrics = selection_metrics(&modules, &task_labels, &sets.selection, cfg.batch_size)?;
        // metrics[i * n + c] = model i, class c
        let chosen: Vec<usize> = (0..n)
            .map(|c| {
                let column: Vec<ClassMetrics> =
                    (0..models.len()).map(|i| metrics[i * n + c]).collect();
                best_by_f1(&column).unwrap_or(0)
            })
            .collect();
        let chosen_modules: Vec<Module> =
            (0..n).map(|c| modules[chosen[c] * n + c].clone()).collect();
        let composed = evaluate_composition(&chosen_modules, &sets.test, cfg.batch_size)?;
        // the models and their ensemble on the test part
        let run = |e: String| ComposerError::Model(e);
        let test_idx: Vec<usize> = (0..sets.test.len()).collect();
        let labels = labels_of(&sets.test);
        let mut model_acc = Vec::new();
        let mut mean_prob = vec![0f64; sets.test.len() * n];
        for c in &models {
            let mut logits = Vec::with_capacity(sets.test.len() * n);
            for chunk in test_idx.chunks(cfg.batch_size.max(1)) {
                let (x, _) = cnn_data::to_tensor(
                    &sets.test,
                    chunk,
                    &c.meta.input_format,
                    None,
                    c.model.device(),
                )
                .map_err(|e| run(e.to_string()))?;
                let l: Vec<f32> = c
                    .model
                    .forward_eval(&x)
                    .and_then(|t| Ok(t.flatten_all()?.to_vec1()?))
                    .map_err(|e| run(e.to_string()))?;
                logits.extend(l);
            }
            let preds = argmax_rows(&logits, n);
            model_acc.push(Evaluation::new(&labels, &preds, n).accuracy);
            for (acc, p) in mean_prob.iter_mut().zip(softmax_rows(&logits, n)?) {
                *acc += p / models.len() as f64;
            }
        }
        let ensemble_preds = argmax_rows(&mean_prob, n);
        let ensemble = Evaluation::new(&labels, &ensemble_preds, n).accuracy;
        let best = model_acc.iter().copied().fold(f64::MIN, f64::max);
        let mean = model_acc.iter().sum::<f64>() / model_acc.len() as f64;
        let seconds = started.elapsed().as_secs_f64();
        let classes: Vec<ComposedClass> = (0..n)
            .map(|c| {
                let (dir, m) = &flat[chosen[c] * n + c];
                ComposedClass::from_module(c as u32, &names[c], dir, &m.meta)
            })
            .collect();
        let report = SelectReport {
            scenario: "select".into(),
            dataset: data.specs()[0].to_string(),
            class_names: names,
            models: models.iter().map(|m| m.dir.clone()).collect(),
            model_test_accuracy: model_acc,
            best_model_accuracy: best,
            mean_model_accuracy: mean,
            ensemble_accuracy: ensemble,
            composed_accuracy: composed.accuracy,
            gain_over_best: composed.accuracy - best,
            chosen_model: chosen,
            selection_f1: (0..models.len())
                .map(|i| (0..n).map(|c| metrics[i * n + c].f1).collect())
                .collect(),
            selection_metrics: metrics.chunks(n).map(<[ClassMetrics]>::to_vec).collect(),
            selection_images: sets.selection.len(),
            test_images: sets.test.len(),
            selection_fraction: cfg.selection_fraction,
            composed,
            seconds,
            out: None,
        };
        Ok(Reused {
            report,
            classes,
            datasets: data.given().to_vec(),
            selection_fraction: cfg.selection_fraction,
            kind: "select",
        })
    }
}

impl Reused<SelectReport> {
    /// Saves the chosen modules as a composed model in `out` (see
    /// [`crate::save_composed`]), with the report (its `out` set) as the manifest's report.
    /// Refuses a directory that already holds a composed model.
    pub fn save(&mut self, out: &Path) -> Result<crate::CompositionManifest> {
        check_free(out)?;
        self.report.out = Some(out.to_path_buf());
        save_reuse(self, out)
    }
}
