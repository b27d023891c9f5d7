//! `decompose`, `compose` and `inspect --module`: wiring GradSplitter and module files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cnn_data::ImageSet;
use cnn_models::files::atomic_write;
use cnn_models::metrics::{argmax_rows, Evaluation};
use cnn_models::module::{build_module, load_module, module_dir, read_module_meta, save_module};
use cnn_models::train::DataSplit;
use cnn_models::{Module, ModuleSource};
use serde_json::json;
use splitter_grad::{GradSplitConfig, GradSplitEvent, MaskInit};

use crate::args::*;
use crate::commands::{
    device, load_data, ops_for, pct, print_evaluation, print_json, recorded_split,
};
use crate::progress::bar;

/// Name of the run record a decomposition writes next to its modules.
pub const RECORD_FILE: &str = "decomposition.json";

fn config_from(a: &DecomposeArgs) -> GradSplitConfig {
    GradSplitConfig {
        warmup_epochs: a.warmup_epochs,
        mask_epochs: a.epochs,
        pattern_mask: a.pattern_mask,
        pattern_head: a.pattern_head,
        warmup_lr: a.warmup_lr,
        mask_lr: a.mask_lr,
        head_lr: a.head_lr,
        lambda: a.lambda,
        batch_size: a.batch_size,
        mask_init: match a.mask_init {
            MaskInitChoice::Ones => MaskInit::Ones,
            MaskInitChoice::Normal => MaskInit::Normal,
            MaskInitChoice::Zeros => MaskInit::Zeros,
        },
        tolerance: a.tolerance,
        seed: a.seed,
        ..GradSplitConfig::default()
    }
}

/// A loaded model with its data, ready to decompose.
pub struct Prepared {
    pub model: cnn_models::Model,
    pub meta: cnn_models::ModelMeta,
    pub dspec: cnn_data::DatasetSpec,
    pub data: cnn_data::DatasetSplits,
    pub train_idx: Vec<usize>,
    pub val_idx: Vec<usize>,
}

/// Load the model and its data for `decompose` and check the output directory.
pub fn prepare(g: &Global, a: &DecomposeArgs) -> Result<Prepared> {
    let dev = device(g.device)?;
    let (mut model, meta) = cnn_models::load_model(&a.model, &dev)?;
    model.set_ops(ops_for(g, &dev));
    model.freeze()?;
    let dataset = a.dataset.clone().unwrap_or_else(|| meta.dataset.clone());
    let (dspec, data) = load_data(&dataset)?;
    if data.train.num_classes() != model.spec().num_classes {
        bail!(
            "{}: the model has {} classes, dataset `{}` has {}",
            a.model.display(),
            model.spec().num_classes,
            dspec,
            data.train.num_classes()
        );
    }
    let split: DataSplit = recorded_split(&meta).unwrap_or(DataSplit::Holdout {
        val_fraction: 0.2,
        limit: None,
    });
    let (mut train_idx, val_idx) = split.indices(&data.train, meta.seed.unwrap_or(0))?;
    if let Some(limit) = a.limit {
        train_idx.truncate(limit);
    }
    if a.out.join(RECORD_FILE).exists() && !a.resume {
        bail!(
            "{} already holds a decomposition: choose another --out, delete it, or pass --resume",
            a.out.display()
        );
    }
    // temp files of a run that was killed mid-write are never read; clear them away
    cnn_models::files::remove_stale_temp_files(&a.out, 2)?;
    Ok(Prepared {
        model,
        meta,
        dspec,
        data,
        train_idx,
        val_idx,
    })
}

/// Decompose a model by `--method` and save one module per class; returns the run record.
pub fn decompose_model(g: &Global, a: &DecomposeArgs) -> Result<serde_json::Value> {
    if !(0.0..=1.0).contains(&a.tolerance) {
        bail!("--tolerance must be within [0, 1], got {}", a.tolerance);
    }
    match a.method {
        Method::Grad => decompose_grad(g, a),
        Method::Ga => crate::ga::decompose_ga(g, a),
    }
}

