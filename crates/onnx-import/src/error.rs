//! The error type of the ONNX importer.

use std::path::PathBuf;

/// Everything that can go wrong reading an ONNX file into a model. Every variant names the
/// file; those about one node name the node and its operator.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model (not protobuf, truncated, or no graph).
    #[error("{path}: not an ONNX model: {message}")]
    NotOnnx {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A node uses an operator, attribute or shape the importer does not support.
    #[error("{path}: node `{node}` ({op}): {message}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Node name (or its first output when the node has no name).
        node: String,
        /// Operator type.
        op: String,
        /// What is not supported.
        message: String,
    },
    /// The graph as a whole cannot be read as a CNN classifier (inputs, outputs, opset,
    /// structure).
    #[error("{path}: {message}")]
    Graph {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The graph converted, but the resulting network is not a valid cnnsplit model.
    #[error("{path}: the imported network is not a valid model: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: cnn_models::ModelError,
    },
}

/// Result of the importer.
pub type Result<T> = std::result::Result<T, OnnxError>;
