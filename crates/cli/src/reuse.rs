//! `reuse select` and `reuse new-task` (design §8), and running composed-model directories in
//! `eval`, `predict` and `inspect`: arguments in, [`composer::reuse`] runs the scenario,
//! tables and JSON out.
//!
//! Both scenarios work on a *task*: a list of classes, each the images of one class of one of
//! the given datasets. Each dataset's official test split is cut per class in file order: the
//! first `--selection-fraction` of each class's test images chooses modules (the spec's
//! module-evaluation set), the rest is the test part every accuracy is reported on.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cnn_models::metrics::argmax_rows;
use composer::reuse::{
    check_selection_fraction, evaluate_composition, CandidateModel, NewTask, NewTaskConfig,
    OfferedModule, ReuseEvent, ScratchConfig, SelectConfig, Selector, SourceSubject, TaskDatasets,
    TaskSets,
};
use composer::{score_images, ComposedModel, ComposerError};

use crate::args::*;
use crate::commands::{device, load_data, ops_for, pct, print_evaluation, print_json};
use crate::modules::load_modules;
use crate::progress::TrainProgress;

/// A library error with the command-line flag that fixes it named, as the CLI words it.
fn with_flag_hint(e: ComposerError) -> anyhow::Error {
    match e {
        ComposerError::InvalidSelectionFraction { fraction } => {
            anyhow!("--selection-fraction must be within (0, 1), got {fraction}")
        }
        e @ ComposerError::TaskDataset { .. } => anyhow!("--dataset {e}"),
        ComposerError::ClassSource {
            subject: SourceSubject::Offered { class, dir },
            problem,
        } => anyhow!("--module {class}={}: {problem}", dir.display()),
        ComposerError::ForeignModule {
            dir,
            class,
            parent_sha256,
        } => anyhow!(
            "{}: module of class {class:?} comes from a model (weights {}) that is not among --models",
            dir.display(),
            &parent_sha256[..parent_sha256.len().min(16)]
        ),
        ComposerError::MissingModule { model, class, name } => anyhow!(
            "{}: no module of class {class} ({name:?}) among --modules; every model needs a module per class",
            model.display()
        ),
        ComposerError::AlreadyComposed { dir } => anyhow!(
            "{} already holds a composed model: choose another --out or delete it",
            dir.display()
        ),
        e => e.into(),
    }
}

/// Load the task's datasets one by one (each checked against those before).
fn load_task_data(datasets: &[String]) -> Result<TaskDatasets> {
    let mut task = TaskDatasets::new();
    for d in datasets {
        let (spec, data) = load_data(d)?;
        task.add(d, spec, data).map_err(with_flag_hint)?;
    }
    Ok(task)
}

/// `reuse select`: run it, print the table, return the record.
pub fn select(g: &Global, a: &ReuseSelectArgs) -> Result<serde_json::Value> {
    check_selection_fraction(a.selection_fraction).map_err(with_flag_hint)?;
    let dev = device(g.device)?;
    let ops = ops_for(g, &dev);
    let mut models: Vec<CandidateModel> = Vec::new();
    for p in &a.models {
        let (mut model, meta) = cnn_models::load_model(p, &dev)?;
        model.set_ops(ops);
        models.push(CandidateModel {
            dir: p.clone(),
            model,
            meta,
        });
    }
    let dataset = a
        .dataset
        .clone()
        .unwrap_or_else(|| models[0].meta.dataset.clone());
    let task = load_task_data(std::slice::from_ref(&dataset))?;
    let mut selector = Selector::new(models, task).map_err(with_flag_hint)?;
    for dir in &a.modules {
        let loaded = load_modules(std::slice::from_ref(dir), None, g)?;
        selector.add_modules(dir, loaded).map_err(with_flag_hint)?;
    }
    let cfg = SelectConfig {
        selection_fraction: a.selection_fraction,
        batch_size: a.batch_size,
    };
    let mut reused = selector.run(&cfg).map_err(with_flag_hint)?;
    if let Some(out) = &a.out {
        reused.save(out).map_err(with_flag_hint)?;
    }
    let r = &reused.report;
    let record = serde_json::to_value(r)?;
    if g.json {
        print_json(&record);
        return Ok(record);
    }
    let n = r.class_names.len();
    println!(
        "best module per class among {} models on {} ({} selection images, {} test images)",
        r.models.len(),
        r.dataset,
        r.selection_images,
        r.test_images
    );
    println!("{:<14} {:>6} {:>8}", "class", "model", "F1");
    for c in 0..n {
        let chosen = r.chosen_model[c];
        println!(
            "{:<14} {:>6} {:>8}",
            r.class_names[c],
            chosen,
            pct(r.selection_f1[chosen][c])
        );
    }
    for (i, acc) in r.model_test_accuracy.iter().enumerate() {
        println!("model {i} {:<40} {}", r.models[i].display(), pct(*acc));
    }
    println!(
        "best model {}  mean {}  ensemble (mean softmax) {}  composed {} ({:+.2} pp over the best)",
        pct(r.best_model_accuracy),
        pct(r.mean_model_accuracy),
        pct(r.ensemble_accuracy),
        pct(r.composed_accuracy),
        100.0 * (r.composed_accuracy - r.best_model_accuracy)
    );
    if let Some(out) = &a.out {
        println!("wrote the composed model to {}", out.display());
    }
    Ok(record)
}

