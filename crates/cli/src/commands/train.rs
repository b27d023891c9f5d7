//! `train` and `import`: a model from a training run, or from a PyTorch state_dict.

use anyhow::{bail, Context, Result};
use cnn_data::{DatasetSpec, InputFormat};
use cnn_models::files::ModelMeta;
use cnn_models::train::DataSplit;
use cnn_models::training_run::{train_and_save, TrainRun};
use cnn_models::TrainConfig;
use serde_json::json;

use crate::args::*;
use crate::output::{pct, print_json};
use crate::progress::TrainProgress;
use crate::setup::{augment_for, device, load_data, ops_for, resolve_spec};

/// `cnnsplit train`: train, evaluate and save a model, then print a one-line summary or JSON.
pub fn train(g: &Global, a: TrainArgs) -> Result<()> {
    let report = train_model(g, &a)?;
    if g.json {
        print_json(&report);
    } else {
        let stopped = if report["stopped_early"].as_bool().unwrap_or(false) {
            format!(
                ", stopped early after {} of {} epochs",
                report["epochs_run"], a.epochs
            )
        } else {
            String::new()
        };
        println!(
            "trained {} → {}: best epoch {} (val {}){stopped}, test accuracy {} on {} images",
            report["arch"].as_str().unwrap_or(""),
            a.out.display(),
            report["best_epoch"],
            pct(report["best_val_accuracy"].as_f64().unwrap_or(0.0)),
            pct(report["test_accuracy"].as_f64().unwrap_or(0.0)),
            report["test_images"]
        );
    }
    Ok(())
}

/// Train, evaluate on the test split, save; returns a JSON summary.
pub fn train_model(g: &Global, a: &TrainArgs) -> Result<serde_json::Value> {
    let dev = device(g.device)?;
    let (dspec, data) = load_data(&a.dataset)?;
    let format = InputFormat::for_dataset(dspec.kind);
    let spec = resolve_spec(
        &a.arch.arch,
        a.arch.width,
        &format,
        data.train.num_classes(),
    )?;
    let split = match a.estimator {
        Some(seed) => DataSplit::Estimator {
            seed,
            alpha: a.dirichlet_alpha,
            min_size: a.min_size,
        },
        None => DataSplit::Holdout {
            val_fraction: a.val_fraction,
            limit: a.limit,
        },
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        lr_milestones: a.milestones.clone(),
        lr_gamma: 0.1,
        augment: augment_for(a.augment, dspec.kind),
        seed: a.seed,
        eval_batch: 256,
        patience: a.patience,
        min_epochs: a.min_epochs,
    };
    if a.out.join(cnn_models::files::META_FILE).exists() && !a.resume {
        bail!(
            "{} already holds a model: choose another --out, delete it, or pass --resume",
            a.out.display()
        );
    }
    let run = TrainRun {
        spec,
        dataset: dspec.to_string(),
        data: &data,
        format,
        split,
        config: cfg,
        out: &a.out,
        resume: cnn_models::Resume::continue_if(a.resume),
        ops: ops_for(g, &dev),
        device: &dev,
    };
    run_training(g, &run, a.arch.width)
}

/// Train `run` with progress on the terminal (after a line saying what is trained on what),
/// and summarise the result as `train --json` prints it; `width` is the architecture's width
/// multiplier, for the summary.
pub fn run_training(g: &Global, run: &TrainRun<'_>, width: f64) -> Result<serde_json::Value> {
    if !g.quiet {
        let an = run.spec.analyse()?;
        let (train_idx, val_idx) = run.parts()?;
        let epochs = match run.config.patience {
            0 => format!("{} epochs", run.config.epochs),
            p => format!(
                "up to {} epochs (early stop: patience {p}, at least {} epochs)",
                run.config.epochs, run.config.min_epochs
            ),
        };
        eprintln!(
            "training {} (width {}, {} params, {} kernels) on {}: {} train / {} val images, {epochs}",
            run.spec.name,
            width,
            an.params(),
            an.total_kernels(),
            run.dataset,
            train_idx.len(),
            val_idx.len(),
        );
    }
    let mut progress = TrainProgress::new(g.quiet);
    let trained = train_and_save(run, &mut |e| progress.event(e))?;
    Ok(trained.summary_json(run.out, width))
}

