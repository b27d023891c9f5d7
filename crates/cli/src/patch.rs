//! `patch`, and running patched-model directories in `eval` and `predict`.

use std::path::Path;

use anyhow::{bail, Result};
use cnn_data::ImageSet;
use cnn_models::module::{load_module, module_dir};
use composer::{
    check_same_input, load_patched, module_calibration, patch_and_report, save_patched,
    target_column, PatchManifest, PatchReport, PatchRule, PatchedModel, PATCH_FORMAT,
    PATCH_FORMAT_VERSION, PATCH_MANIFEST,
};
use serde_json::json;

use crate::args::*;
use crate::commands::{device, load_data, ops_for, pct, print_json};

/// Whether `dir` is a patched-model directory.
pub fn is_patched(dir: &Path) -> bool {
    dir.join(PATCH_MANIFEST).exists()
}

/// Load a patched-model directory with the CLI's device and ops choice.
pub fn load(g: &Global, dir: &Path) -> Result<PatchedModel> {
    let dev = device(g.device)?;
    let mut p = load_patched(dir, &dev)?;
    let ops = ops_for(g, &dev);
    p.model.set_ops(ops);
    p.module.model.set_ops(ops);
    Ok(p)
}

/// Patched predictions of `indices` of `set`.
pub fn patched_predictions(
    p: &PatchedModel,
    set: &ImageSet,
    indices: &[usize],
    batch: usize,
) -> Result<Vec<u32>> {
    let n = p.model.spec().num_classes;
    let mut preds = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(batch.max(1)) {
        let (x, _) = cnn_data::to_tensor(set, chunk, &p.meta.input_format, None, p.model.device())?;
        let scores = p.scores(&x, batch)?;
        preds.extend(composer::row_argmax(&scores, n));
    }
    Ok(preds)
}

pub fn patch(g: &Global, a: PatchArgs) -> Result<()> {
    let (report, summary) = patch_model(g, &a)?;
    if g.json {
        print_json(&summary);
        return Ok(());
    }
    print_patch_report(
        &report,
        summary["target_class"].as_str().unwrap_or(""),
        summary["dataset"].as_str().unwrap_or(""),
    );
    println!(
        "patch cost: the module adds {} MACs per image ({} of the weak model's)",
        summary["module_macs"],
        pct(summary["mac_overhead"].as_f64().unwrap_or(0.0))
    );
    if let Some(out) = &a.out {
        println!("wrote the patched model to {}", out.display());
    }
    Ok(())
}

