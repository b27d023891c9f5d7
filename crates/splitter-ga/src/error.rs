//! The error type of the crate.

/// Everything that can go wrong while building genomes, configuring or running the GA.
#[derive(Debug, thiserror::Error)]
pub enum GaError {
    /// A gene-layer description is unusable (no convs, zero channels, a conv listed twice, …).
    #[error("invalid gene-layer {layer}: {reason}")]
    InvalidGeneLayer {
        /// Index of the gene-layer in the genome.
        layer: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The gene-layers do not cover the physical convs 0..n exactly once.
    #[error("gene-layers must cover physical convs 0..{expected} exactly once: {reason}")]
    ConvCoverage {
        /// Number of physical convs implied by the largest index.
        expected: usize,
        /// What is missing or duplicated.
        reason: String,
    },
    /// A chromosome has the wrong length.
    #[error("chromosome has {found} genes, the genome has {expected}")]
    ChromosomeLength {
        /// Genes in the genome.
        expected: usize,
        /// Genes in the chromosome.
        found: usize,
    },
    /// A gene is neither 0 nor 1.
    #[error("gene {position} has value {value}; genes must be 0 or 1")]
    GeneValue {
        /// Position of the gene.
        position: usize,
        /// The offending value.
        value: u8,
    },
    /// An importance order is not a permutation of the layer's kernel indices.
    #[error(
        "importance order of gene-layer {layer} is not a permutation of 0..{channels}: {reason}"
    )]
    ImportanceOrder {
        /// Gene-layer index.
        layer: usize,
        /// Kernels in the gene-layer.
        channels: usize,
        /// What is wrong.
        reason: String,
    },
    /// Wrong number of per-layer entries (importance orders, retained sets, …).
    #[error("expected {expected} {what}, found {found}")]
    Count {
        /// What was counted.
        what: &'static str,
        /// The expected count.
        expected: usize,
        /// The count received.
        found: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid GA configuration: {0}")]
    InvalidConfig(String),
    /// The fitness inputs are inconsistent (lengths, labels, identifier sets, non-finite scores).
    #[error("invalid fitness input: {0}")]
    InvalidFitnessInput(String),
    /// The population evaluator failed.
    #[error("evaluating the population of class {class}: {source}")]
    Evaluator {
        /// Class whose population was being evaluated.
        class: usize,
        /// The evaluator's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Generation selection on a holdout split was asked for but the evaluator has none.
    #[error("the configuration selects generations on a holdout split, but the evaluator provides no holdout data")]
    HoldoutUnavailable,
    /// A checkpoint does not match the run it is loaded into.
    #[error("checkpoint does not match this run: {0}")]
    CheckpointMismatch(String),
    /// The run has no scored generation yet, so no outcome exists.
    #[error("no generation has been scored yet (generation choice starts at generation 1)")]
    NoScoredGeneration,
    /// The model failed (forward pass, extraction, tensors, checkpoint files).
    #[error(transparent)]
    Model(cnn_models::ModelError),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A checkpoint file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A resume found a checkpoint made with different settings or data (its differences
    /// name the fields, `name: checkpoint → now`, or `model weights`, `fitness images`).
    #[error("{0}")]
    ConfigChanged(#[source] cnn_models::checkpoint::DifferentRun),
    /// (De)serialising a checkpoint failed.
    #[error("checkpoint JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<cnn_models::checkpoint::DifferentRun> for GaError {
    fn from(e: cnn_models::checkpoint::DifferentRun) -> Self {
        GaError::ConfigChanged(e)
    }
}

/// A model-crate error, except that a checkpoint of a different run is a
/// [`GaError::ConfigChanged`] wherever it comes from.
impl From<cnn_models::ModelError> for GaError {
    fn from(e: cnn_models::ModelError) -> Self {
        match e {
            cnn_models::ModelError::DifferentRun(d) => GaError::ConfigChanged(d),
            e => GaError::Model(e),
        }
    }
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, GaError>;
