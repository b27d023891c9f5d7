//! The GradSplitter search (design §5.4–§5.7): N modules trained as one batched masked forward
//! of the frozen model, per-epoch validation, per-epoch checkpoints with exact resume (written
//! by [`cnn_models::checkpoint::Checkpointer`]), and the automatic choice of the final epoch.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use cnn_data::Batches;
use cnn_models::checkpoint::{fingerprint, Checkpointing};
use cnn_models::extract::KernelMask;
use cnn_models::metrics::{argmax_rows, ConfusionMatrix};
use cnn_models::{epoch_rng, seeded, ForwardOptions, Model, Stream, TrainData};
use rand::Rng;

use crate::adam::Adam;
use crate::checkpoint::{self, GRADSPLIT_CHECKPOINT};
use crate::config::{
    choose_epoch, krr_stalled, GradSplitConfig, MaskInit, Phase, SearchEpoch, SelectionMetric,
};
use crate::error::{GradSplitError, Result};
use crate::heads::{ce_on_scores, Heads, HEAD_KEYS};
use crate::ste::{binarize, binarize_detached};

/// Progress of a search, for progress bars and logs.
#[derive(Clone, Debug)]
pub enum GradSplitEvent {
    /// The search starts (after the model's own validation accuracy was measured).
    Started {
        /// Total epochs.
        epochs: usize,
        /// The model's validation accuracy acc_M.
        model_accuracy: f64,
        /// Epochs already done when resuming.
        resumed_after: Option<usize>,
    },
    /// An epoch starts.
    EpochStart {
        /// 1-based epoch.
        epoch: usize,
        /// Total epochs.
        epochs: usize,
        /// Its phase.
        phase: Phase,
        /// Batches in the epoch.
        batches: usize,
    },
    /// A batch finished.
    Batch {
        /// 1-based batch.
        batch: usize,
        /// Its loss.
        loss: f32,
    },
    /// An epoch finished.
    EpochEnd(SearchEpoch),
    /// The final epoch was chosen.
    Chosen {
        /// 1-based chosen epoch.
        epoch: usize,
        /// Its composed validation accuracy.
        val_accuracy: f64,
        /// Its mean kernel count.
        mean_kernels: f64,
    },
}

/// The outcome of a search: the chosen epoch's masks and heads and the whole log.
#[derive(Clone, Debug)]
pub struct GradSplitResult {
    /// 1-based chosen epoch (design §5.7).
    pub chosen_epoch: usize,
    /// Binary masks of the chosen epoch: `masks[c][s]` is module c's mask of site s.
    pub masks: Vec<Vec<KernelMask>>,
    /// Heads of the chosen epoch.
    pub heads: Heads,
    /// Every epoch's metrics, including those before a resume.
    pub log: Vec<SearchEpoch>,
    /// The model's own validation accuracy acc_M.
    pub model_accuracy: f64,
    /// Total kernels of the model K_tot.
    pub total_kernels: usize,
    /// Epochs already done when this process resumed, if it did.
    pub resumed_after: Option<usize>,
    /// The validation score the epoch choice compared ([`SelectionMetric::for_labels`]).
    pub selection_metric: SelectionMetric,
    /// The model's balanced validation accuracy (mean per-class recall).
    pub model_balanced_accuracy: f64,
    /// Whether the search stopped before its last scheduled epoch because the mean KRR
    /// stalled (`krr_patience`).
    pub stopped_early: bool,
}

impl GradSplitResult {
    /// Kernel count of module `c` (design §5.8).
    pub fn kernels(&self, analysis: &cnn_models::Analysis, c: usize) -> usize {
        cnn_models::extract::kernel_count(analysis, &self.masks[c])
    }
}

/// Everything a search carries from one epoch to the next, and so what its checkpoints hold.
pub(crate) struct State {
    /// Real-valued masks, one `[N, C]` variable per site (on the CPU).
    pub(crate) masks: Vec<Var>,
    /// The heads' `w1`, `b1`, `w2`, `b2`.
    pub(crate) heads: [Var; 4],
    /// The optimiser of the current phase.
    pub(crate) adam: Option<(Phase, Adam)>,
    /// Every finished epoch's record.
    pub(crate) log: Vec<SearchEpoch>,
    /// Every finished epoch's binary masks (CPU) and heads, for the choice of the epoch.
    pub(crate) history: Vec<(Vec<Tensor>, Heads)>,
}

