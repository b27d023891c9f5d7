//! What a decomposition reads and writes: the model, its data and split, the output folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use cnn_models::decomposition::DECOMPOSITION_FILE;
use cnn_models::val_split::ValidationSplit;
use cnn_models::TrainData;

use crate::args::*;
use crate::setup::{device, load_data, ops_for};

/// What a decomposition reads and where it writes: the flags both methods share.
#[derive(Clone, Copy, Debug)]
pub struct DecomposeTarget<'a> {
    /// The model directory.
    pub model: &'a Path,
    /// Dataset NAME[=DIR]; `None`: the model's own.
    pub dataset: Option<&'a str>,
    /// Output directory.
    pub out: &'a Path,
    /// Use only N images of the training part.
    pub limit: Option<usize>,
    /// Which N images `limit` keeps.
    pub limit_sampling: LimitSampling,
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
            limit_sampling: a.limit_sampling,
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
    /// The split the indices come from, recorded in `model.json` or assumed.
    pub val_split: ValidationSplit,
    /// `first-N` or `class-balanced-N` when `--limit` cut the training part, else empty.
    pub train_sample: String,
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
    let val_split = ValidationSplit::of(&meta);
    if let Some(warning) = val_split.warning(t.model) {
        tracing::warn!("{warning}");
    }
    let (train_idx, val_idx) = val_split.split.indices(&data.train, val_split.seed)?;
    let sampling = match t.limit_sampling {
        LimitSampling::Auto => splitter_grad::LimitSampling::Auto,
        LimitSampling::First => splitter_grad::LimitSampling::First,
        LimitSampling::Balanced => splitter_grad::LimitSampling::Balanced,
    };
    let (train_idx, train_sample) = splitter_grad::limit_training_part(
        train_idx,
        &data.train.labels,
        data.train.num_classes(),
        t.limit,
        sampling,
    );
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
        val_split,
        train_sample,
    })
}
