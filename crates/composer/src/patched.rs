//! A patched model as a runnable artefact: a directory holding a copy of the weak model, a copy
//! of the module and `patch.json` ([`PatchManifest`]) saying how the module's calibrated score
//! replaces one column of the weak model's softmax (design §7).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use cnn_data::ImageSet;
use cnn_models::decomposition::describe_collapse;
use cnn_models::files::{atomic_write, load_model, ModelMeta};
use cnn_models::metrics::{argmax_rows, Evaluation};
use cnn_models::module::{load_module, Collapse, Module, MODULE_META, MODULE_WEIGHTS};
use cnn_models::{Model, OpsBackend};
use serde::{Deserialize, Serialize};

use crate::calibration::Calibration;
use crate::composed::score_images;
use crate::error::{ComposerError, Result};
use crate::patching::{patch_and_report, PatchReport, PatchRule};

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

    /// Runs the weak model and the module with `ops` (on CPU; see [`Model::set_ops`]).
    pub fn set_ops(&mut self, ops: OpsBackend) {
        self.model.set_ops(ops);
        self.module.model.set_ops(ops);
    }

    /// Patched predictions of raw images `indices` of `set`, converted with the weak model's
    /// input format in batches of `batch`.
    pub fn predictions(&self, set: &ImageSet, indices: &[usize], batch: usize) -> Result<Vec<u32>> {
        let n = self.model.spec().num_classes;
        let mut preds = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(batch.max(1)) {
            let (x, _) = cnn_data::to_tensor(
                set,
                chunk,
                &self.meta.input_format,
                None,
                self.model.device(),
            )
            .map_err(|e| ComposerError::Model(e.to_string()))?;
            let scores = self.scores(&x, batch)?;
            preds.extend(argmax_rows(&scores, n));
        }
        Ok(preds)
    }

    /// Accuracy and per-class metrics of the patched predictions of images `indices` of `set`
    /// against their labels.
    pub fn evaluate(&self, set: &ImageSet, indices: &[usize], batch: usize) -> Result<Evaluation> {
        let preds = self.predictions(set, indices, batch)?;
        let labels: Vec<u32> = indices.iter().map(|&i| set.labels[i] as u32).collect();
        Ok(Evaluation::new(
            &labels,
            &preds,
            self.model.spec().num_classes,
        ))
    }
}

/// Whether `dir` is a patched-model directory (it holds [`PATCH_MANIFEST`]).
pub fn is_patched(dir: &Path) -> bool {
    dir.join(PATCH_MANIFEST).exists()
}

/// Which calibration a patch applies to the module's score (design §7).
///
/// ```
/// use composer::CalibrationKind;
/// assert_eq!(CalibrationKind::default(), CalibrationKind::MinMax);
/// assert_eq!(CalibrationKind::Percentile { lo: 5.0, hi: 95.0 }.to_string(), "percentile 5–95");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CalibrationKind {
    /// The raw score.
    Raw,
    /// The min–max range stored in the module file.
    #[default]
    MinMax,
    /// The range between two percentiles (0–100) of the module's calibration scores, read off
    /// the percentiles stored in the module file.
    Percentile {
        /// Lower percentile (maps to 0).
        lo: f64,
        /// Upper percentile (maps to 1).
        hi: f64,
    },
}

impl std::fmt::Display for CalibrationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibrationKind::Raw => write!(f, "none"),
            CalibrationKind::MinMax => write!(f, "minmax"),
            CalibrationKind::Percentile { lo, hi } => write!(f, "percentile {lo}–{hi}"),
        }
    }
}

/// How to patch a weak model with a module.
///
/// ```
/// let cfg = composer::PatchConfig { target: Some("Bag".into()), ..Default::default() };
/// assert!(cfg.calibration == composer::CalibrationKind::MinMax && !cfg.clip && !cfg.force);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PatchConfig {
    /// The weak model's class the module replaces, by name or index; `None`: the class named
    /// like the module's class.
    pub target: Option<String>,
    /// Calibration of the module's score.
    pub calibration: CalibrationKind,
    /// Clip the calibrated score to [0, 1].
    pub clip: bool,
    /// Patch with a collapsed module (design §13) anyway, with a warning; without it such a
    /// module is refused. A calibration range with max ≤ min is refused either way.
    pub force: bool,
    /// Images per forward pass when measuring the patch.
    pub batch_size: usize,
}