impl State {
    fn heads(&self) -> Heads {
        Heads {
            w1: self.heads[0].as_tensor().clone(),
            b1: self.heads[1].as_tensor().clone(),
            w2: self.heads[2].as_tensor().clone(),
            b2: self.heads[3].as_tensor().clone(),
        }
    }

    /// The parameters phase `phase` trains, by checkpoint name.
    pub(crate) fn params(&self, phase: Phase) -> Vec<(String, Var)> {
        let mut out: Vec<(String, Var)> = Vec::new();
        if phase == Phase::Mask {
            out.extend(
                self.masks
                    .iter()
                    .enumerate()
                    .map(|(s, v)| (format!("mask.{s}"), v.clone())),
            );
        }
        out.extend(
            HEAD_KEYS
                .iter()
                .zip(&self.heads)
                .map(|(k, v)| (format!("head.{k}"), v.clone())),
        );
        out
    }
}

/// One optimisation step of the N modules on a batch `x` `[B, C, H, W]` with labels `y`: the
/// batched masked forward (one binariser use per physical conv), heads, loss (plus λ·K when the
/// masks train), backward and an Adam update. Returns the loss; a non-finite loss is returned
/// without updating anything.
#[allow(clippy::too_many_arguments)]
fn batch_step(
    model: &Model,
    masks: &[Var],
    heads: &[Var; 4],
    adam: Option<&mut Adam>,
    x: &Tensor,
    y: &Tensor,
    train_masks: bool,
    lambda: f64,
) -> Result<f32> {
    let analysis = model.analysis();
    let device = model.device().clone();
    let n = model.spec().num_classes;
    let k_tot = analysis.total_kernels();
    let xr = x.repeat((n, 1, 1, 1))?;
    // one binariser use per physical conv (a shared ResCNN site is used twice), so each use's
    // straight-through gradient is clipped on its own (design §5.2)
    let mts: Vec<Tensor> = analysis
        .convs
        .iter()
        .map(|c| {
            let m = masks[c.site].as_tensor();
            let b = if train_masks {
                binarize(m)?
            } else {
                binarize_detached(m)?
            };
            b.to_device(&device)
        })
        .collect::<candle_core::Result<_>>()?;
    let (logits, _) = model.forward(
        &xr,
        ForwardOptions {
            conv_masks: Some(&mts),
            ..Default::default()
        },
    )?;
    let head = Heads {
        w1: heads[0].as_tensor().clone(),
        b1: heads[1].as_tensor().clone(),
        w2: heads[2].as_tensor().clone(),
        b2: heads[3].as_tensor().clone(),
    };
    let scores = head.forward(&logits)?;
    let mut loss = ce_on_scores(&scores, y)?;
    if train_masks && lambda != 0.0 {
        let mut k = Tensor::zeros((), DType::F32, &Device::Cpu)?;
        for c in &analysis.convs {
            k = (k + binarize(masks[c.site].as_tensor())?.sum_all()?)?;
        }
        let k = (k * (lambda / (n * k_tot) as f64))?.to_device(&device)?;
        loss = (loss + k)?;
    }
    let value = loss.to_scalar::<f32>()?;
    if !value.is_finite() {
        return Ok(value);
    }
    let grads = loss.backward()?;
    if let Some(adam) = adam {
        adam.step(&grads)?;
    }
    Ok(value)
}

/// A GradSplitter mask phase on its own, one batch at a time: all-ones masks, fresh heads and
/// Adam over both, as in the middle of a search. For benchmarks (`cargo xtask bench --mode
/// gradsplitter-step`) and for measuring the step outside a full run.
pub struct MaskSearchStep {
    masks: Vec<Var>,
    heads: [Var; 4],
    adam: Adam,
    lambda: f64,
}

