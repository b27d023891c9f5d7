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

/// A size along height and width (a kernel, stride or padding). In JSON a square size is one
/// number and a rectangular one is `[height, width]`; a square size is written as one number,
/// so specs without rectangular sizes serialise as before.
///
/// ```
/// use cnn_models::spec::HeightWidth;
/// let square: HeightWidth = serde_json::from_str("3").unwrap();
/// assert_eq!(square, HeightWidth::square(3));
/// let rect: HeightWidth = serde_json::from_str("[1, 7]").unwrap();
/// assert_eq!((rect.h, rect.w), (1, 7));
/// assert_eq!(serde_json::to_string(&rect).unwrap(), "[1,7]");
/// assert_eq!(serde_json::to_string(&square).unwrap(), "3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeightWidth {
    /// Along the height axis.
    pub h: usize,
    /// Along the width axis.
    pub w: usize,
}

impl HeightWidth {
    /// The same size on both axes.
    pub const fn square(n: usize) -> Self {
        HeightWidth { h: n, w: n }
    }
    /// Whether both axes have the same size.
    pub fn is_square(&self) -> bool {
        self.h == self.w
    }
}

impl From<usize> for HeightWidth {
    fn from(n: usize) -> Self {
        HeightWidth::square(n)
    }
}

impl std::fmt::Display for HeightWidth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}", self.h, self.w)
    }
}

impl Serialize for HeightWidth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_square() {
            s.serialize_u64(self.h as u64)
        } else {
            [self.h, self.w].serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for HeightWidth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Square(usize),
            Rect([usize; 2]),
        }
        Ok(match Written::deserialize(d)? {
            Written::Square(n) => HeightWidth::square(n),
            Written::Rect([h, w]) => HeightWidth { h, w },
        })
    }
}

/// A convolution block: conv → optional BatchNorm → optional ReLU (or ReLU6).
///
/// `groups` > 1 is supported for depthwise convs (groups = input channels = output channels):
/// such a conv's channels are tied to its input's, so it belongs to the mask site of the conv
/// that feeds it (design §5.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Parameter-name prefix of the conv (`conv_0.0` gives `conv_0.0.weight`, `conv_0.0.bias`).
    pub name: String,
    /// Output channels (kernels).
    pub out_channels: usize,
    /// Kernel size (one number for a square kernel, `[h, w]` otherwise).
    pub kernel: HeightWidth,
    /// Stride.
    #[serde(default = "one_hw")]
    pub stride: HeightWidth,
    /// Zero padding on each side.
    #[serde(default = "zero_hw")]
    pub padding: HeightWidth,
    /// Dilation (both axes).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub dilation: usize,
    /// Channel groups: 1 for an ordinary conv, input channels for a depthwise conv.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub groups: usize,
    /// Whether the conv has a bias.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Parameter-name prefix of the BatchNorm after the conv, if any (`conv_0.1`).
    #[serde(default)]
    pub bn: Option<String>,
    /// Whether a ReLU follows (after the BatchNorm).
    #[serde(default = "yes")]
    pub relu: bool,
    /// With `relu`: clip the activation at 6 (ReLU6, as MobileNetV2 uses).
    #[serde(default, skip_serializing_if = "is_no")]
    pub relu6: bool,
}

impl ConvSpec {
    /// An ordinary square conv: stride 1, "same" padding for an odd kernel, bias, no
    /// BatchNorm, ReLU.
    ///
    /// ```
    /// use cnn_models::spec::ConvSpec;
    /// let c = ConvSpec::new("features.0", 16, 3);
    /// assert_eq!((c.padding.h, c.groups, c.relu), (1, 1, true));
    /// ```
    pub fn new(name: impl Into<String>, out_channels: usize, kernel: usize) -> Self {
        ConvSpec {
            name: name.into(),
            out_channels,
            kernel: HeightWidth::square(kernel),
            stride: HeightWidth::square(1),
            padding: HeightWidth::square(kernel.saturating_sub(1) / 2),
            dilation: 1,
            groups: 1,
            bias: true,
            bn: None,
            relu: true,
            relu6: false,
        }
    }

    /// Whether the conv is an ordinary square, undilated, ungrouped conv (the shape the fused
    /// CPU ops take).
    pub fn is_plain(&self) -> bool {
        self.groups == 1
            && self.dilation == 1
            && self.kernel.is_square()
            && self.stride.is_square()
            && self.padding.is_square()
    }
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
    /// Max-pool (padding, if any, never wins the max).
    MaxPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding on each side.
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: usize,
    },
    /// Average pooling over a square window.
    AvgPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        #[serde(default)]
        padding: usize,
        /// Whether padded positions count in the divisor (PyTorch's default; ONNX's default
        /// is not to).
        #[serde(default = "yes")]
        count_include_pad: bool,
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
    /// A ReLU6 (clip to [0, 6]) on its own.
    Relu6,
    /// A fully connected layer.
    Linear(LinearSpec),
    /// Remember the current activation under `slot` (for a later residual add).
    Save {
        /// Slot name.
        slot: String,
    },
    /// Add the activation saved under `slot` to the current one (a residual connection). The
    /// saved activation first runs through `shortcut` when it is not empty (a projection
    /// shortcut, e.g. a 1×1 conv with BatchNorm); the convs that meet here share a mask site.
    Add {
        /// Slot name.
        slot: String,
        /// Layers on the skip path (empty for an identity shortcut).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shortcut: Vec<LayerSpec>,
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
fn one_hw() -> HeightWidth {
    HeightWidth::square(1)
}
fn zero_hw() -> HeightWidth {
    HeightWidth::square(0)
}
fn is_one(n: &usize) -> bool {
    *n == 1
}
fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn is_no(b: &bool) -> bool {
    !*b
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
