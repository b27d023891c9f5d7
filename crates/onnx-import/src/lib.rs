//! # onnx-import
//!
//! Reads a CNN image classifier from an ONNX file into a cnnsplit [`ModelSpec`] and its weights,
//! so a model trained anywhere (PyTorch's `torch.onnx.export`, in eval mode with BatchNorm folded
//! into the convs or with BatchNorm kept) can be decomposed like a preset (design §3.6).
//!
//! The graph is walked from the image input to the logits: convs absorb the BatchNormalization
//! and ReLU/ReLU6 that follow them, a tensor read by several nodes opens a residual block (the
//! branches meet at an `Add`) or an inception block (a `Concat`), and layer names come from the
//! initialiser names (`layer1.0.conv1.weight` → layer `layer1.0.conv1`), so `cnnsplit inspect`
//! shows the names the user knows. Opsets 11–23 are read; [`SUPPORTED_OPS`] lists the operators.
//! Anything else is an [`OnnxError`] naming the file, the node, its operator and what is not
//! supported; a file that is not ONNX or is truncated is [`OnnxError::NotOnnx`], never a panic.
//!
//! ```
//! use onnx_import::parse_onnx;
//! let err = parse_onnx(std::path::Path::new("model.onnx"), b"not a protobuf").unwrap_err();
//! assert!(err.to_string().starts_with("model.onnx: not an ONNX model"));
//! ```

mod constants;
mod convert;
pub mod error;
pub mod proto;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use cnn_data::{DatasetKind, InputFormat, Normalization};
use cnn_models::{Model, ModelSpec};
use prost::Message;

pub use convert::{OPSETS, SUPPORTED_OPS};
pub use error::{OnnxError, Result};

/// An ONNX graph read into a spec and named tensors.
#[derive(Clone, Debug)]
pub struct OnnxImport {
    /// The network as a cnnsplit spec (named after the file).
    pub spec: ModelSpec,
    /// Every tensor the spec needs, by its parameter name: shape and row-major values.
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// Where it came from.
    pub summary: ImportSummary,
}

/// Facts about an imported file, for the user and the model's metadata.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImportSummary {
    /// The tool that wrote the file (`pytorch 2.15.0`), when it says.
    pub producer: String,
    /// Version of the standard operator set.
    pub opset: i64,
    /// Nodes in the graph.
    pub nodes: usize,
    /// BatchNormalization nodes kept as BN layers (0 for a graph exported with BN folded).
    pub batch_norms: usize,
}

impl OnnxImport {
    /// Build the model on `device`; `path` names the file in errors. The spec is validated and
    /// every tensor's shape checked against it.
    pub fn into_model(self, path: &Path, device: &Device) -> Result<Model> {
        let model_err = |source: cnn_models::ModelError| OnnxError::Model {
            path: path.to_path_buf(),
            source,
        };
        let mut tensors = BTreeMap::new();
        for (name, (dims, values)) in self.tensors {
            let t = Tensor::from_vec(values, dims, device)
                .map_err(|e| model_err(cnn_models::ModelError::from(e)))?;
            tensors.insert(name, t);
        }
        Model::from_tensors(self.spec, tensors, device).map_err(model_err)
    }
}

/// Read an ONNX model from bytes; `path` names it in errors and its stem names the spec.
pub fn parse_onnx(path: &Path, bytes: &[u8]) -> Result<OnnxImport> {
    let model = proto::ModelProto::decode(bytes).map_err(|e| OnnxError::NotOnnx {
        path: path.to_path_buf(),
        message: format!("the protobuf does not decode ({e}); is the file complete?"),
    })?;
    if model.graph.is_none() {
        return Err(OnnxError::NotOnnx {
            path: path.to_path_buf(),
            message: "the file holds no graph".into(),
        });
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "onnx".into());
    let c = convert::convert(path, &model, &name)?;
    let producer = format!("{} {}", model.producer_name, model.producer_version)
        .trim()
        .to_string();
    Ok(OnnxImport {
        spec: c.spec,
        tensors: c.tensors,
        summary: ImportSummary {
            producer,
            opset: c.opset,
            nodes: c.nodes,
            batch_norms: c.batch_norms,
        },
    })
}

/// Read an ONNX file into a spec and tensors.
pub fn read_onnx(path: &Path) -> Result<OnnxImport> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_onnx(path, &bytes)
}

/// The input format of an imported model for images of dataset `kind`: the file's channels and
/// size with the dataset's normalisation (grey images are repeated to fill 3 channels and padded
/// or cropped to the size, as for the presets). The input must be square.
///
/// ```
/// use cnn_data::DatasetKind;
/// let spec = cnn_models::presets::resnet18(0.0625, 3, 10);
/// let f = onnx_import::input_format(std::path::Path::new("r.onnx"), &spec, DatasetKind::FashionMnist).unwrap();
/// assert_eq!((f.channels, f.size), (3, 32));
/// ```
pub fn input_format(path: &Path, spec: &ModelSpec, kind: DatasetKind) -> Result<InputFormat> {
    let i = spec.input;
    if i.height != i.width {
        return Err(OnnxError::Graph {
            path: path.to_path_buf(),
            message: format!(
                "the model takes {}×{}×{} images; cnnsplit's data pipeline feeds square images",
                i.channels, i.height, i.width
            ),
        });
    }
    Ok(InputFormat {
        channels: i.channels,
        size: i.height,
        norm: Normalization::for_dataset(kind, i.channels),
    })
}

/// Read an ONNX file into a model on `device` ([`read_onnx`] + [`OnnxImport::into_model`]).
pub fn import_onnx(path: &Path, device: &Device) -> Result<(Model, ImportSummary)> {
    let imported = read_onnx(path)?;
    let summary = imported.summary.clone();
    Ok((imported.into_model(path, device)?, summary))
}
