//! What every command sets up from its flags: the device and op implementations, datasets,
//! the architecture a `--arch`/`--width` pair names, and loaded modules, with the checks that
//! name the flag or file at fault.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use cnn_data::{Augment, DatasetKind, DatasetSpec, DatasetSplits, ImageSet, InputFormat};
use cnn_models::files::ModelMeta;
use cnn_models::train::DataSplit;
use cnn_models::{ModelSpec, Module};
use composer::reuse::{TaskDatasets, TaskSets};
use composer::{Artifact, ArtifactKind, ComposedModel};

use crate::args::{AugmentChoice, DeviceChoice, Global};
use crate::flag_hint::with_flag_hint;

/// The device a `--device` choice selects.
pub fn device(choice: DeviceChoice) -> Result<Device> {
    Ok(match choice {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                bail!("--device cuda: this binary was built without CUDA support (build with --features cuda)");
            }
            Device::new_cuda(0).context("--device cuda: no usable CUDA GPU")?
        }
        DeviceChoice::Auto => {
            let (dev, warning) = auto_device(candle_core::utils::cuda_is_available(), || {
                Device::new_cuda(0)
            });
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
            dev
        }
    })
}

/// What `--device auto` runs on: the first CUDA GPU when this binary has CUDA
/// (`cuda_compiled`) and `open_cuda` starts it; the CPU otherwise. A CUDA build whose GPU fails
/// to start falls back to the CPU with a warning that carries the CUDA error; a CPU-only
/// build uses the CPU without one.
pub fn auto_device(
    cuda_compiled: bool,
    open_cuda: impl FnOnce() -> candle_core::Result<Device>,
) -> (Device, Option<String>) {
    if !cuda_compiled {
        return (Device::Cpu, None);
    }
    match open_cuda() {
        Ok(dev) => (dev, None),
        Err(e) => (
            Device::Cpu,
            Some(format!(
                "--device auto: CUDA did not start ({e}); running on the CPU instead (much slower)"
            )),
        ),
    }
}

/// Load the dataset a `--dataset` value names (its train and test splits), logging the time.
pub fn load_data(dataset: &str) -> Result<(DatasetSpec, DatasetSplits)> {
    let spec: DatasetSpec = dataset
        .parse()
        .with_context(|| format!("--dataset {dataset}"))?;
    let started = Instant::now();
    let splits =
        cnn_data::load_dataset(&spec).with_context(|| format!("loading dataset {spec}"))?;
    tracing::info!(
        train = splits.train.len(),
        test = splits.test.len(),
        seconds = started.elapsed().as_secs_f64(),
        "loaded {spec}"
    );
    Ok((spec, splits))
}

/// Load the task's datasets one by one (each checked against those before).
pub fn load_task_data(datasets: &[String]) -> Result<TaskDatasets> {
    let mut task = TaskDatasets::new();
    for d in datasets {
        let (spec, data) = load_data(d)?;
        task.add(d, spec, data).map_err(with_flag_hint)?;
    }
    Ok(task)
}

/// The task sets of a composed model, on its manifest's datasets (or `dataset` instead).
pub fn composed_sets(c: &ComposedModel, dataset: Option<&String>) -> Result<TaskSets> {
    let datasets = match dataset {
        Some(d) => vec![d.clone()],
        None => c.manifest.datasets.clone(),
    };
    let data = load_task_data(&datasets)?;
    c.task_sets(&data).map_err(with_flag_hint)
}

/// A preset by name or a ModelSpec JSON file, checked against the data's classes and input.
pub fn resolve_spec(
    arch: &str,
    width: f64,
    format: &InputFormat,
    num_classes: usize,
) -> Result<ModelSpec> {
    use cnn_models::presets::{resolve, ResolveError};
    resolve(arch, width, format.channels, format.size, num_classes).map_err(|e| match e {
        ResolveError::Width(w) => anyhow::anyhow!("--width must be a positive number, got {w}"),
        ResolveError::UnknownArch(_) => anyhow::anyhow!("--arch {e}"),
        other => other.into(),
    })
}

