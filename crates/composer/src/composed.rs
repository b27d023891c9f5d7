//! A composed model as a runnable artefact (design §5.10, §8): a directory holding copies of the
//! chosen modules and `composition.json` ([`CompositionManifest`]). Label `k` of the composed
//! classifier is the module in `classes[k]`; an image goes to the label whose module scores it
//! highest.
//!
//! Modules may come from models trained on different datasets, each normalising its input its
//! own way, so a composed model scores *raw* images ([`ComposedModel::scores_of_images`]):
//! every module sees the image converted with its own [`cnn_data::InputFormat`]. What the
//! modules must share is the input geometry — channels and size ([`check_composable`]).
//!
//! ```
//! use candle_core::Device;
//! use cnn_models::extract::KernelMask;
//! use cnn_models::module::{build_module, save_module, ModuleSource};
//! use cnn_models::{presets, Model};
//! use composer::{load_composed, save_composed, ComposedClass, CompositionManifest};
//!
//! let parent = Model::init(presets::simcnn(0.0625, 3, 2, true), 1, &Device::Cpu).unwrap();
//! let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
//! let work = tempfile::tempdir().unwrap();
//! let mut classes = Vec::new();
//! for c in 0..2 {
//!     let masks: Vec<KernelMask> =
//!         parent.analysis().sites.iter().map(|s| vec![true; s.channels]).collect();
//!     let m = build_module(&parent, "sha", &masks, ModuleSource::Logit, c, &format!("c{c}"),
//!         format.clone(), None).unwrap();
//!     let dir = work.path().join(format!("module_{c}"));
//!     save_module(&dir, &m).unwrap();
//!     classes.push(ComposedClass::from_module(c as u32, &format!("c{c}"), &dir, &m.meta));
//! }
//! let manifest = CompositionManifest::new("compose", classes, vec!["fashion-mnist".into()], 0.0);
//! let out = work.path().join("composed");
//! save_composed(&out, &manifest).unwrap();
//! let composed = load_composed(&out, &Device::Cpu).unwrap();
//! assert_eq!(composed.class_names(), vec!["c0", "c1"]);
//! ```

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use cnn_data::{ImageSet, InputFormat};
use cnn_models::files::atomic_write;
use cnn_models::module::{
    load_module, read_module_meta, Module, ModuleMeta, MODULE_META, MODULE_WEIGHTS,
};
use serde::{Deserialize, Serialize};

use crate::error::{ComposerError, Result};
use crate::reuse::{SourceSubject, TaskDatasets, TaskSets};

/// Format tag of `composition.json`.
pub const COMPOSITION_FORMAT: &str = "cnnsplit-composition";
/// The `composition.json` version this build writes and reads.
pub const COMPOSITION_FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside a composed-model directory.
pub const COMPOSITION_MANIFEST: &str = "composition.json";

/// One class of a composed model and the module that recognises it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComposedClass {
    /// Label of the class in the composed model (its position in the manifest).
    pub label: u32,
    /// Class name in the composed model.
    pub name: String,
    /// The module's class name in its source model (what its dataset calls the class).
    pub source_class: String,
    /// Dataset the module's source model was trained on, when the module records it.
    pub source_dataset: Option<String>,
    /// Module directory it was copied from.
    pub source_dir: PathBuf,
    /// SHA-256 of the source model's weights.
    pub parent_sha256: String,
    /// SHA-256 of the module's weights.
    pub module_sha256: String,
}

impl ComposedClass {
    /// Describes label `label` named `name`, recognised by the module saved in `dir` with
    /// metadata `meta`.
    pub fn from_module(label: u32, name: &str, dir: &Path, meta: &ModuleMeta) -> Self {
        ComposedClass {
            label,
            name: name.to_string(),
            source_class: meta.class_name.clone(),
            source_dataset: meta.dataset.clone(),
            source_dir: dir.to_path_buf(),
            parent_sha256: meta.parent_sha256.clone(),
            module_sha256: meta.weights_sha256.clone(),
        }
    }

    /// Directory of this class's module copy inside a composed-model directory.
    pub fn module_path(&self, composed_dir: &Path) -> PathBuf {
        composed_dir
            .join("modules")
            .join(format!("class_{}", self.label))
    }
}

