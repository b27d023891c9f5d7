//! `decompose --method ga`: CNNSplitter's flags into [`GaDecomposeConfig`], its progress onto
//! the terminal.

use anyhow::{bail, Context, Result};
use cnn_models::{Decomposition, ModelSpec, ParentModel};
use splitter_ga::{
    GaDecomposeConfig, GaPreset, GaRecord, GaSplitEvent, InitRatios, InitStrategy,
    DEFAULT_PROBE_TOLERANCE,
};

use super::target::{prepare, DecomposeTarget};
use crate::args::*;
use crate::output::pct;
use crate::progress::bar;

/// The CNNSplitter settings of `decompose`'s flags for a model of `spec`: the GA numbers of the
/// preset (named, or [`splitter_ga::ga_config_for`] the model) changed by the flags given;
/// every other flag left out takes [`GaDecomposeConfig::default`]'s value.
pub fn ga_config(a: &DecomposeArgs, spec: &ModelSpec) -> Result<GaDecomposeConfig> {
    let mut ga = match &a.ga_preset {
        Some(name) => name
            .parse::<GaPreset>()
            .with_context(|| format!("--ga-preset {name}"))?
            .config(),
        None => splitter_ga::ga_config_for(spec),
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
    let d = GaDecomposeConfig::default();
    let confidence = a.confidence.unwrap_or(d.confidence);
    if !(0.0..=1.0).contains(&confidence) {
        bail!("--confidence must be within [0, 1], got {confidence}");
    }
    let ratios_given =
        a.ga_preset.is_some() || a.sensitive_ratios.is_some() || a.other_ratios.is_some();
    let init_ratios = match a.init_ratios {
        Some(InitRatiosChoice::Probe) => InitRatios::Probe {
            tolerance: DEFAULT_PROBE_TOLERANCE,
        },
        Some(InitRatiosChoice::Preset) => InitRatios::Config,
        None if ratios_given => InitRatios::Config,
        None => d.init_ratios,
    };
    Ok(GaDecomposeConfig {
        ga: Some(ga),
        confidence,
        sensitive_layers: a.sensitive_layers.clone(),
        seed: a.seed.unwrap_or(d.seed),
        batch_size: a.eval_batch.unwrap_or(d.batch_size),
        fitness_images: a.fitness_images,
        holdout_images: a.holdout_images,
        init_ratios,
    })
}

/// Run CNNSplitter on the model `a` names, showing progress, and save one module per class
/// plus the run record under `a.out`.
pub fn decompose_ga(g: &Global, a: &DecomposeArgs) -> Result<Decomposition<GaRecord>> {
    let target = DecomposeTarget::of(a);
    let p = prepare(g, &target)?;
    let model = &p.model;
    let classes = model.spec().num_classes;
    let cfg = ga_config(a, model.spec())?;
    let data = p.train_data();
    let (fitness, holdout) = cfg.split_indices(&data.val);
    let fitness_images = fitness.len();
    if fitness_images == 0 {
        bail!(
            "{}: the model's validation part is empty; CNNSplitter needs validation images",
            a.model.display()
        );
    }
    let split = cfg.split_config(model.spec());
    let quiet = g.quiet;
    let holdout_images = holdout.len();
    if !quiet {
        eprintln!(
            "CNNSplitter on {} ({classes} classes, {} kernels): {} fitness images, {} holdout images, {} generations × {} solutions per class",
            a.model.display(),
            model.analysis().total_kernels(),
            fitness_images,
            holdout.len(),
            split.ga.generations,
            split.ga.population
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
        GaSplitEvent::RatioProbe(probe) => {
            if !quiet {
                eprintln!(
                    "initial keep ratios measured on the model: base ratio {} (sensitive layers {:?}, others {:?}); composed accuracy per ratio tried: {}",
                    probe.chosen,
                    probe.sensitive_ratios,
                    probe.other_ratios,
                    probe
                        .tried
                        .iter()
                        .map(|(r, acc)| format!("{r}: {}", pct(*acc)))
                        .collect::<Vec<_>>()
                        .join(", ")
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
                            "generation {:>3}: composed acc {}{} (top {} / div {:.3}), score {}, mean kernels {:.1}, {:.1}s ({:.0}% evaluating modules)",
                            record.generation,
                            pct(record.best_accuracy),
                            match (record.selection_accuracy, holdout_images) {
                                (Some(h), n) if n > 0 => format!(", holdout {}", pct(h)),
                                _ => String::new(),
                            },
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
    let dataset = p.dspec.to_string();
    let parent = ParentModel {
        model,
        meta: &p.meta,
        path: &a.model,
        dataset: &dataset,
    };
    let decomposition = splitter_ga::decompose(
        &parent,
        &data,
        &cfg,
        splitter_ga::Checkpointing::In {
            dir: &target.checkpoint(),
            resume: splitter_ga::Resume::continue_if(target.resume),
        },
        &mut on_event,
    );
    if let Some(b) = pb.take() {
        b.finish_and_clear();
    }
    let mut decomposition = decomposition?;
    decomposition.record.val_split = p.val_split.label().into();
    decomposition.record.train_sample = p.train_sample.clone();
    decomposition.save(target.out)?;
    Ok(decomposition)
}
