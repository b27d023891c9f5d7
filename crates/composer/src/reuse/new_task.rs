//! `new-task`: a classifier for a new task whose classes come from different models, made of
//! the best offered module per class, against a network trained from scratch (design §8).

use std::path::{Path, PathBuf};
use std::time::Instant;

use cnn_models::metrics::{ClassMetrics, Evaluation};
use cnn_models::{Module, ModuleMeta};
use serde::{Deserialize, Serialize};

use super::scratch::{train_scratch, ScratchConfig, ScratchReport};
use super::task::{
    check_reusable, check_selection_fraction, evaluate_composition, selection_metrics, ClassSource,
    SourceSubject, TaskDatasets,
};
use super::{check_free, save_reuse, ReuseEvent, Reused};
use crate::composed::{check_composable, ComposedClass};
use crate::error::{ComposerError, Result};
use crate::selection::best_by_f1;

/// A module offered for a class of a new task.
#[derive(Clone, Debug)]
pub struct OfferedModule {
    /// The task class it is offered for.
    pub class: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The module.
    pub module: Module,
}

/// Settings of [`NewTask::run`].
///
/// ```
/// let cfg = composer::reuse::NewTaskConfig::default();
/// assert_eq!((cfg.selection_fraction, cfg.scratch.epochs), (0.2, 0));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NewTaskConfig {
    /// Fraction of each class's test images, from the start of each test split, on which the
    /// modules are chosen; the rest is the test part.
    pub selection_fraction: f64,
    /// Images per forward pass.
    pub batch_size: usize,
    /// The from-scratch baseline; none when `scratch.epochs` is 0.
    pub scratch: ScratchConfig,
}

impl Default for NewTaskConfig {
    fn default() -> Self {
        NewTaskConfig {
            selection_fraction: 0.2,
            batch_size: 256,
            scratch: ScratchConfig::default(),
        }
    }
}

/// An offered module and its metrics on the selection part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    /// The task class it was offered for.
    pub class: String,
    /// Its directory.
    pub module: PathBuf,
    /// F1 on the selection part.
    pub f1: f64,
    /// Precision on the selection part.
    pub precision: f64,
    /// Recall on the selection part.
    pub recall: f64,
}

/// What [`NewTask::run`] measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTaskReport {
    /// Always `new-task`.
    pub scenario: String,
    /// The task's datasets.
    pub datasets: Vec<String>,
    /// The task's classes in label order.
    pub class_names: Vec<String>,
    /// Where each task class's images come from, `KIND/CLASS`.
    pub class_sources: Vec<String>,
    /// The chosen module of every task class.
    pub chosen_modules: Vec<PathBuf>,
    /// Their F1 on the selection part.
    pub selection_f1: Vec<f64>,
    /// Every offered module, in the order offered.
    pub candidates: Vec<CandidateScore>,
    /// Accuracy of the composition on the test part.
    pub composed_accuracy: f64,
    /// The composition's evaluation on the test part.
    pub composed: Evaluation,
    /// Seconds spent scoring and evaluating the composition.
    pub compose_seconds: f64,
    /// Test accuracy of the from-scratch baseline, if trained.
    pub scratch_accuracy: Option<f64>,
    /// The from-scratch baseline, if trained.
    pub scratch: Option<ScratchReport>,
    /// Images of the selection part.
    pub selection_images: usize,
    /// Images of the test part.
    pub test_images: usize,
    /// The selection fraction used.
    pub selection_fraction: f64,
    /// Where the composition was saved, if it was.
    pub out: Option<PathBuf>,
}

/// A new task: its classes (named by the offered modules, in order of first appearance) and
/// the modules offered for them.
#[derive(Debug)]
pub struct NewTask {
    names: Vec<String>,
    offered: Vec<OfferedModule>,
}

impl NewTask {
    /// The task of the classes `offered` names. Needs at least two classes, GradSplitter
    /// modules only, and modules that can be composed.
    pub fn new(offered: Vec<OfferedModule>) -> Result<Self> {
        let mut names: Vec<String> = Vec::new();
        for o in &offered {
            if !names.contains(&o.class) {
                names.push(o.class.clone());
            }
        }
        if names.len() < 2 {
            return Err(ComposerError::Reuse(format!(
                "a task needs at least 2 classes, got {}",
                names.len()
            )));
        }
        let pairs: Vec<(PathBuf, &Module)> =
            offered.iter().map(|o| (o.dir.clone(), &o.module)).collect();
        check_reusable(&pairs)?;
        let metas: Vec<(PathBuf, &ModuleMeta)> = offered
            .iter()
            .map(|o| (o.dir.clone(), &o.module.meta))
            .collect();
        check_composable(&metas)?;
        Ok(NewTask { names, offered })
    }

    /// The task's class names in label order.
    pub fn class_names(&self) -> &[String] {
        &self.names
    }

