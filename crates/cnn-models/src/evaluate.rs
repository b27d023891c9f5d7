//! Evaluation of a model on a labelled set (unaugmented, deterministic views).

use candle_core::Tensor;
use cnn_data::{ImageSet, InputFormat};

use crate::error::Result;
use crate::metrics::{argmax_rows, Evaluation};
use crate::model::Model;

/// Evaluation-mode logits for `indices` of `set`, as a row-major `[n, classes]` vector.
pub fn predict(
    model: &Model,
    set: &ImageSet,
    indices: &[usize],
    format: &InputFormat,
    batch: usize,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(indices.len() * model.spec().num_classes);
    for chunk in indices.chunks(batch.max(1)) {
        let (x, _) = cnn_data::to_tensor(set, chunk, format, None, model.device())?;
        let logits: Tensor = model.forward_eval(&x)?;
        out.extend(logits.detach().flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Accuracy, per-class metrics and confusion matrix of `model` on `indices` of `set`.
pub fn evaluate(
    model: &Model,
    set: &ImageSet,
    indices: &[usize],
    format: &InputFormat,
    batch: usize,
) -> Result<Evaluation> {
    let n = model.spec().num_classes;
    if set.num_classes() > n {
        return Err(crate::ModelError::Mismatch(format!(
            "dataset `{}` has {} classes, the model only {n}",
            set.name,
            set.num_classes()
        )));
    }
    let logits = predict(model, set, indices, format, batch)?;
    let preds = argmax_rows(&logits, n);
    let labels: Vec<u32> = indices.iter().map(|&i| set.labels[i] as u32).collect();
    Ok(Evaluation::new(&labels, &preds, n))
}
