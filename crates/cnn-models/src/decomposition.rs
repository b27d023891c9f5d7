//! A decomposition as both splitters deliver it: the calibrated class modules of one model
//! ([`Decomposition`]) and the run record written next to them as `decomposition.json`
//! ([`DecompositionRecord`]).
//!
//! The record has the fields every method fills (model, dataset, validation size, modules,
//! time) and, flattened into the same JSON object, the fields of one method: `M` is
//! `splitter_grad::GradRecord` or `splitter_ga::GaRecord`, or [`serde_json::Value`] for a
//! reader that takes any method. [`Decomposition::save`] writes `OUT/module_<c>/` for every
//! class and then `OUT/decomposition.json`, each file atomically.
//!
//! ```
//! use candle_core::Device;
//! use cnn_models::decomposition::{
//!     read_record, Decomposition, DecompositionRecord, ModuleSummary, DECOMPOSITION_FILE,
//! };
//! use cnn_models::extract::KernelMask;
//! use cnn_models::module::{build_module, ModuleSource};
//! use cnn_models::{presets, Model};
//!
//! let parent = Model::init(presets::simcnn(0.0625, 3, 2, true), 1, &Device::Cpu).unwrap();
//! let format = cnn_data::InputFormat::for_dataset(cnn_data::DatasetKind::FashionMnist);
//! let masks: Vec<KernelMask> = parent.analysis().sites.iter().map(|s| vec![true; s.channels]).collect();
//! let modules: Vec<_> = (0..2)
//!     .map(|c| build_module(&parent, "sha", &masks, ModuleSource::Logit, c, &format!("c{c}"),
//!         format.clone(), None).unwrap())
//!     .collect();
//! let record = DecompositionRecord {
//!     method: "ga".into(),
//!     model: "model".into(),
//!     model_sha256: "sha".into(),
//!     dataset: "fashion-mnist".into(),
//!     val_images: 10,
//!     model_val_accuracy: 0.5,
//!     modules: modules.iter().map(ModuleSummary::of).collect(),
//!     seconds: 1.0,
//!     ..DecompositionRecord::new(serde_json::json!({"chosen_generation": 3}))
//! };
//! let mut decomposition = Decomposition { modules, record };
//! let out = tempfile::tempdir().unwrap();
//! decomposition.save(out.path()).unwrap();
//! assert!(out.path().join("module_1").join("module.json").exists());
//! let back: DecompositionRecord<serde_json::Value> =
//!     read_record(&out.path().join(DECOMPOSITION_FILE)).unwrap();
//! assert_eq!(back.modules[1].dir, out.path().join("module_1"));
//! assert_eq!(back.method_fields["chosen_generation"], 3);
//! ```

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::extract::KernelMask;
use crate::files::{atomic_write, parse_versioned_json, ModelMeta};
use crate::metrics::{compose_argmax, ConfusionMatrix};
use crate::module::{build_module, save_module, Collapse, Module, ModuleSource};
use crate::train::TrainData;
use crate::Model;

/// Format tag of `decomposition.json`.
pub const DECOMPOSITION_FORMAT: &str = "cnnsplit-decomposition";
/// The `decomposition.json` format version this build writes and reads.
pub const DECOMPOSITION_FORMAT_VERSION: u32 = 1;
/// File name of the run record inside a decomposition's directory.
pub const DECOMPOSITION_FILE: &str = "decomposition.json";

/// The trained model a decomposition takes apart, with what its files say about it.
#[derive(Clone, Copy, Debug)]
pub struct ParentModel<'a> {
    /// The model, frozen.
    pub model: &'a Model,
    /// Its `model.json`: weights hash, class names, input format.
    pub meta: &'a ModelMeta,
    /// Where it was loaded from (the record's `model`).
    pub path: &'a Path,
    /// The dataset the images come from, as `NAME` or `NAME=DIR` (the record's and every
    /// module's `dataset`).
    pub dataset: &'a str,
}