/// Patch a weak model with a module, evaluate on the test split, optionally save the patched
/// model; returns the report and a JSON summary.
pub fn patch_model(g: &Global, a: &PatchArgs) -> Result<(PatchReport, serde_json::Value)> {
    if let Some(out) = a.out.as_ref().filter(|o| is_patched(o)) {
        bail!(
            "{} already holds a patched model: choose another --out or delete it",
            out.display()
        );
    }
    if let Some(out) = &a.out {
        // temp files of a patch that was killed mid-write are never read; clear them away
        cnn_models::files::remove_stale_temp_files(out, 1)?;
    }
    let dev = device(g.device)?;
    let (mut model, meta) = cnn_models::load_model(&a.model, &dev)?;
    let mdir = module_dir(&a.module);
    let mut module = load_module(&mdir, None, &dev)?;
    let ops = ops_for(g, &dev);
    model.set_ops(ops);
    module.model.set_ops(ops);
    check_same_input(&meta, &module)
        .map_err(|e| anyhow::anyhow!("{} and {}: {e}", a.model.display(), mdir.display()))?;
    let column = target_column(&meta, &module, a.target.as_deref())?;
    let calibration = module_calibration(&module, a.calibration == CalibrationChoice::Minmax)?;
    let rule = PatchRule {
        target_column: column,
        calibration,
        clip: a.clip,
    };
    let dataset = a.dataset.clone().unwrap_or_else(|| meta.dataset.clone());
    let (dspec, data) = load_data(&dataset)?;
    let classes = meta.spec.num_classes;
    if data.test.num_classes() != classes {
        bail!(
            "{}: the weak model has {classes} classes, dataset `{dspec}` has {}",
            a.model.display(),
            data.test.num_classes()
        );
    }
    let indices: Vec<usize> = (0..data.test.len()).collect();
    let logits: Vec<f32> = {
        let mut all = Vec::with_capacity(indices.len() * classes);
        for chunk in indices.chunks(a.batch_size.max(1)) {
            let (x, _) = cnn_data::to_tensor(&data.test, chunk, &meta.input_format, None, &dev)?;
            let l = model.predict_logits(&x, a.batch_size)?;
            all.extend(l.flatten_all()?.to_vec1::<f32>()?);
        }
        all
    };
    let scores = composer::score_images(
        std::slice::from_ref(&module),
        &data.test,
        &indices,
        a.batch_size,
    )?;
    let labels: Vec<u32> = data.test.labels.iter().map(|&l| l as u32).collect();
    let (_, report) = patch_and_report(&labels, &logits, classes, &scores, &rule)?;
    let overhead = module.meta.macs as f64 / model.analysis().macs().max(1) as f64;
    if let Some(out) = &a.out {
        let manifest = PatchManifest {
            format: PATCH_FORMAT.into(),
            format_version: PATCH_FORMAT_VERSION,
            rule,
            target_class: meta.class_names[column].clone(),
            model_sha256: meta.weights_sha256.clone(),
            module_sha256: module.meta.weights_sha256.clone(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
        };
        save_patched(out, &a.model, &mdir, &manifest)?;
    }
    let summary = json!({
        "model": a.model, "module": mdir, "dataset": dspec.to_string(),
        "target_class": meta.class_names[column], "rule": rule, "report": report,
        "module_macs": module.meta.macs, "model_macs": model.analysis().macs(),
        "mac_overhead": overhead, "out": a.out,
    });
    Ok((report, summary))
}

/// Print a patch report as a before/after table.
pub fn print_patch_report(r: &PatchReport, class: &str, dataset: &str) {
    println!(
        "patching class `{class}` on the test split of {dataset} ({} images, {} of the class)",
        r.images, r.target_images
    );
    println!("{:<22} {:>9} {:>9} {:>10}", "", "before", "after", "change");
    for (name, m) in [
        ("target precision", &r.precision),
        ("target recall", &r.recall),
        ("target F1", &r.f1),
        ("other-class accuracy", &r.non_target_accuracy),
    ] {
        println!(
            "{name:<22} {:>9} {:>9} {:>+9.2}pp",
            pct(m.before),
            pct(m.after),
            m.delta_pp
        );
    }
}

/// `eval` of a patched-model directory: the patched predictions on a split.
pub fn eval_patched(g: &Global, a: &EvalArgs) -> Result<()> {
    let p = load(g, &a.model)?;
    let dataset = a.dataset.clone().unwrap_or_else(|| p.meta.dataset.clone());
    let (dspec, data) = load_data(&dataset)?;
    let n = p.model.spec().num_classes;
    if data.test.num_classes() != n {
        bail!(
            "{}: the patched model has {n} classes, dataset `{dspec}` has {}",
            a.model.display(),
            data.test.num_classes()
        );
    }
    let (set, indices): (&ImageSet, Vec<usize>) = match a.split {
        SplitChoice::Test => (&data.test, (0..data.test.len()).collect()),
        SplitChoice::Val | SplitChoice::Train => {
            let split = crate::commands::recorded_split(&p.meta).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: model.json records no training split",
                    a.model.display()
                )
            })?;
            let (tr, va) = split.indices(&data.train, p.meta.seed.unwrap_or(0))?;
            (
                &data.train,
                if a.split == SplitChoice::Val { va } else { tr },
            )
        }
    };
    let preds = patched_predictions(&p, set, &indices, a.batch_size)?;
    let labels: Vec<u32> = indices.iter().map(|&i| set.labels[i] as u32).collect();
    let ev = cnn_models::metrics::Evaluation::new(&labels, &preds, n);
    if g.json {
        print_json(
            &json!({"model": a.model, "patched": true, "dataset": dspec.to_string(),
            "split": format!("{:?}", a.split).to_lowercase(), "class_names": p.meta.class_names,
            "evaluation": ev}),
        );
    } else {
        println!(
            "patched model (class `{}` from module {})",
            p.manifest.target_class, p.module.meta.class_name
        );
        crate::commands::print_evaluation(&ev, &p.meta.class_names);
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
    let preds = composer::row_argmax(&scores, n);
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
            &json!({"output": a.output, "images": preds.len(), "predicted": preds,
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
