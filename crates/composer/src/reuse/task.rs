//! A reuse task's data (design §8): its datasets, where each task class's images come from, and
//! the selection, test and training sets cut from them.

use std::fmt;
use std::path::PathBuf;

use cnn_data::{DatasetSpec, DatasetSplits, ImageSet};
use cnn_models::metrics::{argmax_rows, ClassMetrics, Evaluation};
use cnn_models::Module;

use crate::composed::score_images;
use crate::error::{ComposerError, Result};
use crate::metrics::binary_module_metrics;

/// Where a task class's images come from: class `class` of dataset `dataset` (indices into a
/// [`TaskDatasets`] and its class lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassSource {
    /// Index of the dataset among the task's datasets.
    pub dataset: usize,
    /// Class index inside that dataset.
    pub class: usize,
}

/// Whose images [`TaskDatasets::source_of`] looks for; named in its errors.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSubject {
    /// A module offered for a new task's class.
    Offered {
        /// The task class it is offered for.
        class: String,
        /// The module's directory.
        dir: PathBuf,
    },
    /// A class of a saved composed model.
    Composed {
        /// The class's name in the composed model.
        class: String,
    },
}

impl fmt::Display for SourceSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSubject::Offered { class, dir } => {
                write!(f, "module {} offered for {class:?}", dir.display())
            }
            SourceSubject::Composed { class } => {
                write!(f, "class {class:?} of the composed model")
            }
        }
    }
}

/// A task's images: three sets whose labels are task labels.
#[derive(Debug)]
pub struct TaskSets {
    /// Each dataset's training split, filtered to the task.
    pub train: ImageSet,
    /// The first `selection_fraction` of each class of each test split, filtered to the task:
    /// the images modules are chosen on.
    pub selection: ImageSet,
    /// The rest of each test split, filtered to the task: every accuracy is reported on it.
    pub test: ImageSet,
}

/// Checks that a selection fraction lies within (0, 1).
pub fn check_selection_fraction(fraction: f64) -> Result<()> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(ComposerError::InvalidSelectionFraction { fraction });
    }
    Ok(())
}

/// `x` as a percentage with two decimals, as reports print it.
pub(crate) fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// The loaded datasets of a task: at most one per dataset kind, all of one image format.
///
/// Add them one at a time with [`TaskDatasets::add`]; each is checked against those before.
#[derive(Debug, Default)]
pub struct TaskDatasets {
    given: Vec<String>,
    specs: Vec<DatasetSpec>,
    splits: Vec<DatasetSplits>,
}

impl TaskDatasets {
    /// No datasets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a dataset, `given` being its specification as the user wrote it (recorded in a
    /// saved composition). Fails if a dataset of its kind is already there, or its images
    /// have another shape than the first dataset's.
    pub fn add(&mut self, given: &str, spec: DatasetSpec, data: DatasetSplits) -> Result<()> {
        if let Some(same) = self.specs.iter().find(|s| s.kind == spec.kind) {
            return Err(ComposerError::TaskDataset {
                spec: spec.to_string(),
                message: format!("a dataset of this kind is already given ({same})"),
            });
        }
        if let Some(first) = self.splits.first() {
            if first.test.shape != data.test.shape {
                let s = data.test.shape;
                let f = first.test.shape;
                return Err(ComposerError::TaskDataset {
                    spec: spec.to_string(),
                    message: format!(
                        "images are {}×{}×{}, those of {} are {}×{}×{}; the datasets of one task must share one image format",
                        s.channels, s.height, s.width, self.specs[0], f.channels, f.height, f.width
                    ),
                });
            }
        }
        self.given.push(given.to_string());
        self.specs.push(spec);
        self.splits.push(data);
        Ok(())
    }

    /// The datasets' specifications as given to [`TaskDatasets::add`].
    pub fn given(&self) -> &[String] {
        &self.given
    }

    /// The datasets' specifications.
    pub fn specs(&self) -> &[DatasetSpec] {
        &self.specs
    }

    /// The datasets' splits.
    pub fn splits(&self) -> &[DatasetSplits] {
        &self.splits
    }

