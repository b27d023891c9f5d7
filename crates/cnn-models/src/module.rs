//! Module artefacts (design §5.9, §6.8, §11.14): the extracted network of one class, saved as
//! `module.safetensors` (the network's tensors under the architecture's names, plus
//! `module_head.{0,2}.{weight,bias}` for a GradSplitter module) and `module.json`
//! ([`ModuleMeta`]).
//!
//! Both splitters write this one format. A GradSplitter module scores an image with its head
//! (a probability); a CNNSplitter module has no head and scores with its own class's logit.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use cnn_models::extract::KernelMask;
//! use cnn_models::module::{build_module, load_module, save_module, ModuleSource};
//! use cnn_models::{presets, Model};
//! let parent = Model::init(presets::simcnn(0.0625, 3, 3, true), 1, &Device::Cpu).unwrap();
//! let masks: Vec<KernelMask> = parent.analysis().sites.iter()
//!     .map(|s| (0..s.channels).map(|k| k % 2 == 0).collect())
//!     .collect();
//! let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
//! let module = build_module(&parent, "parent-sha", &masks, ModuleSource::Logit, 2, "two",
//!     format, None).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! save_module(dir.path(), &module).unwrap();
//! let back = load_module(dir.path(), Some("parent-sha"), &Device::Cpu).unwrap();
//! let x = Tensor::ones((2, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
//! assert_eq!(back.score(&x).unwrap().dims(), &[2]);
//! assert_eq!(back.meta.method, "ga");
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::extract::{extract_module, KernelMask};
use crate::files::atomic_write;
use crate::{Model, ModelSpec};
use cnn_data::sha256_bytes;

/// Names of the four head tensors, in PyTorch's `module_head` order.
pub const HEAD_KEYS: [&str; 4] = ["0.weight", "0.bias", "2.weight", "2.bias"];

/// One GradSplitter module's head: `w1` `[H, N]`, `b1` `[H]`, `w2` `[1, H]`, `b2` `[1]` (the
/// `module_head.{0,2}.{weight,bias}` tensors of a module file); y = sigmoid(W2·ReLU(W1·ReLU(z) +
/// b1) + b2) (design §5.4).
#[derive(Clone, Debug)]
pub struct ModuleHead {
    /// First layer weight.
    pub w1: Tensor,
    /// First layer bias.
    pub b1: Tensor,
    /// Second layer weight.
    pub w2: Tensor,
    /// Second layer bias.
    pub b2: Tensor,
}

impl ModuleHead {
    /// Scores `[B]` in (0, 1) from the module network's logits `[B, N]`.
    pub fn score(&self, logits: &Tensor) -> Result<Tensor> {
        let h = logits
            .relu()?
            .matmul(&self.w1.t()?)?
            .broadcast_add(&self.b1)?
            .relu()?;
        let o = h.matmul(&self.w2.t()?)?.broadcast_add(&self.b2)?;
        Ok(candle_nn::ops::sigmoid(&o)?.squeeze(1)?)
    }

    /// The four tensors in [`HEAD_KEYS`] order.
    pub fn tensors(&self) -> [&Tensor; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// Parameter count (10·N + 10 + 10 + 1 for the default hidden width).
    pub fn params(&self) -> usize {
        self.tensors().iter().map(|t| t.elem_count()).sum()
    }

    /// Copies on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(ModuleHead {
            w1: self.w1.to_device(device)?,
            b1: self.b1.to_device(device)?,
            w2: self.w2.to_device(device)?,
            b2: self.b2.to_device(device)?,
        })
    }
}

/// How a module turns its network's logits into a score.
#[derive(Clone, Debug)]
pub enum ModuleSource {
    /// GradSplitter: the module's head gives P(class | x).
    Head(ModuleHead),
    /// CNNSplitter: the raw logit of the module's own class.
    Logit,
}

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
    /// How the module was found: `grad` (GradSplitter, scored by its head) or `ga`
    /// (CNNSplitter, scored by logit `class_index`).
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
    /// Whether the module has a head, included in `params` and `macs` (GradSplitter modules).
    pub head_included: bool,
    /// Score range (min, max) of the module on the parent's validation images of its class,
    /// the min–max calibration of patching (design §7); absent when not measured.
    #[serde(default)]
    pub calibration: Option<(f64, f64)>,
    /// The 101 integer percentiles 0, 1, …, 100 of the same scores (numpy's linear
    /// interpolation), so that patching can calibrate with a percentile range without scoring
    /// again (design §7); empty when not measured (files written before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration_percentiles: Vec<f64>,
    /// Input format of the parent model.
    pub input_format: cnn_data::InputFormat,
    /// Dataset the parent model was trained on (`NAME` or `NAME=DIR`), when recorded.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Search metrics (chosen epoch, accuracies) as JSON.
    pub metrics: Option<serde_json::Value>,
    /// Why the module is *collapsed* (design §13), empty when it is usable. A collapsed module
    /// is flagged wherever it is listed, left out of the report's comparisons, and refused by
    /// `patch` unless forced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collapsed: Vec<Collapse>,
    /// cnnsplit version that wrote the file.
    pub crate_version: String,
    /// SHA-256 of `module.safetensors` (filled in on save).
    pub weights_sha256: String,
}