    /// Finds every class's images in `data`, chooses the offered module of highest F1 on the
    /// selection part per class (ties → the one offered first), measures the composition on
    /// the test part and, when `cfg.scratch.epochs > 0`, the from-scratch baseline.
    pub fn run(
        self,
        data: &TaskDatasets,
        cfg: &NewTaskConfig,
        on_event: &mut dyn FnMut(ReuseEvent<'_>),
    ) -> Result<Reused<NewTaskReport>> {
        check_selection_fraction(cfg.selection_fraction)?;
        let NewTask { names, offered } = self;
        // where each task class's images come from; every candidate of a class must agree
        let mut sources: Vec<Option<(ClassSource, String)>> = vec![None; names.len()];
        for o in &offered {
            let t = names.iter().position(|n| *n == o.class).unwrap_or(0);
            let subject = SourceSubject::Offered {
                class: o.class.clone(),
                dir: o.dir.clone(),
            };
            let m = &o.module.meta;
            let src = data.source_of(&m.class_name, m.dataset.as_deref(), &subject)?;
            let desc = format!("{}/{}", data.specs()[src.dataset].kind, m.class_name);
            match &sources[t] {
                Some((s, d)) if *s != src => {
                    return Err(ComposerError::Reuse(format!(
                        "task class {:?}: its modules recognise different classes ({d} and {desc})",
                        o.class
                    )))
                }
                _ => sources[t] = Some((src, desc)),
            }
        }
        let sources: Vec<(ClassSource, String)> = sources.into_iter().flatten().collect();
        for (i, (s, d)) in sources.iter().enumerate() {
            if let Some(j) = sources[..i].iter().position(|(o, _)| o == s) {
                return Err(ComposerError::Reuse(format!(
                    "task classes {:?} and {:?} are both {d}",
                    names[j], names[i]
                )));
            }
        }
        let class_sources: Vec<ClassSource> = sources.iter().map(|(s, _)| *s).collect();
        let sets = data.task_sets(&class_sources, &names, cfg.selection_fraction)?;
        let started = Instant::now();
        let modules: Vec<Module> = offered.iter().map(|o| o.module.clone()).collect();
        let task_labels: Vec<u32> = offered
            .iter()
            .map(|o| names.iter().position(|t| *t == o.class).unwrap_or(0) as u32)
            .collect();
        let metrics = selection_metrics(&modules, &task_labels, &sets.selection, cfg.batch_size)?;
        let mut chosen = Vec::new();
        for t in 0..names.len() {
            let cands: Vec<usize> = (0..offered.len())
                .filter(|&j| task_labels[j] == t as u32)
                .collect();
            let column: Vec<ClassMetrics> = cands.iter().map(|&j| metrics[j]).collect();
            chosen.push(cands[best_by_f1(&column).unwrap_or(0)]);
        }
        let chosen_modules: Vec<Module> = chosen.iter().map(|&j| modules[j].clone()).collect();
        let composed = evaluate_composition(&chosen_modules, &sets.test, cfg.batch_size)?;
        let compose_seconds = started.elapsed().as_secs_f64();
        let scratch = if cfg.scratch.epochs > 0 {
            Some(train_scratch(
                &chosen_modules[0],
                &sets,
                &cfg.scratch,
                on_event,
            )?)
        } else {
            None
        };
        let classes: Vec<ComposedClass> = chosen
            .iter()
            .enumerate()
            .map(|(t, &j)| {
                let o = &offered[j];
                ComposedClass::from_module(t as u32, &o.class, &o.dir, &o.module.meta)
            })
            .collect();
        let report = NewTaskReport {
            scenario: "new-task".into(),
            datasets: data.specs().iter().map(|s| s.to_string()).collect(),
            class_names: names,
            class_sources: sources.into_iter().map(|(_, d)| d).collect(),
            chosen_modules: chosen.iter().map(|&j| offered[j].dir.clone()).collect(),
            selection_f1: chosen.iter().map(|&j| metrics[j].f1).collect(),
            candidates: offered
                .iter()
                .zip(&metrics)
                .map(|(o, m)| CandidateScore {
                    class: o.class.clone(),
                    module: o.dir.clone(),
                    f1: m.f1,
                    precision: m.precision,
                    recall: m.recall,
                })
                .collect(),
            composed_accuracy: composed.accuracy,
            composed,
            compose_seconds,
            scratch_accuracy: scratch.as_ref().map(|s| s.test_accuracy),
            scratch,
            selection_images: sets.selection.len(),
            test_images: sets.test.len(),
            selection_fraction: cfg.selection_fraction,
            out: None,
        };
        Ok(Reused {
            report,
            classes,
            datasets: data.given().to_vec(),
            selection_fraction: cfg.selection_fraction,
            kind: "new-task",
        })
    }
}

impl Reused<NewTaskReport> {
    /// Saves the chosen modules as a composed model in `out` (see
    /// [`crate::save_composed`]), with the report (its `out` set) as the manifest's report.
    /// Refuses a directory that already holds a composed model.
    pub fn save(&mut self, out: &Path) -> Result<crate::CompositionManifest> {
        check_free(out)?;
        self.report.out = Some(out.to_path_buf());
        save_reuse(self, out)
    }
}
