//! `reuse select` and `reuse new-task` (design §8): arguments in, [`composer::reuse`] runs the
//! scenario, tables and JSON out.
//!
//! Both scenarios work on a *task*: a list of classes, each the images of one class of one of
//! the given datasets. Each dataset's official test split is cut per class in file order: the
//! first `--selection-fraction` of each class's test images chooses modules (the spec's
//! module-evaluation set), the rest is the test part every accuracy is reported on.

use std::path::PathBuf;

use anyhow::{bail, Result};
use composer::reuse::{
    check_selection_fraction, CandidateModel, NewTask, NewTaskConfig, OfferedModule, ReuseEvent,
    ScratchConfig, SelectConfig, Selector,
};

use crate::args::*;
use crate::flag_hint::with_flag_hint;
use crate::output::{pct, print_evaluation, print_json};
use crate::progress::TrainProgress;
use crate::setup::{device, load_modules, load_task_data, ops_for};

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
    let mut collapsed = Vec::new();
    for dir in &a.modules {
        let loaded = load_modules(std::slice::from_ref(dir), None, g)?;
        note_collapsed(&mut collapsed, dir, &loaded);
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
    let mut record = serde_json::to_value(r)?;
    record["collapsed_modules"] = serde_json::Value::Array(collapsed.clone());
    if g.json {
        print_json(&record);
        return Ok(record);
    }
    print_collapsed(&collapsed);
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
    let mut collapsed = Vec::new();
    for s in &a.modules {
        let (class, dir) = parse_module_arg(s)?;
        let mut loaded = load_modules(std::slice::from_ref(&dir), None, g)?;
        note_collapsed(&mut collapsed, &dir, &loaded);
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
            patience: a.scratch_patience,
            min_epochs: a.scratch_min_epochs,
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
                patience,
            } => {
                if !g.quiet {
                    let stop = match patience {
                        0 => String::new(),
                        p => format!(", stopping after {p} without improvement"),
                    };
                    eprintln!(
                        "training {arch} from scratch on the task: {train_images} train / {val_images} val images (80/20 per class), up to {epochs} epochs{stop}"
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
    let mut record = serde_json::to_value(r)?;
    record["collapsed_modules"] = serde_json::Value::Array(collapsed.clone());
    if g.json {
        print_json(&record);
        return Ok(record);
    }
    print_collapsed(&collapsed);
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
                "composed {} (no training, {:.1}s) vs trained from scratch {} ({:.0}s, {} epochs{}, best {}): {:+.2} pp",
                pct(r.composed_accuracy),
                r.compose_seconds,
                pct(s.test_accuracy),
                s.seconds,
                s.epochs_run,
                if s.stopped_early { ", stopped early" } else { "" },
                s.best_epoch,
                100.0 * (r.composed_accuracy - s.test_accuracy)
            );
            let near = if s.near_majority {
                format!(
                    ": the baseline is within {:.0} pp of it (see the warning)",
                    100.0 * composer::reuse::NEAR_MAJORITY_MARGIN
                )
            } else {
                String::new()
            };
            println!(
                "majority-class share of the test part {}{near}",
                pct(s.majority_share)
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

/// Adds the collapsed modules among `loaded` (found under `dir`) to `out`, as the records'
/// `collapsed_modules` list them: `{"dir", "class", "name", "collapsed"}` (design §13).
fn note_collapsed(
    out: &mut Vec<serde_json::Value>,
    dir: &std::path::Path,
    loaded: &[cnn_models::Module],
) {
    if let serde_json::Value::Array(entries) = composer::collapsed_modules_json(loaded) {
        for mut e in entries {
            e["dir"] = serde_json::json!(dir);
            out.push(e);
        }
    }
}

/// One `COLLAPSED` line per collapsed module of a reuse run.
fn print_collapsed(collapsed: &[serde_json::Value]) {
    for e in collapsed {
        let reasons: Vec<cnn_models::module::Collapse> =
            serde_json::from_value(e["collapsed"].clone()).unwrap_or_default();
        println!(
            "COLLAPSED module of class {} under {}: {}",
            e["name"].as_str().unwrap_or(""),
            e["dir"].as_str().unwrap_or(""),
            cnn_models::decomposition::describe_collapse(&reasons)
        );
    }
}
