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
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, ComposerError>;
