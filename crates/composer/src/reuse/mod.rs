//! Reusing modules without retraining (design §8).
//!
//! Both scenarios work on a *task*: a list of classes, each the images of one class of one of
//! the task's datasets ([`TaskDatasets`]). Each dataset's test split is cut per class in file
//! order: the first `selection_fraction` of each class's test images chooses modules, the
//! rest is the test part every accuracy is reported on ([`TaskDatasets::task_sets`]).
//!
//! - [`Selector`]: one task, several models decomposed into modules; the best module per
//!   class by F1 on the selection part, against the models and their ensemble;
//! - [`NewTask`]: a new task whose classes come from different models (and datasets); the
//!   best offered module per class, against a network trained from scratch on the task
//!   ([`train_scratch`]).
//!
//! Either gives a [`Reused`]: a typed report and the chosen classes, which
//! [`Reused::save`] writes as a composed-model directory.

mod new_task;
mod scratch;
mod select;
mod task;

use std::path::Path;

use serde::Serialize;

pub use new_task::{CandidateScore, NewTask, NewTaskConfig, NewTaskReport, OfferedModule};
pub use scratch::{
    scratch_split, train_scratch, ScratchConfig, ScratchReport, NEAR_MAJORITY_MARGIN,
    SCRATCH_VAL_FRACTION,
};
pub use select::{CandidateModel, SelectConfig, SelectReport, Selector};
pub use task::{
    check_reusable, check_selection_fraction, evaluate_composition, selection_metrics, ClassSource,
    SourceSubject, TaskDatasets, TaskSets,
};

use crate::composed::{is_composed, save_composed, ComposedClass, CompositionManifest};
use crate::error::{ComposerError, Result};

/// A composition chosen by a reuse scenario: its report and its classes, ready to save.
#[derive(Clone, Debug, PartialEq)]
pub struct Reused<R> {
    /// What the scenario measured.
    pub report: R,
    /// The chosen module of every task class, in label order.
    pub classes: Vec<ComposedClass>,
    /// The task's datasets, as given.
    pub datasets: Vec<String>,
    /// The selection fraction used.
    pub selection_fraction: f64,
    /// The scenario: `select` or `new-task` (the saved manifest's kind).
    pub kind: &'static str,
}

/// Progress of a reuse scenario, for logs and progress bars.
#[derive(Debug)]
pub enum ReuseEvent<'a> {
    /// Training the from-scratch baseline starts.
    ScratchStart {
        /// Architecture name.
        arch: &'a str,
        /// Training images.
        train_images: usize,
        /// Validation images.
        val_images: usize,
        /// Most epochs.
        epochs: usize,
        /// Epochs without a validation rise after which training stops (0: never).
        patience: usize,
    },
    /// Progress of that training.
    Train(&'a cnn_models::TrainEvent),
}

/// Fails when `out` already holds a composed model.
fn check_free(out: &Path) -> Result<()> {
    if is_composed(out) {
        return Err(ComposerError::AlreadyComposed {
            dir: out.to_path_buf(),
        });
    }
    Ok(())
}

/// Saves a reused composition with its report as the manifest's report.
fn save_reuse<R: Serialize>(r: &Reused<R>, out: &Path) -> Result<CompositionManifest> {
    let mut manifest = CompositionManifest::new(
        r.kind,
        r.classes.clone(),
        r.datasets.clone(),
        r.selection_fraction,
    );
    manifest.report =
        Some(
            serde_json::to_value(&r.report).map_err(|e| ComposerError::Artefact {
                path: out.to_path_buf(),
                message: e.to_string(),
            })?,
        );
    save_composed(out, &manifest)
}

/// Serialises a table of [`crate::ClassMetrics`] as precision, recall and F1 only (the shape
/// reuse reports have always had).
mod prf_table {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use cnn_models::metrics::ClassMetrics;

    #[derive(Serialize, Deserialize)]
    struct Prf {
        precision: f64,
        recall: f64,
        f1: f64,
    }

    pub fn serialize<S: Serializer>(t: &[Vec<ClassMetrics>], s: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<Vec<Prf>> = t
            .iter()
            .map(|row| {
                row.iter()
                    .map(|m| Prf {
                        precision: m.precision,
                        recall: m.recall,
                        f1: m.f1,
                    })
                    .collect()
            })
            .collect();
        rows.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Vec<ClassMetrics>>, D::Error> {
        let rows = Vec::<Vec<Prf>>::deserialize(d)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|p| ClassMetrics {
                        precision: p.precision,
                        recall: p.recall,
                        f1: p.f1,
                        support: 0,
                        true_positives: 0,
                        false_positives: 0,
                        false_negatives: 0,
                    })
                    .collect()
            })
            .collect())
    }
}
