//! Models: load, save, train, import a PyTorch state_dict, evaluate, predict, and the
//! tensors under their PyTorch names.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use cnn_data::{Augment, ImageSet, InputFormat};
use cnn_models::files::ModelMeta;
use cnn_models::train::DataSplit;
use cnn_models::training_run::{train_and_save, TrainRun};
use cnn_models::{presets, Model, ModelSpec, OpsBackend, TrainConfig, TrainEvent};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::json;

use crate::data::{image_set, PyDataset};
use crate::{detached, lib_err, to_json, value_err, Hook};

/// A tensor for Python: its PyTorch name, shape and f32 little-endian bytes.
type NamedTensor<'py> = (String, Vec<usize>, Bound<'py, PyBytes>);

/// A trained model (weights, architecture and `model.json` metadata).
#[pyclass(module = "cnnsplit._native", name = "Model", frozen)]
pub struct PyModel {
    /// The weights and architecture.
    pub model: Model,
    /// What `model.json` records.
    pub meta: ModelMeta,
    /// The directory it was loaded from or saved to.
    pub path: Option<PathBuf>,
}

/// The progress events of a training run, as the hook's event names and JSON.
pub fn train_event(hook: &Hook, ev: &TrainEvent) {
    match ev {
        TrainEvent::EpochStart {
            epoch,
            epochs,
            batches,
        } => hook.emit(
            "epoch_start",
            json!({"epoch": epoch, "epochs": epochs, "batches": batches, "phase": "train"}),
        ),
        TrainEvent::Batch { batch, loss } => {
            hook.emit("batch", json!({"batch": batch, "loss": loss}))
        }
        TrainEvent::EpochEnd(r) => hook.emit("epoch_end", json!(r)),
    }
}

/// A preset by name (width-scaled, sized to `format`) or a ModelSpec JSON file, checked
/// against the data's classes and input.
pub fn resolve_spec(
    arch: &str,
    width: f64,
    format: &InputFormat,
    num_classes: usize,
) -> PyResult<ModelSpec> {
    use presets::{resolve, ResolveError};
    resolve(arch, width, format.channels, format.size, num_classes).map_err(|e| match e {
        ResolveError::Model(e) => lib_err(e),
        ResolveError::UnknownArch(ref name) => value_err(format!(
            "arch {name:?}: {}",
            e.to_string().split_once(": ").map_or("", |(_, rest)| rest)
        )),
        other => value_err(other.to_string()),
    })
}

/// The train/validation split a model's training run recorded in `model.json`, if any.
pub fn recorded_split(meta: &ModelMeta) -> Option<DataSplit> {
    let value = meta.training.as_ref()?.get("split")?;
    serde_json::from_value(value.clone()).ok()
}

/// The images and indices of `split` (`test`, `val` or `train`) of `data` for a model with
/// `meta`: `val` and `train` are the parts of the training split the model's run recorded.
pub fn split_indices<'d>(
    data: &'d PyDataset,
    split: &str,
    meta: &ModelMeta,
) -> PyResult<(&'d ImageSet, Vec<usize>)> {
    match split {
        "test" => Ok((&data.splits.test, (0..data.splits.test.len()).collect())),
        "val" | "train" => {
            let s = recorded_split(meta).ok_or_else(|| {
                value_err("the model's model.json records no training split; use split=\"test\"")
            })?;
            let (tr, va) = s
                .indices(&data.splits.train, meta.seed.unwrap_or(0))
                .map_err(lib_err)?;
            Ok((&data.splits.train, if split == "val" { va } else { tr }))
        }
        other => Err(value_err(format!(
            "split must be \"test\", \"val\" or \"train\", got {other:?}"
        ))),
    }
}

/// Refuse a dataset whose class count differs from the model's.
pub fn check_classes(meta: &ModelMeta, data: &PyDataset) -> PyResult<()> {
    let n = data.splits.train.num_classes();
    if n != meta.spec.num_classes {
        return Err(value_err(format!(
            "the model has {} classes, dataset `{}` has {n}",
            meta.spec.num_classes, data.spec
        )));
    }
    Ok(())
}

/// `bytes` of `[n, c, h, w]` little-endian f32 as a tensor, checked against `spec`'s input.
pub fn normalised_tensor(bytes: &[u8], shape: &[usize], spec: &ModelSpec) -> PyResult<Tensor> {
    let expected = [spec.input.channels, spec.input.height, spec.input.width];
    if shape.len() != 4 || shape[1..] != expected {
        return Err(value_err(format!(
            "images have shape {shape:?}, the model expects [N, {}, {}, {}]",
            expected[0], expected[1], expected[2]
        )));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if values.len() != shape.iter().product::<usize>() {
        return Err(value_err(format!(
            "{} float32 values for shape {shape:?}",
            values.len()
        )));
    }
    Tensor::from_vec(values, shape.to_vec(), &Device::Cpu).map_err(lib_err)
}

/// Little-endian f32 bytes of `values`.
pub fn f32_bytes<'py>(py: Python<'py>, values: &[f32]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    PyBytes::new(py, &bytes)
}

