//! Model files on disk: a directory with `model.safetensors` (weights under PyTorch names) and
//! `model.json` ([`ModelMeta`]), written atomically (temp file + rename) and checked on load.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

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

/// Marker between a final file name and the writer's process id in temp file names.
const TEMP_MARKER: &str = ".tmp-";

/// Name of the temp file that [`atomic_write`] of this process fills before renaming it to
/// `name`: `.NAME.tmp-PID`, hidden, and never a name any reader looks for.
pub fn temp_file_name(name: &str) -> String {
    format!(".{name}{TEMP_MARKER}{}", std::process::id())
}

/// Whether `name` is a temp file name of [`atomic_write`] (of any process).
pub fn is_temp_file_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    match rest.rfind(TEMP_MARKER) {
        Some(at) if at > 0 => {
            let pid = &rest[at + TEMP_MARKER.len()..];
            !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Write `bytes` to `path` atomically: a temp file in the same directory
/// ([`temp_file_name`]), fsync, rename, fsync of the directory. A crash leaves either the old
/// file or the new one under `path`, never a half-written file; a failed write (disk full,
/// read-only directory) removes its temp file and leaves the old file untouched.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ModelError::write(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(temp_file_name(&name));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::write(path, e));
    }
    // make the rename itself durable; file systems that cannot sync a directory are fine
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Remove the temp files an interrupted [`atomic_write`] left in `dir` and in its
/// subdirectories down to `depth` levels (0: `dir` only). Returns how many were removed.
/// Call it only on directories this run owns (its `--out`): a temp file of a writer that is
/// still running would be removed too.
pub fn remove_stale_temp_files(dir: &Path, depth: usize) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| ModelError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| ModelError::io(&path, e))?;
        if kind.is_dir() && depth > 0 {
            removed += remove_stale_temp_files(&path, depth - 1)?;
        } else if kind.is_file() && is_temp_file_name(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(&path).map_err(|e| ModelError::write(&path, e))?;
            tracing::info!("removed {}, left by an interrupted run", path.display());
            removed += 1;
        }
    }
    Ok(removed)
}

/// The format versions of an artefact that this build reads, for error messages:
/// `version 1`, `versions 1 and 2`, `versions 1, 2 and 3`.
fn versions_text(supported: &[u32]) -> String {
    let parts: Vec<String> = supported.iter().map(u32::to_string).collect();
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("versions {} and {last}", rest.join(", "))
        }
        _ => format!("version {}", parts.join("")),
    }
}

/// Check the `format` tag and `format_version` of a JSON artefact read from `path`; `what`
/// names the kind of file in errors ("model", "module", "training checkpoint"). Returns the
/// version found. A version outside `supported` fails with
/// "PATH: WHAT format version X found; this cnnsplit (V) reads version Y", plus whether the
/// file is newer or older than this build.
pub fn check_format(
    path: &Path,
    value: &serde_json::Value,
    format: &str,
    supported: &[u32],
    what: &str,
) -> Result<u32> {
    if value.get("format").and_then(|f| f.as_str()) != Some(format) {
        return Err(ModelError::bad(
            path,
            format!("not a cnnsplit {what} file (format must be \"{format}\")"),
        ));
    }
    check_version(path, value.get("format_version"), supported, what)
}

/// Check a `format_version` value (`None`: the field is missing) against the versions this
/// build reads; see [`check_format`] for the message.
pub fn check_version(
    path: &Path,
    version: Option<&serde_json::Value>,
    supported: &[u32],
    what: &str,
) -> Result<u32> {
    let found = match version {
        Some(v) => v.as_u64().ok_or_else(|| {
            ModelError::bad(
                path,
                format!("{what} format_version {v} is not a whole number"),
            )
        })?,
        None => {
            return Err(ModelError::bad(
                path,
                format!("{what} file has no format_version"),
            ))
        }
    };
    if let Some(&v) = supported.iter().find(|&&v| u64::from(v) == found) {
        return Ok(v);
    }
    let newest = supported.iter().copied().max().unwrap_or(0);
    let advice = if found > u64::from(newest) {
        "it was written by a newer cnnsplit: upgrade cnnsplit to read it"
    } else {
        "it was written by an older cnnsplit: recreate it with this one"
    };
    Err(ModelError::bad(
        path,
        format!(
            "{what} format version {found} found; this cnnsplit ({}) reads {} ({advice})",
            env!("CARGO_PKG_VERSION"),
            versions_text(supported)
        ),
    ))
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
    let sha = cnn_data::sha256_bytes(&bytes);
    let mut meta = meta.clone();
    meta.weights_sha256 = sha.clone();
    atomic_write(&dir.join(WEIGHTS_FILE), &bytes)?;
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| ModelError::Mismatch(e.to_string()))?;
    atomic_write(&dir.join(META_FILE), &json)?;
    Ok(sha)
}

/// Read a JSON artefact file and check its `format` tag and `format_version` (see
/// [`check_format`]); `what` names the kind of file in errors ("model", "module").
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
    check_format(path, &value, format, &[version], what)?;
    Ok(value)
}

/// Read a JSON file into a value; errors name the file and say whether it is unreadable or
/// not JSON (a truncated file is the latter).
pub fn read_json_value(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::bad(path, format!("not valid JSON: {e}")))
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
    let sha = cnn_data::sha256_bytes(&bytes);
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
