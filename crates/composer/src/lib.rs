//! Compose class modules into classifiers, patch weak models, and pick modules for reuse
//! (design §5.10, §7, §8).
//!
//! Everything here works on score matrices, so it does not depend on how the scores were
//! produced:
//! - [`compose_predictions`]: argmax over module scores, ties → lowest module index;
//! - [`PatchRule`] with a [`Calibration`]: replace a weak model's target-class probability by
//!   a calibrated module score, and [`PatchReport`] on the effect;
//! - [`ClassMetrics`], [`class_metrics`], [`binary_module_metrics`]: precision, recall, F1
//!   with 0/0 = 0;
//! - [`select_best_per_class`] and [`map_classes`]: module choice for reuse;
//! - [`ComposedModel`], [`save_composed`], [`load_composed`]: a composition as a saved artefact;
//! - [`PatchJob`] (patch a weak model and measure it) and [`PatchedModel`]: patching as a
//!   saved artefact;
//! - [`reuse`]: the reuse scenarios (best module per class among several models, a new task
//!   from different models' modules) with their baselines and typed reports;
//! - [`Artifact::open`]: load whatever a directory holds — model, patched model, composed
//!   model or class module.
//! - [`load_modules`]: the modules of a composition, from module directories or a
//!   decomposition's directory.
//!
//! ```
//! use composer::{compose_predictions, patch_and_report, Calibration, PatchRule};
//!
//! # fn main() -> Result<(), composer::ComposerError> {
//! // Three modules scoring four images; image 3 ties between modules 0 and 2 → module 0.
//! let scores = vec![
//!     vec![0.9, 0.1, 0.2, 0.7],
//!     vec![0.2, 0.8, 0.1, 0.3],
//!     vec![0.1, 0.3, 0.6, 0.7],
//! ];
//! assert_eq!(compose_predictions(&scores)?, vec![0, 1, 2, 0]);
//!
//! // Patch a 3-class weak model (target class = last column) with a module whose calibration
//! // scores ranged over [2, 6].
//! let weak_logits = [2.0, 1.0, 0.0, /* image 1 */ 0.0, 3.0, 0.0];
//! let module_scores = [6.0, 2.0];
//! let rule = PatchRule::last_column(3, Calibration::fit_minmax(&[2.0, 4.0, 6.0])?, false);
//! let (predictions, report) = patch_and_report(&[2, 1], &weak_logits, 3, &module_scores, &rule)?;
//! assert_eq!(predictions, vec![2, 1]); // image 0: calibrated score 1.0 beats p_0 ≈ 0.67
//! assert_eq!(report.recall.before, 0.0);
//! assert_eq!(report.recall.after, 1.0);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod artifact;
mod calibration;
mod composed;
mod composition;
mod error;
mod metrics;
mod module_set;
mod patched;
mod patching;
pub mod reuse;
mod selection;

pub use artifact::{Artifact, ArtifactKind};
pub use calibration::Calibration;
pub use cnn_models::metrics::ClassMetrics;
pub use composed::{
    check_composable, is_composed, load_composed, parse_composition_manifest, save_composed,
    score_images, ComposedClass, ComposedModel, CompositionManifest, COMPOSITION_FORMAT,
    COMPOSITION_FORMAT_VERSION, COMPOSITION_MANIFEST,
};
pub use composition::compose_predictions;
pub use error::{ComposerError, Result};
pub use metrics::{accuracy, binary_module_metrics, class_metrics};
pub use module_set::{collapsed_modules_json, load_modules, module_dirs};
pub use patched::{
    check_same_input, is_patched, load_patched, module_calibration, parse_patch_manifest,
    save_patched, target_column, CalibrationKind, PatchConfig, PatchJob, PatchManifest,
    PatchSummary, PatchedModel, PATCH_FORMAT, PATCH_FORMAT_VERSION, PATCH_MANIFEST,
};
pub use patching::{
    patch_and_report, softmax_rows, weak_predictions, MetricChange, PatchReport, PatchRule,
};
pub use selection::{best_by_f1, map_classes, select_best_per_class, TaskClass};