/// What `composition.json` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompositionManifest {
    /// Always [`COMPOSITION_FORMAT`].
    pub format: String,
    /// [`COMPOSITION_FORMAT_VERSION`].
    pub format_version: u32,
    /// How it was made: `compose` (modules given by hand), `select` (best module per class
    /// among several models of one task) or `new-task` (classes from different models).
    pub kind: String,
    /// The classes in label order.
    pub classes: Vec<ComposedClass>,
    /// Dataset specifications (`NAME` or `NAME=DIR`) whose test splits the composition was
    /// evaluated on.
    pub datasets: Vec<String>,
    /// Fraction of each test split, from its start, used to choose modules; the rest is the
    /// test part `eval` reports on. 0 when nothing was chosen.
    pub selection_fraction: f64,
    /// What the command that made it measured (selection table, accuracies), as JSON.
    #[serde(default)]
    pub report: Option<serde_json::Value>,
    /// cnnsplit version that wrote the file.
    pub crate_version: String,
}

impl CompositionManifest {
    /// A manifest of `kind` over `classes` (labels must be 0, 1, … in order).
    pub fn new(
        kind: &str,
        classes: Vec<ComposedClass>,
        datasets: Vec<String>,
        selection_fraction: f64,
    ) -> Self {
        CompositionManifest {
            format: COMPOSITION_FORMAT.into(),
            format_version: COMPOSITION_FORMAT_VERSION,
            kind: kind.into(),
            classes,
            datasets,
            selection_fraction,
            report: None,
            crate_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Checks labels (0, 1, … in order), distinct class names and the selection fraction.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.classes.is_empty() {
            return Err("the composition has no class".into());
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.label as usize != i {
                return Err(format!(
                    "class {:?} has label {} at position {i}: labels must be 0, 1, … in order",
                    c.name, c.label
                ));
            }
            if self.classes[..i].iter().any(|o| o.name == c.name) {
                return Err(format!("class {:?} is listed more than once", c.name));
            }
        }
        if !(0.0..1.0).contains(&self.selection_fraction) {
            return Err(format!(
                "selection_fraction {} is outside [0, 1)",
                self.selection_fraction
            ));
        }
        Ok(())
    }
}

/// A loaded composed model.
#[derive(Debug)]
pub struct ComposedModel {
    /// The manifest.
    pub manifest: CompositionManifest,
    /// One module per class, in label order.
    pub modules: Vec<Module>,
}

impl ComposedModel {
    /// Number of classes (modules).
    pub fn num_classes(&self) -> usize {
        self.modules.len()
    }

