//! `demo`: the main job on the bundled data — train, decompose, compose, patch — through the
//! library crates, with a summary.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use cnn_data::InputFormat;
use cnn_models::files::atomic_write;
use cnn_models::metrics::{argmax_rows, Evaluation};
use cnn_models::train::DataSplit;
use cnn_models::training_run::TrainRun;
use cnn_models::{Resume, TrainConfig};
use composer::PatchConfig;
use serde_json::json;

use super::decompose::grad::decompose_grad;
use super::decompose::target::DecomposeTarget;
use super::patch::{patch_model, print_patch_report, PatchInputs};
use super::train::run_training;
use crate::args::*;
use crate::output::{pct, print_json};
use crate::setup::{device, load_data, load_modules, ops_for, resolve_spec};

/// `cnnsplit demo`: train, decompose, compose and patch on the bundled data; writes `demo.json`.
pub fn demo(g: &Global, a: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let out: PathBuf = a.out.clone();
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .with_context(|| format!("clearing the previous demo in {}", out.display()))?;
    }
    if !g.quiet {
        eprintln!(
            "cnnsplit demo on the bundled Fashion-MNIST subset ({}):\n  1. train a SimCNN (width {})\n  2. split it into 10 class modules with GradSplitter (short schedule)\n  3. compose the modules and compare with the model\n  4. train a small weak model and patch its weakest class with a module",
            cnn_data::bundled_dataset_dir().display(),
            a.width
        );
    }
    let dev = device(g.device)?;
    let ops = ops_for(g, &dev);
    let (dspec, data) = load_data("fashion-mnist")?;
    let format = InputFormat::for_dataset(dspec.kind);
    let classes = data.train.num_classes();
    let model_dir = out.join("model");
    let config = TrainConfig {
        epochs: a.epochs,
        batch_size: 64,
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 1e-4,
        lr_milestones: vec![],
        lr_gamma: 0.1,
        augment: None,
        seed: a.seed,
        eval_batch: 256,
        patience: 0,
        min_epochs: 0,
    };
    let run = TrainRun {
        spec: resolve_spec("simcnn", a.width, &format, classes)?,
        dataset: dspec.to_string(),
        data: &data,
        format: format.clone(),
        split: DataSplit::Holdout {
            val_fraction: 0.1,
            limit: None,
        },
        config: config.clone(),
        out: &model_dir,
        resume: Resume::Fresh,
        ops,
        device: &dev,
    };
    let report = run_training(g, &run, a.width)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let modules_dir = out.join("modules");
    let split_config = splitter_grad::GradSplitConfig {
        warmup_epochs: 2,
        mask_epochs: a.split_epochs,
        pattern_mask: 3,
        pattern_head: 1,
        mask_lr: 0.05,
        head_lr: 0.005,
        seed: a.seed,
        ..Default::default()
    };
    let target = DecomposeTarget {
        model: &model_dir,
        dataset: None,
        out: &modules_dir,
        limit: Some(a.split_images),
        resume: false,
    };
    let record = decompose_grad(g, &target, &split_config)?.record;
    let modules = load_modules(
        std::slice::from_ref(&modules_dir),
        Some(record.model_sha256.as_str()),
        g,
    )?;
    let all: Vec<usize> = (0..data.test.len()).collect();
    let scores = composer::score_images(&modules, &data.test, &all, 256)?;
    let preds = argmax_rows(&scores, modules.len());
    let labels: Vec<u32> = data.test.labels.iter().map(|&l| l as u32).collect();
    let composed = Evaluation::new(&labels, &preds, modules.len());
    let model_acc = report["test_accuracy"].as_f64().unwrap_or(0.0);
    let kernels: Vec<u64> = modules.iter().map(|m| m.meta.kernels as u64).collect();
    let mean_krr = modules.iter().map(|m| m.meta.krr).sum::<f64>() / modules.len().max(1) as f64;
    // 4. a weak model (the small SimCNNWeak, 3 epochs on a fifth of the images), patched on its
    // weakest class
    let weak_dir = out.join("weak-model");
    let weak_run = TrainRun {
        spec: resolve_spec("simcnn-weak", 1.0, &format, classes)?,
        split: DataSplit::Holdout {
            val_fraction: 0.1,
            limit: Some(1200),
        },
        config: TrainConfig {
            epochs: 3,
            lr: 0.02,
            ..config
        },
        out: &weak_dir,
        ..run
    };
    let weak_report = run_training(g, &weak_run, 1.0)?;
    let weak_f1: Vec<f64> = weak_report["test_per_class"]
        .as_array()
        .map(|v| v.iter().map(|c| c["f1"].as_f64().unwrap_or(0.0)).collect())
        .unwrap_or_default();
    let weakest = (0..weak_f1.len())
        .min_by(|&x, &y| weak_f1[x].total_cmp(&weak_f1[y]))
        .unwrap_or(0);
    let patched_dir = out.join("patched");
    let module_dir = modules_dir.join(format!("module_{weakest}"));
    let patch_inputs = PatchInputs {
        model: &weak_dir,
        module: &module_dir,
        dataset: None,
        out: Some(&patched_dir),
    };
    let patch_config = PatchConfig {
        target: Some(weakest.to_string()),
        calibration: composer::CalibrationKind::MinMax,
        clip: false,
        force: false,
        batch_size: 256,
    };
    let (patch_report, patch_summary) = patch_model(g, &patch_inputs, &patch_config)?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "model": report, "decomposition": record.to_json_value()?, "composed_test_accuracy": composed.accuracy,
        "module_kernels": kernels, "mean_krr": mean_krr, "train_seconds": train_seconds,
        "weak_model": weak_report, "patch": patch_summary, "total_seconds": seconds,
    });
    atomic_write(
        &out.join("demo.json"),
        &serde_json::to_vec_pretty(&summary)?,
    )?;
    if g.json {
        print_json(&summary);
    } else {
        println!("\n== cnnsplit demo summary ==");
        println!(
            "model        {} (SimCNN width {}, {} params, {} conv kernels)",
            model_dir.display(),
            a.width,
            report["params"],
            report["kernels"]
        );
        println!(
            "training     {} epochs, best epoch {} (validation {}), {train_seconds:.0} s",
            a.epochs,
            report["best_epoch"],
            pct(report["best_val_accuracy"].as_f64().unwrap_or(0.0))
        );
        println!(
            "modules      {} in {} (GradSplitter, chosen epoch {}, {:.0} s)",
            modules.len(),
            modules_dir.display(),
            record.method_fields.chosen_epoch,
            record.seconds
        );
        println!(
            "kernels      per module {:?} of {}, mean retention {}",
            kernels,
            report["kernels"],
            pct(mean_krr)
        );
        println!(
            "test         model {} → composed modules {} on {} images ({:+.2} pp)",
            pct(model_acc),
            pct(composed.accuracy),
            composed.samples,
            100.0 * (composed.accuracy - model_acc)
        );
        println!(
            "weak model   {} (SimCNNWeak, 3 epochs on 1,200 images): test accuracy {}",
            weak_dir.display(),
            pct(weak_report["test_accuracy"].as_f64().unwrap_or(0.0))
        );
        print_patch_report(
            &patch_report,
            patch_summary["target_class"].as_str().unwrap_or(""),
            "the bundled data",
        );
        println!(
            "patched      {} (runs with eval and predict)",
            patched_dir.display()
        );
        println!("time         {seconds:.0} s in all");
        println!(
            "next         cnnsplit compose --modules {} --model {}",
            modules_dir.display(),
            model_dir.display()
        );
    }
    Ok(())
}
