//! Choosing modules for reuse (design §8): best F1 per class, and new-task class mapping.

use cnn_models::metrics::ClassMetrics;
use serde::{Deserialize, Serialize};

use crate::error::{ComposerError, Result};

/// Index of the candidate with the highest F1 (NaN counts as 0); ties → lowest index.
/// `None` for no candidates.
pub fn best_by_f1(candidates: &[ClassMetrics]) -> Option<usize> {
    let f1 = |m: &ClassMetrics| if m.f1.is_nan() { 0.0 } else { m.f1 };
    let mut best: Option<usize> = None;
    for (i, m) in candidates.iter().enumerate() {
        if best.is_none_or(|b| f1(m) > f1(&candidates[b])) {
            best = Some(i);
        }
    }
    best
}

/// For every class, the candidate (e.g. estimator or architecture) whose module of that class
/// has the highest F1; ties → lowest candidate index. `metrics[candidate][class]`.
pub fn select_best_per_class(metrics: &[Vec<ClassMetrics>]) -> Result<Vec<usize>> {
    let classes = metrics
        .first()
        .ok_or(ComposerError::Empty {
            what: "candidate list",
        })?
        .len();
    if let Some(bad) = metrics.iter().find(|m| m.len() != classes) {
        return Err(ComposerError::LengthMismatch {
            what: "class metrics per candidate",
            expected: classes,
            found: bad.len(),
        });
    }
    Ok((0..classes)
        .map(|c| {
            let column: Vec<ClassMetrics> = metrics.iter().map(|m| m[c]).collect();
            best_by_f1(&column).unwrap_or(0)
        })
        .collect())
}

/// One class of a new task with the candidate modules that offer it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskClass<C> {
    /// The class's label in the new task: its position in the task list.
    pub label: u32,
    /// The class name.
    pub name: String,
    /// Every available candidate with this class name, in the order given.
    pub candidates: Vec<C>,
}

/// Maps a new task's class names (label = position) to the candidate modules offering each
/// class, matching names exactly. Fails naming the first task class no candidate offers, or a
/// class listed twice.
pub fn map_classes<C: Clone>(
    task: &[String],
    available: &[(String, C)],
) -> Result<Vec<TaskClass<C>>> {
    if task.is_empty() {
        return Err(ComposerError::Empty {
            what: "task class list",
        });
    }
    let mut mapped: Vec<TaskClass<C>> = Vec::with_capacity(task.len());
    for (label, name) in task.iter().enumerate() {
        if mapped.iter().any(|t| &t.name == name) {
            return Err(ComposerError::DuplicateTaskClass { name: name.clone() });
        }
        let candidates: Vec<C> = available
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
            .collect();
        if candidates.is_empty() {
            let mut names: Vec<&str> = available.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            return Err(ComposerError::MissingClass {
                name: name.clone(),
                available: if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
            });
        }
        mapped.push(TaskClass {
            label: label as u32,
            name: name.clone(),
            candidates,
        });
    }
    Ok(mapped)
}
