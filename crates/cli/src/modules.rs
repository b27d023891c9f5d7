//! `decompose`, `compose` and `inspect --module`: flags into the splitters' configs, their
//! progress and results onto the terminal, module directories into compositions.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use cnn_models::decomposition::{Decomposition, ModuleSummary, DECOMPOSITION_FILE};
use cnn_models::metrics::{argmax_rows, Evaluation};
use cnn_models::module::{module_dir, read_module_meta};
use cnn_models::train::DataSplit;
use cnn_models::{Module, ParentModel, TrainData};
use serde_json::json;
use splitter_grad::{GradRecord, GradSplitConfig, GradSplitEvent, MaskInit};

use crate::args::*;
use crate::commands::{
    device, load_data, ops_for, pct, print_evaluation, print_json, recorded_split,
};
use crate::progress::bar;

/// The GradSplitter settings of `decompose`'s flags, each flag left out taking
/// [`GradSplitConfig::default`]'s value.
pub fn grad_config(a: &DecomposeArgs) -> GradSplitConfig {
    let d = GradSplitConfig::default();
    GradSplitConfig {
        warmup_epochs: a.warmup_epochs.unwrap_or(d.warmup_epochs),
        mask_epochs: a.epochs.unwrap_or(d.mask_epochs),
        pattern_mask: a.pattern_mask.unwrap_or(d.pattern_mask),
        pattern_head: a.pattern_head.unwrap_or(d.pattern_head),
        warmup_lr: a.warmup_lr.unwrap_or(d.warmup_lr),
        mask_lr: a.mask_lr.unwrap_or(d.mask_lr),
        head_lr: a.head_lr.unwrap_or(d.head_lr),
        lambda: a.lambda.unwrap_or(d.lambda),
        batch_size: a.batch_size.unwrap_or(d.batch_size),
        mask_init: match a.mask_init {
            Some(MaskInitChoice::Ones) => MaskInit::Ones,
            Some(MaskInitChoice::Normal) => MaskInit::Normal,
            Some(MaskInitChoice::Zeros) => MaskInit::Zeros,
            None => d.mask_init,
        },
        tolerance: a.tolerance.unwrap_or(d.tolerance),
        seed: a.seed.unwrap_or(d.seed),
        ..d
    }
}

/// What a decomposition reads and where it writes: the flags both methods share.
#[derive(Clone, Copy, Debug)]
pub struct DecomposeTarget<'a> {
    /// The model directory.
    pub model: &'a Path,
    /// Dataset NAME[=DIR]; `None`: the model's own.
    pub dataset: Option<&'a str>,
    /// Output directory.
    pub out: &'a Path,
    /// Use only the first N images of the training part.
    pub limit: Option<usize>,
    /// Continue from `out/checkpoint`.
    pub resume: bool,
}

impl<'a> DecomposeTarget<'a> {
    /// The target `decompose`'s flags name.
    pub fn of(a: &'a DecomposeArgs) -> Self {
        DecomposeTarget {
            model: &a.model,
            dataset: a.dataset.as_deref(),
            out: &a.out,
            limit: a.limit,
            resume: a.resume,
        }
    }