impl MaskSearchStep {
    /// Masks of all ones, heads drawn from `cfg.seed`, an Adam at `cfg.mask_lr`.
    pub fn new(model: &Model, cfg: &GradSplitConfig) -> Result<Self> {
        let n = model.spec().num_classes;
        let masks: Vec<Var> = model
            .analysis()
            .sites
            .iter()
            .map(|s| Var::ones((n, s.channels), DType::F32, &Device::Cpu))
            .collect::<candle_core::Result<_>>()?;
        let mut rng = cnn_models::seeded(cfg.seed, Stream::Splitter);
        let h = Heads::init(n, n, cfg.head_hidden, &mut rng, model.device())?;
        let heads = [
            Var::from_tensor(&h.w1)?,
            Var::from_tensor(&h.b1)?,
            Var::from_tensor(&h.w2)?,
            Var::from_tensor(&h.b2)?,
        ];
        let mut params: Vec<(String, Var)> = masks
            .iter()
            .enumerate()
            .map(|(s, v)| (format!("mask.{s}"), v.clone()))
            .collect();
        params.extend(
            HEAD_KEYS
                .iter()
                .zip(&heads)
                .map(|(k, v)| (format!("head.{k}"), v.clone())),
        );
        let adam = Adam::new(params, cfg.mask_lr, cfg)?.with_head_lr(cfg.mask_phase_head_lr);
        Ok(Self {
            masks,
            heads,
            adam,
            lambda: cfg.lambda,
        })
    }

    /// One step on a batch; returns the loss.
    pub fn step(&mut self, model: &Model, x: &Tensor, y: &Tensor) -> Result<f32> {
        batch_step(
            model,
            &self.masks,
            &self.heads,
            Some(&mut self.adam),
            x,
            y,
            true,
            self.lambda,
        )
    }
}