/// Raw uint8 images as an unlabelled image set (for scoring).
pub fn unlabelled(bytes: &[u8], shape: &[usize]) -> PyResult<ImageSet> {
    let n = shape.first().copied().unwrap_or(0);
    image_set("input", bytes, shape, vec![0; n], vec!["image".into()])
}

#[pymethods]
impl PyModel {
    /// Load the model saved in directory `path` (`model.json` + `model.safetensors`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let (mut model, meta) = detached(py, || {
            cnn_models::load_model(&path, &Device::Cpu).map_err(lib_err)
        })?;
        model.set_ops(OpsBackend::Fast);
        Ok(PyModel {
            model,
            meta,
            path: Some(cnn_models::files::model_dir(&path)),
        })
    }

    /// Save the model into directory `path` (created if needed); returns a copy that knows
    /// its new directory and the weights' SHA-256.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<PyModel> {
        let sha = detached(py, || {
            cnn_models::save_model(&path, &self.model, &self.meta).map_err(lib_err)
        })?;
        let mut meta = self.meta.clone();
        meta.weights_sha256 = sha;
        Ok(PyModel {
            model: self.model.clone(),
            meta,
            path: Some(path),
        })
    }

    /// The directory the model was loaded from or saved to.
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.path.clone()
    }

    /// `model.json` as JSON text.
    fn meta_json(&self) -> PyResult<String> {
        to_json(&self.meta)
    }

    /// Parameters, kernels and multiply-accumulates per image, as JSON.
    fn analysis_json(&self) -> PyResult<String> {
        let an = self.model.analysis();
        to_json(&json!({"params": an.params(), "kernels": an.total_kernels(), "macs": an.macs()}))
    }

    /// Logits `[N, classes]` (f32 bytes) of normalised images (`[N, C, H, W]` f32 bytes).
    fn predict_normalised<'py>(
        &self,
        py: Python<'py>,
        images: &[u8],
        shape: Vec<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let x = normalised_tensor(images, &shape, self.model.spec())?;
        let values: Vec<f32> = detached(py, || {
            let logits = self
                .model
                .predict_logits(&x, batch_size.max(1))
                .map_err(lib_err)?;
            logits
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(lib_err)
        })?;
        Ok(f32_bytes(py, &values))
    }

    /// Logits `[N, classes]` (f32 bytes) of raw uint8 images (`[N, C, H, W]` or `[N, H, W]`),
    /// converted with the model's input format (padding, channels, normalisation).
    fn predict_raw<'py>(
        &self,
        py: Python<'py>,
        images: &[u8],
        shape: Vec<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let set = unlabelled(images, &shape)?;
        let values = detached(py, || {
            let idx: Vec<usize> = (0..set.len()).collect();
            cnn_models::predict(
                &self.model,
                &set,
                &idx,
                &self.meta.input_format,
                batch_size.max(1),
            )
            .map_err(lib_err)
        })?;
        Ok(f32_bytes(py, &values))
    }

    /// Accuracy, per-class metrics and confusion matrix on a split of `data`, as JSON.
    fn evaluate(
        &self,
        py: Python<'_>,
        data: PyRef<'_, PyDataset>,
        split: &str,
        batch_size: usize,
    ) -> PyResult<String> {
        check_classes(&self.meta, &data)?;
        let (set, indices) = split_indices(&data, split, &self.meta)?;
        let ev = detached(py, || {
            cnn_models::evaluate(
                &self.model,
                set,
                &indices,
                &self.meta.input_format,
                batch_size.max(1),
            )
            .map_err(lib_err)
        })?;
        to_json(&ev)
    }

    /// Every tensor as `(PyTorch name, shape, f32 little-endian bytes)`.
    fn tensors<'py>(&self, py: Python<'py>) -> PyResult<Vec<NamedTensor<'py>>> {
        let mut out = Vec::new();
        for (name, t) in self.model.tensors() {
            let v: Vec<f32> = t.flatten_all().and_then(|t| t.to_vec1()).map_err(lib_err)?;
            out.push((name.clone(), t.dims().to_vec(), f32_bytes(py, &v)));
        }
        Ok(out)
    }

    /// Names of the BatchNorm layers (PyTorch also keeps a `num_batches_tracked` for each).
    fn batch_norms(&self) -> Vec<String> {
        self.model
            .analysis()
            .batch_norms
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }
}

