//! Class modules, compositions, patched models and reuse (design §5.10, §7, §8), as the CLI's
//! `compose`, `patch` and `reuse` run them, and `open` of any saved artefact.

use std::path::{Path, PathBuf};

use candle_core::Device;
use cnn_data::DatasetSpec;
use cnn_models::metrics::{argmax_rows, Evaluation};
use cnn_models::module::{load_module, module_dir};
use cnn_models::{ModuleMeta, OpsBackend};
use composer::reuse::{
    evaluate_composition, CandidateModel, NewTask, NewTaskConfig, OfferedModule, ReuseEvent,
    ScratchConfig, SelectConfig, Selector, TaskDatasets,
};
use composer::{
    Artifact, CalibrationKind, ComposedClass, ComposedModel, CompositionManifest, PatchConfig,
    PatchJob, PatchedModel,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::json;

use crate::data::PyDataset;
use crate::models::{
    check_classes, f32_bytes, normalised_tensor, split_indices, train_event, unlabelled, PyModel,
};
use crate::{detached, lib_err, to_json, value_err, Hook};

/// One class module: the masked, extracted part of a model that recognises one class.
#[pyclass(module = "cnnsplit._native", name = "Module", frozen)]
pub struct PyClassModule {
    /// The module.
    pub module: cnn_models::Module,
    /// Its directory, when saved.
    pub path: Option<PathBuf>,
}

/// A composed model: one module per class.
#[pyclass(module = "cnnsplit._native", name = "ComposedModel", frozen)]
pub struct PyComposed {
    composed: ComposedModel,
    path: PathBuf,
}

/// A weak model patched with a module for one class.
#[pyclass(module = "cnnsplit._native", name = "PatchedModel", frozen)]
pub struct PyPatched {
    patched: PatchedModel,
    path: PathBuf,
}

/// The directory of a saved artefact, or a `ValueError` asking to save it.
fn saved<'p>(path: &'p Option<PathBuf>, what: &str) -> PyResult<&'p Path> {
    path.as_deref()
        .ok_or_else(|| value_err(format!("the {what} has no directory: save it first")))
}

#[pymethods]
impl PyClassModule {
    /// Load the module saved in directory `path` (`module.json` + `module.safetensors`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let dir = module_dir(&path);
        let mut module = detached(py, || {
            load_module(&dir, None, &Device::Cpu).map_err(lib_err)
        })?;
        module.model.set_ops(OpsBackend::Fast);
        Ok(PyClassModule {
            module,
            path: Some(dir),
        })
    }

    /// The directory the module was loaded from or saved to.
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.path.clone()
    }

    /// `module.json` as JSON text.
    fn meta_json(&self) -> PyResult<String> {
        to_json(&self.module.meta)
    }

    /// The module's calibrated scores of raw uint8 images (`[N, C, H, W]` or `[N, H, W]`),
    /// one f32 per image (bytes).
    fn scores_raw<'py>(
        &self,
        py: Python<'py>,
        images: &[u8],
        shape: Vec<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let set = unlabelled(images, &shape)?;
        let scores = detached(py, || {
            let idx: Vec<usize> = (0..set.len()).collect();
            composer::score_images(
                std::slice::from_ref(&self.module),
                &set,
                &idx,
                batch_size.max(1),
            )
            .map_err(lib_err)
        })?;
        Ok(f32_bytes(py, &scores))
    }
}

/// Refuse modules that cannot be composed (different inputs, repeated classes), or that do
/// not come from `parent` when given.
fn check_modules(
    modules: &[cnn_models::Module],
    paths: &[PathBuf],
    parent: Option<&PyModel>,
) -> PyResult<()> {
    if modules.is_empty() {
        return Err(value_err("no modules given"));
    }
    if let Some(p) = parent {
        for m in modules {
            if m.meta.parent_sha256 != p.meta.weights_sha256 {
                return Err(value_err(format!(
                    "module of class {:?} comes from model {}, not from the given model ({})",
                    m.meta.class_name, m.meta.parent_sha256, p.meta.weights_sha256
                )));
            }
        }
    }
    let metas: Vec<(PathBuf, &ModuleMeta)> = paths
        .iter()
        .cloned()
        .zip(modules.iter().map(|m| &m.meta))
        .collect();
    composer::check_composable(&metas).map_err(lib_err)
}

