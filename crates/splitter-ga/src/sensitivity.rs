//! Layer sensitivity (design §6.2): how much composed accuracy falls when one gene-layer keeps
//! only its most important kernels, which marks the layers the initial population prunes
//! gently.

use candle_core::{DType, Tensor};
use cnn_models::extract::{mask_tensors, KernelMask};
use cnn_models::{ForwardOptions, Model};
use serde::{Deserialize, Serialize};

use crate::error::{GaError, Result};

/// Composed accuracy per mask site and keep ratio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSensitivity {
    /// Keep ratios r measured (the top ⌊r·C⌋ kernels of the site kept, at least one).
    pub ratios: Vec<f64>,
    /// Composed accuracy with every kernel kept (the model's own accuracy).
    pub full_accuracy: f64,
    /// `accuracy[s][i]`: composed accuracy when site `s` keeps ratio `ratios[i]`.
    pub accuracy: Vec<Vec<f64>>,
}

impl LayerSensitivity {
    /// The automatic rule \[ours\]: site s is sensitive when its accuracy at the measured ratio
    /// closest to `ratio` is more than `max_drop` (absolute) below the full accuracy.
    ///
    /// ```
    /// let s = splitter_ga::LayerSensitivity {
    ///     ratios: vec![0.5],
    ///     full_accuracy: 0.9,
    ///     accuracy: vec![vec![0.7], vec![0.88]],
    /// };
    /// assert_eq!(s.sensitive_layers(0.5, 0.05), vec![0]);
    /// ```
    pub fn sensitive_layers(&self, ratio: f64, max_drop: f64) -> Vec<usize> {
        let Some(col) = (0..self.ratios.len()).min_by(|&a, &b| {
            (self.ratios[a] - ratio)
                .abs()
                .total_cmp(&(self.ratios[b] - ratio).abs())
        }) else {
            return Vec::new();
        };
        self.accuracy
            .iter()
            .enumerate()
            .filter(|(_, acc)| self.full_accuracy - acc[col] > max_drop)
            .map(|(s, _)| s)
            .collect()
    }
}

/// Accuracy of the composition of N masked modules, module c using `masks[c]` (one
/// [`KernelMask`] per site) and scoring with its logit c: all N run as one batch of N·B images.
pub fn composed_masked_accuracy(
    model: &Model,
    x: &Tensor,
    labels: &[u32],
    masks: &[Vec<KernelMask>],
    batch: usize,
) -> Result<f64> {
    let n = masks.len();
    let images = x.dim(0)?;
    if images != labels.len() {
        return Err(GaError::Count {
            what: "labels (one per image)",
            expected: images,
            found: labels.len(),
        });
    }
    if images == 0 {
        return Ok(0.0);
    }
    let sites = model.analysis().sites.len();
    let per_site: Vec<Tensor> = (0..sites)
        .map(|s| {
            let rows: Vec<KernelMask> = masks.iter().map(|m| m[s].clone()).collect();
            let t = mask_tensors(&rows, model.device())?;
            Ok(Tensor::cat(&t, 0)?)
        })
        .collect::<Result<_>>()?;
    let chunk = (batch / n.max(1)).max(1);
    let mut correct = 0usize;
    let mut start = 0;
    while start < images {
        let len = chunk.min(images - start);
        let xb = x.narrow(0, start, len)?;
        let rep = Tensor::cat(&vec![xb; n], 0)?;
        let (logits, _) = model.forward(
            &rep,
            ForwardOptions {
                masks: Some(&per_site),
                ..Default::default()
            },
        )?;
        let logits: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        for i in 0..len {
            let mut best = 0;
            let mut best_v = f32::NEG_INFINITY;
            for c in 0..n {
                let v = logits[c * len + i][c];
                if v > best_v {
                    best_v = v;
                    best = c;
                }
            }
            correct += usize::from(best as u32 == labels[start + i]);
        }
        start += len;
    }
    Ok(correct as f64 / images as f64)
}

/// Measures layer sensitivity: for every site and ratio, every class's module keeps the top
/// ⌊r·C⌋ (at least 1) kernels of that site by its own importance order (`orders[c][s]`) and
/// every kernel elsewhere.
pub fn layer_sensitivity(
    model: &Model,
    x: &Tensor,
    labels: &[u32],
    orders: &[Vec<Vec<usize>>],
    ratios: &[f64],
    batch: usize,
) -> Result<LayerSensitivity> {
    let sites = &model.analysis().sites;
    let full: Vec<KernelMask> = sites.iter().map(|s| vec![true; s.channels]).collect();
    let full_masks = vec![full.clone(); orders.len()];
    let full_accuracy = composed_masked_accuracy(model, x, labels, &full_masks, batch)?;
    let mut accuracy = Vec::with_capacity(sites.len());
    for (s, site) in sites.iter().enumerate() {
        let mut row = Vec::with_capacity(ratios.len());
        for &r in ratios {
            if !(0.0..=1.0).contains(&r) {
                return Err(GaError::InvalidConfig(format!(
                    "sensitivity ratio {r} is outside [0, 1]"
                )));
            }
            let keep = ((r * site.channels as f64).floor() as usize).clamp(1, site.channels);
            let masks: Vec<Vec<KernelMask>> = orders
                .iter()
                .map(|class_orders| {
                    let mut m = full.clone();
                    m[s] = vec![false; site.channels];
                    for &k in &class_orders[s][..keep] {
                        m[s][k] = true;
                    }
                    m
                })
                .collect();
            row.push(composed_masked_accuracy(model, x, labels, &masks, batch)?);
        }
        tracing::debug!(site = s, accuracy = ?row, "layer sensitivity");
        accuracy.push(row);
    }
    Ok(LayerSensitivity {
        ratios: ratios.to_vec(),
        full_accuracy,
        accuracy,
    })
}
