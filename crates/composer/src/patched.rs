//! A patched model as a runnable artefact: a directory holding a copy of the weak model, a copy
//! of the module and `patch.json` ([`PatchManifest`]) saying how the module's calibrated score
//! replaces one column of the weak model's softmax (design §7).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use cnn_models::files::{atomic_write, load_model, ModelMeta};
use cnn_models::module::{load_module, Module, MODULE_META, MODULE_WEIGHTS};
use cnn_models::Model;
use serde::{Deserialize, Serialize};

use crate::calibration::Calibration;
use crate::error::{ComposerError, Result};
use crate::patching::PatchRule;

/// Format tag of `patch.json`.
pub const PATCH_FORMAT: &str = "cnnsplit-patched-model";
/// The `patch.json` version this build writes and reads.
pub const PATCH_FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside a patched-model directory.
pub const PATCH_MANIFEST: &str = "patch.json";

/// What `patch.json` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchManifest {
    /// Always [`PATCH_FORMAT`].
    pub format: String,
    /// [`PATCH_FORMAT_VERSION`].
    pub format_version: u32,
    /// How the module's score replaces the weak model's target column.
    pub rule: PatchRule,
    /// Name of the target class.
    pub target_class: String,
    /// SHA-256 of the weak model's weights.
    pub model_sha256: String,
    /// SHA-256 of the module's weights.
    pub module_sha256: String,
    /// cnnsplit version that wrote the file.
    pub crate_version: String,
}

/// A loaded patched model.
#[derive(Debug)]
pub struct PatchedModel {
    /// The weak model.
    pub model: Model,
    /// Its metadata.
    pub meta: ModelMeta,
    /// The module patching it.
    pub module: Module,
    /// The manifest.
    pub manifest: PatchManifest,
}