/// One reason a module is *collapsed*: it cannot do its job, whatever its numbers say.
///
/// ```
/// use cnn_models::module::Collapse;
/// let c = Collapse::ZeroF1;
/// assert_eq!(serde_json::to_value(&c).unwrap()["reason"], "zero-f1");
/// assert!(c.to_string().contains("F1"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Collapse {
    /// These physical convs kept no kernel: the module's network carries no signal past them.
    EmptyLayer {
        /// Indices of the empty convs (as in `zeroed_convs`).
        convs: Vec<usize>,
    },
    /// F1 = 0 for the module's class on the validation images: the composed modules never
    /// predict the class correctly.
    ZeroF1,
    /// The module's score is the same for every validation image of its class (calibration
    /// max ≤ min).
    ConstantScore,
    /// The search that produced the module never rose 10 pp above chance (composed accuracy
    /// `accuracy`, chance `chance`, both fractions).
    NearChance {
        /// Best composed accuracy the search reached.
        accuracy: f64,
        /// 1 / number of classes.
        chance: f64,
    },
}

impl std::fmt::Display for Collapse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Collapse::EmptyLayer { convs } => write!(f, "convs {convs:?} kept no kernel"),
            Collapse::ZeroF1 => write!(f, "F1 = 0 on its class's validation images"),
            Collapse::ConstantScore => write!(f, "constant score on its class's images"),
            Collapse::NearChance { accuracy, chance } => write!(
                f,
                "search stayed near chance ({:.1} % composed, chance {:.1} %)",
                accuracy * 100.0,
                chance * 100.0
            ),
        }
    }
}

/// A module: the extracted network, how it scores, and its metadata.
#[derive(Clone, Debug)]
pub struct Module {
    /// The extracted network (outputs N logits).
    pub model: Model,
    /// The head turning those logits into P(class | x); `None` for a CNNSplitter module, which
    /// scores with logit `meta.class_index`.
    pub head: Option<ModuleHead>,
    /// Metadata.
    pub meta: ModuleMeta,
}

impl Module {
    /// Scores `[B]` of a normalised batch `[B, C, H, W]`: the head's probability, or the raw
    /// logit of the module's class.
    pub fn score(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.model.forward_eval(x)?;
        self.score_logits(&logits)
    }

    /// Scores `[B]` from the module network's logits `[B, N]`.
    pub fn score_logits(&self, logits: &Tensor) -> Result<Tensor> {
        match &self.head {
            Some(h) => h.score(logits),
            None => Ok(logits.narrow(1, self.meta.class_index, 1)?.squeeze(1)?),
        }
    }