/// Run GradSplitter on a model and save one module per class; returns the run record.
fn decompose_grad(g: &Global, a: &DecomposeArgs) -> Result<serde_json::Value> {
    let Prepared {
        model,
        meta,
        dspec,
        data,
        train_idx,
        val_idx,
    } = prepare(g, a)?;
    let cfg = config_from(a);
    let tdata = cnn_models::TrainData {
        set: &data.train,
        train: train_idx,
        val: val_idx,
        format: meta.input_format.clone(),
    };
    if !g.quiet {
        eprintln!(
            "GradSplitter on {} ({} classes, {} kernels): {} train / {} val images, {} epochs",
            a.model.display(),
            model.spec().num_classes,
            model.analysis().total_kernels(),
            tdata.train.len(),
            tdata.val.len(),
            cfg.epochs()
        );
    }
    let quiet = g.quiet;
    let mut pb = None;
    let mut on_event = |ev: &GradSplitEvent| match ev {
        GradSplitEvent::Started { model_accuracy, .. } => {
            if !quiet {
                eprintln!(
                    "model accuracy on the validation part: {}",
                    pct(*model_accuracy)
                );
            }
        }
        GradSplitEvent::EpochStart {
            epoch,
            epochs,
            phase,
            batches,
        } => {
            pb = Some(bar(
                *batches as u64,
                &format!("{phase:?} {epoch}/{epochs}"),
                quiet,
            ));
        }
        GradSplitEvent::Batch { loss, .. } => {
            if let Some(b) = &pb {
                b.set_message(format!("loss {loss:.4}"));
                b.inc(1);
            }
        }
        GradSplitEvent::EpochEnd(r) => {
            if let Some(b) = pb.take() {
                b.finish_and_clear();
            }
            if !quiet {
                eprintln!(
                    "epoch {:>3} {:<6?} loss {:.4}  composed val acc {}  mean kernels {:.1} (KRR {})  {:.1}s",
                    r.epoch,
                    r.phase,
                    r.train_loss,
                    pct(r.val_accuracy),
                    r.mean_kernels,
                    pct(r.mean_krr),
                    r.seconds
                );
            }
        }
        GradSplitEvent::Chosen {
            epoch,
            val_accuracy,
            mean_kernels,
        } => {
            if !quiet {
                eprintln!(
                    "chosen epoch {epoch}: composed val acc {}, mean kernels {mean_kernels:.1}",
                    pct(*val_accuracy)
                );
            }
        }
    };
    let started = Instant::now();
    let ckpt = a.out.join("checkpoint");
    let checkpointing = splitter_grad::Checkpointing::In {
        dir: &ckpt,
        resume: splitter_grad::Resume::continue_if(a.resume),
    };
    let result = splitter_grad::grad_split(&model, &tdata, &cfg, checkpointing, &mut on_event)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut modules = Vec::new();
    for (c, name) in meta.class_names.iter().enumerate() {
        let metrics = json!({
            "chosen_epoch": result.chosen_epoch,
            "model_val_accuracy": result.model_accuracy,
            "composed_val_accuracy": result.log.iter().find(|r| r.epoch == result.chosen_epoch).map(|r| r.val_accuracy),
        });
        let mut module = build_module(
            &model,
            &meta.weights_sha256,
            &result.masks[c],
            ModuleSource::Head(result.heads.module(c)?),
            c,
            name,
            meta.input_format.clone(),
            Some(metrics),
        )?;
        module.meta.dataset = Some(dspec.to_string());
        calibrate(&mut module, &data.train, &tdata.val, 256)?;
        modules.push(save_class_module(&a.out, c, &module)?);
    }
    let record = json!({
        "format": "cnnsplit-decomposition", "format_version": 1, "method": "grad",
        "model": a.model, "model_sha256": meta.weights_sha256, "dataset": dspec.to_string(),
        "config": cfg, "train_images": tdata.train.len(), "val_images": tdata.val.len(),
        "model_val_accuracy": result.model_accuracy, "chosen_epoch": result.chosen_epoch,
        "log": result.log, "modules": modules, "seconds": seconds,
        "crate_version": env!("CARGO_PKG_VERSION"),
    });
    atomic_write(
        &a.out.join(RECORD_FILE),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    Ok(record)
}

pub fn decompose(g: &Global, a: DecomposeArgs) -> Result<()> {
    let record = decompose_model(g, &a)?;
    if g.json {
        print_json(&record);
        return Ok(());
    }
    println!(
        "{:<14} {:>8} {:>8} {:>10} {:>10}",
        "module", "kernels", "KRR", "params", "MAC share"
    );
    for m in record["modules"].as_array().into_iter().flatten() {
        println!(
            "{:<14} {:>8} {:>8} {:>10} {:>10}",
            m["name"].as_str().unwrap_or(""),
            m["kernels"],
            pct(m["krr"].as_f64().unwrap_or(0.0)),
            m["params"],
            pct(m["overhead"].as_f64().unwrap_or(0.0))
        );
    }
    let chosen = match a.method {
        Method::Grad => format!("chosen epoch {}", record["chosen_epoch"]),
        Method::Ga => format!("chosen generation {}", record["chosen_generation"]),
    };
    println!(
        "wrote {} modules to {} ({chosen})",
        record["modules"].as_array().map_or(0, Vec::len),
        a.out.display(),
    );
    Ok(())
}

/// Expand `--modules` arguments: a module directory, or a directory of `module_*` directories.
fn module_dirs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let dir = module_dir(p);
        if dir.join("module.json").exists() {
            out.push(dir);
            continue;
        }
        let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(&dir)
            .with_context(|| {
                format!(
                    "{}: not a module directory and not readable as a folder of modules",
                    dir.display()
                )
            })?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("module.json").exists())
            .map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let idx = name
                    .trim_start_matches("module_")
                    .parse()
                    .unwrap_or(usize::MAX);
                (idx, e.path())
            })
            .collect();
        if found.is_empty() {
            bail!(
                "{}: holds no module (no module.json in it or its subfolders)",
                dir.display()
            );
        }
        found.sort();
        out.extend(found.into_iter().map(|(_, p)| p));
    }
    Ok(out)
}