impl PatchedModel {
    /// Patched scores `[n, classes]` (row-major) of normalised images, in batches of `batch`:
    /// the weak model's softmax with the target column replaced by the calibrated module score.
    pub fn scores(&self, x: &Tensor, batch: usize) -> Result<Vec<f64>> {
        let n = self.model.spec().num_classes;
        let logits = self
            .model
            .predict_logits(x, batch)
            .and_then(|l| Ok(l.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
            .map_err(|e| ComposerError::Incompatible(e.to_string()))?;
        let module_scores = self
            .module
            .scores(x, batch)
            .map_err(|e| ComposerError::Incompatible(e.to_string()))?;
        self.manifest
            .rule
            .patched_scores(&logits, n, &module_scores)
    }
}

/// The weak model's column for a module: `target` (a class name or index) when given, else
/// the class whose name is the module's class name.
pub fn target_column(
    model_meta: &ModelMeta,
    module: &Module,
    target: Option<&str>,
) -> Result<usize> {
    let names = &model_meta.class_names;
    let find = |name: &str| names.iter().position(|n| n == name);
    match target {
        Some(t) => find(t)
            .or_else(|| t.parse::<usize>().ok().filter(|&i| i < names.len()))
            .ok_or_else(|| {
                ComposerError::Incompatible(format!(
                    "target class `{t}` is not one of the model's classes ({})",
                    names.join(", ")
                ))
            }),
        None => find(&module.meta.class_name).ok_or_else(|| {
            ComposerError::Incompatible(format!(
                "the module recognises `{}`, a class the model does not have ({}); pass --target to choose the column it replaces",
                module.meta.class_name,
                names.join(", ")
            ))
        }),
    }
}

/// Checks that a module takes the same input as a model, naming what differs.
pub fn check_same_input(model_meta: &ModelMeta, module: &Module) -> Result<()> {
    let (a, b) = (&model_meta.input_format, &module.meta.input_format);
    let mut diffs = Vec::new();
    if a.channels != b.channels {
        diffs.push(format!("channels {} vs {}", a.channels, b.channels));
    }
    if a.size != b.size {
        diffs.push(format!("size {} vs {}", a.size, b.size));
    }
    if a.norm != b.norm {
        diffs.push(format!(
            "normalisation mean {:?} std {:?} vs mean {:?} std {:?}",
            a.norm.mean, a.norm.std, b.norm.mean, b.norm.std
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(ComposerError::Incompatible(format!(
            "the module and the model take different inputs (model vs module: {})",
            diffs.join("; ")
        )))
    }
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).map_err(|e| ComposerError::Artefact {
        path: from.to_path_buf(),
        message: e.to_string(),
    })?;
    atomic_write(to, &bytes).map_err(|e| ComposerError::Artefact {
        path: to.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes a patched-model directory `out`: copies of the weak model (`model/`) and the module
/// (`module/`), then `patch.json` last, each file atomically.
pub fn save_patched(
    out: &Path,
    model_dir: &Path,
    module_dir: &Path,
    manifest: &PatchManifest,
) -> Result<()> {
    for f in [
        cnn_models::files::META_FILE,
        cnn_models::files::WEIGHTS_FILE,
    ] {
        copy_file(&model_dir.join(f), &out.join("model").join(f))?;
    }
    for f in [MODULE_META, MODULE_WEIGHTS] {
        copy_file(&module_dir.join(f), &out.join("module").join(f))?;
    }
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| ComposerError::Artefact {
        path: out.join(PATCH_MANIFEST),
        message: e.to_string(),
    })?;
    atomic_write(&out.join(PATCH_MANIFEST), &json).map_err(|e| ComposerError::Artefact {
        path: out.join(PATCH_MANIFEST),
        message: e.to_string(),
    })
}

/// Parses the bytes of a `patch.json`, checking its format tag and version; `path` is used
/// in error messages only.
pub fn parse_patch_manifest(path: &Path, bytes: &[u8]) -> Result<PatchManifest> {
    let value = cnn_models::files::parse_versioned_json(
        path,
        bytes,
        PATCH_FORMAT,
        PATCH_FORMAT_VERSION,
        "patched-model",
    )
    .map_err(|e| ComposerError::Incompatible(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| ComposerError::Artefact {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Loads a patched-model directory written by [`save_patched`], checking that its parts are
/// the ones the manifest names.
pub fn load_patched(dir: &Path, device: &Device) -> Result<PatchedModel> {
    let path: PathBuf = dir.join(PATCH_MANIFEST);
    let bad = |message: String| ComposerError::Artefact {
        path: path.clone(),
        message,
    };
    let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let manifest = parse_patch_manifest(&path, &bytes)?;
    let model_dir = dir.join("model");
    let (model, meta) = load_model(&model_dir, device).map_err(|e| ComposerError::Artefact {
        path: model_dir.clone(),
        message: e.to_string(),
    })?;
    if meta.weights_sha256 != manifest.model_sha256 {
        return Err(bad(format!(
            "model/ holds weights {} but the manifest names {}",
            meta.weights_sha256, manifest.model_sha256
        )));
    }
    let module_dir = dir.join("module");
    let module = load_module(&module_dir, None, device).map_err(|e| ComposerError::Artefact {
        path: module_dir.clone(),
        message: e.to_string(),
    })?;
    if module.meta.weights_sha256 != manifest.module_sha256 {
        return Err(bad(format!(
            "module/ holds weights {} but the manifest names {}",
            module.meta.weights_sha256, manifest.module_sha256
        )));
    }
    if manifest.rule.target_column >= model.spec().num_classes {
        return Err(bad(format!(
            "target column {} but the model has {} classes",
            manifest.rule.target_column,
            model.spec().num_classes
        )));
    }
    Ok(PatchedModel {
        model,
        meta,
        module,
        manifest,
    })
}

/// The calibration a module file supports: min–max from its stored range, or none.
pub fn module_calibration(module: &Module, minmax: bool) -> Result<Calibration> {
    if !minmax {
        return Ok(Calibration::None);
    }
    match module.meta.calibration {
        Some((lo, hi)) => Ok(Calibration::MinMax {
            min: lo as f32,
            max: hi as f32,
        }),
        None => Err(ComposerError::Incompatible(format!(
            "module `{}` has no calibration range (decompose again, or patch with --calibration none)",
            module.meta.class_name
        ))),
    }
}
