//! `patch`, and running patched-model directories in `eval` and `predict`: arguments in,
//! [`composer::PatchJob`] and [`composer::PatchedModel`] do the work, tables and JSON out.

use anyhow::{anyhow, bail, Result};
use cnn_data::ImageSet;
use cnn_models::metrics::argmax_rows;
use cnn_models::module::{load_module, module_dir};
use composer::{is_patched, ComposerError, PatchConfig, PatchJob, PatchReport, PatchedModel};

use crate::args::*;
use crate::commands::{device, load_data, ops_for, pct, print_json};

/// A library error with the command-line flag that fixes it named, as the CLI words it.
fn with_flag_hint(e: ComposerError) -> anyhow::Error {
    match e {
        e @ ComposerError::ModuleClassNotInModel { .. } => {
            anyhow!("{e}; pass --target to choose the column it replaces")
        }
        ComposerError::NoCalibrationRange { class } => anyhow!(
            "module `{class}` has no calibration range (decompose again, or patch with --calibration none)"
        ),
        ComposerError::AlreadyPatched { dir } => anyhow!(
            "{} already holds a patched model: choose another --out or delete it",
            dir.display()
        ),
        e => e.into(),
    }
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
        return Err(with_flag_hint(ComposerError::AlreadyPatched {
            dir: out.clone(),
        }));
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
    let cfg = PatchConfig {
        target: a.target.clone(),
        calibrate: a.calibration == CalibrationChoice::Minmax,
        clip: a.clip,
        batch_size: a.batch_size,
    };
    let job =
        PatchJob::new(&a.model, (&model, &meta), &mdir, &module, &cfg).map_err(|e| match e {
            e @ ComposerError::DifferentInputs { .. } => {
                anyhow!("{} and {}: {e}", a.model.display(), mdir.display())
            }
            e => with_flag_hint(e),
        })?;
    let dataset = a.dataset.clone().unwrap_or_else(|| meta.dataset.clone());
    let (dspec, data) = load_data(&dataset)?;
    let mut summary = job.measure(&dspec.to_string(), &data.test, a.batch_size)?;
    if let Some(out) = &a.out {
        job.save(out).map_err(with_flag_hint)?;
        summary.out = Some(out.clone());
    }
    Ok((summary.report.clone(), serde_json::to_value(&summary)?))
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
pub fn eval_patched(g: &Global, a: &EvalArgs, p: &PatchedModel) -> Result<()> {
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
                anyhow!(
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
    let ev = p.evaluate(set, &indices, a.batch_size)?;
    if g.json {
        print_json(
            &serde_json::json!({"model": a.model, "patched": true, "dataset": dspec.to_string(),
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
