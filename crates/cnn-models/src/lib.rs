//! # cnn-models
//!
//! CNN image classifiers for cnnsplit, described as data. A [`ModelSpec`] lists the layers
//! (convs with optional BatchNorm and ReLU, pooling, residual adds, concatenations, linear
//! layers); everything else is derived from it: shapes, parameter names (the PyTorch
//! state_dict names of the reference models), kernel counts, mask sites (convs coupled by
//! residual adds share one), MACs, the forward pass with optional kernel masks, training and
//! evaluation. The paper's SimCNN, ResCNN and InceCNN are [`presets`].
//!
//! ```
//! use candle_core::Device;
//! use cnn_models::{presets, Model};
//!
//! let spec = presets::rescnn(0.25, 3, 10, true);
//! let analysis = spec.analyse().unwrap();
//! assert_eq!(analysis.total_kernels(), 1072);
//! // convs 1/3, 5/7 and 9/11 share a mask site
//! assert_eq!(analysis.convs[3].site, analysis.convs[1].site);
//! let model = Model::init(spec, 0, &Device::Cpu).unwrap();
//! assert_eq!(model.tensors().len(), analysis.tensor_shapes().len());
//! ```

pub mod analysis;
pub mod checkpoint;
pub mod decomposition;
pub mod error;
pub mod evaluate;
pub mod extract;
pub mod files;
pub mod metrics;
pub mod model;
pub mod module;
pub mod ops;
pub mod presets;
pub mod spec;
pub mod train;
pub mod training_run;
pub mod val_split;
pub mod weights;

pub use checkpoint::{Checkpointing, Resume};
pub use decomposition::{Decomposition, DecompositionRecord, ModuleSummary, ParentModel};
pub use error::{ModelError, Result};
pub use evaluate::{evaluate, predict};
pub use files::{load_model, save_model, ModelMeta};
pub use model::{ForwardOptions, Model};
pub use module::{Module, ModuleHead, ModuleMeta, ModuleSource};
pub use ops::OpsBackend;
pub use spec::{
    Analysis, ConvInfo, ConvSpec, HeightWidth, InputShape, LayerSpec, MaskSite, ModelSpec,
};
pub use train::{train, TrainConfig, TrainData, TrainEvent, TrainReport};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The independent random streams derived from one master seed (design §11.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Weight initialisation.
    Init = 1,
    /// Data order and augmentation.
    Data = 2,
    /// Dropout masks.
    Dropout = 3,
    /// Train/validation splits and subsets.
    Split = 4,
    /// Mask or head initialisation of a splitter.
    Splitter = 5,
    /// Genetic-algorithm draws.
    Genetic = 6,
}

/// A ChaCha8 generator for one stream of a master seed.
pub fn seeded(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// A ChaCha8 generator for one stream and one epoch of a master seed, so an epoch's draws do not
/// depend on how earlier epochs ran (exact resume needs no RNG state).
pub fn epoch_rng(seed: u64, stream: Stream, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((stream as u64) << 32) | epoch as u64);
    rng
}
