//! `decompose`: GradSplitter or CNNSplitter on a model and its data, as the CLI's `decompose`
//! runs them (the model's recorded validation split, optional `limit`, checkpoints in
//! `out/checkpoint`, modules and `decomposition.json` saved under `out`).

use std::path::{Path, PathBuf};

use cnn_models::decomposition::DECOMPOSITION_FILE;
use cnn_models::val_split::ValidationSplit;
use cnn_models::{Decomposition, ParentModel, TrainData};
use pyo3::prelude::*;
use serde::Serialize;
use serde_json::{json, Map, Value};
use splitter_ga::{GaConfig, GaDecomposeConfig, GaPreset, GaSplitEvent, InitRatios};
use splitter_grad::{GradSplitConfig, GradSplitEvent};

use crate::artefacts::PyClassModule;
use crate::data::PyDataset;
use crate::models::{check_classes, PyModel};
use crate::{detached, lib_err, to_json, value_err, Hook};

/// `base` (a config serialised to a JSON object) with the entries of `changes` put in;
/// a key `base` lacks is refused, naming the keys it has.
fn merged(base: Value, changes: &Map<String, Value>, what: &str) -> PyResult<Value> {
    let Value::Object(mut obj) = base else {
        return Err(value_err(format!("{what}: not a JSON object")));
    };
    for (k, v) in changes {
        if !obj.contains_key(k) {
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            return Err(value_err(format!(
                "{what}: unknown setting {k:?}; known: {}",
                keys.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        obj.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(obj))
}

/// The GradSplitter settings: [`GradSplitConfig::default`] with `changes` put in.
fn grad_config(changes: &Map<String, Value>) -> PyResult<GradSplitConfig> {
    let base = serde_json::to_value(GradSplitConfig::default()).map_err(lib_err)?;
    let value = merged(base, changes, "GradSplitter config")?;
    let cfg: GradSplitConfig = serde_json::from_value(value)
        .map_err(|e| value_err(format!("GradSplitter config: {e}")))?;
    if !(0.0..=1.0).contains(&cfg.tolerance) {
        return Err(value_err(format!(
            "tolerance must be within [0, 1], got {}",
            cfg.tolerance
        )));
    }
    Ok(cfg)
}

/// Settings of a CNNSplitter run that are not the GA's numbers.
const GA_RUN_KEYS: [&str; 8] = [
    "ga_preset",
    "confidence",
    "sensitive_layers",
    "seed",
    "batch_size",
    "fitness_images",
    "holdout_images",
    "init_ratios",
];

/// The CNNSplitter settings for a model of `spec`: the GA numbers of `ga_preset` (or
/// [`splitter_ga::ga_config_for`] the model) with the GA keys of `changes` put in, the run's
/// keys ([`GA_RUN_KEYS`]) over [`GaDecomposeConfig::default`] — as `decompose --method ga`.
fn ga_config(
    changes: &Map<String, Value>,
    spec: &cnn_models::ModelSpec,
) -> PyResult<GaDecomposeConfig> {
    let (run, ga_changes): (Map<String, Value>, Map<String, Value>) = changes
        .clone()
        .into_iter()
        .partition(|(k, _)| GA_RUN_KEYS.contains(&k.as_str()));
    let preset = run.get("ga_preset").and_then(Value::as_str);
    let mut ga = match preset {
        Some(name) => name
            .parse::<GaPreset>()
            .map_err(|e| value_err(format!("ga_preset {name:?}: {e}")))?
            .config(),
        None => splitter_ga::ga_config_for(spec),
    };
    if let Some(p) = ga_changes.get("population").and_then(Value::as_u64) {
        let p = p as usize;
        ga.parents = ga.parents.min(p);
        ga.keep = ga.keep.min(p);
    }
    let base = serde_json::to_value(&ga).map_err(lib_err)?;
    let ga: GaConfig = serde_json::from_value(merged(base, &ga_changes, "CNNSplitter config")?)
        .map_err(|e| value_err(format!("CNNSplitter config: {e}")))?;
    let d = GaDecomposeConfig::default();
    let get = |k: &str| run.get(k).filter(|v| !v.is_null());
    let usize_of = |k: &str| -> PyResult<Option<usize>> {
        get(k)
            .map(|v| {
                v.as_u64().map(|n| n as usize).ok_or_else(|| {
                    value_err(format!("{k} must be a non-negative integer, got {v}"))
                })
            })
            .transpose()
    };
    let confidence = match get("confidence") {
        Some(v) => v
            .as_f64()
            .ok_or_else(|| value_err(format!("confidence must be a number, got {v}")))?,
        None => d.confidence,
    };
    if !(0.0..=1.0).contains(&confidence) {
        return Err(value_err(format!(
            "confidence must be within [0, 1], got {confidence}"
        )));
    }
    let sensitive_layers = match get("sensitive_layers") {
        Some(v) => Some(
            serde_json::from_value::<Vec<usize>>(v.clone())
                .map_err(|e| value_err(format!("sensitive_layers: {e}")))?,
        ),
        None => d.sensitive_layers.clone(),
    };
    let ratios_given = preset.is_some()
        || ga_changes.contains_key("sensitive_ratios")
        || ga_changes.contains_key("other_ratios");
    let init_ratios = match get("init_ratios").map(|v| v.as_str()) {
        Some(Some("probe")) => InitRatios::Probe {
            tolerance: splitter_ga::DEFAULT_PROBE_TOLERANCE,
        },
        Some(Some("config")) => InitRatios::Config,
        Some(_) => {
            return Err(value_err(
                "init_ratios must be \"probe\" or \"config\"".to_string(),
            ))
        }
        None if ratios_given => InitRatios::Config,
        None => d.init_ratios,
    };
    Ok(GaDecomposeConfig {
        ga: Some(ga),
        confidence,
        sensitive_layers,
        seed: usize_of("seed")?.map_or(d.seed, |s| s as u64),
        batch_size: usize_of("batch_size")?.unwrap_or(d.batch_size),
        fitness_images: usize_of("fitness_images")?,
        holdout_images: usize_of("holdout_images")?,
        init_ratios,
    })
}

/// GradSplitter's events for the hook.
fn grad_event(hook: &Hook, ev: &GradSplitEvent) {
    match ev {
        GradSplitEvent::Started {
            epochs,
            model_accuracy,
            resumed_after,
        } => hook.emit(
            "started",
            json!({"epochs": epochs, "model_accuracy": model_accuracy, "resumed_after": resumed_after}),
        ),
        GradSplitEvent::EpochStart {
            epoch,
            epochs,
            phase,
            batches,
        } => hook.emit(
            "epoch_start",
            json!({"epoch": epoch, "epochs": epochs, "batches": batches, "phase": phase}),
        ),
        GradSplitEvent::Batch { batch, loss } => {
            hook.emit("batch", json!({"batch": batch, "loss": loss}))
        }
        GradSplitEvent::EpochEnd(r) => hook.emit("epoch_end", json!(r)),
        GradSplitEvent::Chosen {
            epoch,
            val_accuracy,
            mean_kernels,
        } => hook.emit(
            "chosen",
            json!({"epoch": epoch, "val_accuracy": val_accuracy, "mean_kernels": mean_kernels}),
        ),
    }
}

/// CNNSplitter's events for the hook.
fn ga_event(hook: &Hook, ev: &GaSplitEvent) {
    match ev {
        GaSplitEvent::Importance(imp) => hook.emit(
            "importance",
            json!({"images": imp.images, "fallback": imp.fallback}),
        ),
        GaSplitEvent::Sensitivity {
            sensitivity,
            sensitive,
        } => hook.emit(
            "sensitivity",
            json!({"full_accuracy": sensitivity.full_accuracy, "sensitive": sensitive}),
        ),
        GaSplitEvent::RatioProbe(p) => hook.emit(
            "ratio_probe",
            json!({"chosen": p.chosen, "sensitive_ratios": p.sensitive_ratios,
                   "other_ratios": p.other_ratios, "tried": p.tried}),
        ),
        GaSplitEvent::GenerationStart { generation, last } => hook.emit(
            "generation_start",
            json!({"generation": generation, "last": last}),
        ),
        GaSplitEvent::Generation {
            record,
            seconds,
            evaluation_seconds,
            mean_kernels,
            last,
        } => hook.emit(
            "generation",
            json!({"generation": record.generation, "last": last,
                   "best_accuracy": record.best_accuracy,
                   "selection_accuracy": record.selection_accuracy,
                   "mean_kernels": mean_kernels, "seconds": seconds,
                   "evaluation_seconds": evaluation_seconds}),
        ),
    }
}

/// The model's training and validation parts of `data` (the split `model.json` records),
/// with the training part cut to `limit` images the CLI's way; also the split's label and
/// the training sample's description.
fn parts(
    parent: &PyModel,
    data: &PyDataset,
    limit: Option<usize>,
) -> PyResult<(Vec<usize>, Vec<usize>, ValidationSplit, String)> {
    let val_split = ValidationSplit::of(&parent.meta);
    let (train_idx, val_idx) = val_split
        .split
        .indices(&data.splits.train, val_split.seed)
        .map_err(lib_err)?;
    let (train_idx, train_sample) = splitter_grad::limit_training_part(
        train_idx,
        &data.splits.train.labels,
        data.splits.train.num_classes(),
        limit,
        splitter_grad::LimitSampling::Auto,
    );
    Ok((train_idx, val_idx, val_split, train_sample))
}

/// What a decomposition returns to Python: the record as JSON and the modules.
fn finish<M: Serialize>(
    mut d: Decomposition<M>,
    out: &Path,
    val_split: &ValidationSplit,
    train_sample: String,
) -> PyResult<(String, Vec<PyClassModule>)> {
    d.record.val_split = val_split.label().into();
    d.record.train_sample = train_sample;
    d.save(out).map_err(lib_err)?;
    let record = d.record.to_json_value().map_err(lib_err)?;
    // read back as saved: the files carry what saving adds (the weights' SHA-256)
    let modules = d
        .record
        .modules
        .iter()
        .map(|s| {
            let mut module =
                cnn_models::module::load_module(&s.dir, None, &candle_core::Device::Cpu)
                    .map_err(lib_err)?;
            module.model.set_ops(cnn_models::OpsBackend::Fast);
            Ok(PyClassModule {
                module,
                path: Some(s.dir.clone()),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok((to_json(&record)?, modules))
}

/// Decompose `model` into one module per class with GradSplitter (`method="grad"`) or
/// CNNSplitter (`method="ga"`); `config_json` holds the settings to change. Returns the run
/// record (JSON) and the modules, saved under `out`.
#[pyfunction]
#[pyo3(signature = (model, data, out, method, config_json, resume=false, limit=None, callback=None))]
#[allow(clippy::too_many_arguments)]
fn decompose(
    py: Python<'_>,
    model: PyRef<'_, PyModel>,
    data: PyRef<'_, PyDataset>,
    out: PathBuf,
    method: &str,
    config_json: &str,
    resume: bool,
    limit: Option<usize>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, Vec<PyClassModule>)> {
    let changes: Map<String, Value> = serde_json::from_str(config_json)
        .map_err(|e| value_err(format!("decompose settings: {e}")))?;
    check_classes(&model.meta, &data)?;
    let model_path = model.path.clone().ok_or_else(|| {
        value_err("save the model first (Model.save): a decomposition records its directory")
    })?;
    enum Method {
        Grad(GradSplitConfig),
        Ga(GaDecomposeConfig),
    }
    let method = match method {
        "grad" => Method::Grad(grad_config(&changes)?),
        "ga" => Method::Ga(ga_config(&changes, model.model.spec())?),
        other => {
            return Err(value_err(format!(
                "method must be \"grad\" or \"ga\", got {other:?}"
            )))
        }
    };
    if out.join(DECOMPOSITION_FILE).exists() && !resume {
        return Err(value_err(format!(
            "{} already holds a decomposition: choose another out, delete it, or pass resume=True",
            out.display()
        )));
    }
    let (train, val, val_split, train_sample) = parts(&model, &data, limit)?;
    let mut frozen = model.model.clone();
    frozen.freeze().map_err(lib_err)?;
    let hook = Hook::new(callback);
    let meta = &model.meta;
    let data = &*data;
    detached(py, move || {
        cnn_models::files::remove_stale_temp_files(&out, 2).map_err(lib_err)?;
        let tdata = TrainData {
            set: &data.splits.train,
            train,
            val,
            format: meta.input_format.clone(),
        };
        let parent = ParentModel {
            model: &frozen,
            meta,
            path: &model_path,
            dataset: &data.spec,
        };
        let checkpoint = out.join("checkpoint");
        match method {
            Method::Grad(cfg) => {
                let d = splitter_grad::decompose(
                    &parent,
                    &tdata,
                    &cfg,
                    splitter_grad::Checkpointing::In {
                        dir: &checkpoint,
                        resume: splitter_grad::Resume::continue_if(resume),
                    },
                    &mut |e| grad_event(&hook, e),
                )
                .map_err(lib_err)?;
                finish(d, &out, &val_split, train_sample)
            }
            Method::Ga(cfg) => {
                let d = splitter_ga::decompose(
                    &parent,
                    &tdata,
                    &cfg,
                    splitter_ga::Checkpointing::In {
                        dir: &checkpoint,
                        resume: splitter_ga::Resume::continue_if(resume),
                    },
                    &mut |e| ga_event(&hook, e),
                )
                .map_err(lib_err)?;
                finish(d, &out, &val_split, train_sample)
            }
        }
    })
}

/// The default settings of a method, as JSON (for `help` and notebooks).
#[pyfunction]
#[pyo3(signature = (method, model=None))]
fn default_config(method: &str, model: Option<PyRef<'_, PyModel>>) -> PyResult<String> {
    match method {
        "grad" => to_json(&GradSplitConfig::default()),
        "ga" => {
            let ga = match &model {
                Some(m) => splitter_ga::ga_config_for(m.model.spec()),
                None => GaConfig::simcnn_cifar10(),
            };
            let d = GaDecomposeConfig::default();
            let mut v = serde_json::to_value(&ga).map_err(lib_err)?;
            v["confidence"] = json!(d.confidence);
            v["seed"] = json!(d.seed);
            v["batch_size"] = json!(d.batch_size);
            v["fitness_images"] = Value::Null;
            v["holdout_images"] = Value::Null;
            v["init_ratios"] = json!("probe");
            v["ga_preset"] = Value::Null;
            to_json(&v)
        }
        other => Err(value_err(format!(
            "method must be \"grad\" or \"ga\", got {other:?}"
        ))),
    }
}

/// Registers the decomposition functions.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decompose, m)?)?;
    m.add_function(wrap_pyfunction!(default_config, m)?)?;
    Ok(())
}
