//! Module artefacts (spec §5.9, §11.14): the extracted network of one class plus its head, saved
//! as `module.safetensors` (the network's tensors under the architecture's names and
//! `module_head.{0,2}.{weight,bias}`) and `module.json` ([`ModuleMeta`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use cnn_models::extract::{extract_module, KernelMask};
use cnn_models::files::{atomic_write, sha256_hex};
use cnn_models::{Model, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::error::{GradSplitError, Result};
use crate::heads::{ModuleHead, HEAD_KEYS};

/// Format tag of `module.json`.
pub const MODULE_FORMAT: &str = "cnnsplit-module";
/// The `module.json` format version this build writes and reads.
pub const MODULE_FORMAT_VERSION: u32 = 1;
/// File name of the weights inside a module directory.
pub const MODULE_WEIGHTS: &str = "module.safetensors";
/// File name of the metadata inside a module directory.
pub const MODULE_META: &str = "module.json";

/// Everything `module.json` records besides the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleMeta {
    /// Always [`MODULE_FORMAT`].
    pub format: String,
    /// [`MODULE_FORMAT_VERSION`].
    pub format_version: u32,
    /// How the module was found (`grad`).
    pub method: String,
    /// Class index in the parent model.
    pub class_index: usize,
    /// Class name.
    pub class_name: String,
    /// SHA-256 of the parent model's weights file (`model.json`'s `weights_sha256`).
    pub parent_sha256: String,
    /// The parent model's spec.
    pub parent_spec: ModelSpec,
    /// The module network's spec (sliced widths).
    pub spec: ModelSpec,
    /// Retained kernel indices per physical conv of the parent.
    pub retained: Vec<Vec<usize>>,
    /// Physical convs reduced to one zero channel.
    pub zeroed_convs: Vec<usize>,
    /// Retained kernels (zeroed convs count 0).
    pub kernels: usize,
    /// Kernels of the parent K_tot.
    pub total_kernels: usize,
    /// Kernel retention rate kernels / K_tot.
    pub krr: f64,
    /// Parameters of the module network plus head (BatchNorm running statistics excluded).
    pub params: u64,
    /// MACs per image of the module network, head included when `head_included`.
    pub macs: u64,
    /// MACs per image of the parent model.
    pub parent_macs: u64,
    /// `macs / parent_macs`.
    pub overhead: f64,
    /// Whether `params` and `macs` include the head (always true here).
    pub head_included: bool,
    /// Input format of the parent model.
    pub input_format: cnn_data::InputFormat,
    /// Search metrics (chosen epoch, accuracies) as JSON.
    pub metrics: Option<serde_json::Value>,
    /// cnnsplit version that wrote the file.
    pub crate_version: String,
    /// SHA-256 of `module.safetensors` (filled in on save).
    pub weights_sha256: String,
}

/// A GradSplitter module: the extracted network, its head and its metadata.
#[derive(Clone, Debug)]
pub struct GradModule {
    /// The extracted network (outputs N logits).
    pub model: Model,
    /// The head turning those logits into P(class | x).
    pub head: ModuleHead,
    /// Metadata.
    pub meta: ModuleMeta,
}

impl GradModule {
    /// Scores `[B]` in (0, 1) of a normalised batch `[B, C, H, W]`.
    pub fn score(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.model.forward_eval(x)?;
        self.head.score(&logits)
    }
}

/// Scores `[B]` of a module on a normalised batch (spec §5.10).
pub fn module_score(module: &GradModule, x: &Tensor) -> Result<Tensor> {
    module.score(x)
}

/// Extract module `class_index` of `parent` from its masks and head and fill in its metadata.
#[allow(clippy::too_many_arguments)]
pub fn build_module(
    parent: &Model,
    parent_sha256: &str,
    masks: &[KernelMask],
    head: ModuleHead,
    class_index: usize,
    class_name: &str,
    input_format: cnn_data::InputFormat,
    metrics: Option<serde_json::Value>,
) -> Result<GradModule> {
    let n = parent.spec().num_classes;
    if class_index >= n {
        return Err(GradSplitError::Invalid(format!(
            "class {class_index} does not exist ({n} classes)"
        )));
    }
    if head.w1.dims().get(1) != Some(&n) {
        return Err(GradSplitError::Invalid(format!(
            "head input width {:?} is not the model's {n} classes",
            head.w1.dims()
        )));
    }
    let (model, info) = extract_module(parent, masks)?;
    let head = ModuleHead {
        w1: head.w1.to_device(parent.device())?,
        b1: head.b1.to_device(parent.device())?,
        w2: head.w2.to_device(parent.device())?,
        b2: head.b2.to_device(parent.device())?,
    };
    let hidden = head.b1.elem_count() as u64;
    let head_macs = hidden * n as u64 + hidden;
    let total = parent.analysis().total_kernels();
    let macs = model.analysis().macs() + head_macs;
    let parent_macs = parent.analysis().macs();
    let meta = ModuleMeta {
        format: MODULE_FORMAT.into(),
        format_version: MODULE_FORMAT_VERSION,
        method: "grad".into(),
        class_index,
        class_name: class_name.into(),
        parent_sha256: parent_sha256.into(),
        parent_spec: parent.spec().clone(),
        spec: model.spec().clone(),
        retained: info.retained,
        zeroed_convs: info.zeroed_convs,
        kernels: info.kernels,
        total_kernels: total,
        krr: info.kernels as f64 / total as f64,
        params: model.analysis().params() + head.params() as u64,
        macs,
        parent_macs,
        overhead: macs as f64 / parent_macs.max(1) as f64,
        head_included: true,
        input_format,
        metrics,
        crate_version: env!("CARGO_PKG_VERSION").into(),
        weights_sha256: String::new(),
    };
    Ok(GradModule { model, head, meta })
}

