//! The error type of this crate.

use std::path::{Path, PathBuf};

/// Everything that can go wrong building, loading, saving, training or evaluating a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A `ModelSpec` describes an impossible network.
    #[error("invalid model spec at layer {layer}: {message}")]
    InvalidSpec {
        /// Path of the layer in the spec.
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// A weights file lacks a tensor the spec needs.
    #[error("{path}: missing tensor `{key}` (expected shape {expected:?})")]
    MissingTensor {
        /// File.
        path: PathBuf,
        /// Tensor name.
        key: String,
        /// Expected shape.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// File.
        path: PathBuf,
        /// Tensor name.
        key: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A weights file holds a tensor the spec does not know.
    #[error("{path}: unexpected tensor `{key}` (not part of the {arch} spec)")]
    UnexpectedTensor {
        /// File.
        path: PathBuf,
        /// Tensor name.
        key: String,
        /// Architecture name.
        arch: String,
    },
    /// A file is unreadable, corrupt, or of the wrong kind or version.
    #[error("{path}: {message}")]
    BadFile {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file could not be written (disk full, read-only directory, …); any earlier version
    /// of the file is unchanged.
    #[error("cannot write {path}: {source} (any earlier version of the file is unchanged)")]
    Write {
        /// File (or directory) that could not be written.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A module was loaded against a parent model whose weights differ from the ones it was
    /// extracted from.
    #[error("{path}: module was extracted from a model with SHA-256 {expected}, the given parent has {found}")]
    ParentMismatch {
        /// The module's JSON file.
        path: PathBuf,
        /// Parent hash recorded in the module.
        expected: String,
        /// Hash of the model given.
        found: String,
    },
    /// Training diverged.
    #[error("loss is {value} at epoch {epoch}, batch {batch}: training stopped (the last good checkpoint is kept)")]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch.
        batch: usize,
        /// The loss value.
        value: f32,
    },
    /// Inputs that do not fit the model or each other.
    #[error("{0}")]
    Mismatch(String),
    /// A resume found a checkpoint made with other settings, model or data.
    #[error("{0}")]
    DifferentRun(#[from] crate::checkpoint::DifferentRun),
    /// A data error.
    #[error(transparent)]
    Data(#[from] cnn_data::DataError),
    /// A tensor error from candle.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// Wrap an I/O error with its path.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    /// Wrap an I/O error of a write with its path.
    pub fn write(path: &Path, source: std::io::Error) -> Self {
        ModelError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
    /// A bad-file error.
    pub fn bad(path: &Path, message: impl Into<String>) -> Self {
        ModelError::BadFile {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