/// Parse `CLASS=MODULE_DIR`.
fn parse_module_arg(s: &str) -> Result<(String, PathBuf)> {
    match s.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_string(), PathBuf::from(dir)))
        }
        _ => bail!("--module {s:?}: expected CLASSNAME=MODULE_DIR"),
    }
}

/// `reuse new-task`: run it, print the table, return the record.
pub fn new_task(g: &Global, a: &ReuseNewTaskArgs) -> Result<serde_json::Value> {
    check_selection_fraction(a.selection_fraction).map_err(with_flag_hint)?;
    let dev = device(g.device)?;
    let mut offered: Vec<OfferedModule> = Vec::new();
    for s in &a.modules {
        let (class, dir) = parse_module_arg(s)?;
        let mut loaded = load_modules(std::slice::from_ref(&dir), None, g)?;
        if loaded.len() != 1 {
            bail!(
                "--module {s}: {} holds {} modules; name one module directory per class",
                dir.display(),
                loaded.len()
            );
        }
        offered.push(OfferedModule {
            class,
            dir: cnn_models::module::module_dir(&dir),
            module: loaded.remove(0),
        });
    }
    let task = NewTask::new(offered).map_err(with_flag_hint)?;
    let data = load_task_data(&a.datasets)?;
    let cfg = NewTaskConfig {
        selection_fraction: a.selection_fraction,
        batch_size: a.batch_size,
        scratch: ScratchConfig {
            epochs: a.scratch_epochs,
            batch_size: a.scratch_batch_size,
            lr: a.scratch_lr,
            seed: a.seed,
            eval_batch_size: a.batch_size,
            ops: ops_for(g, &dev),
        },
    };
    let mut progress = TrainProgress::new(g.quiet);
    let mut reused = task
        .run(&data, &cfg, &mut |e| match e {
            ReuseEvent::ScratchStart {
                arch,
                train_images,
                val_images,
                epochs,
            } => {
                if !g.quiet {
                    eprintln!(
                        "training {arch} from scratch on the task: {train_images} train / {val_images} val images, {epochs} epochs"
                    );
                }
            }
            ReuseEvent::Train(e) => progress.event(e),
        })
        .map_err(with_flag_hint)?;
    if let Some(out) = &a.out {
        reused.save(out).map_err(with_flag_hint)?;
    }
    let r = &reused.report;
    let record = serde_json::to_value(r)?;
    if g.json {
        print_json(&record);
        return Ok(record);
    }
    println!(
        "new task of {} classes from {} ({} selection images, {} test images)",
        r.class_names.len(),
        r.datasets.join(" + "),
        r.selection_images,
        r.test_images
    );
    println!("{:<14} {:<28} {:>8}  module", "class", "source", "F1");
    for (t, class) in reused.classes.iter().enumerate() {
        println!(
            "{:<14} {:<28} {:>8}  {} ({})",
            r.class_names[t],
            r.class_sources[t],
            pct(r.selection_f1[t]),
            class.source_dir.display(),
            class.source_class
        );
    }
    print_evaluation(&r.composed, &r.class_names);
    match &r.scratch {
        Some(s) => {
            println!(
                "composed {} (no training, {:.1}s) vs trained from scratch {} ({:.0}s): {:+.2} pp",
                pct(r.composed_accuracy),
                r.compose_seconds,
                pct(s.test_accuracy),
                s.seconds,
                100.0 * (r.composed_accuracy - s.test_accuracy)
            );
        }
        None => println!(
            "composed accuracy {} (no training)",
            pct(r.composed_accuracy)
        ),
    }
    if let Some(out) = &a.out {
        println!("wrote the composed model to {}", out.display());
    }
    Ok(record)
}

