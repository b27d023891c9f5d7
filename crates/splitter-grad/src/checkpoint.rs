//! GradSplitter checkpoints: what the search's state is as a commit record and tensors of a
//! [`Checkpointer`], and back.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use cnn_models::checkpoint::{
    setting_differences, CheckpointKind, Checkpointer, DifferentRun, JsonLayout, TensorFiles,
};
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::config::{GradSplitConfig, Phase, SearchEpoch};
use crate::error::{GradSplitError, Result};
use crate::heads::{Heads, HEAD_KEYS};
use crate::search::State;

/// File name of the checkpoint's commit record.
pub const CHECKPOINT_META: &str = "gradsplit.json";

/// GradSplitter checkpoints: `gradsplit.json` naming `gradsplit-epochN.safetensors` (format
/// version 2). Version 1 kept its tensors in `gradsplit.safetensors` and resumes like
/// version 2.
pub static GRADSPLIT_CHECKPOINT: CheckpointKind = CheckpointKind {
    format: "cnnsplit-gradsplit-checkpoint",
    name: "GradSplitter checkpoint",
    version: 2,
    versions_read: &[1, 2],
    record_file: CHECKPOINT_META,
    tensors: Some(TensorFiles {
        prefix: "gradsplit-epoch",
        version_1_file: "gradsplit.safetensors",
    }),
    layout: JsonLayout::Pretty,
};

/// A GradSplitter checkpoint's own fields. Its tensors file holds the masks (`mask.S`),
/// heads (`head.K`), Adam's moments (`adam.m.P`, `adam.v.P`) and every finished epoch's
/// binary masks and heads (`epochE.mask.S`, `epochE.head.K`).
#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    config: GradSplitConfig,
    model_sha256: String,
    data_fingerprint: String,
    epochs_done: usize,
    model_accuracy: f64,
    log: Vec<SearchEpoch>,
    adam_phase: Option<Phase>,
    adam_step: usize,
    adam_params: Vec<String>,
}

/// Commit the checkpoint after `done` epochs.
pub(crate) fn save(
    ckpt: &Checkpointer,
    st: &State,
    cfg: &GradSplitConfig,
    model_sha: &str,
    fp: &str,
    done: usize,
    acc_m: f64,
) -> Result<()> {
    let mut all: BTreeMap<String, Tensor> = BTreeMap::new();
    for (s, m) in st.masks.iter().enumerate() {
        all.insert(format!("mask.{s}"), m.as_tensor().clone());
    }
    for (k, v) in HEAD_KEYS.iter().zip(&st.heads) {
        all.insert(format!("head.{k}"), v.as_tensor().clone());
    }
    let (adam_phase, adam_step, adam_params) = match &st.adam {
        Some((phase, adam)) => {
            for (i, (name, _)) in adam.params.iter().enumerate() {
                all.insert(format!("adam.m.{name}"), adam.m[i].clone());
                all.insert(format!("adam.v.{name}"), adam.v[i].clone());
            }
            (
                Some(*phase),
                adam.t,
                adam.params.iter().map(|(n, _)| n.clone()).collect(),
            )
        }
        None => (None, 0, vec![]),
    };
    for (e, (bin, heads)) in st.history.iter().enumerate() {
        for (s, t) in bin.iter().enumerate() {
            all.insert(format!("epoch{e}.mask.{s}"), t.clone());
        }
        for (k, t) in HEAD_KEYS.iter().zip(heads.tensors()) {
            all.insert(format!("epoch{e}.head.{k}"), t.clone());
        }
    }
    let meta = CheckpointMeta {
        config: cfg.clone(),
        model_sha256: model_sha.into(),
        data_fingerprint: fp.into(),
        epochs_done: done,
        model_accuracy: acc_m,
        log: st.log.clone(),
        adam_phase,
        adam_step,
        adam_params,
    };
    Ok(ckpt.commit(done, &all, &meta)?)
}