impl Default for PatchConfig {
    fn default() -> Self {
        PatchConfig {
            target: None,
            calibration: CalibrationKind::MinMax,
            clip: false,
            force: false,
            batch_size: 256,
        }
    }
}

/// A weak model and a module ready to be patched together: the loaded parts, where they come
/// from, and the [`PatchRule`] joining them.
#[derive(Debug)]
pub struct PatchJob<'a> {
    /// The weak model's directory.
    pub model_dir: &'a Path,
    /// The weak model.
    pub model: &'a Model,
    /// Its metadata.
    pub meta: &'a ModelMeta,
    /// The module's directory.
    pub module_dir: &'a Path,
    /// The module.
    pub module: &'a Module,
    /// How the module's score replaces the target column.
    pub rule: PatchRule,
}

/// What a patch did on a test split ([`PatchJob::measure`]), as `patch` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchSummary {
    /// The weak model's directory.
    pub model: PathBuf,
    /// The module's directory.
    pub module: PathBuf,
    /// The dataset whose test split was used.
    pub dataset: String,
    /// Name of the target class.
    pub target_class: String,
    /// The rule applied.
    pub rule: PatchRule,
    /// Before/after metrics.
    pub report: PatchReport,
    /// Why the module is collapsed (design §13); empty for a usable module. A collapsed
    /// module only patches with `force`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub module_collapsed: Vec<Collapse>,
    /// Whether a collapsed module was patched because `force` was given.
    #[serde(default)]
    pub forced: bool,
    /// MACs per image of the module.
    pub module_macs: u64,
    /// MACs per image of the weak model.
    pub model_macs: u64,
    /// `module_macs / model_macs`.
    pub mac_overhead: f64,
    /// Where the patched model was saved, if it was.
    pub out: Option<PathBuf>,
}

impl<'a> PatchJob<'a> {
    /// Joins a weak model and a module: checks that they take the same input, finds the
    /// target column ([`target_column`]) and the calibration ([`module_calibration`]).
    pub fn new(
        model_dir: &'a Path,
        (model, meta): (&'a Model, &'a ModelMeta),
        module_dir: &'a Path,
        module: &'a Module,
        cfg: &PatchConfig,
    ) -> Result<Self> {
        check_same_input(meta, module)?;
        let column = target_column(meta, module, cfg.target.as_deref())?;
        let name = module_label(module_dir, module);
        if !module.meta.collapsed.is_empty() {
            let reasons = describe_collapse(&module.meta.collapsed);
            if !cfg.force {
                return Err(ComposerError::CollapsedModule {
                    module: name,
                    reasons,
                });
            }
            tracing::warn!("{name} is collapsed ({reasons}); patching with it anyway (forced)");
        }
        let calibration = module_calibration(module, cfg.calibration).map_err(|e| match e {
            ComposerError::DegenerateCalibration { lo, hi, .. } => {
                ComposerError::DegenerateCalibration {
                    module: name.clone(),
                    lo,
                    hi,
                }
            }
            e => e,
        })?;
        Ok(PatchJob {
            model_dir,
            model,
            meta,
            module_dir,
            module,
            rule: PatchRule {
                target_column: column,
                calibration,
                clip: cfg.clip,
            },
        })
    }

    /// Name of the target class.
    pub fn target_class(&self) -> &str {
        &self.meta.class_names[self.rule.target_column]
    }

