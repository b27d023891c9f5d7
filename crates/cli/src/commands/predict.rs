//! `predict`: scores of a model, patched model or composed model on images from a file or folder.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use cnn_data::{ImageSet, InputFormat};
use cnn_models::files::atomic_write;
use cnn_models::metrics::argmax_rows;
use composer::{score_images, Artifact, ComposedModel, PatchedModel};
use serde_json::json;

use crate::args::*;
use crate::output::print_json;
use crate::setup::{check_input_shape, not_a_model, open_runnable};

/// What `predict` reads: raw images (an IDX file or an image folder), or already-normalised
/// tensors (safetensors `images`).
pub enum PredictInput {
    /// Raw images, to convert with the model's input format.
    Images(ImageSet),
    /// Normalised images `[N, C, H, W]`.
    Normalised(Tensor),
}

/// Read `predict`'s input: a folder of png/jpg images, a safetensors file with `images`, or an
/// IDX image file.
pub fn read_predict_input(path: &Path) -> Result<PredictInput> {
    if path.is_dir() {
        let dir = path
            .canonicalize()
            .with_context(|| format!("{}: unreadable folder", path.display()))?;
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            bail!(
                "{}: cannot read images from the file-system root",
                path.display()
            );
        };
        let set = cnn_data::image_folder::read_image_folder(
            parent,
            &[name.to_string_lossy().to_string()],
            "input",
            None,
        )
        .with_context(|| format!("--input {}", path.display()))?;
        if set.is_empty() {
            bail!("{}: no .png or .jpg images in this folder", path.display());
        }
        return Ok(PredictInput::Images(set));
    }
    let is_safetensors = path
        .extension()
        .map(|e| e == "safetensors")
        .unwrap_or(false);
    if is_safetensors {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
        let images = tensors.get("images").with_context(|| {
            format!(
                "{}: no `images` tensor (expected [N, C, H, W] f32)",
                path.display()
            )
        })?;
        return Ok(PredictInput::Normalised(
            images.to_dtype(candle_core::DType::F32)?,
        ));
    }
    let im = cnn_data::idx::read_idx_images(path)?;
    let shape = cnn_data::ImageShape {
        channels: 1,
        height: im.rows,
        width: im.cols,
    };
    Ok(PredictInput::Images(ImageSet::new(
        "input",
        shape,
        im.pixels,
        vec![0; im.count],
        vec!["image".into()],
    )?))
}

/// Images for `predict` as normalised tensors: raw images are converted with `format`.
pub fn predict_inputs(path: &Path, format: &InputFormat, dev: &Device) -> Result<Tensor> {
    match read_predict_input(path)? {
        PredictInput::Images(set) => {
            let idx: Vec<usize> = (0..set.len()).collect();
            Ok(cnn_data::to_tensor(&set, &idx, format, None, dev)?.0)
        }
        PredictInput::Normalised(x) => Ok(x.to_device(dev)?),
    }
}

/// `cnnsplit predict`: write the scores of a runnable artefact on images from a file or folder.
pub fn predict(g: &Global, a: PredictArgs) -> Result<()> {
    let (artifact, dev) = open_runnable(g, &a.model)?;
    let (model, meta) = match artifact {
        Artifact::Composed(c) => return predict_composed(g, &a, &c),
        Artifact::Patched(p) => {
            let x = predict_inputs(&a.input, &p.meta.input_format, p.model.device())?;
            check_input_shape(&x, p.model.spec(), &a.input)?;
            return predict_patched(g, &a, &x, &p);
        }
        Artifact::Model(model, meta) => (model, meta),
        Artifact::Module(_) => return Err(not_a_model(&a.model)),
    };
    let x = predict_inputs(&a.input, &meta.input_format, &dev)?;
    check_input_shape(&x, model.spec(), &a.input)?;
    let logits = model.predict_logits(&x, a.batch_size)?;
    let n = model.spec().num_classes;
    let values: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    let preds = argmax_rows(&values, n);
    let mut map = std::collections::BTreeMap::new();
    map.insert("logits".to_string(), logits.to_device(&Device::Cpu)?);
    let bytes = cnn_models::weights::safetensors_bytes(&map, &[])?;
    atomic_write(&a.output, &bytes)?;
    if g.json {
        let classes: Vec<&str> = preds
            .iter()
            .map(|&p| meta.class_names[p as usize].as_str())
            .collect();
        print_json(
            &json!({"output": a.output, "images": preds.len(), "predicted": preds, "predicted_names": classes}),
        );
    } else {
        println!(
            "wrote logits of {} images to {}",
            preds.len(),
            a.output.display()
        );
    }
    Ok(())
}

/// `predict` with a patched-model directory: writes the patched scores `[N, classes]`.
pub fn predict_patched(
    g: &Global,
    a: &PredictArgs,
    x: &candle_core::Tensor,
    p: &PatchedModel,
) -> Result<()> {
    let n = p.model.spec().num_classes;
    let scores = p.scores(x, a.batch_size)?;
    let preds = argmax_rows(&scores, n);
    let rows = scores.len() / n.max(1);
    let t = candle_core::Tensor::from_vec(
        scores.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
        (rows, n),
        &candle_core::Device::Cpu,
    )?;
    let mut map = std::collections::BTreeMap::new();
    map.insert("scores".to_string(), t);
    let bytes = cnn_models::weights::safetensors_bytes(&map, &[])?;
    cnn_models::files::atomic_write(&a.output, &bytes)?;
    if g.json {
        let names: Vec<&str> = preds
            .iter()
            .map(|&c| p.meta.class_names[c as usize].as_str())
            .collect();
        print_json(
            &serde_json::json!({"output": a.output, "images": preds.len(), "predicted": preds,
            "predicted_names": names, "patched": true}),
        );
    } else {
        println!(
            "wrote patched scores of {} images to {} (tensor `scores`: softmax with class `{}` replaced by the module's calibrated score)",
            preds.len(),
            a.output.display(),
            p.manifest.target_class
        );
    }
    Ok(())
}

/// `predict` with a composed model: writes the module scores `[N, classes]` as `scores`.
pub fn predict_composed(g: &Global, a: &PredictArgs, c: &ComposedModel) -> Result<()> {
    let k = c.num_classes();
    let scores = match read_predict_input(&a.input)? {
        PredictInput::Images(set) => {
            let idx: Vec<usize> = (0..set.len()).collect();
            score_images(&c.modules, &set, &idx, a.batch_size)
                .with_context(|| a.input.display().to_string())?
        }
        PredictInput::Normalised(x) => {
            let spec = c.modules[0].model.spec();
            check_input_shape(&x, spec, &a.input)?;
            c.scores(&x, a.batch_size)
                .with_context(|| a.input.display().to_string())?
        }
    };
    let preds = argmax_rows(&scores, k);
    let rows = preds.len();
    let t = candle_core::Tensor::from_vec(scores, (rows, k), &candle_core::Device::Cpu)?;
    let mut map = std::collections::BTreeMap::new();
    map.insert("scores".to_string(), t);
    let bytes = cnn_models::weights::safetensors_bytes(&map, &[])?;
    cnn_models::files::atomic_write(&a.output, &bytes)?;
    let names = c.class_names();
    if g.json {
        let classes: Vec<&str> = preds.iter().map(|&p| names[p as usize].as_str()).collect();
        print_json(
            &serde_json::json!({"output": a.output, "images": rows, "predicted": preds,
            "predicted_names": classes, "composed": true}),
        );
    } else {
        println!(
            "wrote composed scores of {rows} images to {}",
            a.output.display()
        );
    }
    Ok(())
}