/// `cnnsplit import`: a PyTorch state_dict (safetensors) or an ONNX model into a model
/// directory.
pub fn import(g: &Global, a: ImportArgs) -> Result<()> {
    let dev = device(g.device)?;
    let dspec: DatasetSpec = a
        .dataset
        .parse()
        .with_context(|| format!("--dataset {}", a.dataset))?;
    let (model, format, source) = match (&a.onnx, &a.weights) {
        (Some(file), _) => {
            let (model, summary) = onnx_import::import_onnx(file, &dev)?;
            let classes = model.spec().num_classes;
            if let Some(n) = a.num_classes.filter(|n| *n != classes) {
                bail!(
                    "--num-classes {n}: {} has {classes} classes (its last layer's outputs)",
                    file.display()
                );
            }
            let format = onnx_import::input_format(file, model.spec(), dspec.kind)?;
            let source = json!({"imported_from": file, "onnx": summary});
            (model, format, source)
        }
        (None, Some(weights)) => {
            let format = InputFormat::for_dataset(dspec.kind);
            let classes = a.num_classes.unwrap_or(10);
            let spec = resolve_spec(&a.arch.arch, a.arch.width, &format, classes)?;
            let model = cnn_models::files::import_state_dict(weights, spec, &dev)?;
            (model, format, json!({"imported_from": weights}))
        }
        (None, None) => bail!("give --onnx FILE, or --weights FILE with --arch"),
    };
    let classes = model.spec().num_classes;
    let class_names = dspec
        .kind
        .class_names()
        .filter(|n| n.len() == classes)
        .unwrap_or_else(|| (0..classes).map(|c| c.to_string()).collect());
    let mut meta = ModelMeta::new(model.spec().clone(), format, dspec.to_string(), class_names);
    let mut training = source.clone();
    if let Some(n) = a.val_last {
        // check it against the training split now rather than at the first decomposition
        let (_, data) = load_data(&a.dataset)?;
        let split = DataSplit::Last { val_images: n };
        split
            .indices(&data.train, 0)
            .with_context(|| format!("--val-last {n}"))?;
        training["split"] = serde_json::to_value(&split)?;
    }
    meta.training = Some(training);
    let sha = cnn_models::save_model(&a.out, &model, &meta)?;
    let analysis = model.analysis();
    let from = a
        .onnx
        .as_ref()
        .or(a.weights.as_ref())
        .expect("one is given");
    if g.json {
        let mut out = json!({
            "model": a.out,
            "arch": model.spec().name,
            "weights_sha256": sha,
            "tensors": model.tensors().len(),
            "convs": analysis.convs.len(),
            "kernels": analysis.total_kernels(),
            "classes": classes,
        });
        if let Some(s) = source.get("onnx") {
            out["onnx"] = s.clone();
        }
        print_json(&out);
    } else {
        let how = match source.get("onnx") {
            Some(s) => format!(
                " ({}opset {}, {} nodes, {})",
                s["producer"]
                    .as_str()
                    .filter(|p| !p.is_empty())
                    .map(|p| format!("{p}, "))
                    .unwrap_or_default(),
                s["opset"],
                s["nodes"],
                match s["batch_norms"].as_u64() {
                    Some(0) => "BatchNorm folded".to_string(),
                    Some(n) => format!("{n} BatchNorms kept"),
                    None => String::new(),
                }
            ),
            None => String::new(),
        };
        println!(
            "imported {}{how} into {}: {} convs, {} kernels, {} classes, {} tensors",
            from.display(),
            a.out.display(),
            analysis.convs.len(),
            analysis.total_kernels(),
            classes,
            model.tensors().len(),
        );
    }
    Ok(())
}
