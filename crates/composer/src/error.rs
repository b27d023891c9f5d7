//! The error type of the crate.

/// Everything that can go wrong when composing, patching, scoring or selecting modules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComposerError {
    /// An input that needs at least one element has none.
    #[error("{what} is empty")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// Two inputs that must agree in length do not.
    #[error("{what}: expected {expected}, found {found}")]
    LengthMismatch {
        /// What was measured.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length received.
        found: usize,
    },
    /// A score that must be a number is NaN (or infinite where that is not allowed).
    #[error("{what} at index {index} is not a finite number")]
    NotFinite {
        /// Which input.
        what: &'static str,
        /// Position of the value.
        index: usize,
    },
    /// The target column does not exist.
    #[error("target column {column} is outside the {columns} weak-model columns")]
    ColumnOutOfRange {
        /// Requested column.
        column: usize,
        /// Columns available.
        columns: usize,
    },
    /// A label or prediction is not one of the classes.
    #[error("label {label} at index {index} is not one of the {classes} classes")]
    LabelOutOfRange {
        /// The offending value.
        label: u32,
        /// Its position.
        index: usize,
        /// Number of classes.
        classes: usize,
    },
    /// Percentiles must satisfy 0 ≤ p_lo ≤ p_hi ≤ 100.
    #[error("percentiles ({lo}, {hi}) must satisfy 0 ≤ lo ≤ hi ≤ 100")]
    InvalidPercentile {
        /// Lower percentile.
        lo: f64,
        /// Upper percentile.
        hi: f64,
    },
    /// A patched-model artefact or one of its parts is unusable.
    #[error("{path}: {message}")]
    Artefact {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A module and a model do not fit together.
    #[error("{0}")]
    Incompatible(String),
    /// A hand-made calibration range is unusable.
    #[error("invalid calibration: {0}")]
    InvalidCalibration(String),
    /// A task class is offered by no candidate module.
    #[error(
        "task class {name:?} is offered by no candidate module (available classes: {available})"
    )]
    MissingClass {
        /// The missing class name.
        name: String,
        /// The class names that are available, comma-separated.
        available: String,
    },
    /// A task lists the same class name twice.
    #[error("task class {name:?} is listed more than once")]
    DuplicateTaskClass {
        /// The repeated class name.
        name: String,
    },
    /// A composed-model directory would be overwritten.
    #[error("{} already holds a composed model", dir.display())]
    AlreadyComposed {
        /// The directory that holds one.
        dir: std::path::PathBuf,
    },
    /// A patched-model directory would be overwritten.
    #[error("{} already holds a patched model", dir.display())]
    AlreadyPatched {
        /// The directory that holds one.
        dir: std::path::PathBuf,
    },
    /// A module and a model take differently shaped or normalised images.
    #[error("the module and the model take different inputs (model vs module: {differences})")]
    DifferentInputs {
        /// What differs, `;`-separated.
        differences: String,
    },
    /// No target column was named and the module's class is not one of the model's classes.
    #[error("the module recognises `{class}`, a class the model does not have ({classes})")]
    ModuleClassNotInModel {
        /// The module's class name.
        class: String,
        /// The model's class names, comma-separated.
        classes: String,
    },
    /// Min–max calibration was asked for a module that records no calibration range.
    #[error(
        "module `{class}` has no calibration range (decompose again, or patch without calibration)"
    )]
    NoCalibrationRange {
        /// The module's class name.
        class: String,
    },
    /// A calibration range with max ≤ min: the module's score was constant on its class's
    /// validation images, so it cannot be calibrated (design §7, §13).
    #[error("{module}: calibration range max ≤ min (min {lo}, max {hi}): the module's score is constant on its class's validation images, so it cannot patch; it is collapsed (decompose again)")]
    DegenerateCalibration {
        /// The module: its directory or class.
        module: String,
        /// Lower end of the range.
        lo: f64,
        /// Upper end of the range.
        hi: f64,
    },
    /// A collapsed module (design §13) was given to `patch` without `force`.
    #[error("{module} is collapsed ({reasons}): it cannot do its job, so it is not patched unless forced")]
    CollapsedModule {
        /// The module: its directory or class.
        module: String,
        /// Why it is collapsed, `; `-separated.
        reasons: String,
    },
    /// Percentile calibration was asked for a module whose file records no percentiles.
    #[error(
        "module `{class}` records no calibration percentiles (written by an older cnnsplit: decompose again, or patch with min–max calibration)"
    )]
    NoCalibrationPercentiles {
        /// The module's class name.
        class: String,
    },
    /// A selection fraction outside (0, 1).
    #[error("the selection fraction must be within (0, 1), got {fraction}")]
    InvalidSelectionFraction {
        /// The fraction given.
        fraction: f64,
    },
    /// A dataset cannot join a reuse task.
    #[error("{spec}: {message}")]
    TaskDataset {
        /// The dataset's specification.
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// A module comes from a model that is not among the candidate models of a selection.
    #[error("{}: module of class {class:?} comes from a model (weights {}) that is not among the given models", dir.display(), &parent_sha256[..parent_sha256.len().min(16)])]
    ForeignModule {
        /// Where the module was found.
        dir: std::path::PathBuf,
        /// The module's class name.
        class: String,
        /// SHA-256 of its parent model's weights.
        parent_sha256: String,
    },
    /// A candidate model of a selection has no module of some class.
    #[error("{}: no module of class {class} ({name:?}) among the given modules; every model needs a module per class", model.display())]
    MissingModule {
        /// The model's directory.
        model: std::path::PathBuf,
        /// The class index.
        class: usize,
        /// The class name.
        name: String,
    },
    /// The images of a task class cannot be found among the task's datasets.
    #[error("{subject}: {problem}")]
    ClassSource {
        /// Whose images were looked for.
        subject: crate::reuse::SourceSubject,
        /// Why none (or several) were found.
        problem: String,
    },
    /// A reuse task cannot be built or run as asked.
    #[error("{0}")]
    Reuse(String),
    /// Running or training a network failed.
    #[error("{0}")]
    Model(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, ComposerError>;