    /// Patches the weak model's predictions of every image of `test` (the test split of
    /// `dataset`) and reports the effect, in batches of `batch`.
    pub fn measure(&self, dataset: &str, test: &ImageSet, batch: usize) -> Result<PatchSummary> {
        let classes = self.meta.spec.num_classes;
        if test.num_classes() != classes {
            return Err(ComposerError::Incompatible(format!(
                "{}: the weak model has {classes} classes, dataset `{dataset}` has {}",
                self.model_dir.display(),
                test.num_classes()
            )));
        }
        let run = |e: String| ComposerError::Model(e);
        let indices: Vec<usize> = (0..test.len()).collect();
        let mut logits = Vec::with_capacity(indices.len() * classes);
        for chunk in indices.chunks(batch.max(1)) {
            let (x, _) = cnn_data::to_tensor(
                test,
                chunk,
                &self.meta.input_format,
                None,
                self.model.device(),
            )
            .map_err(|e| run(e.to_string()))?;
            let l = self
                .model
                .predict_logits(&x, batch)
                .map_err(|e| run(e.to_string()))?;
            logits.extend(
                l.flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| run(e.to_string()))?,
            );
        }
        let scores = score_images(std::slice::from_ref(self.module), test, &indices, batch)?;
        let labels: Vec<u32> = test.labels.iter().map(|&l| l as u32).collect();
        let (_, report) = patch_and_report(&labels, &logits, classes, &scores, &self.rule)?;
        let model_macs = self.model.analysis().macs();
        Ok(PatchSummary {
            model: self.model_dir.to_path_buf(),
            module: self.module_dir.to_path_buf(),
            dataset: dataset.to_string(),
            target_class: self.target_class().to_string(),
            rule: self.rule,
            report,
            module_collapsed: self.module.meta.collapsed.clone(),
            forced: !self.module.meta.collapsed.is_empty(),
            module_macs: self.module.meta.macs,
            model_macs,
            mac_overhead: self.module.meta.macs as f64 / model_macs.max(1) as f64,
            out: None,
        })
    }

    /// The `patch.json` of this patch.
    pub fn manifest(&self) -> PatchManifest {
        PatchManifest {
            format: PATCH_FORMAT.into(),
            format_version: PATCH_FORMAT_VERSION,
            rule: self.rule,
            target_class: self.target_class().to_string(),
            model_sha256: self.meta.weights_sha256.clone(),
            module_sha256: self.module.meta.weights_sha256.clone(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Saves the patched model in `out` ([`save_patched`]), refusing a directory that already
    /// holds one.
    pub fn save(&self, out: &Path) -> Result<()> {
        if is_patched(out) {
            return Err(ComposerError::AlreadyPatched {
                dir: out.to_path_buf(),
            });
        }
        save_patched(out, self.model_dir, self.module_dir, &self.manifest())
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
        None => find(&module.meta.class_name).ok_or_else(|| ComposerError::ModuleClassNotInModel {
            class: module.meta.class_name.clone(),
            classes: names.join(", "),
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
        Err(ComposerError::DifferentInputs {
            differences: diffs.join("; "),
        })
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
    manifest.rule.calibration.validate().map_err(|e| match e {
        ComposerError::DegenerateCalibration { lo, hi, .. } => {
            ComposerError::DegenerateCalibration {
                module: module_label(&module_dir, &module),
                lo,
                hi,
            }
        }
        e => bad(e.to_string()),
    })?;
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

/// How errors and warnings name a module: its directory and class.
fn module_label(dir: &Path, module: &Module) -> String {
    format!(
        "module {} (class {} `{}`)",
        dir.display(),
        module.meta.class_index,
        module.meta.class_name
    )
}

/// The calibration of `kind` for a module file: none, min–max from its stored range, or a
/// percentile range from its stored percentiles. A range with max ≤ min is
/// [`ComposerError::DegenerateCalibration`] naming the module's class; a range the file does
/// not record is [`ComposerError::NoCalibrationRange`].
pub fn module_calibration(module: &Module, kind: CalibrationKind) -> Result<Calibration> {
    let class = || module.meta.class_name.clone();
    let calibration = match kind {
        CalibrationKind::Raw => return Ok(Calibration::None),
        CalibrationKind::MinMax => match module.meta.calibration {
            Some((lo, hi)) => Calibration::MinMax {
                min: lo as f32,
                max: hi as f32,
            },
            None => return Err(ComposerError::NoCalibrationRange { class: class() }),
        },
        CalibrationKind::Percentile { lo: p_lo, hi: p_hi } => {
            if !(0.0..=100.0).contains(&p_lo) || !(0.0..=100.0).contains(&p_hi) || p_lo >= p_hi {
                return Err(ComposerError::InvalidPercentile { lo: p_lo, hi: p_hi });
            }
            match module.percentile_range(p_lo, p_hi) {
                Some((lo, hi)) => Calibration::Percentile {
                    p_lo,
                    p_hi,
                    lo: lo as f32,
                    hi: hi as f32,
                },
                None => return Err(ComposerError::NoCalibrationPercentiles { class: class() }),
            }
        }
    };
    calibration.validate().map_err(|e| match e {
        ComposerError::DegenerateCalibration { lo, hi, .. } => {
            ComposerError::DegenerateCalibration {
                module: format!(
                    "module of class {} `{}`",
                    module.meta.class_index, module.meta.class_name
                ),
                lo,
                hi,
            }
        }
        e => e,
    })?;
    Ok(calibration)
}