    /// Which dataset and class a module's images come from: the module's recorded `dataset`
    /// when it names one of the task's, else the one dataset with a class named `class_name`.
    pub fn source_of(
        &self,
        class_name: &str,
        dataset: Option<&str>,
        subject: &SourceSubject,
    ) -> Result<ClassSource> {
        let fail = |problem: String| ComposerError::ClassSource {
            subject: subject.clone(),
            problem,
        };
        let recorded = dataset.and_then(|d| d.parse::<DatasetSpec>().ok());
        let candidates: Vec<usize> = match &recorded {
            Some(r) if self.specs.iter().any(|s| s.kind == r.kind) => self
                .specs
                .iter()
                .position(|s| s.kind == r.kind)
                .into_iter()
                .collect(),
            _ => (0..self.specs.len())
                .filter(|&d| {
                    self.splits[d]
                        .test
                        .class_names
                        .iter()
                        .any(|n| n == class_name)
                })
                .collect(),
        };
        let names = || {
            self.specs
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let dataset = match candidates.as_slice() {
            [d] => *d,
            [] => {
                return Err(fail(match recorded {
                    Some(r) => format!(
                        "its model was trained on {r}, which is not among the given datasets ({})",
                        names()
                    ),
                    None => format!(
                        "no given dataset ({}) has a class named {class_name:?}",
                        names()
                    ),
                }))
            }
            _ => {
                return Err(fail(format!(
                    "several given datasets ({}) have a class named {class_name:?} and the module does not record its dataset",
                    names()
                )))
            }
        };
        let class = self.splits[dataset]
            .test
            .class_names
            .iter()
            .position(|n| n == class_name)
            .ok_or_else(|| {
                fail(format!(
                    "dataset {} has no class named {class_name:?}",
                    self.specs[dataset]
                ))
            })?;
        Ok(ClassSource { dataset, class })
    }

    /// The task's sets for task classes `sources` (label = position) named `names`.
    ///
    /// Each dataset's test split is cut per class in file order: the first
    /// ⌊`selection_fraction`·n_c⌋ test images of class c go to the selection part, the rest to
    /// the test part. Fails when the test part is empty.
    pub fn task_sets(
        &self,
        sources: &[ClassSource],
        names: &[String],
        selection_fraction: f64,
    ) -> Result<TaskSets> {
        let label_of = |d: usize, class: u16| {
            sources
                .iter()
                .position(|s| s.dataset == d && s.class == class as usize)
        };
        let shape = self.splits[0].test.shape;
        let pixels = shape.pixels();
        let mut parts: [(Vec<u8>, Vec<u16>); 3] = Default::default();
        for (d, data) in self.splits.iter().enumerate() {
            // per class, the first ⌊f·n_c⌋ test images in file order select modules
            let classes = data.test.num_classes();
            let mut totals = vec![0usize; classes];
            for &l in &data.test.labels {
                totals[l as usize] += 1;
            }
            let quota: Vec<usize> = totals
                .iter()
                .map(|&n| (selection_fraction * n as f64).floor() as usize)
                .collect();
            let mut seen = vec![0usize; classes];
            let mut push = |part: usize, set: &ImageSet, i: usize, label: usize| {
                parts[part]
                    .0
                    .extend_from_slice(&set.images[i * pixels..(i + 1) * pixels]);
                parts[part].1.push(label as u16);
            };
            for i in 0..data.train.len() {
                if let Some(label) = label_of(d, data.train.labels[i]) {
                    push(0, &data.train, i, label);
                }
            }
            for i in 0..data.test.len() {
                let c = data.test.labels[i] as usize;
                let part = if seen[c] < quota[c] { 1 } else { 2 };
                seen[c] += 1;
                if let Some(label) = label_of(d, data.test.labels[i]) {
                    push(part, &data.test, i, label);
                }
            }
        }
        let [train, selection, test] = parts;
        let make = |name: &str, (images, labels): (Vec<u8>, Vec<u16>)| {
            ImageSet::new(
                format!("task/{name}"),
                shape,
                images,
                labels,
                names.to_vec(),
            )
            .map_err(|e| ComposerError::Reuse(e.to_string()))
        };
        let sets = TaskSets {
            train: make("train", train)?,
            selection: make("selection", selection)?,
            test: make("test", test)?,
        };
        if sets.test.is_empty() {
            return Err(ComposerError::Reuse(format!(
                "the task's test part is empty: no test image of its classes after the first {} of each test split",
                percent(selection_fraction)
            )));
        }
        Ok(sets)
    }
}

/// The labels of a set as `u32`.
pub(crate) fn labels_of(set: &ImageSet) -> Vec<u32> {
    set.labels.iter().map(|&l| l as u32).collect()
}

/// Checks that every module is a GradSplitter module: reuse chooses modules by their
/// probability (score > 0.5), which only those give. `modules` pairs each with its directory.
pub fn check_reusable(modules: &[(PathBuf, &Module)]) -> Result<()> {
    if let Some((dir, m)) = modules.iter().find(|(_, m)| m.meta.method != "grad") {
        return Err(ComposerError::Reuse(format!(
            "{}: a `{}` module; reuse chooses modules by their probability (score > 0.5), which only GradSplitter modules give",
            dir.display(),
            m.meta.method
        )));
    }
    Ok(())
}

/// Binary metrics (design §8) of every module on all images of `set`: module `j` as a
/// classifier of task label `task_labels[j]`, scored in batches of `batch`.
pub fn selection_metrics(
    modules: &[Module],
    task_labels: &[u32],
    set: &ImageSet,
    batch: usize,
) -> Result<Vec<ClassMetrics>> {
    let idx: Vec<usize> = (0..set.len()).collect();
    let k = modules.len();
    let scores = score_images(modules, set, &idx, batch)?;
    let labels = labels_of(set);
    (0..k)
        .map(|j| {
            let column: Vec<f32> = scores.iter().skip(j).step_by(k).copied().collect();
            binary_module_metrics(&column, &labels, task_labels[j])
        })
        .collect()
}

/// Accuracy and per-class metrics of the composition of `modules` (label = position) on all
/// images of `set`, scored in batches of `batch`.
pub fn evaluate_composition(
    modules: &[Module],
    set: &ImageSet,
    batch: usize,
) -> Result<Evaluation> {
    let idx: Vec<usize> = (0..set.len()).collect();
    let scores = score_images(modules, set, &idx, batch)?;
    let preds = argmax_rows(&scores, modules.len());
    Ok(Evaluation::new(&labels_of(set), &preds, modules.len()))
}
