//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in a GradSplitter search or with a module file.
#[derive(Debug, thiserror::Error)]
pub enum GradSplitError {
    /// Inputs that do not fit the model, the config or each other.
    #[error("{0}")]
    Invalid(String),
    /// A checkpoint or module file is unreadable, corrupt, or of the wrong kind or version.
    #[error("{path}: {message}")]
    BadFile {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A resume found a checkpoint made with different settings.
    #[error("{path}: the checkpoint was made with different settings ({differences}); rerun with the same settings or without resume")]
    ConfigChanged {
        /// The checkpoint's JSON file.
        path: PathBuf,
        /// The differing fields, `name: checkpoint → now`.
        differences: String,
    },
    /// The loss became NaN or infinite.
    #[error("loss is {value} at epoch {epoch}, batch {batch}: search stopped (the last checkpoint is kept)")]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch.
        batch: usize,
        /// The loss value.
        value: f32,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An error from the model crate.
    #[error(transparent)]
    Model(#[from] cnn_models::ModelError),
    /// A data error.
    #[error(transparent)]
    Data(#[from] cnn_data::DataError),
    /// A tensor error from candle.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl GradSplitError {
    /// A bad-file error.
    pub fn bad(path: &std::path::Path, message: impl Into<String>) -> Self {
        GradSplitError::BadFile {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = GradSplitError> = std::result::Result<T, E>;
