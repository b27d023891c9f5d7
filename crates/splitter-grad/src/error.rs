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
    /// A resume found a checkpoint made with different settings (its differences name the
    /// fields, `name: checkpoint → now`).
    #[error("{0}")]
    ConfigChanged(#[source] cnn_models::checkpoint::DifferentRun),
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
    Model(cnn_models::ModelError),
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

impl From<cnn_models::checkpoint::DifferentRun> for GradSplitError {
    fn from(e: cnn_models::checkpoint::DifferentRun) -> Self {
        GradSplitError::ConfigChanged(e)
    }
}

/// A model-crate error, except that a checkpoint of a different run is a
/// [`GradSplitError::ConfigChanged`] wherever it comes from.
impl From<cnn_models::ModelError> for GradSplitError {
    fn from(e: cnn_models::ModelError) -> Self {
        match e {
            cnn_models::ModelError::DifferentRun(d) => GradSplitError::ConfigChanged(d),
            e => GradSplitError::Model(e),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = GradSplitError> = std::result::Result<T, E>;
