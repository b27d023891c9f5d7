//! The command line's wording of library errors: the flag that fixes the problem is named.

use anyhow::anyhow;
use composer::reuse::SourceSubject;
use composer::ComposerError;

/// A composer error worded for the command line: where a flag fixes the problem, it is named.
pub fn with_flag_hint(e: ComposerError) -> anyhow::Error {
    match e {
        e @ ComposerError::ModuleClassNotInModel { .. } => {
            anyhow!("{e}; pass --target to choose the column it replaces")
        }
        ComposerError::NoCalibrationRange { class } => anyhow!(
            "module `{class}` has no calibration range (decompose again, or patch with --calibration none)"
        ),
        ComposerError::NoCalibrationPercentiles { class } => anyhow!(
            "module `{class}` records no calibration percentiles (written by an older cnnsplit: decompose again, or patch with --calibration minmax)"
        ),
        ComposerError::CollapsedModule { module, reasons } => anyhow!(
            "{module} is collapsed ({reasons}): it cannot do its job; pass --force to patch with it anyway"
        ),
        ComposerError::AlreadyPatched { dir } => anyhow!(
            "{} already holds a patched model: choose another --out or delete it",
            dir.display()
        ),

        ComposerError::InvalidSelectionFraction { fraction } => {
            anyhow!("--selection-fraction must be within (0, 1), got {fraction}")
        }
        e @ ComposerError::TaskDataset { .. } => anyhow!("--dataset {e}"),
        ComposerError::ClassSource {
            subject: SourceSubject::Offered { class, dir },
            problem,
        } => anyhow!("--module {class}={}: {problem}", dir.display()),
        ComposerError::ForeignModule {
            dir,
            class,
            parent_sha256,
        } => anyhow!(
            "{}: module of class {class:?} comes from a model (weights {}) that is not among --models",
            dir.display(),
            &parent_sha256[..parent_sha256.len().min(16)]
        ),
        ComposerError::MissingModule { model, class, name } => anyhow!(
            "{}: no module of class {class} ({name:?}) among --modules; every model needs a module per class",
            model.display()
        ),
        ComposerError::AlreadyComposed { dir } => anyhow!(
            "{} already holds a composed model: choose another --out or delete it",
            dir.display()
        ),
        e => e.into(),
    }
}

/// What to do about an error in terms of this command line's flags: library errors say what
/// is wrong, never which flag to pass.
pub fn resume_hint(err: &anyhow::Error) -> Option<&'static str> {
    err.chain()
        .any(|cause| cause.is::<cnn_models::checkpoint::DifferentRun>())
        .then_some("rerun with the same settings or without --resume")
}
