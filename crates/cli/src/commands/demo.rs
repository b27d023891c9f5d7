//! `demo`: the main job on the bundled data — train, decompose, compose, patch — through the
//! library crates, with a summary.

use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use cnn_data::InputFormat;
use cnn_models::files::atomic_write;
use cnn_models::metrics::{argmax_rows, Evaluation};
use cnn_models::module::load_module;
use cnn_models::train::DataSplit;
use cnn_models::training_run::TrainRun;
use cnn_models::{Resume, TrainConfig};
use composer::{PatchConfig, PatchJob};
use serde::Serialize;
use serde_json::{json, Value};

use super::decompose::grad::decompose_grad;
use super::decompose::target::DecomposeTarget;
use super::patch::print_patch_report;
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
            "cnnsplit demo on the bundled Fashion-MNIST subset ({}):\n  1. train a SimCNN (width {})\n  2. split it into 10 class modules with GradSplitter (short schedule, λ = {DEMO_LAMBDA})\n  3. compose the modules and compare with the model\n  4. train a small weak model and patch its weakest class with a module (percentile calibration {}–{})",
            cnn_data::bundled_dataset_dir().display(),
            a.width,
            PATCH_PERCENTILES.0,
            PATCH_PERCENTILES.1
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
    let split_config = demo_split_config(a.split_epochs, a.seed);
    let target = DecomposeTarget {
        model: &model_dir,
        dataset: None,
        out: &modules_dir,
        limit: Some(a.split_images),
        limit_sampling: LimitSampling::Auto,
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
    let (weak_model, weak_meta) = {
        let (mut m, meta) = cnn_models::load_model(&weak_dir, &dev)?;
        m.set_ops(ops);
        (m, meta)
    };
    let mut module = load_module(&module_dir, None, &dev)?;
    module.model.set_ops(ops);
    let patch_config = PatchConfig {
        target: Some(weakest.to_string()),
        calibration: composer::CalibrationKind::Percentile {
            lo: PATCH_PERCENTILES.0,
            hi: PATCH_PERCENTILES.1,
        },
        clip: false,
        force: false,
        batch_size: 256,
    };
    let job = PatchJob::new(
        &weak_dir,
        (&weak_model, &weak_meta),
        &module_dir,
        &module,
        &patch_config,
    )?;
    let calibration = job.rule.calibration;
    let patch_measured = job.measure("fashion-mnist", &data.test, patch_config.batch_size)?;
    job.save(&patched_dir)?;
    let patch_report = patch_measured.report.clone();
    let mut patch_summary = serde_json::to_value(&patch_measured)?;
    patch_summary["out"] = json!(patched_dir);
    patch_summary["calibration_rule"] = json!(format!(
        "percentile {}–{} of the module's scores on its class's validation images",
        PATCH_PERCENTILES.0, PATCH_PERCENTILES.1
    ));
    let seconds = started.elapsed().as_secs_f64();
    let targets = demo_targets(&DemoMeasurements {
        mean_krr,
        model_accuracy: model_acc,
        composed_accuracy: composed.accuracy,
        other_class_change_pp: patch_report.non_target_accuracy.delta_pp,
        seconds,
    });
    let summary = json!({
        "model": report, "decomposition": record.to_json_value()?, "composed_test_accuracy": composed.accuracy,
        "module_kernels": kernels, "mean_krr": mean_krr, "train_seconds": train_seconds,
        "weak_model": weak_report, "patch": patch_summary, "total_seconds": seconds,
        "targets": targets,
    });
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let summary = portable_paths(summary, &cwd);
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
        println!(
            "calibration  the module's score, percentile range {}–{} of its scores on its class's validation images ({:.4}–{:.4})",
            PATCH_PERCENTILES.0,
            PATCH_PERCENTILES.1,
            calibration.range().map_or(0.0, |r| r.0),
            calibration.range().map_or(0.0, |r| r.1)
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
        println!("targets");
        for t in &targets {
            println!(
                "  {:<4} {:<52} measured {}",
                if t.met { "met" } else { "MISS" },
                t.target,
                t.measured
            );
        }
        println!(
            "next         cnnsplit compose --modules {} --model {}",
            modules_dir.display(),
            model_dir.display()
        );
    }
    Ok(())
}

/// λ of the demo's GradSplitter run: 10× the paper's 0.1, so that the short schedule removes
/// kernels (with 0.1 the modules kept 92 % of them, with 0.5 78 %; docs/results/gs-settings/).
const DEMO_LAMBDA: f64 = 1.0;

/// Percentiles (lo, hi) of the module's scores on its class's validation images that the demo's
/// patch maps to 0 and 1 (design §7). Min–max (0, 100) let the module's class win on many
/// images of similar classes (the other classes lost 7.6 pp); a lower bound at the 25th
/// percentile keeps most of the class's images and few others.
pub const PATCH_PERCENTILES: (f64, f64) = (25.0, 100.0);

/// The GradSplitter settings of the demo: 2 warm-up epochs, then `split_epochs` epochs in a
/// [2 mask, 2 head] pattern, λ = [`DEMO_LAMBDA`], mask lr 0.05 with the heads at 0.005 in mask
/// phases too (`mask_phase_head_lr`), head lr 0.005, batch 32.
///
/// ```ignore
/// let c = demo_split_config(8, 0);
/// assert_eq!(c.schedule().len(), 10);
/// ```
pub fn demo_split_config(split_epochs: usize, seed: u64) -> splitter_grad::GradSplitConfig {
    splitter_grad::GradSplitConfig {
        warmup_epochs: 2,
        mask_epochs: split_epochs,
        pattern_mask: 2,
        pattern_head: 2,
        mask_lr: 0.05,
        head_lr: 0.005,
        mask_phase_head_lr: Some(0.005),
        lambda: DEMO_LAMBDA,
        batch_size: 32,
        tolerance: 0.02,
        seed,
        ..Default::default()
    }
}