/// Compose `modules` (one per class) and score them on the test split of `data`, as the
/// CLI's `compose`; with `model` (their parent) its accuracy on the same images too; with
/// `out`, save the composed model there. Returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (modules, data, batch_size=256, model=None, out=None))]
fn compose(
    py: Python<'_>,
    modules: Vec<PyRef<'_, PyClassModule>>,
    data: PyRef<'_, PyDataset>,
    batch_size: usize,
    model: Option<PyRef<'_, PyModel>>,
    out: Option<PathBuf>,
) -> PyResult<String> {
    let loaded: Vec<cnn_models::Module> = modules.iter().map(|m| m.module.clone()).collect();
    let paths: Vec<PathBuf> = modules
        .iter()
        .map(|m| {
            m.path
                .clone()
                .unwrap_or_else(|| PathBuf::from(&m.module.meta.class_name))
        })
        .collect();
    check_modules(&loaded, &paths, model.as_deref())?;
    let test = &data.splits.test;
    let names: Vec<String> = loaded.iter().map(|m| m.meta.class_name.clone()).collect();
    let mut indices = Vec::new();
    let mut labels = Vec::new();
    for i in 0..test.len() {
        let class = &test.class_names[test.labels[i] as usize];
        if let Some(pos) = names.iter().position(|n| n == class) {
            indices.push(i);
            labels.push(pos as u32);
        }
    }
    if indices.is_empty() {
        return Err(value_err(format!(
            "dataset {} has no test image of the modules' classes ({})",
            data.spec,
            names.join(", ")
        )));
    }
    let parent = model.as_deref();
    let (ev, model_eval) = detached(py, || {
        let scores =
            composer::score_images(&loaded, test, &indices, batch_size.max(1)).map_err(lib_err)?;
        let preds = argmax_rows(&scores, loaded.len());
        let ev = Evaluation::new(&labels, &preds, loaded.len());
        let model_eval = match parent {
            Some(p) => Some(
                cnn_models::evaluate(
                    &p.model,
                    test,
                    &indices,
                    &p.meta.input_format,
                    batch_size.max(1),
                )
                .map_err(lib_err)?,
            ),
            None => None,
        };
        Ok((ev, model_eval))
    })?;
    if let Some(out) = &out {
        let classes = loaded
            .iter()
            .zip(&modules)
            .enumerate()
            .map(|(k, (m, py_m))| {
                let dir = saved(&py_m.path, "module")?;
                Ok(ComposedClass::from_module(
                    k as u32,
                    &m.meta.class_name,
                    dir,
                    &m.meta,
                ))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut manifest =
            CompositionManifest::new("compose", classes, vec![data.spec.clone()], 0.0);
        manifest.report = Some(json!({"composed": ev}));
        detached(py, || {
            composer::save_composed(out, &manifest).map_err(lib_err)
        })?;
    }
    let params: u64 = loaded.iter().map(|m| m.meta.params).sum();
    let macs: u64 = loaded.iter().map(|m| m.meta.macs).sum();
    to_json(&json!({
        "modules": loaded.len(), "class_names": names, "dataset": data.spec, "composed": ev,
        "model_accuracy": model_eval.as_ref().map(|e| e.accuracy), "params": params, "macs": macs,
        "model_params": parent.map(|p| p.model.analysis().params()),
        "model_macs": parent.map(|p| p.model.analysis().macs()),
        "collapsed_modules": composer::collapsed_modules_json(&loaded),
        "out": out,
    }))
}

/// Patch the weak `model` with `module` (design §7), measure before/after on the test split
/// of `data`, and save the patched model to `out` when given; returns the summary as JSON.
#[pyfunction]
#[pyo3(signature = (model, module, data, out=None, target=None, calibration="minmax", percentiles=(1.0, 99.0), clip=false, force=false, batch_size=256))]
#[allow(clippy::too_many_arguments)]
fn patch(
    py: Python<'_>,
    model: PyRef<'_, PyModel>,
    module: PyRef<'_, PyClassModule>,
    data: PyRef<'_, PyDataset>,
    out: Option<PathBuf>,
    target: Option<String>,
    calibration: &str,
    percentiles: (f64, f64),
    clip: bool,
    force: bool,
    batch_size: usize,
) -> PyResult<String> {
    let calibration = match calibration {
        "minmax" => CalibrationKind::MinMax,
        "none" => CalibrationKind::Raw,
        "percentile" => {
            let (lo, hi) = percentiles;
            if !((0.0..=100.0).contains(&lo) && (0.0..=100.0).contains(&hi) && lo < hi) {
                return Err(value_err(format!(
                    "percentiles must be (LO, HI) with 0 ≤ LO < HI ≤ 100, got {percentiles:?}"
                )));
            }
            CalibrationKind::Percentile { lo, hi }
        }
        other => {
            return Err(value_err(format!(
                "calibration must be \"minmax\", \"percentile\" or \"none\", got {other:?}"
            )))
        }
    };
    let cfg = PatchConfig {
        target,
        calibration,
        clip,
        force,
        batch_size: batch_size.max(1),
    };
    let model_path = saved(&model.path, "model")?;
    let module_path = saved(&module.path, "module")?;
    if let Some(out) = out.as_deref().filter(|o| composer::is_patched(o)) {
        return Err(value_err(format!(
            "{} already holds a patched model: choose another out or delete it",
            out.display()
        )));
    }
    let job = PatchJob::new(
        model_path,
        (&model.model, &model.meta),
        module_path,
        &module.module,
        &cfg,
    )
    .map_err(lib_err)?;
    let test = &data.splits.test;
    let dataset = data.spec.clone();
    let summary = detached(py, || {
        let mut summary = job
            .measure(&dataset, test, cfg.batch_size)
            .map_err(lib_err)?;
        if let Some(out) = &out {
            cnn_models::files::remove_stale_temp_files(out, 1).map_err(lib_err)?;
            job.save(out).map_err(lib_err)?;
            summary.out = Some(out.clone());
        }
        Ok(summary)
    })?;
    to_json(&summary)
}

/// A dataset of a reuse task: its name parsed again and its splits (reuse records datasets by
/// name, so arrays are refused).
fn task_data(datasets: &[PyRef<'_, PyDataset>]) -> PyResult<TaskDatasets> {
    let mut task = TaskDatasets::new();
    for d in datasets {
        if d.spec.starts_with("arrays:") {
            return Err(value_err(format!(
                "{}: reuse needs datasets loaded by name (Dataset.load), not arrays",
                d.spec
            )));
        }
        let spec: DatasetSpec = d.spec.parse().map_err(lib_err)?;
        task.add(&d.spec, spec, (*d.splits).clone())
            .map_err(lib_err)?;
    }
    Ok(task)
}

/// `reuse select` (design §8): the best module per class among several models' modules of
/// one task; returns the report as JSON (composed model saved to `out` when given).
#[pyfunction]
#[pyo3(signature = (models, module_dirs, data, out=None, selection_fraction=0.2, batch_size=256))]
fn reuse_select(
    py: Python<'_>,
    models: Vec<PyRef<'_, PyModel>>,
    module_dirs: Vec<PathBuf>,
    data: PyRef<'_, PyDataset>,
    out: Option<PathBuf>,
    selection_fraction: f64,
    batch_size: usize,
) -> PyResult<String> {
    composer::reuse::check_selection_fraction(selection_fraction).map_err(lib_err)?;
    if models.len() != module_dirs.len() {
        return Err(value_err(format!(
            "{} models but {} module folders: give one folder of modules per model",
            models.len(),
            module_dirs.len()
        )));
    }
    let mut candidates = Vec::new();
    for m in &models {
        candidates.push(CandidateModel {
            dir: saved(&m.path, "model")?.to_path_buf(),
            model: m.model.clone(),
            meta: m.meta.clone(),
        });
    }
    let task = task_data(std::slice::from_ref(&data))?;
    let report = detached(py, || {
        let mut selector = Selector::new(candidates, task).map_err(lib_err)?;
        for dir in &module_dirs {
            let mut loaded = composer::load_modules(std::slice::from_ref(dir), None, &Device::Cpu)
                .map_err(lib_err)?;
            for m in &mut loaded {
                m.model.set_ops(OpsBackend::Fast);
            }
            selector.add_modules(dir, loaded).map_err(lib_err)?;
        }
        let cfg = SelectConfig {
            selection_fraction,
            batch_size: batch_size.max(1),
        };
        let mut reused = selector.run(&cfg).map_err(lib_err)?;
        if let Some(out) = &out {
            reused.save(out).map_err(lib_err)?;
        }
        serde_json::to_value(&reused.report).map_err(lib_err)
    })?;
    to_json(&report)
}

/// `reuse new-task` (design §8): a classifier for classes of different datasets composed from
/// offered modules (`(class name, module)` pairs, best F1 per class on the selection part);
/// with `scratch_epochs` > 0 also a model trained from scratch as the baseline. Returns the
/// report as JSON (composed model saved to `out` when given).
#[pyfunction]
#[pyo3(signature = (modules, datasets, out=None, selection_fraction=0.2, batch_size=256, scratch_json="{}", callback=None))]
#[allow(clippy::too_many_arguments)]
fn reuse_new_task(
    py: Python<'_>,
    modules: Vec<(String, PyRef<'_, PyClassModule>)>,
    datasets: Vec<PyRef<'_, PyDataset>>,
    out: Option<PathBuf>,
    selection_fraction: f64,
    batch_size: usize,
    scratch_json: &str,
    callback: Option<Py<PyAny>>,
) -> PyResult<String> {
    composer::reuse::check_selection_fraction(selection_fraction).map_err(lib_err)?;
    let mut offered = Vec::new();
    for (class, m) in &modules {
        offered.push(OfferedModule {
            class: class.clone(),
            dir: saved(&m.path, "module")?.to_path_buf(),
            module: m.module.clone(),
        });
    }
    let s: serde_json::Map<String, serde_json::Value> = serde_json::from_str(scratch_json)
        .map_err(|e| value_err(format!("scratch settings: {e}")))?;
    let d = ScratchConfig::default();
    let num = |k: &str| s.get(k).and_then(serde_json::Value::as_f64);
    for k in s.keys() {
        if ![
            "epochs",
            "patience",
            "min_epochs",
            "batch_size",
            "lr",
            "seed",
        ]
        .contains(&k.as_str())
        {
            return Err(value_err(format!(
                "unknown scratch setting {k:?}; known: epochs, patience, min_epochs, batch_size, lr, seed"
            )));
        }
    }
    let cfg = NewTaskConfig {
        selection_fraction,
        batch_size: batch_size.max(1),
        scratch: ScratchConfig {
            epochs: num("epochs").map_or(d.epochs, |v| v as usize),
            patience: num("patience").map_or(d.patience, |v| v as usize),
            min_epochs: num("min_epochs").map_or(d.min_epochs, |v| v as usize),
            batch_size: num("batch_size").map_or(d.batch_size, |v| v as usize),
            lr: num("lr").unwrap_or(d.lr),
            seed: num("seed").map_or(d.seed, |v| v as u64),
            eval_batch_size: batch_size.max(1),
            ops: OpsBackend::Fast,
        },
    };
    let task = NewTask::new(offered).map_err(lib_err)?;
    let data = task_data(&datasets)?;
    let hook = Hook::new(callback);
    let report = detached(py, || {
        let mut reused = task
            .run(&data, &cfg, &mut |e| match e {
                ReuseEvent::ScratchStart {
                    arch,
                    train_images,
                    val_images,
                    epochs,
                    patience,
                } => hook.emit(
                    "scratch_start",
                    json!({"arch": arch, "train_images": train_images, "val_images": val_images,
                           "epochs": epochs, "patience": patience}),
                ),
                ReuseEvent::Train(e) => train_event(&hook, e),
            })
            .map_err(lib_err)?;
        if let Some(out) = &out {
            reused.save(out).map_err(lib_err)?;
        }
        serde_json::to_value(&reused.report).map_err(lib_err)
    })?;
    to_json(&report)
}

#[pymethods]
impl PyComposed {
    /// The directory it was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// `composition.json` as JSON text.
    fn manifest_json(&self) -> PyResult<String> {
        to_json(&self.composed.manifest)
    }

    /// Class names in label order.
    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.composed.class_names()
    }

    /// Module scores `[N, classes]` (f32 bytes) of raw uint8 images.
    fn scores_raw<'py>(
        &self,
        py: Python<'py>,
        images: &[u8],
        shape: Vec<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let set = unlabelled(images, &shape)?;
        let scores = detached(py, || {
            let idx: Vec<usize> = (0..set.len()).collect();
            composer::score_images(&self.composed.modules, &set, &idx, batch_size.max(1))
                .map_err(lib_err)
        })?;
        Ok(f32_bytes(py, &scores))
    }

    /// Accuracy and per-class metrics on the test split of `data` (images of the composed
    /// classes only, matched by class name), as JSON.
    fn evaluate(
        &self,
        py: Python<'_>,
        data: PyRef<'_, PyDataset>,
        batch_size: usize,
    ) -> PyResult<String> {
        let names = self.composed.class_names();
        let test = &data.splits.test;
        let mut indices = Vec::new();
        let mut labels = Vec::new();
        for i in 0..test.len() {
            let class = &test.class_names[test.labels[i] as usize];
            if let Some(pos) = names.iter().position(|n| n == class) {
                indices.push(i);
                labels.push(pos as u16);
            }
        }
        if indices.is_empty() {
            return Err(value_err(format!(
                "dataset {} has no test image of the composed classes ({})",
                data.spec,
                names.join(", ")
            )));
        }
        let set = test.try_subset(&indices).map_err(lib_err)?;
        let set = cnn_data::ImageSet::new(set.name, set.shape, set.images, labels, names)
            .map_err(lib_err)?;
        let ev = detached(py, || {
            evaluate_composition(&self.composed.modules, &set, batch_size.max(1)).map_err(lib_err)
        })?;
        to_json(&ev)
    }
}

#[pymethods]
impl PyPatched {
    /// The directory it was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The patch manifest as JSON text.
    fn manifest_json(&self) -> PyResult<String> {
        to_json(&self.patched.manifest)
    }

    /// Class names in label order.
    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.patched.meta.class_names.clone()
    }

    /// The dataset the weak model was trained on, as its `model.json` records it.
    #[getter]
    fn dataset(&self) -> String {
        self.patched.meta.dataset.clone()
    }

    /// Patched scores `[N, classes]` (f32 bytes) of raw uint8 images: the weak model's
    /// softmax with the target class replaced by the module's calibrated score.
    fn scores_raw<'py>(
        &self,
        py: Python<'py>,
        images: &[u8],
        shape: Vec<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let set = unlabelled(images, &shape)?;
        let scores = detached(py, || {
            let idx: Vec<usize> = (0..set.len()).collect();
            let (x, _) = cnn_data::to_tensor(
                &set,
                &idx,
                &self.patched.meta.input_format,
                None,
                self.patched.model.device(),
            )
            .map_err(lib_err)?;
            self.patched.scores(&x, batch_size.max(1)).map_err(lib_err)
        })?;
        let scores: Vec<f32> = scores.iter().map(|&v| v as f32).collect();
        Ok(f32_bytes(py, &scores))
    }

    /// Accuracy and per-class metrics on a split of `data` (`test`, or the weak model's
    /// recorded `val` / `train` parts), as JSON.
    fn evaluate(
        &self,
        py: Python<'_>,
        data: PyRef<'_, PyDataset>,
        split: &str,
        batch_size: usize,
    ) -> PyResult<String> {
        check_classes(&self.patched.meta, &data)?;
        let (set, indices) = split_indices(&data, split, &self.patched.meta)?;
        let ev = detached(py, || {
            self.patched
                .evaluate(set, &indices, batch_size.max(1))
                .map_err(lib_err)
        })?;
        to_json(&ev)
    }
}

