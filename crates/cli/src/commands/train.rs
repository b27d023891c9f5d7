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

/// `cnnsplit import`: a PyTorch state_dict (safetensors) into a model directory.
pub fn import(g: &Global, a: ImportArgs) -> Result<()> {
    let dev = device(g.device)?;
    let dspec: DatasetSpec = a
        .dataset
        .parse()
        .with_context(|| format!("--dataset {}", a.dataset))?;
    let format = InputFormat::for_dataset(dspec.kind);
    let class_names = dspec
        .kind
        .class_names()
        .filter(|n| n.len() == a.num_classes)
        .unwrap_or_else(|| (0..a.num_classes).map(|c| c.to_string()).collect());
    let spec = resolve_spec(&a.arch.arch, a.arch.width, &format, a.num_classes)?;
    let model = cnn_models::files::import_state_dict(&a.weights, spec.clone(), &dev)?;
    let mut meta = ModelMeta::new(spec, format, dspec.to_string(), class_names);
    meta.training = Some(json!({"imported_from": a.weights}));
    let sha = cnn_models::save_model(&a.out, &model, &meta)?;
    if g.json {
        print_json(
            &json!({"model": a.out, "weights_sha256": sha, "tensors": model.tensors().len()}),
        );
    } else {
        println!(
            "imported {} tensors from {} into {}",
            model.tensors().len(),
            a.weights.display(),
            a.out.display()
        );
    }
    Ok(())
}