fn head_key(k: &str) -> String {
    format!("module_head.{k}")
}

/// Save a module into directory `dir` (created if needed), atomically. Returns the weights'
/// SHA-256.
pub fn save_module(dir: &Path, module: &GradModule) -> Result<String> {
    let mut all: BTreeMap<String, Tensor> = module.model.tensors().clone();
    for (k, t) in HEAD_KEYS.iter().zip(module.head.tensors()) {
        all.insert(head_key(k), t.clone());
    }
    let bns: Vec<String> = module
        .model
        .analysis()
        .batch_norms
        .iter()
        .map(|(b, _)| b.clone())
        .collect();
    let bytes = cnn_models::weights::safetensors_bytes(&all, &bns)?;
    let sha = sha256_hex(&bytes);
    let mut meta = module.meta.clone();
    meta.weights_sha256 = sha.clone();
    meta.spec = module.model.spec().clone();
    atomic_write(&dir.join(MODULE_WEIGHTS), &bytes)?;
    let json =
        serde_json::to_vec_pretty(&meta).map_err(|e| GradSplitError::Invalid(e.to_string()))?;
    atomic_write(&dir.join(MODULE_META), &json)?;
    Ok(sha)
}

/// Resolve a module path: a directory holding `module.json`, or the `module.json` itself.
pub fn module_dir(path: &Path) -> PathBuf {
    if path.file_name().is_some_and(|n| n == MODULE_META) {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.to_path_buf()
    }
}

/// Read and check a `module.json`.
pub fn read_module_meta(path: &Path) -> Result<ModuleMeta> {
    let text = std::fs::read_to_string(path).map_err(|e| GradSplitError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| GradSplitError::bad(path, format!("not valid JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(MODULE_FORMAT) {
        return Err(GradSplitError::bad(
            path,
            format!("not a cnnsplit module file (format must be \"{MODULE_FORMAT}\")"),
        ));
    }
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if version != MODULE_FORMAT_VERSION as u64 {
        return Err(GradSplitError::bad(
            path,
            format!("module format version {version} found; this build reads version {MODULE_FORMAT_VERSION}"),
        ));
    }
    serde_json::from_value(value).map_err(|e| GradSplitError::bad(path, e.to_string()))
}

/// Load a module directory, verifying its weights' SHA-256 and, when `parent_sha256` is given,
/// that it was extracted from that parent.
pub fn load_module(
    path: &Path,
    parent_sha256: Option<&str>,
    device: &Device,
) -> Result<GradModule> {
    let dir = module_dir(path);
    let meta_path = dir.join(MODULE_META);
    if !meta_path.exists() {
        return Err(GradSplitError::bad(
            &dir,
            "not a module directory (no module.json)",
        ));
    }
    let meta = read_module_meta(&meta_path)?;
    if let Some(expected) = parent_sha256 {
        if expected != meta.parent_sha256 {
            return Err(GradSplitError::ParentMismatch {
                path: meta_path,
                expected: meta.parent_sha256.clone(),
                found: expected.to_string(),
            });
        }
    }
    let wpath = dir.join(MODULE_WEIGHTS);
    let bytes = std::fs::read(&wpath).map_err(|e| GradSplitError::Io {
        path: wpath.clone(),
        source: e,
    })?;
    let sha = sha256_hex(&bytes);
    if sha != meta.weights_sha256 {
        return Err(GradSplitError::bad(
            &wpath,
            format!(
                "SHA-256 {sha} does not match module.json's {} (file changed or half-written)",
                meta.weights_sha256
            ),
        ));
    }
    let mut map = candle_core::safetensors::load_buffer(&bytes, device)?;
    let mut head = Vec::new();
    for k in HEAD_KEYS {
        let t = map.remove(&head_key(k)).ok_or_else(|| {
            GradSplitError::bad(&wpath, format!("missing tensor `{}`", head_key(k)))
        })?;
        head.push(t.to_dtype(candle_core::DType::F32)?);
    }
    let analysis = meta.spec.analyse()?;
    let expected: std::collections::BTreeSet<String> = analysis
        .tensor_shapes()
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    let mut tensors = BTreeMap::new();
    for (k, t) in map {
        if k.ends_with(".num_batches_tracked") {
            continue;
        }
        if !expected.contains(&k) {
            return Err(GradSplitError::bad(
                &wpath,
                format!("unexpected tensor `{k}`"),
            ));
        }
        tensors.insert(k, t);
    }
    let model = Model::from_tensors(meta.spec.clone(), tensors, device)?;
    let [w1, b1, w2, b2]: [Tensor; 4] = head
        .try_into()
        .map_err(|_| GradSplitError::bad(&wpath, "head tensors"))?;
    let n = meta.spec.num_classes;
    let h = b1.elem_count();
    if w1.dims() != [h, n] || w2.dims() != [1, h] || b2.dims() != [1] {
        return Err(GradSplitError::bad(
            &wpath,
            "module head tensors have inconsistent shapes",
        ));
    }
    Ok(GradModule {
        model,
        head: ModuleHead { w1, b1, w2, b2 },
        meta,
    })
}