/// Open whatever artefact directory `path` holds: a model, a class module, a patched model
/// or a composed model.
#[pyfunction]
fn open(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyAny>> {
    let artifact = detached(py, || Artifact::open(&path, &Device::Cpu).map_err(lib_err))?;
    let mut artifact = artifact;
    artifact.set_ops(OpsBackend::Fast);
    Ok(match artifact {
        Artifact::Model(model, meta) => Py::new(
            py,
            PyModel {
                model: *model,
                meta: *meta,
                path: Some(cnn_models::files::model_dir(&path)),
            },
        )?
        .into_any(),
        Artifact::Module(module) => Py::new(
            py,
            PyClassModule {
                module: *module,
                path: Some(module_dir(&path)),
            },
        )?
        .into_any(),
        Artifact::Patched(patched) => Py::new(
            py,
            PyPatched {
                patched: *patched,
                path,
            },
        )?
        .into_any(),
        Artifact::Composed(composed) => Py::new(py, PyComposed { composed, path })?.into_any(),
    })
}

/// Logits `[N, classes]` of normalised images for a class module's network (checks the
/// shape); kept for symmetry with [`PyModel`]'s normalised prediction.
#[pyfunction]
fn module_scores_normalised<'py>(
    py: Python<'py>,
    module: PyRef<'_, PyClassModule>,
    images: &[u8],
    shape: Vec<usize>,
    batch_size: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let module = &*module;
    let x = normalised_tensor(images, &shape, module.module.model.spec())?;
    let scores = detached(py, || {
        module.module.scores(&x, batch_size.max(1)).map_err(lib_err)
    })?;
    Ok(f32_bytes(py, &scores))
}

/// Registers the module, composition, patching and reuse classes and functions.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClassModule>()?;
    m.add_class::<PyComposed>()?;
    m.add_class::<PyPatched>()?;
    m.add_function(wrap_pyfunction!(compose, m)?)?;
    m.add_function(wrap_pyfunction!(patch, m)?)?;
    m.add_function(wrap_pyfunction!(reuse_select, m)?)?;
    m.add_function(wrap_pyfunction!(reuse_new_task, m)?)?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(module_scores_normalised, m)?)?;
    Ok(())
}