/// Restore `st` from the committed checkpoint, if there is one: returns the epochs it had
/// done. A checkpoint of other settings (besides `mask_epochs` and `krr_patience`, which only
/// say where the run stops), another model or other data is
/// an error.
pub(crate) fn load(
    ckpt: &Checkpointer,
    st: &mut State,
    cfg: &GradSplitConfig,
    model_sha: &str,
    fp: &str,
    device: &Device,
) -> Result<Option<usize>> {
    let Some(saved) = ckpt.load::<CheckpointMeta>()? else {
        tracing::warn!(
            "no GradSplitter checkpoint in {}: starting from scratch",
            ckpt.dir().display()
        );
        return Ok(None);
    };
    let (meta, meta_path) = (&saved.body, &saved.path);
    // the number of epochs may change: a shorter run stops at its last epoch, a longer one goes on
    let same_but_epochs = GradSplitConfig {
        mask_epochs: cfg.mask_epochs,
        krr_patience: cfg.krr_patience,
        ..meta.config.clone()
    };
    if same_but_epochs != *cfg {
        return Err(DifferentRun {
            path: meta_path.clone(),
            what: "settings",
            differences: setting_differences(&meta.config, cfg)?
                .into_iter()
                .filter(|d| !d.starts_with("mask_epochs:") && !d.starts_with("krr_patience:"))
                .collect(),
        }
        .into());
    }
    if meta.model_sha256 != model_sha {
        return Err(GradSplitError::bad(
            meta_path,
            "the checkpoint was made for a different model (weights differ)",
        ));
    }
    if meta.data_fingerprint != fp {
        return Err(GradSplitError::bad(
            meta_path,
            "the checkpoint was made for a different dataset split",
        ));
    }
    let get = |k: &str| -> Result<Tensor> { Ok(saved.tensor(k)?) };
    for (s, m) in st.masks.iter().enumerate() {
        m.set(&get(&format!("mask.{s}"))?)?;
    }
    for (k, v) in HEAD_KEYS.iter().zip(&st.heads) {
        v.set(&get(&format!("head.{k}"))?.to_device(device)?)?;
    }
    st.adam = match meta.adam_phase {
        Some(phase) => {
            let (lr, _) = cfg.phase_params(phase);
            let mut adam = Adam::new(st.params(phase), lr, cfg)?;
            let names: Vec<String> = adam.params.iter().map(|(n, _)| n.clone()).collect();
            if names != meta.adam_params {
                return Err(GradSplitError::bad(
                    meta_path,
                    "optimiser parameters do not match the phase",
                ));
            }
            for (i, (name, var)) in adam.params.iter().enumerate() {
                adam.m[i] = get(&format!("adam.m.{name}"))?.to_device(var.device())?;
                adam.v[i] = get(&format!("adam.v.{name}"))?.to_device(var.device())?;
            }
            adam.t = meta.adam_step;
            Some((phase, adam))
        }
        None => None,
    };
    st.history.clear();
    for e in 0..meta.epochs_done {
        let bin = (0..st.masks.len())
            .map(|s| get(&format!("epoch{e}.mask.{s}")))
            .collect::<Result<Vec<_>>>()?;
        let t = |k: &str| -> Result<Tensor> {
            Ok(get(&format!("epoch{e}.head.{k}"))?.to_device(device)?)
        };
        let heads = Heads::from_tensors([
            t(HEAD_KEYS[0])?,
            t(HEAD_KEYS[1])?,
            t(HEAD_KEYS[2])?,
            t(HEAD_KEYS[3])?,
        ])?;
        st.history.push((bin, heads));
    }
    if meta.log.len() != meta.epochs_done {
        return Err(GradSplitError::bad(
            meta_path,
            "epoch log length does not match epochs_done",
        ));
    }
    let done = meta.epochs_done;
    st.log = saved.body.log;
    Ok(Some(done))
}