/// Save module `c` as `OUT/module_<c>` and describe it for the run record.
pub fn save_class_module(out: &Path, c: usize, module: &Module) -> Result<serde_json::Value> {
    let dir = out.join(format!("module_{c}"));
    save_module(&dir, module)?;
    let m = &module.meta;
    Ok(json!({
        "class": c, "name": m.class_name, "dir": dir, "kernels": m.kernels, "krr": m.krr,
        "params": m.params, "macs": m.macs, "overhead": m.overhead, "zeroed_convs": m.zeroed_convs,
    }))
}

/// Measure a module's min–max calibration range (design §7): its scores on the images of its own
/// class among `indices` of `set`.
pub fn calibrate(
    module: &mut Module,
    set: &ImageSet,
    indices: &[usize],
    batch: usize,
) -> Result<()> {
    let own: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| set.labels[i] as usize == module.meta.class_index)
        .collect();
    if own.is_empty() {
        tracing::warn!(
            "no validation image of class {}: module has no calibration range",
            module.meta.class_name
        );
        return Ok(());
    }
    let scores = module_scores(std::slice::from_ref(module), set, &own, batch)?;
    let lo = scores.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    module.meta.calibration = Some((lo, hi));
    Ok(())
}

/// Scores `[n, modules]` (row-major) of modules on `indices` of `set`.
pub fn module_scores(
    modules: &[Module],
    set: &ImageSet,
    indices: &[usize],
    batch: usize,
) -> Result<Vec<f32>> {
    let m = modules.len();
    let mut scores = vec![0f32; indices.len() * m];
    let format = &modules[0].meta.input_format;
    let dev = modules[0].model.device().clone();
    for (chunk_no, chunk) in indices.chunks(batch.max(1)).enumerate() {
        let (x, _) = cnn_data::to_tensor(set, chunk, format, None, &dev)?;
        for (j, module) in modules.iter().enumerate() {
            let s: Vec<f32> = module.score(&x)?.to_vec1()?;
            for (i, v) in s.into_iter().enumerate() {
                scores[(chunk_no * batch.max(1) + i) * m + j] = v;
            }
        }
    }
    Ok(scores)
}

/// Load modules and check they can be composed (same input format, distinct classes).
pub fn load_modules(
    paths: &[PathBuf],
    parent_sha: Option<&str>,
    g: &Global,
) -> Result<Vec<Module>> {
    let dev = device(g.device)?;
    let mut modules: Vec<Module> = Vec::new();
    for dir in module_dirs(paths)? {
        let mut m = load_module(&dir, parent_sha, &dev)?;
        m.model.set_ops(ops_for(g, &dev));
        if let Some(first) = modules.first() {
            if m.meta.input_format != first.meta.input_format {
                bail!(
                    "{}: input format {:?} differs from the first module's {:?}: modules of one composition must take the same input",
                    dir.display(),
                    m.meta.input_format,
                    first.meta.input_format
                );
            }
        }
        modules.push(m);
    }
    Ok(modules)
}

