//! Kernel importance (design §6.1): how strongly each kernel fires on the images of a class that
//! the model classifies confidently, which orders the kernels of every gene-layer per class.

use candle_core::{DType, Tensor, D};
use cnn_models::{ForwardOptions, Model};
use serde::{Deserialize, Serialize};

use crate::error::{GaError, Result};

/// Per-class importance of every kernel of every mask site (= gene-layer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelImportance {
    /// `scores[c][s][k]`: mean over the images used for class `c` of kernel `k`'s activity (L1
    /// norm of its post-activation map), summed over the convs of site `s`.
    pub scores: Vec<Vec<Vec<f64>>>,
    /// Images used per class.
    pub images: Vec<usize>,
    /// Classes where no image reached the confidence threshold, so all their images were used
    /// \[ours; the reference crashes\].
    pub fallback: Vec<usize>,
}

impl KernelImportance {
    /// Kernel indices of each site ordered by decreasing importance (ties: lower index first),
    /// per class: `orders[c][s]`.
    pub fn orders(&self) -> Vec<Vec<Vec<usize>>> {
        self.scores
            .iter()
            .map(|sites| {
                sites
                    .iter()
                    .map(|scores| {
                        let mut order: Vec<usize> = (0..scores.len()).collect();
                        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
                        order
                    })
                    .collect()
            })
            .collect()
    }
}

/// Measures kernel importance on normalised images `x` `[n, C, H, W]` with `labels`: for class
/// c, the class-c images whose softmax probability of c is at least `confidence` (all class-c
/// images when none is), in batches of `batch` with running sums (design §11.10). Coupled convs
/// of one site share a ranking because their activities are summed.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use cnn_models::{presets, Model};
/// let model = Model::init(presets::simcnn(0.0625, 3, 3, true), 1, &Device::Cpu).unwrap();
/// let x = Tensor::randn(0f32, 1.0, (6, 3, 32, 32), &Device::Cpu).unwrap();
/// let imp = splitter_ga::kernel_importance(&model, &x, &[0, 1, 2, 0, 1, 2], 0.9, 4).unwrap();
/// assert_eq!(imp.scores.len(), 3);
/// assert_eq!(imp.scores[0].len(), model.analysis().sites.len());
/// assert_eq!(imp.orders()[1][0].len(), model.analysis().sites[0].channels);
/// ```
pub fn kernel_importance(
    model: &Model,
    x: &Tensor,
    labels: &[u32],
    confidence: f64,
    batch: usize,
) -> Result<KernelImportance> {
    let n = x.dim(0)?;
    if n != labels.len() {
        return Err(GaError::Count {
            what: "labels (one per image)",
            expected: n,
            found: labels.len(),
        });
    }
    let analysis = model.analysis();
    let classes = model.spec().num_classes;
    if let Some(&bad) = labels.iter().find(|&&y| y as usize >= classes) {
        return Err(GaError::InvalidFitnessInput(format!(
            "label {bad} but the model has {classes} classes"
        )));
    }
    let convs = &analysis.convs;
    // sums[kind][class][conv][kernel], kind 0 = confident images, 1 = all images
    let mut sums: [Vec<Vec<Vec<f64>>>; 2] = std::array::from_fn(|_| {
        (0..classes)
            .map(|_| convs.iter().map(|c| vec![0.0; c.out_channels]).collect())
            .collect()
    });
    let mut counts = [vec![0usize; classes], vec![0usize; classes]];
    let mut start = 0;
    while start < n {
        let len = batch.max(1).min(n - start);
        let xb = x.narrow(0, start, len)?;
        let mut activity = Vec::new();
        let (logits, _) = model.forward(
            &xb,
            ForwardOptions {
                activity: Some(&mut activity),
                ..Default::default()
            },
        )?;
        let probs: Vec<Vec<f32>> = softmax_rows(&logits)?.to_vec2()?;
        let acts: Vec<Vec<Vec<f32>>> = activity
            .iter()
            .map(|a| a.to_dtype(DType::F32)?.to_vec2())
            .collect::<candle_core::Result<_>>()?;
        for i in 0..len {
            let c = labels[start + i] as usize;
            let confident = probs[i][c] as f64 >= confidence;
            for kind in 0..2 {
                if kind == 0 && !confident {
                    continue;
                }
                counts[kind][c] += 1;
                for (conv, act) in acts.iter().enumerate() {
                    for (s, &v) in sums[kind][c][conv].iter_mut().zip(&act[i]) {
                        *s += v as f64;
                    }
                }
            }
        }
        start += len;
    }
    let mut fallback = Vec::new();
    let mut images = Vec::with_capacity(classes);
    let mut scores = Vec::with_capacity(classes);
    for c in 0..classes {
        let kind = if counts[0][c] > 0 {
            0
        } else {
            if counts[1][c] > 0 {
                tracing::warn!(
                    class = c,
                    "no image reaches the confidence threshold {confidence}; using all {} images of the class",
                    counts[1][c]
                );
            } else {
                tracing::warn!(class = c, "no image of this class: importance is all zero");
            }
            fallback.push(c);
            1
        };
        let count = counts[kind][c].max(1) as f64;
        images.push(counts[kind][c]);
        scores.push(
            analysis
                .sites
                .iter()
                .map(|site| {
                    let mut s = vec![0.0; site.channels];
                    for &conv in &site.convs {
                        for (acc, v) in s.iter_mut().zip(&sums[kind][c][conv]) {
                            *acc += v / count;
                        }
                    }
                    s
                })
                .collect(),
        );
    }
    Ok(KernelImportance {
        scores,
        images,
        fallback,
    })
}

fn softmax_rows(logits: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?;
    let e = logits.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}
