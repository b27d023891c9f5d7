//! `decompose --method ga`: wiring CNNSplitter (`splitter-ga`) to a model, its validation
//! images, progress output and module files.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use cnn_models::files::atomic_write;
use cnn_models::module::build_module;
use cnn_models::ModuleSource;
use serde_json::json;
use splitter_ga::{GaConfig, GaPreset, GaSplitConfig, GaSplitEvent, InitStrategy};

use crate::args::*;
use crate::commands::pct;
use crate::modules::{calibrate, prepare, save_class_module, Prepared, RECORD_FILE};
use crate::progress::bar;

/// The GA configuration of a run: the preset (named, or by architecture), then the flags.
pub fn ga_config(a: &DecomposeArgs, arch: &str, classes: usize) -> Result<GaSplitConfig> {
    let mut ga = match &a.ga_preset {
        Some(name) => name
            .parse::<GaPreset>()
            .with_context(|| format!("--ga-preset {name}"))?
            .config(),
        None if arch.starts_with("simcnn") && classes == 10 => GaConfig::simcnn_cifar10(),
        None if arch.starts_with("rescnn") && classes == 10 => GaConfig::rescnn_cifar10(),
        None => GaConfig::scaled_for(classes),
    };
    if let Some(v) = a.generations {
        ga.generations = v;
    }
    if let Some(v) = a.population {
        ga.population = v;
        ga.parents = ga.parents.min(v);
        ga.keep = ga.keep.min(v);
    }
    if let Some(v) = a.parents {
        ga.parents = v;
    }
    if let Some(v) = a.keep {
        ga.keep = v;
    }
    if let Some(v) = a.mutation {
        ga.mutation_percent = v;
    }
    if let Some(v) = a.alpha {
        ga.alpha = v;
    }
    if let Some(v) = a.gamma {
        ga.gamma = v;
    }
    if let Some(v) = a.init {
        ga.init = match v {
            InitChoice::Heuristic => InitStrategy::Heuristic,
            InitChoice::Random => InitStrategy::Random,
        };
    }
    if let Some(v) = &a.sensitive_ratios {
        ga.sensitive_ratios = v.clone();
    }
    if let Some(v) = &a.other_ratios {
        ga.other_ratios = v.clone();
    }
    if a.early_stop.is_some() {
        ga.early_stop = a.early_stop;
    }
    ga.normalise_weights = a.normalise_weights;
    if !(0.0..=1.0).contains(&a.confidence) {
        bail!("--confidence must be within [0, 1], got {}", a.confidence);
    }
    let mut cfg = GaSplitConfig::new(ga);
    cfg.confidence = a.confidence;
    cfg.sensitive_layers = a.sensitive_layers.clone();
    cfg.seed = a.seed;
    cfg.batch_size = a.eval_batch.max(1);
    Ok(cfg)
}