/// Train a model on `data` (train split; validation part per `split_json`), evaluate the best
/// epoch on the test split, save it to `out`; returns the model and the run's report as JSON.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    data: PyRef<'_, PyDataset>,
    out: PathBuf,
    arch: &str,
    width: f64,
    config_json: &str,
    split_json: &str,
    resume: bool,
    callback: Option<Py<PyAny>>,
) -> PyResult<(PyModel, String)> {
    let mut cfg: serde_json::Value = serde_json::from_str(config_json).map_err(value_err_of)?;
    if cfg.get("augment").and_then(|a| a.as_str()) == Some("auto") {
        let augment: Option<Augment> = data.kind.and_then(Augment::for_dataset);
        cfg["augment"] = json!(augment);
    }
    let config: TrainConfig = serde_json::from_value(cfg).map_err(value_err_of)?;
    let split: DataSplit = serde_json::from_str(split_json).map_err(value_err_of)?;
    let spec = resolve_spec(arch, width, &data.format, data.splits.train.num_classes())?;
    if out.join(cnn_models::files::META_FILE).exists() && !resume {
        return Err(value_err(format!(
            "{} already holds a model: choose another out, delete it, or pass resume=True",
            out.display()
        )));
    }
    let hook = Hook::new(callback);
    let dev = Device::Cpu;
    let run = TrainRun {
        spec,
        dataset: data.spec.clone(),
        data: &data.splits,
        format: data.format.clone(),
        split,
        config,
        out: &out,
        resume: cnn_models::Resume::continue_if(resume),
        ops: OpsBackend::Fast,
        device: &dev,
    };
    let trained = detached(py, || {
        train_and_save(&run, &mut |e| train_event(&hook, e)).map_err(lib_err)
    })?;
    let report = trained.summary_json(&out, width);
    let model = PyModel {
        model: trained.model,
        meta: trained.meta,
        path: Some(out),
    };
    Ok((model, report.to_string()))
}

/// A JSON or config error as `ValueError`.
fn value_err_of(e: serde_json::Error) -> PyErr {
    value_err(format!("invalid configuration: {e}"))
}

/// Wrap a PyTorch state_dict saved as safetensors into a model of preset `arch` (or a
/// ModelSpec JSON file) for `data`'s input and classes; saved to `out` when given.
#[pyfunction]
#[pyo3(signature = (path, data, arch, width, out=None))]
fn import_state_dict(
    py: Python<'_>,
    path: PathBuf,
    data: PyRef<'_, PyDataset>,
    arch: &str,
    width: f64,
    out: Option<PathBuf>,
) -> PyResult<PyModel> {
    let spec = resolve_spec(arch, width, &data.format, data.splits.train.num_classes())?;
    let mut model = detached(py, || {
        cnn_models::files::import_state_dict(&path, spec.clone(), &Device::Cpu).map_err(lib_err)
    })?;
    model.set_ops(OpsBackend::Fast);
    let mut meta = ModelMeta::new(
        spec,
        data.format.clone(),
        data.spec.clone(),
        data.splits.train.class_names.clone(),
    );
    meta.training = Some(json!({"imported_from": path}));
    let mut imported = PyModel {
        model,
        meta,
        path: None,
    };
    if let Some(out) = out {
        imported = imported.save(py, out)?;
    }
    Ok(imported)
}

/// Import an ONNX model (as `torch.onnx.export` writes it) for `data`'s input and classes;
/// saved to `out` when given (as `cnnsplit import --onnx` does).
#[pyfunction]
#[pyo3(signature = (path, data, out=None, val_last=None))]
fn import_onnx(
    py: Python<'_>,
    path: PathBuf,
    data: PyRef<'_, PyDataset>,
    out: Option<PathBuf>,
    val_last: Option<usize>,
) -> PyResult<PyModel> {
    let (mut model, summary) = detached(py, || {
        onnx_import::import_onnx(&path, &Device::Cpu).map_err(lib_err)
    })?;
    let classes = data.splits.train.num_classes();
    if model.spec().num_classes != classes {
        return Err(value_err(format!(
            "{}: the model has {} classes, the dataset has {classes}",
            path.display(),
            model.spec().num_classes
        )));
    }
    let i = model.spec().input;
    let f = &data.format;
    if [i.channels, i.height, i.width] != [f.channels, f.size, f.size] {
        return Err(value_err(format!(
            "{}: the model takes {}×{}×{} images, the dataset gives {}×{}×{}",
            path.display(),
            i.channels,
            i.height,
            i.width,
            f.channels,
            f.size,
            f.size
        )));
    }
    model.set_ops(OpsBackend::Fast);
    let mut meta = ModelMeta::new(
        model.spec().clone(),
        data.format.clone(),
        data.spec.clone(),
        data.splits.train.class_names.clone(),
    );
    let mut training = json!({"imported_from": path, "onnx": summary});
    if let Some(n) = val_last {
        let split = DataSplit::Last { val_images: n };
        split
            .indices(&data.splits.train, 0)
            .map_err(|e| value_err(format!("val_last={n}: {e}")))?;
        training["split"] = serde_json::to_value(&split).map_err(lib_err)?;
    }
    meta.training = Some(training);
    let mut imported = PyModel {
        model,
        meta,
        path: None,
    };
    if let Some(out) = out {
        imported = imported.save(py, out)?;
    }
    Ok(imported)
}

/// Registers the model class and functions.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(import_state_dict, m)?)?;
    m.add_function(wrap_pyfunction!(import_onnx, m)?)?;
    Ok(())
}
