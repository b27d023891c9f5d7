//! Model files on disk: a directory with `model.safetensors` (weights under PyTorch names) and
//! `model.json` ([`ModelMeta`]), written atomically (temp file + rename) and checked on load.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::spec::ModelSpec;

/// Format tag of `model.json`.
pub const MODEL_FORMAT: &str = "cnnsplit-model";
/// The `model.json` format version this build writes and reads.
pub const MODEL_FORMAT_VERSION: u32 = 1;
/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the metadata inside a model directory.
pub const META_FILE: &str = "model.json";

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
/// A crash leaves either the old file or the new one, never a half-written file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::io(path, e));
    }
    Ok(())
}

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything `model.json` records besides the weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// Format version ([`MODEL_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The architecture.
    pub spec: ModelSpec,
    /// Input format (size, channels, normalisation) the model was trained with.
    pub input_format: cnn_data::InputFormat,
    /// Dataset the model was trained on (`fashion-mnist=/path`).
    pub dataset: String,
    /// Class names, index order.
    pub class_names: Vec<String>,
    /// Master seed.
    pub seed: Option<u64>,
    /// Training configuration and per-epoch record, as JSON.
    pub training: Option<serde_json::Value>,
    /// Metrics (e.g. validation/test accuracy).
    pub metrics: Option<serde_json::Value>,
    /// cnnsplit version that wrote the file.
    pub crate_version: String,
    /// SHA-256 of `model.safetensors`.
    pub weights_sha256: String,
}

impl ModelMeta {
    /// Metadata for a model about to be saved (hash filled in by [`save_model`]).
    pub fn new(
        spec: ModelSpec,
        input_format: cnn_data::InputFormat,
        dataset: String,
        class_names: Vec<String>,
    ) -> Self {
        ModelMeta {
            format: MODEL_FORMAT.into(),
            format_version: MODEL_FORMAT_VERSION,
            spec,
            input_format,
            dataset,
            class_names,
            seed: None,
            training: None,
            metrics: None,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            weights_sha256: String::new(),
        }
    }
}

/// Save a model into directory `dir` (created if needed). Returns the weights' SHA-256.
pub fn save_model(dir: &Path, model: &Model, meta: &ModelMeta) -> Result<String> {
    if meta.spec != *model.spec() {
        return Err(ModelError::Mismatch(
            "model.json's spec differs from the model being saved".into(),
        ));
    }
    if meta.class_names.len() != model.spec().num_classes {
        return Err(ModelError::Mismatch(format!(
            "{} class names for a model with {} classes",
            meta.class_names.len(),
            model.spec().num_classes
        )));
    }
    let bns: Vec<String> = model
        .analysis()
        .batch_norms
        .iter()
        .map(|(b, _)| b.clone())
        .collect();
    let bytes = crate::weights::safetensors_bytes(model.tensors(), &bns)?;
    let sha = sha256_hex(&bytes);
    let mut meta = meta.clone();
    meta.weights_sha256 = sha.clone();
    atomic_write(&dir.join(WEIGHTS_FILE), &bytes)?;
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| ModelError::Mismatch(e.to_string()))?;
    atomic_write(&dir.join(META_FILE), &json)?;
    Ok(sha)
}

/// Read a JSON artefact file and check its `format` tag and `format_version`; `what` names
/// the kind of file in errors ("model", "module").
pub fn read_versioned_json(
    path: &Path,
    format: &str,
    version: u32,
    what: &str,
) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse_versioned_json(path, &bytes, format, version, what)
}

/// Parses the bytes of a JSON artefact file and checks its `format` tag and
/// `format_version` like [`read_versioned_json`]; `path` is used in error messages only.
pub fn parse_versioned_json(
    path: &Path,
    bytes: &[u8],
    format: &str,
    version: u32,
    what: &str,
) -> Result<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ModelError::bad(path, format!("not valid JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(format) {
        return Err(ModelError::bad(
            path,
            format!("not a cnnsplit {what} file (format must be \"{format}\")"),
        ));
    }
    let found = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if found != version as u64 {
        return Err(ModelError::bad(
            path,
            format!("{what} format version {found} found; this build reads version {version}"),
        ));
    }
    Ok(value)
}