    /// Where the search keeps its checkpoint.
    pub fn checkpoint(&self) -> PathBuf {
        self.out.join("checkpoint")
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

impl Prepared {
    /// The images of the model's training and validation parts.
    pub fn train_data(&self) -> TrainData<'_> {
        TrainData {
            set: &self.data.train,
            train: self.train_idx.clone(),
            val: self.val_idx.clone(),
            format: self.meta.input_format.clone(),
        }
    }
}

/// Load the model and its data for `decompose` and check the output directory.
pub fn prepare(g: &Global, t: &DecomposeTarget<'_>) -> Result<Prepared> {
    let dev = device(g.device)?;
    let (mut model, meta) = cnn_models::load_model(t.model, &dev)?;
    model.set_ops(ops_for(g, &dev));
    model.freeze()?;
    let dataset = t
        .dataset
        .map(str::to_string)
        .unwrap_or_else(|| meta.dataset.clone());
    let (dspec, data) = load_data(&dataset)?;
    if data.train.num_classes() != model.spec().num_classes {
        bail!(
            "{}: the model has {} classes, dataset `{}` has {}",
            t.model.display(),
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
    if let Some(limit) = t.limit {
        train_idx.truncate(limit);
    }
    if t.out.join(DECOMPOSITION_FILE).exists() && !t.resume {
        bail!(
            "{} already holds a decomposition: choose another --out, delete it, or pass --resume",
            t.out.display()
        );
    }
    // temp files of a run that was killed mid-write are never read; clear them away
    cnn_models::files::remove_stale_temp_files(t.out, 2)?;
    Ok(Prepared {
        model,
        meta,
        dspec,
        data,
        train_idx,
        val_idx,
    })
}

/// GradSplitter's progress on stderr: a bar per epoch, a line per finished epoch.
struct GradProgress {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl GradProgress {
    fn event(&mut self, ev: &GradSplitEvent) {
        let quiet = self.quiet;
        match ev {
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
                self.bar = Some(bar(
                    *batches as u64,
                    &format!("{phase:?} {epoch}/{epochs}"),
                    quiet,
                ));
            }
            GradSplitEvent::Batch { loss, .. } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!("loss {loss:.4}"));
                    b.inc(1);
                }
            }
            GradSplitEvent::EpochEnd(r) => {
                if let Some(b) = self.bar.take() {
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
        }
    }
}

/// Run GradSplitter with `cfg` on the model `t` names, showing progress, and save one module
/// per class plus the run record under `t.out`.
pub fn decompose_grad(
    g: &Global,
    t: &DecomposeTarget<'_>,
    cfg: &GradSplitConfig,
) -> Result<Decomposition<GradRecord>> {
    let p = prepare(g, t)?;
    let data = p.train_data();
    if !g.quiet {
        eprintln!(
            "GradSplitter on {} ({} classes, {} kernels): {} train / {} val images, {} epochs",
            t.model.display(),
            p.model.spec().num_classes,
            p.model.analysis().total_kernels(),
            data.train.len(),
            data.val.len(),
            cfg.epochs()
        );
    }
    let dataset = p.dspec.to_string();
    let parent = ParentModel {
        model: &p.model,
        meta: &p.meta,
        path: t.model,
        dataset: &dataset,
    };
    let mut progress = GradProgress {
        quiet: g.quiet,
        bar: None,
    };
    let mut decomposition = splitter_grad::decompose(
        &parent,
        &data,
        cfg,
        splitter_grad::Checkpointing::In {
            dir: &t.checkpoint(),
            resume: splitter_grad::Resume::continue_if(t.resume),
        },
        &mut |ev| progress.event(ev),
    )?;
    decomposition.save(t.out)?;
    Ok(decomposition)
}

pub fn decompose(g: &Global, a: DecomposeArgs) -> Result<()> {
    if let Some(tolerance) = a.tolerance {
        if !(0.0..=1.0).contains(&tolerance) {
            bail!("--tolerance must be within [0, 1], got {tolerance}");
        }
    }
    let target = DecomposeTarget::of(&a);
    let (record, modules, chosen) = match a.method {
        Method::Grad => {
            let d = decompose_grad(g, &target, &grad_config(&a))?;
            let chosen = format!("chosen epoch {}", d.record.method_fields.chosen_epoch);
            (d.record.to_json_value()?, d.record.modules, chosen)
        }
        Method::Ga => {
            let d = crate::ga::decompose_ga(g, &a)?;
            let chosen = format!(
                "chosen generation {}",
                d.record.method_fields.chosen_generation
            );
            (d.record.to_json_value()?, d.record.modules, chosen)
        }
    };
    if g.json {
        print_json(&record);
        return Ok(());
    }
    print_module_table(&modules);
    println!(
        "wrote {} modules to {} ({chosen})",
        modules.len(),
        a.out.display(),
    );
    Ok(())
}

/// The table of modules `decompose` prints.
fn print_module_table(modules: &[ModuleSummary]) {
    println!(
        "{:<14} {:>8} {:>8} {:>10} {:>10}",
        "module", "kernels", "KRR", "params", "MAC share"
    );
    // kernels and params stand unpadded, as they always have
    for m in modules {
        println!(
            "{:<14} {} {:>8} {} {:>10}",
            m.name,
            m.kernels,
            pct(m.krr),
            m.params,
            pct(m.overhead)
        );
    }
}

/// Load the modules under `paths` (module directories, or folders of them) with the CLI's device
/// and ops choice, checking they can be composed; with `parent_sha`, that they come from that
/// model.
pub fn load_modules(
    paths: &[PathBuf],
    parent_sha: Option<&str>,
    g: &Global,
) -> Result<Vec<Module>> {
    let dev = device(g.device)?;
    let mut modules = composer::load_modules(paths, parent_sha, &dev)?;
    for m in &mut modules {
        m.model.set_ops(ops_for(g, &dev));
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
    let scores = composer::score_images(&modules, &data.test, &indices, a.batch_size)?;
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