/// Run CNNSplitter on a model and save one module per class; returns the run record.
pub fn decompose_ga(g: &Global, a: &DecomposeArgs) -> Result<serde_json::Value> {
    let Prepared {
        model,
        meta,
        dspec,
        data,
        val_idx,
        ..
    } = prepare(g, a)?;
    let classes = model.spec().num_classes;
    let cfg = ga_config(a, &model.spec().name, classes)?;
    let mut fitness_idx = val_idx.clone();
    if let Some(n) = a.fitness_images {
        fitness_idx.truncate(n);
    }
    if fitness_idx.is_empty() {
        bail!(
            "{}: the model's validation part is empty; CNNSplitter needs validation images",
            a.model.display()
        );
    }
    let (x, labels) = cnn_data::to_tensor(
        &data.train,
        &fitness_idx,
        &meta.input_format,
        None,
        model.device(),
    )?;
    let labels: Vec<u32> = labels.to_vec1::<u32>()?;
    let quiet = g.quiet;
    if !quiet {
        eprintln!(
            "CNNSplitter on {} ({classes} classes, {} kernels): {} fitness images, {} generations × {} solutions per class",
            a.model.display(),
            model.analysis().total_kernels(),
            fitness_idx.len(),
            cfg.ga.generations,
            cfg.ga.population
        );
    }
    let mut pb = None;
    let mut on_event = |ev: &GaSplitEvent| match ev {
        GaSplitEvent::Importance(imp) => {
            if !quiet {
                eprintln!(
                    "kernel importance from {} confident images per class{}",
                    imp.images
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join("/"),
                    if imp.fallback.is_empty() {
                        String::new()
                    } else {
                        format!(" (all images for classes {:?})", imp.fallback)
                    }
                );
            }
        }
        GaSplitEvent::Sensitivity {
            sensitivity,
            sensitive,
        } => {
            if !quiet {
                eprintln!(
                    "layer sensitivity: full accuracy {}, sensitive gene-layers {:?}",
                    pct(sensitivity.full_accuracy),
                    sensitive
                );
            }
        }
        GaSplitEvent::GenerationStart { generation, last } => {
            if pb.is_none() {
                let b = bar((*last + 1) as u64, "generations", quiet);
                b.set_position(*generation as u64);
                b.reset_eta();
                pb = Some(b);
            }
        }
        GaSplitEvent::Generation {
            record,
            seconds,
            evaluation_seconds,
            mean_kernels,
            ..
        } => {
            if let Some(b) = &pb {
                b.set_message(format!(
                    "acc {} kernels {mean_kernels:.0}",
                    pct(record.best_accuracy)
                ));
                b.inc(1);
                if !quiet {
                    b.suspend(|| {
                        eprintln!(
                            "generation {:>3}: composed acc {} (top {} / div {:.3}), score {}, mean kernels {:.1}, {:.1}s ({:.0}% evaluating modules)",
                            record.generation,
                            pct(record.best_accuracy),
                            pct(record.top.accuracy),
                            record.top.diversity,
                            record.score.map_or("-".into(), |s| format!("{s:.4}")),
                            mean_kernels,
                            seconds,
                            100.0 * evaluation_seconds / seconds.max(1e-9)
                        )
                    });
                }
            }
        }
    };
    let started = Instant::now();
    let ckpt = a.out.join("checkpoint");
    let result = splitter_ga::ga_split(
        &model,
        &meta.weights_sha256,
        &x,
        &labels,
        &cfg,
        splitter_ga::Checkpointing::In {
            dir: &ckpt,
            resume: splitter_ga::Resume::continue_if(a.resume),
        },
        &mut on_event,
    )?;
    if let Some(b) = pb.take() {
        b.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let chosen = &result.outcome.chosen;
    let mut modules = Vec::new();
    for (c, name) in meta.class_names.iter().enumerate() {
        let metrics = json!({
            "chosen_generation": chosen.generation,
            "composed_fitness_accuracy": chosen.accuracy,
            "diversity": chosen.diversity,
        });
        let mut module = build_module(
            &model,
            &meta.weights_sha256,
            &result.masks[c],
            ModuleSource::Logit,
            c,
            name,
            meta.input_format.clone(),
            Some(metrics),
        )?;
        module.meta.dataset = Some(dspec.to_string());
        calibrate(&mut module, &data.train, &val_idx, a.eval_batch)?;
        modules.push(save_class_module(&a.out, c, &module)?);
    }
    let resumed_generations = result.generation_seconds.len() - result.evaluation_seconds.len();
    let evaluation_total: f64 = result.evaluation_seconds.iter().sum();
    let timed_total: f64 = result.generation_seconds[resumed_generations..]
        .iter()
        .sum();
    let generations: Vec<serde_json::Value> = result
        .outcome
        .history
        .iter()
        .zip(&result.generation_seconds)
        .map(|(r, s)| {
            json!({
                "generation": r.generation, "composed_accuracy": r.best_accuracy,
                "top_accuracy": r.top.accuracy, "top_diversity": r.top.diversity, "score": r.score,
                "best_fitness": r.best_fitness, "mean_fitness": r.mean_fitness,
                "mean_kernels": r.best_kernels.iter().sum::<usize>() as f64 / r.best_kernels.len().max(1) as f64,
                "accuracy_weight": r.accuracy_weight, "seconds": s,
            })
        })
        .collect();
    let model_accuracy = result.sensitivity.full_accuracy;
    let record = json!({
        "format": "cnnsplit-decomposition", "format_version": 1, "method": "ga",
        "model": a.model, "model_sha256": meta.weights_sha256, "dataset": dspec.to_string(),
        "config": cfg, "fitness_images": fitness_idx.len(), "val_images": val_idx.len(),
        "model_val_accuracy": model_accuracy,
        "chosen_generation": chosen.generation, "chosen_accuracy": chosen.accuracy,
        "chosen_diversity": chosen.diversity,
        "importance_images": result.importance.images, "importance_fallback": result.importance.fallback,
        "sensitivity": result.sensitivity, "sensitive_layers": result.sensitive_layers,
        "generations": generations,
        "evaluated_modules": result.evaluations.0, "reused_modules": result.evaluations.1,
        "generations_per_minute": 60.0 * result.generation_seconds.len() as f64 / result.generation_seconds.iter().sum::<f64>().max(1e-9),
        "evaluation_fraction": (timed_total > 0.0).then(|| evaluation_total / timed_total),
        "modules": modules, "seconds": seconds,
        "crate_version": env!("CARGO_PKG_VERSION"),
    });
    atomic_write(
        &a.out.join(RECORD_FILE),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    Ok(record)
}