impl ParentModel<'_> {
    /// Extracts, labels and calibrates one module per class — the step every splitter ends
    /// with. Class `c` keeps the kernels of `masks[c]` and scores through `sources[c]`; every
    /// module carries `metrics` and the parent's dataset, and its calibration is measured on
    /// its class's images among `data.val`, `batch` images at a time (design §7).
    ///
    /// Every module is then checked for collapse (design §13) and `meta.collapsed` says why it
    /// is, with a warning logged per collapsed module: a conv that kept no kernel
    /// ([`Collapse::EmptyLayer`]), a calibration range with max ≤ min
    /// ([`Collapse::ConstantScore`]), or F1 = 0 for its class when all the modules are
    /// composed on `data.val` (argmax of their scores, ties → lowest class;
    /// [`Collapse::ZeroF1`]).
    pub fn class_modules(
        &self,
        data: &TrainData<'_>,
        masks: &[Vec<KernelMask>],
        sources: Vec<ModuleSource>,
        metrics: &serde_json::Value,
        batch: usize,
    ) -> Result<Vec<Module>> {
        let classes = &self.meta.class_names;
        if masks.len() != classes.len() || sources.len() != classes.len() {
            return Err(ModelError::Mismatch(format!(
                "{} classes, but {} mask sets and {} module sources",
                classes.len(),
                masks.len(),
                sources.len()
            )));
        }
        let labels: Vec<u32> = data
            .val
            .iter()
            .map(|&i| data.set.labels[i] as u32)
            .collect();
        let mut modules = Vec::with_capacity(classes.len());
        let mut val_scores = Vec::with_capacity(classes.len());
        for ((c, name), source) in classes.iter().enumerate().zip(sources) {
            let mut module = build_module(
                self.model,
                &self.meta.weights_sha256,
                &masks[c],
                source,
                c,
                name,
                self.meta.input_format.clone(),
                Some(metrics.clone()),
            )?;
            module.meta.dataset = Some(self.dataset.to_string());
            // one scoring of the whole validation part serves calibration and composition
            let scores = module.scores_of(data.set, &data.val, batch)?;
            let own: Vec<f32> = scores
                .iter()
                .zip(&labels)
                .filter(|(_, &y)| y as usize == c)
                .map(|(&s, _)| s)
                .collect();
            module.calibrate_from_scores(&own);
            val_scores.push(scores);
            modules.push(module);
        }
        let predictions = compose_argmax(&val_scores);
        let confusion = ConfusionMatrix::from_predictions(&labels, &predictions, classes.len());
        let zero_f1 = confusion.zero_f1_classes();
        for module in &mut modules {
            let reasons = collapse_reasons(module, zero_f1.contains(&module.meta.class_index));
            module.meta.collapsed.extend(reasons);
            if !module.meta.collapsed.is_empty() {
                tracing::warn!(
                    "module of class {} ({}) is collapsed: {}",
                    module.meta.class_index,
                    module.meta.class_name,
                    describe_collapse(&module.meta.collapsed)
                );
            }
        }
        Ok(modules)
    }
}

/// Why `module` is collapsed from what its metadata says (an empty conv, a calibration range
/// with max ≤ min) and `zero_f1`, whether its class has F1 = 0 in the composition on the
/// validation images (design §13); empty when it is usable.
pub fn collapse_reasons(module: &Module, zero_f1: bool) -> Vec<Collapse> {
    let meta = &module.meta;
    let mut reasons = Vec::new();
    if !meta.zeroed_convs.is_empty() {
        reasons.push(Collapse::EmptyLayer {
            convs: meta.zeroed_convs.clone(),
        });
    }
    if zero_f1 {
        reasons.push(Collapse::ZeroF1);
    }
    if let Some((lo, hi)) = meta.calibration {
        if hi <= lo {
            reasons.push(Collapse::ConstantScore);
        }
    }
    reasons
}