/// The training augmentation an `--augment` choice means for a dataset kind.
pub fn augment_for(choice: AugmentChoice, kind: DatasetKind) -> Option<Augment> {
    match choice {
        AugmentChoice::Auto => Augment::for_dataset(kind),
        AugmentChoice::None => None,
        AugmentChoice::Crop => Some(Augment {
            hflip: false,
            crop_padding: 4,
        }),
        AugmentChoice::FlipCrop => Some(Augment {
            hflip: true,
            crop_padding: 4,
        }),
    }
}

/// The ops a model on `dev` runs with: the `--ops` choice on CPU, candle's own elsewhere.
pub fn ops_for(g: &Global, dev: &Device) -> cnn_models::OpsBackend {
    if dev.is_cpu() {
        g.ops
    } else {
        cnn_models::OpsBackend::Candle
    }
}

/// The train/validation split a model's training run recorded in `model.json`, if any.
pub fn recorded_split(meta: &ModelMeta) -> Option<DataSplit> {
    let value = meta.training.as_ref()?.get("split")?;
    serde_json::from_value(value.clone()).ok()
}

/// Refuse a dataset whose class count differs from the model's, naming the model directory.
pub fn check_classes(meta: &ModelMeta, set: &ImageSet, model_path: &Path) -> Result<()> {
    if set.num_classes() != meta.spec.num_classes {
        bail!(
            "{}: the model has {} classes, dataset `{}` has {}",
            model_path.display(),
            meta.spec.num_classes,
            set.name,
            set.num_classes()
        );
    }
    Ok(())
}

/// Refuse images whose shape is not the `[N, C, H, W]` the model takes, naming the input file.
pub fn check_input_shape(x: &Tensor, spec: &cnn_models::ModelSpec, input: &Path) -> Result<()> {
    let expected = [spec.input.channels, spec.input.height, spec.input.width];
    if x.rank() != 4 || x.dims()[1..] != expected {
        bail!(
            "{}: images have shape {:?}, the model expects [N, {}, {}, {}]",
            input.display(),
            x.dims(),
            expected[0],
            expected[1],
            expected[2]
        );
    }
    Ok(())
}

/// Load the modules under `paths` (module directories, or folders of them) with the CLI's device
/// and ops choice, checking they can be composed; with `parent_sha`, that they come from that
/// model.
pub fn load_modules(
    paths: &[PathBuf],
    parent_sha: Option<&str>,
    g: &Global,
) -> Result<Vec<Module>> {
    let dev = device(g.device)?;
    let mut modules = composer::load_modules(paths, parent_sha, &dev)?;
    for m in &mut modules {
        m.model.set_ops(ops_for(g, &dev));
    }
    Ok(modules)
}

/// The model, patched model or composed model at `path`, loaded with the `--device` and
/// `--ops` choice; a class module is refused as a model directory without `model.json`.
pub fn open_runnable(g: &Global, path: &Path) -> Result<(Artifact, Device)> {
    let dev = device(g.device)?;
    if ArtifactKind::of(path) == Some(ArtifactKind::Module) {
        return Err(not_a_model(path));
    }
    let mut artifact = Artifact::open(path, &dev)?;
    artifact.set_ops(ops_for(g, &dev));
    Ok((artifact, dev))
}

/// The error for a path that holds no model (a class module, say) where one is needed.
pub fn not_a_model(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: not a model directory (no model.json)",
        cnn_models::files::model_dir(path).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_device_falls_back_to_the_cpu_loudly_when_cuda_fails_to_start() {
        let (dev, warning) = auto_device(true, || {
            Err(candle_core::Error::Msg("CUDA_ERROR_NO_DEVICE".into()))
        });
        assert!(dev.is_cpu());
        let warning = warning.expect("a failed CUDA start is reported");
        assert!(warning.contains("--device auto"), "{warning}");
        assert!(warning.contains("CUDA_ERROR_NO_DEVICE"), "{warning}");
        assert!(warning.contains("running on the CPU"), "{warning}");
    }

    #[test]
    fn auto_device_on_a_cpu_only_build_is_the_cpu_without_a_warning() {
        let (dev, warning) = auto_device(false, || panic!("a CPU-only build never opens CUDA"));
        assert!(dev.is_cpu());
        assert_eq!(warning, None);
        let (dev, warning) = auto_device(true, || Ok(Device::Cpu));
        assert!(dev.is_cpu());
        assert_eq!(warning, None);
    }
}