    /// Class names in label order.
    pub fn class_names(&self) -> Vec<String> {
        self.manifest
            .classes
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// The input format every module shares, or `None` when their normalisations differ (then
    /// only raw images can be scored).
    pub fn shared_input_format(&self) -> Option<&InputFormat> {
        let first = &self.modules.first()?.meta.input_format;
        self.modules
            .iter()
            .all(|m| &m.meta.input_format == first)
            .then_some(first)
    }

    /// Scores `[indices.len(), classes]` (row-major) of raw images `indices` of `set`: each
    /// module sees the images converted with its own input format, in batches of `batch`.
    pub fn scores_of_images(
        &self,
        set: &ImageSet,
        indices: &[usize],
        batch: usize,
    ) -> Result<Vec<f32>> {
        score_images(&self.modules, set, indices, batch)
    }

    /// Runs every module with `ops` (on CPU; see [`cnn_models::Model::set_ops`]).
    pub fn set_ops(&mut self, ops: cnn_models::OpsBackend) {
        for m in &mut self.modules {
            m.model.set_ops(ops);
        }
    }

    /// The sets of the composed model's task on `data` (the manifest's datasets, or others of
    /// the same kinds): each class's images found as [`TaskDatasets::source_of`] finds them,
    /// cut with the manifest's selection fraction.
    pub fn task_sets(&self, data: &TaskDatasets) -> Result<TaskSets> {
        let mut sources = Vec::new();
        for (class, m) in self.manifest.classes.iter().zip(&self.modules) {
            let subject = SourceSubject::Composed {
                class: class.name.clone(),
            };
            sources.push(data.source_of(
                &m.meta.class_name,
                class.source_dataset.as_deref(),
                &subject,
            )?);
        }
        data.task_sets(
            &sources,
            &self.class_names(),
            self.manifest.selection_fraction,
        )
    }

    /// Scores `[N, classes]` of already-normalised images `x` `[N, C, H, W]`; only when every
    /// module takes the same input format ([`Self::shared_input_format`]).
    pub fn scores(&self, x: &Tensor, batch: usize) -> Result<Vec<f32>> {
        if self.shared_input_format().is_none() {
            return Err(ComposerError::Incompatible(
                "the composed modules normalise their inputs differently: give raw images (an IDX file or an image folder), not normalised tensors".into(),
            ));
        }
        let n = x.dims().first().copied().unwrap_or(0);
        let k = self.modules.len();
        let mut scores = vec![0f32; n * k];
        for (j, module) in self.modules.iter().enumerate() {
            let s = module
                .scores(x, batch)
                .map_err(|e| ComposerError::Incompatible(e.to_string()))?;
            for (i, v) in s.into_iter().enumerate() {
                scores[i * k + j] = v;
            }
        }
        Ok(scores)
    }
}

/// Checks that modules can be composed: one scoring method (GradSplitter probabilities and
/// CNNSplitter logits are not comparable) and one input geometry (channels and size); the
/// error names both modules and what differs. `modules` pairs each module's directory with its
/// metadata.
pub fn check_composable(modules: &[(PathBuf, &ModuleMeta)]) -> Result<()> {
    let Some((first_dir, first)) = modules.first() else {
        return Err(ComposerError::Empty {
            what: "module list",
        });
    };
    for (dir, m) in &modules[1..] {
        let differs = |what: String| {
            Err(ComposerError::Incompatible(format!(
                "{} and {}: {what}; modules of one composition must share one input format and scoring",
                first_dir.display(),
                dir.display()
            )))
        };
        if m.method != first.method {
            return differs(format!(
                "one is a `{}` module, the other a `{}` module",
                first.method, m.method
            ));
        }
        let (a, b) = (&first.input_format, &m.input_format);
        if a.channels != b.channels {
            return differs(format!(
                "inputs have {} and {} channels",
                a.channels, b.channels
            ));
        }
        if a.size != b.size {
            return differs(format!(
                "inputs are {}×{} and {}×{} pixels",
                a.size, a.size, b.size, b.size
            ));
        }
        let (sa, sb) = (&first.spec.input, &m.spec.input);
        if (sa.channels, sa.height, sa.width) != (sb.channels, sb.height, sb.width) {
            return differs(format!(
                "networks take {}×{}×{} and {}×{}×{}",
                sa.channels, sa.height, sa.width, sb.channels, sb.height, sb.width
            ));
        }
    }
    Ok(())
}

fn artefact(path: &Path, message: impl Into<String>) -> ComposerError {
    ComposerError::Artefact {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes a composed-model directory `out`: a copy of every class's module (from
/// `classes[k].source_dir`) under `modules/class_<k>/`, then `composition.json` last, each file
/// atomically — a directory without the manifest is an unfinished write. Each class's
/// `module_sha256` is taken from the copied module's own `module.json`. Refuses a directory
/// that already holds a composition. Returns the manifest written.
pub fn save_composed(out: &Path, manifest: &CompositionManifest) -> Result<CompositionManifest> {
    let mut manifest = manifest.clone();
    let path = out.join(COMPOSITION_MANIFEST);
    manifest.validate().map_err(|m| artefact(&path, m))?;
    if path.exists() {
        return Err(ComposerError::AlreadyComposed {
            dir: out.to_path_buf(),
        });
    }
    for class in &mut manifest.classes {
        let meta_path = class.source_dir.join(MODULE_META);
        class.module_sha256 = read_module_meta(&meta_path)
            .map_err(|e| artefact(&meta_path, e.to_string()))?
            .weights_sha256;
        for f in [MODULE_META, MODULE_WEIGHTS] {
            let from = class.source_dir.join(f);
            let bytes = std::fs::read(&from).map_err(|e| artefact(&from, e.to_string()))?;
            let to = class.module_path(out).join(f);
            atomic_write(&to, &bytes).map_err(|e| artefact(&to, e.to_string()))?;
        }
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| artefact(&path, e.to_string()))?;
    atomic_write(&path, &json).map_err(|e| artefact(&path, e.to_string()))?;
    Ok(manifest)
}

/// Whether `dir` is a composed-model directory.
pub fn is_composed(dir: &Path) -> bool {
    dir.join(COMPOSITION_MANIFEST).exists()
}

/// Parses and checks the bytes of a `composition.json`: format tag, version, labels 0, 1, … in
/// order, distinct names, selection fraction; `path` is used in error messages only.
pub fn parse_composition_manifest(path: &Path, bytes: &[u8]) -> Result<CompositionManifest> {
    let value = cnn_models::files::parse_versioned_json(
        path,
        bytes,
        COMPOSITION_FORMAT,
        COMPOSITION_FORMAT_VERSION,
        "composed-model",
    )
    .map_err(|e| ComposerError::Incompatible(e.to_string()))?;
    let manifest: CompositionManifest =
        serde_json::from_value(value).map_err(|e| artefact(path, e.to_string()))?;
    manifest.validate().map_err(|m| artefact(path, m))?;
    Ok(manifest)
}

/// Loads a composed-model directory written by [`save_composed`], checking every module
/// against the manifest (weights SHA-256) and that the modules can be composed.
pub fn load_composed(dir: &Path, device: &Device) -> Result<ComposedModel> {
    let path = dir.join(COMPOSITION_MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| artefact(&path, e.to_string()))?;
    let manifest = parse_composition_manifest(&path, &bytes)?;
    let mut modules = Vec::with_capacity(manifest.classes.len());
    for class in &manifest.classes {
        let mdir = class.module_path(dir);
        let module =
            load_module(&mdir, None, device).map_err(|e| artefact(&mdir, e.to_string()))?;
        if module.meta.weights_sha256 != class.module_sha256 {
            return Err(artefact(
                &path,
                format!(
                    "class {:?}: {} holds weights {} but the manifest names {}",
                    class.name,
                    mdir.display(),
                    module.meta.weights_sha256,
                    class.module_sha256
                ),
            ));
        }
        modules.push(module);
    }
    let metas: Vec<(PathBuf, &ModuleMeta)> = manifest
        .classes
        .iter()
        .zip(&modules)
        .map(|(c, m)| (c.module_path(dir), &m.meta))
        .collect();
    check_composable(&metas)?;
    Ok(ComposedModel { manifest, modules })
}

/// Scores `[indices.len(), modules.len()]` (row-major) of modules on raw images `indices` of
/// `set`: each module sees the images converted with its own input format (images are
/// converted once per distinct format), in batches of `batch`.
pub fn score_images(
    modules: &[Module],
    set: &ImageSet,
    indices: &[usize],
    batch: usize,
) -> Result<Vec<f32>> {
    let k = modules.len();
    let batch = batch.max(1);
    let mut scores = vec![0f32; indices.len() * k];
    for (chunk_no, chunk) in indices.chunks(batch).enumerate() {
        let mut converted: Vec<(&InputFormat, Tensor)> = Vec::new();
        for (j, module) in modules.iter().enumerate() {
            let format = &module.meta.input_format;
            let x = match converted.iter().find(|(f, _)| *f == format) {
                Some((_, x)) => x.clone(),
                None => {
                    let (x, _) =
                        cnn_data::to_tensor(set, chunk, format, None, module.model.device())
                            .map_err(|e| {
                                ComposerError::Incompatible(format!("{}: {e}", set.name))
                            })?;
                    converted.push((format, x.clone()));
                    x
                }
            };
            let s: Vec<f32> = module
                .score(&x)
                .and_then(|t| Ok(t.to_dtype(DType::F32)?.to_vec1()?))
                .map_err(|e| ComposerError::Incompatible(e.to_string()))?;
            for (i, v) in s.into_iter().enumerate() {
                scores[(chunk_no * batch + i) * k + j] = v;
            }
        }
    }
    Ok(scores)
}
