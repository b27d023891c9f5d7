//! `decompose --method grad`: GradSplitter's flags into its config, progress, the library call.

use anyhow::Result;
use cnn_models::{Decomposition, ParentModel};
use splitter_grad::{GradRecord, GradSplitConfig, GradSplitEvent, MaskInit};

use super::target::{prepare, DecomposeTarget};
use crate::args::*;
use crate::output::pct;
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
        mask_phase_head_lr: a.mask_phase_head_lr.or(d.mask_phase_head_lr),
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
        krr_patience: a.krr_patience.unwrap_or(d.krr_patience),
        ..d
    }
}

/// GradSplitter's progress on stderr: a bar per epoch, a line per finished epoch.
pub struct GradProgress {
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
                    let collapsed = if r.collapsed_classes.is_empty() {
                        String::new()
                    } else {
                        format!("  collapsed classes {:?}", r.collapsed_classes)
                    };
                    eprintln!(
                        "epoch {:>3} {:<6?} loss {:.4}  composed val acc {}  mean kernels {:.1} (KRR {})  {:.1}s{collapsed}",
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
    decomposition.record.val_split = p.val_split.label().into();
    decomposition.record.train_sample = p.train_sample.clone();
    decomposition.save(t.out)?;
    Ok(decomposition)
}