/// The reasons of a collapse as one line, `; `-separated.
///
/// ```
/// use cnn_models::decomposition::describe_collapse;
/// use cnn_models::module::Collapse;
/// let line = describe_collapse(&[Collapse::EmptyLayer { convs: vec![2] }, Collapse::ZeroF1]);
/// assert_eq!(line, "convs [2] kept no kernel; F1 = 0 on its class's validation images");
/// ```
pub fn describe_collapse(reasons: &[Collapse]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One module as the run record lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleSummary {
    /// Class index in the parent model.
    pub class: usize,
    /// Class name.
    pub name: String,
    /// Where the module was saved (`OUT/module_<c>`); `module_<c>` until
    /// [`Decomposition::save`] writes it.
    pub dir: PathBuf,
    /// Retained kernels.
    pub kernels: usize,
    /// Kernel retention rate.
    pub krr: f64,
    /// Parameters (head included).
    pub params: u64,
    /// MACs per image (head included).
    pub macs: u64,
    /// MACs relative to the parent's.
    pub overhead: f64,
    /// Physical convs reduced to one zero channel.
    pub zeroed_convs: Vec<usize>,
    /// Why the module is collapsed; empty when it is usable (design §13).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collapsed: Vec<Collapse>,
}

impl ModuleSummary {
    /// The summary of a module, with `dir` = `module_<class>`.
    pub fn of(module: &Module) -> Self {
        let m = &module.meta;
        ModuleSummary {
            class: m.class_index,
            name: m.class_name.clone(),
            dir: PathBuf::from(module_dir_name(m.class_index)),
            kernels: m.kernels,
            krr: m.krr,
            params: m.params,
            macs: m.macs,
            overhead: m.overhead,
            zeroed_convs: m.zeroed_convs.clone(),
            collapsed: m.collapsed.clone(),
        }
    }
}

/// Name of class `c`'s module directory inside a decomposition's directory.
pub fn module_dir_name(class: usize) -> String {
    format!("module_{class}")
}

/// The run record of a decomposition (`decomposition.json`), format
/// [`DECOMPOSITION_FORMAT`] version [`DECOMPOSITION_FORMAT_VERSION`]. `M` holds the fields
/// of one method, written into the same JSON object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecompositionRecord<M> {
    /// Always [`DECOMPOSITION_FORMAT`].
    pub format: String,
    /// [`DECOMPOSITION_FORMAT_VERSION`].
    pub format_version: u32,
    /// The method: `grad` (GradSplitter) or `ga` (CNNSplitter).
    pub method: String,
    /// The decomposed model's directory, as it was given.
    pub model: PathBuf,
    /// SHA-256 of the model's weights file.
    pub model_sha256: String,
    /// Dataset of the images, `NAME` or `NAME=DIR`.
    pub dataset: String,
    /// Images of the model's validation part.
    pub val_images: usize,
    /// The model's accuracy on the images the method measured it on (the validation part for
    /// GradSplitter, the fitness images for CNNSplitter).
    pub model_val_accuracy: f64,
    /// One entry per class module, in class order.
    pub modules: Vec<ModuleSummary>,
    /// Wall time of the search (module extraction and calibration not included).
    pub seconds: f64,
    /// cnnsplit version that wrote the record.
    pub crate_version: String,
    /// Where the train/validation split came from:
    /// [`RECORDED_SPLIT`](crate::val_split::RECORDED_SPLIT) in `model.json`, or
    /// [`ASSUMED_SPLIT`](crate::val_split::ASSUMED_SPLIT) (20 % holdout, seed 0, which may
    /// overlap the model's training images); empty when the writer did not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub val_split: String,
    /// Which images of the training part the search used when it was limited (`--limit`):
    /// `first-N` or `class-balanced-N` (design §5.6); empty when it used the whole part.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub train_sample: String,
    /// The method's own fields.
    #[serde(flatten)]
    pub method_fields: M,
}

impl<M> DecompositionRecord<M> {
    /// A record with the format fields and this build's version filled in, the method's
    /// fields `method_fields`, and everything else empty (fill it with struct update syntax).
    pub fn new(method_fields: M) -> Self {
        DecompositionRecord {
            format: DECOMPOSITION_FORMAT.into(),
            format_version: DECOMPOSITION_FORMAT_VERSION,
            method: String::new(),
            model: PathBuf::new(),
            model_sha256: String::new(),
            dataset: String::new(),
            val_images: 0,
            model_val_accuracy: 0.0,
            modules: Vec::new(),
            seconds: 0.0,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            val_split: String::new(),
            train_sample: String::new(),
            method_fields,
        }
    }
}

impl<M: Serialize> DecompositionRecord<M> {
    /// The record as a JSON value (object keys sorted, as `decomposition.json` holds them).
    pub fn to_json_value(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self)
            .map_err(|e| ModelError::Mismatch(format!("decomposition record: {e}")))
    }
}