fn normal(rng: &mut impl Rng) -> f32 {
    // Box–Muller
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn masks_of(state_masks: &[Tensor], n: usize) -> Result<Vec<Vec<KernelMask>>> {
    let mut out = vec![Vec::with_capacity(state_masks.len()); n];
    for t in state_masks {
        let rows = t.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        for (c, row) in rows.into_iter().enumerate() {
            out[c].push(row.into_iter().map(|v| v > 0.0).collect());
        }
    }
    Ok(out)
}

fn mean_kernels(analysis: &cnn_models::Analysis, bin: &[Tensor]) -> Result<f64> {
    // Σ over physical convs of the popcount of the site mask, averaged over modules
    let per_site: Vec<f64> = bin
        .iter()
        .map(|t| Ok(t.sum_all()?.to_scalar::<f32>()? as f64))
        .collect::<Result<_>>()?;
    let n = bin.first().map_or(1, |t| t.dims()[0]) as f64;
    Ok(analysis.convs.iter().map(|c| per_site[c.site]).sum::<f64>() / n)
}

/// SHA-256 of a model's tensors (serialised as safetensors), to tie checkpoints to one model.
pub fn model_fingerprint(model: &Model) -> Result<String> {
    Ok(cnn_data::sha256_bytes(
        &cnn_models::weights::safetensors_bytes(model.tensors(), &[])?,
    ))
}

/// What the validation of one epoch measures (design §5.7).
struct EpochValidation {
    accuracy: f64,
    balanced_accuracy: f64,
    mean_kernels: f64,
    /// Classes whose module is collapsed: an empty conv, or F1 = 0 (design §13).
    collapsed_classes: Vec<usize>,
}

/// The classes whose binary masks `bin` (one `[N, C]` tensor per site) leave some physical
/// conv without a kept kernel.
fn empty_layer_classes(analysis: &cnn_models::Analysis, bin: &[Tensor]) -> Result<Vec<usize>> {
    let rows: Vec<Vec<Vec<f32>>> = bin
        .iter()
        .map(|t| Ok(t.to_device(&Device::Cpu)?.to_vec2::<f32>()?))
        .collect::<Result<_>>()?;
    let n = rows.first().map_or(0, Vec::len);
    Ok((0..n)
        .filter(|&c| {
            analysis
                .convs
                .iter()
                .any(|conv| rows[conv.site][c].iter().all(|&v| v <= 0.0))
        })
        .collect())
}

/// Composed validation accuracy, balanced accuracy, mean kernel count and collapsed classes
/// with binary masks `bin` (one `[N, C]` tensor per site on the model's device).
fn evaluate(
    model: &Model,
    heads: &Heads,
    bin: &[Tensor],
    data: &TrainData<'_>,
    batch: usize,
) -> Result<EpochValidation> {
    let n = heads.modules();
    let mut predictions = Vec::with_capacity(data.val.len());
    for chunk in data.val.chunks(batch) {
        let (x, _) = cnn_data::to_tensor(data.set, chunk, &data.format, None, model.device())?;
        let xr = x.repeat((n, 1, 1, 1))?;
        let (logits, _) = model.forward(
            &xr,
            ForwardOptions {
                masks: Some(bin),
                ..Default::default()
            },
        )?;
        let y = heads.forward(&logits.detach())?.to_device(&Device::Cpu)?;
        predictions.extend(argmax_rows(&y.flatten_all()?.to_vec1::<f32>()?, n));
    }
    let labels = val_labels(data);
    let confusion = ConfusionMatrix::from_predictions(&labels, &predictions, n);
    let mut collapsed_classes = empty_layer_classes(model.analysis(), bin)?;
    collapsed_classes.extend(confusion.zero_f1_classes());
    collapsed_classes.sort_unstable();
    collapsed_classes.dedup();
    Ok(EpochValidation {
        accuracy: confusion.accuracy(),
        balanced_accuracy: confusion.balanced_accuracy(),
        mean_kernels: mean_kernels(model.analysis(), bin)?,
        collapsed_classes,
    })
}

fn val_labels(data: &TrainData<'_>) -> Vec<u32> {
    data.val
        .iter()
        .map(|&i| data.set.labels[i] as u32)
        .collect()
}

/// The model's own validation accuracy acc_M (evaluation mode, no masks).
pub fn model_accuracy(model: &Model, data: &TrainData<'_>, batch: usize) -> Result<f64> {
    Ok(model_scores(model, data, batch)?.0)
}

/// The model's own validation accuracy and balanced accuracy (evaluation mode, no masks).
fn model_scores(model: &Model, data: &TrainData<'_>, batch: usize) -> Result<(f64, f64)> {
    let n = model.spec().num_classes;
    let logits = cnn_models::predict(model, data.set, &data.val, &data.format, batch)?;
    let preds = argmax_rows(&logits, n);
    let confusion = ConfusionMatrix::from_predictions(&val_labels(data), &preds, n);
    Ok((confusion.accuracy(), confusion.balanced_accuracy()))
}

/// Run GradSplitter on `model` (it is not changed: a frozen copy is used).
///
/// Trains on `data.train` (never augmented), validates on `data.val` after every epoch and
/// returns the epoch chosen by [`choose_epoch`] (on balanced accuracy when the validation part
/// is class-imbalanced, [`SelectionMetric::for_labels`]). With `cfg.krr_patience` > 0 the
/// search stops before a mask epoch once the mean KRR has stalled ([`krr_stalled`]). With [`Checkpointing::In`] the state is
/// written after every epoch; with [`Resume::Continue`](cnn_models::Resume::Continue) a run
/// continues from it and ends bit-for-bit where an uninterrupted run would (a checkpoint made
/// with another config, model or data is an error, except for `mask_epochs`: fewer ends the
/// run at the new last epoch, more runs it longer).
pub fn grad_split(
    model: &Model,
    data: &TrainData<'_>,
    cfg: &GradSplitConfig,
    checkpointing: Checkpointing<'_>,
    on_event: &mut dyn FnMut(&GradSplitEvent),
) -> Result<GradSplitResult> {
    cfg.validate()?;
    let n = model.spec().num_classes;
    if data.train.is_empty() || data.val.is_empty() {
        return Err(GradSplitError::Invalid(
            "GradSplitter needs non-empty training and validation parts".into(),
        ));
    }
    if let Some(&i) = data
        .train
        .iter()
        .chain(&data.val)
        .find(|&&i| i >= data.set.len() || data.set.labels[i] as usize >= n)
    {
        return Err(GradSplitError::Invalid(format!(
            "image {i} is out of range or has a label ≥ the model's {n} classes"
        )));
    }
    let mut frozen = model.clone();
    frozen.freeze()?;
    let model = &frozen;
    let device = model.device().clone();
    let analysis = model.analysis();
    let k_tot = analysis.total_kernels();
    let schedule = cfg.schedule();

    // initial state: heads first, then (for normal init) masks, from the splitter stream
    let mut rng = seeded(cfg.seed, Stream::Splitter);
    let heads0 = Heads::init(n, n, cfg.head_hidden, &mut rng, &device)?;
    let mut masks = Vec::new();
    for site in &analysis.sites {
        let len = n * site.channels;
        let v: Vec<f32> = match cfg.mask_init {
            MaskInit::Ones => vec![1.0; len],
            MaskInit::Zeros => vec![0.0; len],
            MaskInit::Normal => (0..len).map(|_| normal(&mut rng)).collect(),
        };
        masks.push(Var::from_tensor(&Tensor::from_vec(
            v,
            (n, site.channels),
            &Device::Cpu,
        )?)?);
    }
    let heads = [
        Var::from_tensor(&heads0.w1)?,
        Var::from_tensor(&heads0.b1)?,
        Var::from_tensor(&heads0.w2)?,
        Var::from_tensor(&heads0.b2)?,
    ];
    let mut st = State {
        masks,
        heads,
        adam: None,
        log: Vec::new(),
        history: Vec::new(),
    };

    let model_sha = model_fingerprint(model)?;
    // the checkpoint recognises its data by the images it uses and their input format
    let format = serde_json::to_string(&data.format).unwrap_or_default();
    let fp = fingerprint(&[&data.selection_bytes(), format.as_bytes()]);
    let checkpointer = checkpointing.open(&GRADSPLIT_CHECKPOINT)?;
    let mut start = 0;
    let mut resumed_after = None;
    if let (Some(ckpt), true) = (&checkpointer, checkpointing.resumes()) {
        if let Some(done) = checkpoint::load(ckpt, &mut st, cfg, &model_sha, &fp, &device)? {
            // a resume with fewer epochs ends the run at its new last epoch
            st.log.truncate(schedule.len());
            st.history.truncate(schedule.len());
            start = done.min(schedule.len());
            resumed_after = Some(done);
            tracing::info!(
                epochs_done = done,
                "resumed GradSplitter from {}",
                ckpt.dir().display()
            );
        }
    }
    let (acc_m, balanced_m) = model_scores(model, data, cfg.eval_batch)?;
    let metric = SelectionMetric::for_labels(&val_labels(data), n);
    tracing::info!(
        model_accuracy = acc_m,
        model_balanced_accuracy = balanced_m,
        selection_metric = ?metric,
        "GradSplitter starts"
    );
    on_event(&GradSplitEvent::Started {
        epochs: schedule.len(),
        model_accuracy: acc_m,
        resumed_after,
    });

    let mut stopped_early = false;
    for (epoch, &phase) in schedule.iter().enumerate().skip(start) {
        // the stop rule reads the log only, so a resumed run stops where an uninterrupted one
        // did; the head epochs of the pattern in progress still run
        if phase == Phase::Mask && krr_stalled(&st.log, cfg.krr_patience) {
            tracing::info!(
                epochs_run = st.log.len(),
                krr_patience = cfg.krr_patience,
                "GradSplitter stops: the mean KRR stopped falling"
            );
            stopped_early = true;
            break;
        }
        let started = Instant::now();
        let (lr, lambda) = cfg.phase_params(phase);
        if st.adam.as_ref().map(|(p, _)| *p) != Some(phase) {
            let head_lr = match phase {
                Phase::Mask => cfg.mask_phase_head_lr,
                _ => None,
            };
            let adam = Adam::new(st.params(phase), lr, cfg)?.with_head_lr(head_lr);
            st.adam = Some((phase, adam));
        }
        let batches = Batches::new(
            data.set,
            data.train.clone(),
            cfg.batch_size,
            data.format.clone(),
            None,
            true,
            epoch_rng(cfg.seed, Stream::Splitter, epoch),
            device.clone(),
        );
        on_event(&GradSplitEvent::EpochStart {
            epoch: epoch + 1,
            epochs: schedule.len(),
            phase,
            batches: batches.len(),
        });
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        for (b, batch) in batches.enumerate() {
            let (x, y) = batch?;
            let bsz = x.dim(0)?;
            let value = batch_step(
                model,
                &st.masks,
                &st.heads,
                st.adam.as_mut().map(|(_, a)| a),
                &x,
                &y,
                phase == Phase::Mask,
                lambda,
            )?;
            if !value.is_finite() {
                return Err(GradSplitError::NonFiniteLoss {
                    epoch: epoch + 1,
                    batch: b + 1,
                    value,
                });
            }
            loss_sum += value as f64 * bsz as f64;
            seen += bsz;
            on_event(&GradSplitEvent::Batch {
                batch: b + 1,
                loss: value,
            });
        }
        let bin: Vec<Tensor> = st
            .masks
            .iter()
            .map(|m| binarize_detached(m.as_tensor())?.to_device(&device))
            .collect::<candle_core::Result<_>>()?;
        let heads = st.heads().snapshot(&device)?;
        let v = evaluate(model, &heads, &bin, data, cfg.eval_batch)?;
        let acc = v.accuracy;
        let record = SearchEpoch {
            epoch: epoch + 1,
            phase,
            train_loss: loss_sum / seen.max(1) as f64,
            val_accuracy: acc,
            mean_kernels: v.mean_kernels,
            mean_krr: v.mean_kernels / k_tot as f64,
            seconds: started.elapsed().as_secs_f64(),
            val_balanced_accuracy: Some(v.balanced_accuracy),
            collapsed_classes: v.collapsed_classes,
        };
        tracing::info!(
            epoch = record.epoch,
            phase = ?phase,
            loss = record.train_loss,
            val_acc = record.val_accuracy,
            mean_krr = record.mean_krr,
            "GradSplitter epoch done"
        );
        let bin_cpu: Vec<Tensor> = bin
            .iter()
            .map(|t| t.to_device(&Device::Cpu))
            .collect::<candle_core::Result<_>>()?;
        st.history.push((bin_cpu, heads));
        st.log.push(record.clone());
        if let Some(ckpt) = &checkpointer {
            checkpoint::save(ckpt, &st, cfg, &model_sha, &fp, epoch + 1, acc_m)?;
        }
        on_event(&GradSplitEvent::EpochEnd(record));
    }
    let model_score = match metric {
        SelectionMetric::Accuracy => acc_m,
        SelectionMetric::BalancedAccuracy => balanced_m,
    };
    let chosen = choose_epoch(&st.log, model_score, cfg.tolerance, metric)
        .ok_or_else(|| GradSplitError::Invalid("the search ran no epoch".into()))?;
    let rec = &st.log[chosen];
    on_event(&GradSplitEvent::Chosen {
        epoch: rec.epoch,
        val_accuracy: rec.val_accuracy,
        mean_kernels: rec.mean_kernels,
    });
    tracing::info!(
        epoch = rec.epoch,
        val_acc = rec.val_accuracy,
        mean_kernels = rec.mean_kernels,
        "GradSplitter chose its epoch"
    );
    if !rec.collapsed_classes.is_empty() {
        tracing::warn!(
            "GradSplitter's chosen epoch {} has collapsed modules (classes {:?}): no epoch within the tolerance was free of them",
            rec.epoch,
            rec.collapsed_classes
        );
    }
    let (bin, heads) = &st.history[chosen];
    Ok(GradSplitResult {
        chosen_epoch: rec.epoch,
        masks: masks_of(bin, n)?,
        heads: heads.clone(),
        log: st.log.clone(),
        model_accuracy: acc_m,
        total_kernels: k_tot,
        resumed_after,
        selection_metric: metric,
        model_balanced_accuracy: balanced_m,
        stopped_early,
    })
}
