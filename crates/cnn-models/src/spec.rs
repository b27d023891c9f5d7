//! `ModelSpec`: a declarative description of a CNN — its input, layers and class count — as
//! plain serde types. Everything derived from a spec (shapes, parameter names, kernel counts,
//! mask sites, MACs) is computed by [`ModelSpec::analyse`] in [`crate::analysis`].

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Largest number of values any single activation map or parameter tensor may hold.
/// Specs beyond this are rejected at validation, before any tensor is allocated.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 31;

/// Largest number of trainable parameters a whole network may hold (4 GiB of f32).
/// Specs beyond this are rejected at validation, naming the layer that crosses it.
pub const MAX_PARAMETERS: u64 = 1 << 30;

/// Largest number of activation values one image may produce, summed over the input and
/// every layer's output (1 GiB of f32 per image). Specs beyond this are rejected at
/// validation, naming the layer that crosses it.
pub const MAX_ACTIVATION_ELEMENTS: u64 = 1 << 28;

/// Channels, height and width of the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    /// Input channels (3 for RGB, or grey repeated three times).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

/// How conv weights are initialised before training (biases, BN and linear layers always use
/// PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConvInit {
    /// PyTorch's default: U(−1/√fan_in, 1/√fan_in) for weight and bias.
    #[default]
    TorchDefault,
    /// The reference SimCNN's init: weight ~ N(0, √(2/(k²·C_out))), bias 0.
    HeNormalFanOut,
}

/// A convolution block: conv → optional BatchNorm → optional ReLU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Parameter-name prefix of the conv (`conv_0.0` gives `conv_0.0.weight`, `conv_0.0.bias`).
    pub name: String,
    /// Output channels (kernels).
    pub out_channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride (both axes).
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding (both axes).
    #[serde(default)]
    pub padding: usize,
    /// Whether the conv has a bias.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Parameter-name prefix of the BatchNorm after the conv, if any (`conv_0.1`).
    #[serde(default)]
    pub bn: Option<String>,
    /// Whether a ReLU follows (after the BatchNorm).
    #[serde(default = "yes")]
    pub relu: bool,
}

/// A fully connected layer, optionally followed by a ReLU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearSpec {
    /// Parameter-name prefix (`fc_13` gives `fc_13.weight`, `fc_13.bias`).
    pub name: String,
    /// Output features.
    pub out_features: usize,
    /// Whether a ReLU follows.
    #[serde(default)]
    pub relu: bool,
}

/// One layer of a [`ModelSpec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LayerSpec {
    /// Conv → [BN] → [ReLU].
    Conv(ConvSpec),
    /// Max-pool, no padding.
    MaxPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Dropout with drop probability `p` (training only).
    Dropout {
        /// Drop probability.
        p: f32,
    },
    /// Flatten a C×H×W map into a vector.
    Flatten,
    /// Global average pooling: C×H×W → C.
    GlobalAvgPool,
    /// A ReLU on its own.
    Relu,
    /// A fully connected layer.
    Linear(LinearSpec),
    /// Remember the current activation under `slot` (for a later residual add).
    Save {
        /// Slot name.
        slot: String,
    },
    /// Add the activation saved under `slot` to the current one (a residual connection).
    Add {
        /// Slot name.
        slot: String,
    },
    /// Run each branch on the current activation and concatenate their outputs on channels.
    Concat {
        /// The branches, each a list of layers.
        branches: Vec<Vec<LayerSpec>>,
    },
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

/// A CNN described as data: the paper's SimCNN/ResCNN/InceCNN are presets of it, and a user can
/// write their own as JSON.
///
/// ```
/// use cnn_models::{presets, ModelSpec};
/// let spec = presets::simcnn(0.25, 3, 10, true);
/// let json = serde_json::to_string(&spec).unwrap();
/// let back: ModelSpec = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, spec);
/// assert_eq!(back.analyse().unwrap().total_kernels(), 1056);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Architecture name, e.g. `simcnn`.
    pub name: String,
    /// Input shape.
    pub input: InputShape,
    /// Number of classes (the width of the last layer's output).
    pub num_classes: usize,
    /// Conv weight initialisation.
    #[serde(default)]
    pub conv_init: ConvInit,
    /// The layers in order.
    pub layers: Vec<LayerSpec>,
}

pub use crate::analysis::{
    ActShape, Analysis, ChannelSource, ConvInfo, LayerRow, LinearInfo, MaskSite, TensorRole,
};

impl ModelSpec {
    /// The same network with `classes` outputs: `num_classes` set and the last linear layer
    /// resized, the rest unchanged; the result is validated.
    ///
    /// ```
    /// use cnn_models::presets;
    /// let ten = presets::simcnn(0.0625, 1, 10, true);
    /// let three = ten.with_classes(3).unwrap();
    /// assert_eq!(three.num_classes, 3);
    /// assert_eq!(three.layers.len(), ten.layers.len());
    /// ```
    pub fn with_classes(&self, classes: usize) -> Result<ModelSpec, ModelError> {
        let mut s = self.clone();
        s.num_classes = classes;
        let last = s
            .layers
            .iter_mut()
            .rev()
            .find_map(|l| match l {
                LayerSpec::Linear(lin) => Some(lin),
                _ => None,
            })
            .ok_or_else(|| {
                ModelError::Mismatch(format!(
                    "architecture {} ends in no linear layer",
                    self.name
                ))
            })?;
        last.out_features = classes;
        s.analyse()?;
        Ok(s)
    }

    /// Read a spec from a JSON file, validating it.
    pub fn from_json_file(path: &std::path::Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let spec: ModelSpec = serde_json::from_str(&text).map_err(|e| ModelError::BadFile {
            path: path.to_path_buf(),
            message: format!("not a valid ModelSpec: {e}"),
        })?;
        spec.analyse().map_err(|e| ModelError::BadFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(spec)
    }
}
