//! The crate's single error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, converting or batching image data.
///
/// Messages of file-related variants always name the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be opened, read, listed or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not valid for its format.
    #[error("{}: {message}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A required file of a dataset folder is missing.
    #[error("{}: missing file (expected one of: {})", dir.display(), expected.join(", "))]
    MissingFile {
        /// The folder that was searched.
        dir: PathBuf,
        /// The names that were looked for.
        expected: Vec<String>,
    },
    /// A dataset given by name alone is not in its folder under the data root.
    #[error(
        "{}: no {name} data here; get it with `cargo xtask datasets fetch {name}` or \
         `cargo xtask datasets import {name} --from DIR`, or name its folder: {name}=DIR",
        dir.display()
    )]
    NotFetched {
        /// The dataset's spec name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A dataset specification string could not be parsed.
    #[error("invalid dataset spec {spec:?}: {message}")]
    Spec {
        /// The text that was given.
        spec: String,
        /// Why it was rejected.
        message: String,
    },
    /// An argument passed by the caller is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tensor could not be created on the requested device.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A [`DataError::Format`] for `path`.
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
}