/// The task sets of a composed model, on its manifest's datasets (or `dataset` instead).
fn composed_sets(c: &ComposedModel, dataset: Option<&String>) -> Result<TaskSets> {
    let datasets = match dataset {
        Some(d) => vec![d.clone()],
        None => c.manifest.datasets.clone(),
    };
    let data = load_task_data(&datasets)?;
    c.task_sets(&data).map_err(with_flag_hint)
}

/// `eval` of a composed model: the test part (after the selection part), the selection part
/// (`--split val`), or the training images (`--split train`).
pub fn eval_composed(g: &Global, a: &EvalArgs, c: &ComposedModel) -> Result<()> {
    let sets = composed_sets(c, a.dataset.as_ref())?;
    let set = match a.split {
        SplitChoice::Test => &sets.test,
        SplitChoice::Val => &sets.selection,
        SplitChoice::Train => &sets.train,
    };
    if set.is_empty() {
        bail!(
            "{}: the {:?} part of the composed model's task is empty",
            a.model.display(),
            a.split
        );
    }
    let ev = evaluate_composition(&c.modules, set, a.batch_size)?;
    let names = c.class_names();
    if g.json {
        print_json(
            &serde_json::json!({"model": a.model, "composed": true, "kind": c.manifest.kind,
            "datasets": c.manifest.datasets, "split": format!("{:?}", a.split).to_lowercase(),
            "class_names": names, "evaluation": ev}),
        );
    } else {
        println!(
            "composed model ({}, {} modules) on the {} part of {}",
            c.manifest.kind,
            c.modules.len(),
            format!("{:?}", a.split).to_lowercase(),
            c.manifest.datasets.join(" + ")
        );
        print_evaluation(&ev, &names);
    }
    Ok(())
}

/// `predict` with a composed model: writes the module scores `[N, classes]` as `scores`.
pub fn predict_composed(g: &Global, a: &PredictArgs, c: &ComposedModel) -> Result<()> {
    let k = c.num_classes();
    let scores = match crate::commands::read_predict_input(&a.input)? {
        crate::commands::PredictInput::Images(set) => {
            let idx: Vec<usize> = (0..set.len()).collect();
            score_images(&c.modules, &set, &idx, a.batch_size)
                .with_context(|| a.input.display().to_string())?
        }
        crate::commands::PredictInput::Normalised(x) => {
            let spec = c.modules[0].model.spec();
            crate::commands::check_input_shape(&x, spec, &a.input)?;
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

/// `inspect` of a composed model: its classes, where each module comes from, and sizes.
pub fn inspect_composed(g: &Global, dir: &Path, c: &ComposedModel) -> Result<()> {
    let params: u64 = c.modules.iter().map(|m| m.meta.params).sum();
    let macs: u64 = c.modules.iter().map(|m| m.meta.macs).sum();
    if g.json {
        print_json(
            &serde_json::json!({"composed": dir, "manifest": c.manifest, "params": params, "macs": macs,
            "modules": c.modules.iter().map(|m| serde_json::json!({"class": m.meta.class_name, "kernels": m.meta.kernels,
                "krr": m.meta.krr, "params": m.meta.params, "macs": m.meta.macs})).collect::<Vec<_>>()}),
        );
        return Ok(());
    }
    println!(
        "composed model ({}) of {} modules, datasets {}",
        c.manifest.kind,
        c.modules.len(),
        c.manifest.datasets.join(" + ")
    );
    println!(
        "{:>5} {:<14} {:<14} {:>8} {:>8} {:>10}  from",
        "label", "class", "source class", "kernels", "KRR", "params"
    );
    for (class, m) in c.manifest.classes.iter().zip(&c.modules) {
        println!(
            "{:>5} {:<14} {:<14} {:>8} {:>8} {:>10}  {}",
            class.label,
            class.name,
            class.source_class,
            m.meta.kernels,
            pct(m.meta.krr),
            m.meta.params,
            class.source_dir.display()
        );
    }
    println!("modules together: {params} parameters, {macs} MACs per image");
    Ok(())
}