/// What the demo measured, for its targets ([`demo_targets`]).
#[derive(Clone, Copy, Debug)]
pub struct DemoMeasurements {
    /// Mean kernel retention rate of the modules (fraction).
    pub mean_krr: f64,
    /// The model's test accuracy (fraction).
    pub model_accuracy: f64,
    /// The composed modules' test accuracy (fraction).
    pub composed_accuracy: f64,
    /// Change of the patched model's accuracy on the other classes' test images, in pp.
    pub other_class_change_pp: f64,
    /// Wall-clock seconds of the whole demo.
    pub seconds: f64,
}

/// One target of the demo, checked against what it measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DemoTarget {
    /// What is aimed at, in words with the limit.
    pub target: String,
    /// The measured value, in words.
    pub measured: String,
    /// Whether the measurement meets the target.
    pub met: bool,
}

/// The demo's targets: modules' mean KRR ≤ 70 %; composed test accuracy at most 1.5 pp below
/// the model's; the patch costs the other classes at most 2 pp of accuracy; at most 300 s.
///
/// ```ignore
/// let t = demo_targets(&DemoMeasurements { mean_krr: 0.6, model_accuracy: 0.85,
///     composed_accuracy: 0.84, other_class_change_pp: -1.0, seconds: 250.0 });
/// assert!(t.iter().all(|t| t.met));
/// ```
pub fn demo_targets(m: &DemoMeasurements) -> Vec<DemoTarget> {
    let loss_pp = 100.0 * (m.model_accuracy - m.composed_accuracy);
    vec![
        DemoTarget {
            target: "modules' mean kernel retention ≤ 70.00%".into(),
            measured: pct(m.mean_krr),
            met: m.mean_krr <= 0.70,
        },
        DemoTarget {
            target: "composed test accuracy ≥ model's − 1.50 pp".into(),
            measured: format!(
                "{} vs {} ({:+.2} pp)",
                pct(m.composed_accuracy),
                pct(m.model_accuracy),
                -loss_pp
            ),
            met: loss_pp <= 1.5 + 1e-9,
        },
        DemoTarget {
            target: "patch: other-class accuracy drop ≤ 2.00 pp".into(),
            measured: format!("{:+.2} pp", m.other_class_change_pp),
            met: m.other_class_change_pp >= -2.0 - 1e-9,
        },
        DemoTarget {
            target: "whole demo ≤ 300 s wall".into(),
            measured: format!("{:.0} s", m.seconds),
            met: m.seconds <= 300.0,
        },
    ]
}

/// `path` relative to `base` (both absolute), with `..` where it leaves `base`.
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The demo summary with no machine path in it: every absolute path becomes relative to
/// `cwd`, and a dataset written `NAME=DIR` with an absolute DIR becomes `NAME`.
pub fn portable_paths(value: Value, cwd: &Path) -> Value {
    match value {
        Value::String(s) => {
            if Path::new(&s).is_absolute() {
                return Value::String(relative_to(Path::new(&s), cwd).display().to_string());
            }
            if let Some((name, dir)) = s.split_once('=') {
                if Path::new(dir).is_absolute() {
                    return Value::String(name.to_string());
                }
            }
            Value::String(s)
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| portable_paths(v, cwd)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, portable_paths(v, cwd)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(mean_krr: f64, composed: f64, other_pp: f64, seconds: f64) -> DemoMeasurements {
        DemoMeasurements {
            mean_krr,
            model_accuracy: 0.85,
            composed_accuracy: composed,
            other_class_change_pp: other_pp,
            seconds,
        }
    }

    #[test]
    fn targets_are_met_only_within_their_limits() {
        let ok = demo_targets(&measured(0.65, 0.84, -1.9, 280.0));
        assert_eq!(ok.len(), 4);
        assert!(ok.iter().all(|t| t.met), "{ok:?}");
        // the old demo's figures: 92 % of the kernels kept, other classes −7.56 pp, 461 s
        let old = demo_targets(&measured(0.9221, 0.871, -7.56, 461.0));
        let met: Vec<bool> = old.iter().map(|t| t.met).collect();
        assert_eq!(met, vec![false, true, false, false]);
        // a composed model 1.6 pp below the model misses; a better one is fine
        assert!(!demo_targets(&measured(0.6, 0.834, 0.0, 10.0))[1].met);
        assert!(demo_targets(&measured(0.6, 0.90, 0.0, 10.0))[1].met);
        assert_eq!(ok[0].measured, "65.00%");
        assert_eq!(ok[2].measured, "-1.90 pp");
    }

    #[test]
    fn summary_paths_are_made_relative_to_the_working_directory() {
        let cwd = Path::new("/home/me/work");
        let v = json!({
            "out": "/home/me/work/runs/demo/patched",
            "elsewhere": "/tmp/demo/model",
            "here": "/home/me/work",
            "dataset": "fashion-mnist=/opt/cnnsplit/datasets/fashion-mnist-small",
            "relative": "runs/demo/model",
            "modules": [{"dir": "/home/me/work/runs/demo/modules/module_0"}],
            "n": 3,
        });
        let p = portable_paths(v, cwd);
        assert_eq!(p["out"], "runs/demo/patched");
        assert_eq!(p["elsewhere"], "../../../tmp/demo/model");
        assert_eq!(p["here"], ".");
        assert_eq!(p["dataset"], "fashion-mnist");
        assert_eq!(p["relative"], "runs/demo/model");
        assert_eq!(p["modules"][0]["dir"], "runs/demo/modules/module_0");
        assert_eq!(p["n"], 3);
    }
}