pub fn compose(g: &Global, a: ComposeArgs) -> Result<()> {
    let parent = match &a.model {
        Some(p) => Some(cnn_models::load_model(p, &device(g.device)?)?),
        None => None,
    };
    let modules = load_modules(
        &a.modules,
        parent.as_ref().map(|(_, m)| m.weights_sha256.as_str()),
        g,
    )?;
    let (dspec, data) = load_data(&a.dataset)?;
    let n = modules.len();
    // labels: module j recognises class name j; map dataset labels to module positions
    let names: Vec<&str> = modules.iter().map(|m| m.meta.class_name.as_str()).collect();
    let mut indices = Vec::new();
    let mut labels = Vec::new();
    for i in 0..data.test.len() {
        let class = &data.test.class_names[data.test.labels[i] as usize];
        if let Some(pos) = names.iter().position(|n| *n == class) {
            indices.push(i);
            labels.push(pos as u32);
        }
    }
    if indices.is_empty() {
        bail!(
            "dataset {dspec} has no test image of the modules' classes ({})",
            names.join(", ")
        );
    }
    let scores = module_scores(&modules, &data.test, &indices, a.batch_size)?;
    let preds = argmax_rows(&scores, n);
    let ev = Evaluation::new(&labels, &preds, n);
    let params: u64 = modules.iter().map(|m| m.meta.params).sum();
    let macs: u64 = modules.iter().map(|m| m.meta.macs).sum();
    let model_eval = match &parent {
        Some((model, meta)) => Some(cnn_models::evaluate(
            model,
            &data.test,
            &indices,
            &meta.input_format,
            a.batch_size,
        )?),
        None => None,
    };
    let parent_params = parent.as_ref().map(|(m, _)| m.analysis().params());
    let parent_macs = parent.as_ref().map(|(m, _)| m.analysis().macs());
    let names_owned: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    if g.json {
        print_json(&json!({
            "modules": n, "class_names": names_owned, "dataset": dspec.to_string(), "composed": ev,
            "model_accuracy": model_eval.as_ref().map(|e| e.accuracy), "params": params, "macs": macs,
            "model_params": parent_params, "model_macs": parent_macs,
        }));
        return Ok(());
    }
    println!("composition of {n} modules on the test split of {dspec}");
    print_evaluation(&ev, &names_owned);
    if let Some(me) = model_eval {
        println!(
            "model accuracy {} → composed {} ({:+.2} pp)",
            pct(me.accuracy),
            pct(ev.accuracy),
            100.0 * (ev.accuracy - me.accuracy)
        );
    }
    match (parent_params, parent_macs) {
        (Some(pp), Some(pm)) => println!(
            "modules together: {params} parameters ({} of the model's), {macs} MACs per image ({} of the model's)",
            pct(params as f64 / pp as f64),
            pct(macs as f64 / pm as f64)
        ),
        _ => println!("modules together: {params} parameters, {macs} MACs per image"),
    }
    Ok(())
}

pub fn inspect_module(g: &Global, path: &Path) -> Result<()> {
    let dir = module_dir(path);
    let meta = read_module_meta(&dir.join("module.json"))?;
    if g.json {
        print_json(&serde_json::to_value(&meta)?);
        return Ok(());
    }
    println!(
        "module for class {} `{}` ({} method), parent {}",
        meta.class_index,
        meta.class_name,
        meta.method,
        &meta.parent_sha256[..meta.parent_sha256.len().min(16)]
    );
    let an = meta.parent_spec.analyse()?;
    println!("{:<12} {:>10} {:>10}", "conv", "kept", "of");
    for (c, kept) in an.convs.iter().zip(&meta.retained) {
        let mark = if meta.zeroed_convs.contains(&c.index) {
            " (empty: one zero channel)"
        } else {
            ""
        };
        println!(
            "{:<12} {:>10} {:>10}{mark}",
            c.name,
            kept.len(),
            c.out_channels
        );
    }
    println!(
        "kernels {} of {} (KRR {}), {} parameters, {} MACs per image ({} of the parent's{})",
        meta.kernels,
        meta.total_kernels,
        pct(meta.krr),
        meta.params,
        meta.macs,
        pct(meta.overhead),
        if meta.head_included {
            ", head included"
        } else {
            "; scored by its class's logit"
        }
    );
    if let Some((lo, hi)) = meta.calibration {
        println!("calibration range on its class's validation images: [{lo:.4}, {hi:.4}]");
    }
    Ok(())
}