/// Read and check a `model.json`.
pub fn read_meta(path: &Path) -> Result<ModelMeta> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse_meta(path, &bytes)
}

/// Parses and checks the bytes of a `model.json` like [`read_meta`]; `path` is used in
/// error messages only.
pub fn parse_meta(path: &Path, bytes: &[u8]) -> Result<ModelMeta> {
    let value = parse_versioned_json(path, bytes, MODEL_FORMAT, MODEL_FORMAT_VERSION, "model")?;
    let meta: ModelMeta =
        serde_json::from_value(value).map_err(|e| ModelError::bad(path, e.to_string()))?;
    meta.spec
        .analyse()
        .map_err(|e| ModelError::bad(path, e.to_string()))?;
    check_input_format(&meta.spec, &meta.input_format).map_err(|m| ModelError::bad(path, m))?;
    if meta.class_names.len() != meta.spec.num_classes {
        return Err(ModelError::bad(
            path,
            format!(
                "{} class names for a model with {} classes",
                meta.class_names.len(),
                meta.spec.num_classes
            ),
        ));
    }
    Ok(meta)
}

/// Checks that an input format recorded next to `spec` produces what the spec takes:
/// `channels × size × size` equal to the spec's input, one mean and one finite, positive
/// standard deviation per channel, finite means.
pub fn check_input_format(
    spec: &ModelSpec,
    format: &cnn_data::InputFormat,
) -> std::result::Result<(), String> {
    let i = spec.input;
    if (format.channels, format.size, format.size) != (i.channels, i.height, i.width) {
        return Err(format!(
            "input format {}×{}×{} does not match the spec's input {}×{}×{}",
            format.channels, format.size, format.size, i.channels, i.height, i.width
        ));
    }
    let norm = &format.norm;
    if norm.mean.len() != format.channels || norm.std.len() != format.channels {
        return Err(format!(
            "normalisation has {} means and {} stds for {} channels",
            norm.mean.len(),
            norm.std.len(),
            format.channels
        ));
    }
    if let Some(m) = norm.mean.iter().find(|m| !m.is_finite()) {
        return Err(format!("normalisation mean {m} is not finite"));
    }
    if let Some(s) = norm.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(format!("normalisation std {s} is not a positive number"));
    }
    Ok(())
}

/// Resolve a model path: a directory holding `model.json`, or the `model.json` itself.
pub fn model_dir(path: &Path) -> PathBuf {
    if path.file_name().map(|n| n == META_FILE).unwrap_or(false) {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.to_path_buf()
    }
}

/// Load a model directory, verifying the weights' SHA-256 against `model.json`.
pub fn load_model(path: &Path, device: &Device) -> Result<(Model, ModelMeta)> {
    let dir = model_dir(path);
    let meta_path = dir.join(META_FILE);
    if !meta_path.exists() {
        return Err(ModelError::bad(
            &dir,
            "not a model directory (no model.json)",
        ));
    }
    let meta = read_meta(&meta_path)?;
    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| ModelError::io(&wpath, e))?;
    let sha = sha256_hex(&bytes);
    if sha != meta.weights_sha256 {
        return Err(ModelError::bad(
            &wpath,
            format!(
                "SHA-256 {sha} does not match model.json's {} (file changed or half-written)",
                meta.weights_sha256
            ),
        ));
    }
    let analysis = meta.spec.analyse()?;
    let tensors = crate::weights::load_safetensors(&wpath, &analysis, &meta.spec.name, device)?;
    let model = Model::from_tensors(meta.spec.clone(), tensors, device)?;
    Ok((model, meta))
}

/// Wrap a PyTorch state_dict saved as safetensors into a [`Model`] (checked key by key).
pub fn import_state_dict(path: &Path, spec: ModelSpec, device: &Device) -> Result<Model> {
    let analysis = spec.analyse()?;
    let tensors = crate::weights::load_safetensors(path, &analysis, &spec.name, device)?;
    Model::from_tensors(spec, tensors, device)
}