    /// Measures the module's calibration (design §7) and stores it in `meta.calibration` and
    /// `meta.calibration_percentiles` ([`Module::calibrate_from_scores`]): the scores over the
    /// images of the module's own class among `indices` of `set`, scored in chunks of `batch`
    /// images. With no image of its class there, the module keeps no range (a warning is
    /// logged).
    ///
    /// ```
    /// use candle_core::Device;
    /// use cnn_models::extract::KernelMask;
    /// use cnn_models::module::{build_module, ModuleSource};
    /// use cnn_models::{presets, Model};
    /// let parent = Model::init(presets::simcnn(0.0625, 3, 2, true), 1, &Device::Cpu).unwrap();
    /// let masks: Vec<KernelMask> = parent.analysis().sites.iter().map(|s| vec![true; s.channels]).collect();
    /// let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
    /// let mut module = build_module(&parent, "sha", &masks, ModuleSource::Logit, 1, "one",
    ///     format, None).unwrap();
    /// let set = cnn_data::ImageSet::new("toy", cnn_data::ImageShape { channels: 1, height: 28, width: 28 },
    ///     (0..4).flat_map(|i| vec![60 * i as u8; 784]).collect(), vec![0, 1, 0, 1],
    ///     vec!["zero".into(), "one".into()]).unwrap();
    /// module.calibrate(&set, &[0, 1, 2, 3], 256).unwrap();
    /// let (lo, hi) = module.meta.calibration.unwrap();
    /// assert!(lo <= hi);
    /// ```
    pub fn calibrate(
        &mut self,
        set: &cnn_data::ImageSet,
        indices: &[usize],
        batch: usize,
    ) -> Result<()> {
        let own: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| set.labels[i] as usize == self.meta.class_index)
            .collect();
        let scores = self.scores_of(set, &own, batch)?;
        self.calibrate_from_scores(&scores);
        Ok(())
    }

    /// Scores of images `indices` of `set` (raw images, converted with the module's input
    /// format), `batch` at a time.
    pub fn scores_of(
        &self,
        set: &cnn_data::ImageSet,
        indices: &[usize],
        batch: usize,
    ) -> Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(batch.max(1)) {
            let (x, _) = cnn_data::to_tensor(
                set,
                chunk,
                &self.meta.input_format,
                None,
                self.model.device(),
            )?;
            scores.extend(self.score(&x)?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
        }
        Ok(scores)
    }

    /// Stores the calibration measured from `scores`, the module's scores on the validation
    /// images of its own class: the min–max range in `meta.calibration` and the 101 integer
    /// percentiles in `meta.calibration_percentiles`. With no score (no image of its class)
    /// the module keeps no range and a warning is logged.
    ///
    /// ```
    /// use candle_core::Device;
    /// use cnn_models::extract::KernelMask;
    /// use cnn_models::module::{build_module, ModuleSource};
    /// use cnn_models::{presets, Model};
    /// let parent = Model::init(presets::simcnn(0.0625, 3, 2, true), 1, &Device::Cpu).unwrap();
    /// let masks: Vec<KernelMask> = parent.analysis().sites.iter().map(|s| vec![true; s.channels]).collect();
    /// let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
    /// let mut module = build_module(&parent, "sha", &masks, ModuleSource::Logit, 1, "one",
    ///     format, None).unwrap();
    /// module.calibrate_from_scores(&[3.0, 1.0, 2.0]);
    /// assert_eq!(module.meta.calibration, Some((1.0, 3.0)));
    /// assert_eq!(module.meta.calibration_percentiles[50], 2.0);
    /// assert_eq!(module.meta.calibration_percentiles[25], 1.5);
    /// ```
    pub fn calibrate_from_scores(&mut self, scores: &[f32]) {
        if scores.is_empty() {
            tracing::warn!(
                "no validation image of class {}: module has no calibration range",
                self.meta.class_name
            );
            self.meta.calibration = None;
            self.meta.calibration_percentiles.clear();
            return;
        }
        let mut sorted: Vec<f64> = scores.iter().map(|&v| f64::from(v)).collect();
        sorted.sort_by(f64::total_cmp);
        self.meta.calibration = Some((sorted[0], sorted[sorted.len() - 1]));
        self.meta.calibration_percentiles = (0..=100)
            .map(|p| percentile_of_sorted(&sorted, p as f64))
            .collect();
    }

    /// The (lo, hi) range of the percentiles `p_lo` and `p_hi` (0–100) of the module's
    /// calibration scores, read off `meta.calibration_percentiles` (exact for integer
    /// percentiles, linear between them otherwise); `None` when the file records no
    /// percentiles or a percentile is outside [0, 100].
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use cnn_models::module::{build_module, ModuleSource};
    /// # use cnn_models::{presets, Model};
    /// # let parent = Model::init(presets::simcnn(0.0625, 3, 2, true), 1, &Device::Cpu).unwrap();
    /// # let masks: Vec<_> = parent.analysis().sites.iter().map(|s| vec![true; s.channels]).collect();
    /// # let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
    /// # let mut module = build_module(&parent, "sha", &masks, ModuleSource::Logit, 1, "one",
    /// #     format, None).unwrap();
    /// module.calibrate_from_scores(&[0.0, 10.0]);
    /// assert_eq!(module.percentile_range(5.0, 95.0), Some((0.5, 9.5)));
    /// ```
    pub fn percentile_range(&self, p_lo: f64, p_hi: f64) -> Option<(f64, f64)> {
        let table = &self.meta.calibration_percentiles;
        if table.len() != 101 {
            return None;
        }
        let at = |p: f64| -> Option<f64> {
            if !(0.0..=100.0).contains(&p) {
                return None;
            }
            let below = p.floor() as usize;
            let above = (below + 1).min(100);
            let frac = p - below as f64;
            Some(table[below] + frac * (table[above] - table[below]))
        };
        Some((at(p_lo)?, at(p_hi)?))
    }

    /// Scores of many images, in batches of `batch`, as a vector.
    pub fn scores(&self, x: &Tensor, batch: usize) -> Result<Vec<f32>> {
        let logits = self.model.predict_logits(x, batch)?;
        Ok(self
            .score_logits(&logits)?
            .to_dtype(DType::F32)?
            .to_vec1()?)
    }
}