impl<M: DeserializeOwned> DecompositionRecord<M> {
    /// Reads a record from a JSON value (a `decomposition.json`, or `cnnsplit decompose
    /// --json`'s output), checking its format tag and version; `origin` names the source in
    /// errors.
    pub fn from_json_value(origin: &Path, value: serde_json::Value) -> Result<Self> {
        crate::files::check_format(
            origin,
            &value,
            DECOMPOSITION_FORMAT,
            &[DECOMPOSITION_FORMAT_VERSION],
            "decomposition",
        )?;
        serde_json::from_value(value).map_err(|e| {
            ModelError::bad(origin, format!("not a readable decomposition record: {e}"))
        })
    }
}

/// Reads and checks a `decomposition.json`.
pub fn read_record<M: DeserializeOwned>(path: &Path) -> Result<DecompositionRecord<M>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let value = parse_versioned_json(
        path,
        &bytes,
        DECOMPOSITION_FORMAT,
        DECOMPOSITION_FORMAT_VERSION,
        "decomposition",
    )?;
    DecompositionRecord::from_json_value(path, value)
}

/// What a splitter delivers: one extracted, calibrated module per class of the parent, in
/// class order, and the run record.
#[derive(Clone, Debug)]
pub struct Decomposition<M> {
    /// The class modules.
    pub modules: Vec<Module>,
    /// The run record; its `modules` describe [`Decomposition::modules`].
    pub record: DecompositionRecord<M>,
}

impl<M: Serialize> Decomposition<M> {
    /// Saves every module as `out/module_<c>/` and then the record as
    /// `out/decomposition.json`, each file atomically; the record's module `dir`s become the
    /// directories written.
    pub fn save(&mut self, out: &Path) -> Result<()> {
        for (module, summary) in self.modules.iter().zip(self.record.modules.iter_mut()) {
            let dir = out.join(module_dir_name(module.meta.class_index));
            save_module(&dir, module)?;
            summary.dir = dir;
        }
        let json = serde_json::to_vec_pretty(&self.record.to_json_value()?)
            .map_err(|e| ModelError::Mismatch(format!("decomposition record: {e}")))?;
        atomic_write(&out.join(DECOMPOSITION_FILE), &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `decomposition.json` as `cnnsplit decompose --method grad` wrote it before this type
    /// existed (keys sorted; `log` and `config` cut short).
    const GRAD_RECORD: &str = r#"{
  "chosen_epoch": 2,
  "config": {"seed": 5},
  "crate_version": "0.1.0",
  "dataset": "fashion-mnist",
  "format": "cnnsplit-decomposition",
  "format_version": 1,
  "log": [{"epoch": 1, "val_accuracy": 0.5}],
  "method": "grad",
  "model": "m",
  "model_sha256": "abc",
  "model_val_accuracy": 0.75,
  "modules": [
    {"class": 0, "dir": "out/module_0", "kernels": 12, "krr": 0.25, "macs": 1000,
     "name": "T-shirt/top", "overhead": 0.5, "params": 300, "zeroed_convs": []}
  ],
  "seconds": 3.5,
  "train_images": 128,
  "val_images": 40
}"#;

    #[test]
    fn a_record_reads_and_writes_back_the_same_json() {
        let value: serde_json::Value = serde_json::from_str(GRAD_RECORD).unwrap();
        let record: DecompositionRecord<serde_json::Value> =
            DecompositionRecord::from_json_value(Path::new("d.json"), value.clone()).unwrap();
        assert_eq!(record.method, "grad");
        assert_eq!(record.modules[0].kernels, 12);
        assert_eq!(record.modules[0].dir, Path::new("out/module_0"));
        assert_eq!(record.method_fields["chosen_epoch"], 2);
        assert!(record.method_fields.get("modules").is_none());
        assert_eq!(record.to_json_value().unwrap(), value);
    }

    #[test]
    fn another_format_or_version_is_refused() {
        let mut value: serde_json::Value = serde_json::from_str(GRAD_RECORD).unwrap();
        value["format_version"] = 2.into();
        let err = DecompositionRecord::<serde_json::Value>::from_json_value(
            Path::new("d.json"),
            value.clone(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("decomposition format version 2 found"),
            "{err}"
        );
        value["format"] = "cnnsplit-module".into();
        let err =
            DecompositionRecord::<serde_json::Value>::from_json_value(Path::new("d.json"), value)
                .unwrap_err()
                .to_string();
        assert!(err.contains("not a cnnsplit decomposition file"), "{err}");
    }
}