/// Extract module `class_index` of `parent` from its masks and fill in its metadata;
/// `source` says how it scores (a GradSplitter head, or the class's logit for CNNSplitter).
#[allow(clippy::too_many_arguments)]
pub fn build_module(
    parent: &Model,
    parent_sha256: &str,
    masks: &[KernelMask],
    source: ModuleSource,
    class_index: usize,
    class_name: &str,
    input_format: cnn_data::InputFormat,
    metrics: Option<serde_json::Value>,
) -> Result<Module> {
    let n = parent.spec().num_classes;
    if class_index >= n {
        return Err(ModelError::Mismatch(format!(
            "class {class_index} does not exist ({n} classes)"
        )));
    }
    let (head, method) = match source {
        ModuleSource::Head(head) => {
            if head.w1.dims().get(1) != Some(&n) {
                return Err(ModelError::Mismatch(format!(
                    "head input width {:?} is not the model's {n} classes",
                    head.w1.dims()
                )));
            }
            (Some(head.to_device(parent.device())?), "grad")
        }
        ModuleSource::Logit => (None, "ga"),
    };
    let (model, info) = extract_module(parent, masks)?;
    let head_macs = head.as_ref().map_or(0, |h| {
        let hidden = h.b1.elem_count() as u64;
        hidden * n as u64 + hidden
    });
    let head_params = head.as_ref().map_or(0, |h| h.params() as u64);
    let total = parent.analysis().total_kernels();
    let macs = model.analysis().macs() + head_macs;
    let parent_macs = parent.analysis().macs();
    let meta = ModuleMeta {
        format: MODULE_FORMAT.into(),
        format_version: MODULE_FORMAT_VERSION,
        method: method.into(),
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
        params: model.analysis().params() + head_params,
        macs,
        parent_macs,
        overhead: macs as f64 / parent_macs.max(1) as f64,
        head_included: head.is_some(),
        calibration: None,
        calibration_percentiles: Vec::new(),
        input_format,
        dataset: None,
        metrics,
        collapsed: Vec::new(),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        weights_sha256: String::new(),
    };
    Ok(Module { model, head, meta })
}

fn head_key(k: &str) -> String {
    format!("module_head.{k}")
}

/// Save a module into directory `dir` (created if needed), atomically. Returns the weights'
/// SHA-256.
pub fn save_module(dir: &Path, module: &Module) -> Result<String> {
    let mut all: BTreeMap<String, Tensor> = module.model.tensors().clone();
    if let Some(head) = &module.head {
        for (k, t) in HEAD_KEYS.iter().zip(head.tensors()) {
            all.insert(head_key(k), t.clone());
        }
    }
    let bns: Vec<String> = module
        .model
        .analysis()
        .batch_norms
        .iter()
        .map(|(b, _)| b.clone())
        .collect();
    let bytes = crate::weights::safetensors_bytes(&all, &bns)?;
    let sha = sha256_bytes(&bytes);
    let mut meta = module.meta.clone();
    meta.weights_sha256 = sha.clone();
    meta.spec = module.model.spec().clone();
    atomic_write(&dir.join(MODULE_WEIGHTS), &bytes)?;
    let json = serde_json::to_vec_pretty(&meta)
        .map_err(|e| ModelError::Mismatch(format!("module.json: {e}")))?;
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
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse_module_meta(path, &bytes)
}

/// Parses and checks the bytes of a `module.json` like [`read_module_meta`]; `path` is used
/// in error messages only.
pub fn parse_module_meta(path: &Path, bytes: &[u8]) -> Result<ModuleMeta> {
    let value = crate::files::parse_versioned_json(
        path,
        bytes,
        MODULE_FORMAT,
        MODULE_FORMAT_VERSION,
        "module",
    )?;
    let meta: ModuleMeta =
        serde_json::from_value(value).map_err(|e| ModelError::bad(path, e.to_string()))?;
    for (what, spec) in [("spec", &meta.spec), ("parent_spec", &meta.parent_spec)] {
        spec.analyse()
            .map_err(|e| ModelError::bad(path, format!("{what}: {e}")))?;
    }
    crate::files::check_input_format(&meta.spec, &meta.input_format)
        .map_err(|m| ModelError::bad(path, m))?;
    if meta.class_index >= meta.spec.num_classes {
        return Err(ModelError::bad(
            path,
            format!(
                "class_index {} but the module network has {} outputs",
                meta.class_index, meta.spec.num_classes
            ),
        ));
    }
    Ok(meta)
}

/// Load a module directory, verifying its weights' SHA-256 and, when `parent_sha256` is given,
/// that it was extracted from that parent.
pub fn load_module(path: &Path, parent_sha256: Option<&str>, device: &Device) -> Result<Module> {
    let dir = module_dir(path);
    let meta_path = dir.join(MODULE_META);
    if !meta_path.exists() {
        return Err(ModelError::bad(
            &dir,
            "not a module directory (no module.json)",
        ));
    }
    let meta = read_module_meta(&meta_path)?;
    if let Some(expected) = parent_sha256 {
        if expected != meta.parent_sha256 {
            return Err(ModelError::ParentMismatch {
                path: meta_path,
                expected: meta.parent_sha256.clone(),
                found: expected.to_string(),
            });
        }
    }
    let wpath = dir.join(MODULE_WEIGHTS);
    let bytes = std::fs::read(&wpath).map_err(|e| ModelError::io(&wpath, e))?;
    let sha = sha256_bytes(&bytes);
    if sha != meta.weights_sha256 {
        return Err(ModelError::bad(
            &wpath,
            format!(
                "SHA-256 {sha} does not match module.json's {} (file changed or half-written)",
                meta.weights_sha256
            ),
        ));
    }
    module_from_parts(&meta_path, meta, &wpath, &bytes, device)
}

/// Builds a module from its checked `module.json` contents and the bytes of its
/// `module.safetensors`, checking every tensor name and shape against the module's spec
/// and head; the paths are used in error messages only. [`load_module`] does this after
/// verifying the weights' SHA-256.
pub fn module_from_parts(
    meta_path: &Path,
    meta: ModuleMeta,
    wpath: &Path,
    bytes: &[u8],
    device: &Device,
) -> Result<Module> {
    let meta_path = meta_path.to_path_buf();
    let mut map = candle_core::safetensors::load_buffer(bytes, device)?;
    let mut head = Vec::new();
    if meta.head_included {
        for k in HEAD_KEYS {
            let t = map.remove(&head_key(k)).ok_or_else(|| {
                ModelError::bad(wpath, format!("missing tensor `{}`", head_key(k)))
            })?;
            head.push(t.to_dtype(DType::F32)?);
        }
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
            return Err(ModelError::bad(wpath, format!("unexpected tensor `{k}`")));
        }
        tensors.insert(k, t);
    }
    let model = Model::from_tensors(meta.spec.clone(), tensors, device)?;
    if meta.class_index >= meta.spec.num_classes {
        return Err(ModelError::bad(
            &meta_path,
            format!(
                "class_index {} but the module network has {} outputs",
                meta.class_index, meta.spec.num_classes
            ),
        ));
    }
    let head = if meta.head_included {
        let [w1, b1, w2, b2]: [Tensor; 4] = head
            .try_into()
            .map_err(|_| ModelError::bad(wpath, "head tensors"))?;
        let n = meta.spec.num_classes;
        let h = b1.elem_count();
        if w1.dims() != [h, n] || b1.dims() != [h] || w2.dims() != [1, h] || b2.dims() != [1] {
            return Err(ModelError::bad(
                wpath,
                "module head tensors have inconsistent shapes",
            ));
        }
        Some(ModuleHead { w1, b1, w2, b2 })
    } else {
        None
    };
    Ok(Module { model, head, meta })
}

/// The `p`-th percentile (0–100) of sorted, non-empty values, interpolating linearly between
/// the two nearest ranks like numpy's default; the one percentile rule of module calibration
/// (stored percentiles here, `composer::Calibration::fit_percentile` there).
///
/// ```
/// use cnn_models::module::percentile_of_sorted;
/// assert_eq!(percentile_of_sorted(&[0.0, 1.0, 2.0, 10.0], 50.0), 1.5);
/// assert_eq!(percentile_of_sorted(&[3.0], 90.0), 3.0);
/// ```
pub fn percentile_of_sorted(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let frac = rank - below as f64;
    sorted[below] + frac * (sorted[above] - sorted[below])
}
