//! Fast CPU ops for cnnsplit's CNNs, as candle custom ops with their own backward, so that
//! candle's autograd keeps working while the heavy lifting avoids candle's slow CPU paths.
//!
//! * [`conv2d`]: im2col + GEMM (the `gemm` crate) forward; input gradient as `Wᵀ·dY` +
//!   col2im, weight gradient as `dY·im2colᵀ`; gradients only for arguments that need one
//!   (a frozen weight gets none).
//! * [`batch_norm_train`], [`batch_norm_eval`]: fused batch norm (+ optional ReLU) with a
//!   one-pass-per-channel backward.
//! * [`channel_mask`], [`batch_norm_relu_mask`]: GradSplitter's batched per-module channel
//!   masks, the latter fused with eval BN and ReLU.
//! * [`max_pool2d`]: max-pool with an argmax-scatter backward.
//! * [`conv_bn_train`], [`conv_bn_eval`]: a conv followed by batch norm (→ ReLU → mask) as one
//!   op, for training and for evaluation / GradSplitter's masked forward, so that the conv
//!   output is not a node of candle's graph.
//! * [`sgd_update`]: the SGD step (weight decay, momentum) as one parallel pass.
//!
//! The element-wise passes are compiled for the baseline and for AVX2 + FMA and dispatched at
//! run time.
//!
//! All take NCHW f32 tensors. On a non-CPU device or another dtype each function falls back to
//! the equivalent composition of stock candle ops in [`reference`], so callers can use them
//! unconditionally.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//!
//! # fn main() -> candle_core::Result<()> {
//! let dev = Device::Cpu;
//! let x = Var::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
//! let w = Var::randn(0f32, 0.1, (4, 3, 3, 3), &dev)?;
//! let b = Var::zeros(4, candle_core::DType::F32, &dev)?;
//! let gamma = Var::ones(4, candle_core::DType::F32, &dev)?;
//! let beta = Var::zeros(4, candle_core::DType::F32, &dev)?;
//!
//! let y = cpu_ops::conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), 1, 1)?;
//! let (y, mean, var) = cpu_ops::batch_norm_train(&y, gamma.as_tensor(), beta.as_tensor(), 1e-5, true)?;
//! let y = cpu_ops::max_pool2d(&y, 2, 2)?;
//! assert_eq!(y.dims(), &[2, 4, 4, 4]);
//! assert_eq!((mean.dims(), var.dims()), (&[4][..], &[4][..]));
//!
//! let grads = y.sum_all()?.backward()?;
//! assert_eq!(grads.get(x.as_tensor()).unwrap().dims(), &[2, 3, 8, 8]);
//! assert_eq!(grads.get(w.as_tensor()).unwrap().dims(), &[4, 3, 3, 3]);
//! assert!(grads.get(gamma.as_tensor()).is_some());
//!
//! // A frozen (plain) weight gets no gradient; the input gradient is still computed.
//! let frozen = w.as_tensor().detach();
//! let y = cpu_ops::conv2d(x.as_tensor(), &frozen, None, 1, 1)?;
//! let grads = y.sum_all()?.backward()?;
//! assert!(grads.get(&frozen).is_none());
//! assert!(grads.get(x.as_tensor()).is_some());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

use std::sync::{Arc, OnceLock};

use candle_core::{bail, DType, Result, Tensor};

mod block;
mod bn;
mod conv;
mod grouped;
mod optim;
mod pool;
pub mod reference;
pub use grouped::{depthwise_conv2d, DepthwiseGeometry};
mod rows;
mod util;
mod winograd;

use util::{check_vec, dims4};

/// True when every tensor is an f32 CPU tensor, i.e. the fast path applies.
fn fast(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// 2-D convolution, square kernel, the same stride and padding on both axes, dilation 1,
/// groups 1. `x` is `[N, Ci, H, W]`, `weight` `[Co, Ci, k, k]`, `bias` `[Co]`; the result is
/// `[N, Co, (H+2p-k)/s+1, (W+2p-k)/s+1]`.
///
/// Backward: input gradient as a GEMM (`Wᵀ·dY`) + col2im, weight gradient as a GEMM
/// (`dY·im2colᵀ`), bias gradient as a sum. A gradient is computed only for an argument that
/// needs one ([`Tensor::track_op`]): a frozen plain weight gets none, and an input that is
/// not tracked (e.g. the images) costs no input-gradient GEMM.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (_, ci, _, _) = dims4(x, "conv2d input")?;
    let (co, wci, kh, kw) = dims4(weight, "conv2d weight")?;
    if wci != ci || kh != kw || stride == 0 {
        bail!(
            "cpu-ops conv2d: weight {:?} does not fit input {:?} (square kernel, stride ≥ 1)",
            weight.dims(),
            x.dims()
        )
    }
    if let Some(b) = bias {
        check_vec(b, co, "conv2d bias")?;
    }
    let all_fast = fast(&[x, weight]) && bias.is_none_or(|b| fast(&[b]));
    if !all_fast {
        return reference::conv2d(x, weight, bias, stride, padding);
    }
    let x = x.contiguous()?;
    let w = weight.contiguous()?;
    let op = conv::Conv2dOp { stride, padding };
    match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}

/// The learned tensors of a conv → batch-norm block, borrowed for one call of
/// [`conv_bn_train`] or [`conv_bn_eval`].
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> candle_core::Result<()> {
/// let dev = Device::Cpu;
/// let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &dev)?;
/// let (gamma, beta) = (Tensor::ones(4, DType::F32, &dev)?, Tensor::zeros(4, DType::F32, &dev)?);
/// let params = cpu_ops::ConvBnParams { weight: &w, bias: None, gamma: &gamma, beta: &beta };
/// assert_eq!(params.weight.dims(), &[4, 3, 3, 3]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ConvBnParams<'a> {
    /// Conv weight `[Co, Ci, K, K]`.
    pub weight: &'a Tensor,
    /// Conv bias `[Co]`, if the conv has one.
    pub bias: Option<&'a Tensor>,
    /// Batch-norm scale `[Co]`.
    pub gamma: &'a Tensor,
    /// Batch-norm shift `[Co]`.
    pub beta: &'a Tensor,
}

/// A batch norm's running statistics `[Co]`, used by [`conv_bn_eval`].
#[derive(Clone, Copy, Debug)]
pub struct RunningStats<'a> {
    /// Running mean.
    pub mean: &'a Tensor,
    /// Running (unbiased) variance.
    pub var: &'a Tensor,
}

/// The fixed settings of a conv → batch-norm (→ ReLU) block.
///
/// The default is stride 1, no padding, ε = 1e-5 (PyTorch's), no ReLU.
///
/// ```
/// let cfg = cpu_ops::ConvBnConfig { padding: 1, relu: true, ..Default::default() };
/// assert_eq!((cfg.stride, cfg.eps), (1, 1e-5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvBnConfig {
    /// Conv stride (≥ 1).
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Batch-norm ε.
    pub eps: f64,
    /// Apply a ReLU after the batch norm.
    pub relu: bool,
}

impl Default for ConvBnConfig {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            eps: 1e-5,
            relu: false,
        }
    }
}

/// Training-mode conv2d → batch norm (→ ReLU) (→ max-pool) as one op: the same result and
/// gradients as [`conv2d`] followed by [`batch_norm_train`] (and [`max_pool2d`] with
/// `pool = Some((kernel, stride))`), without the intermediate tensors as nodes of candle's
/// graph (candle gives each node's gradient a zero-filled buffer and an extra addition pass,
/// single-threaded; here the pool and batch-norm backwards feed the conv backward directly).
///
/// Returns `(y, batch_mean, batch_var_biased)` like [`batch_norm_train`], `y` pooled if asked.
/// Gradients flow to `x`, `weight`, `bias`, `gamma` and `beta`, each only if it tracks.
///
/// ```
/// use candle_core::{DType, Device, Var};
/// use cpu_ops::{ConvBnConfig, ConvBnParams};
/// # fn main() -> candle_core::Result<()> {
/// let dev = Device::Cpu;
/// let x = Var::randn(0f32, 1.0, (2, 3, 6, 6), &dev)?;
/// let w = Var::randn(0f32, 0.2, (4, 3, 3, 3), &dev)?;
/// let (gamma, beta) = (Var::ones(4, DType::F32, &dev)?, Var::zeros(4, DType::F32, &dev)?);
/// let params = ConvBnParams { weight: &w, bias: None, gamma: &gamma, beta: &beta };
/// let cfg = ConvBnConfig { padding: 1, relu: true, ..Default::default() };
/// let (y, mean, _var) = cpu_ops::conv_bn_train(&x, &params, &cfg, None)?;
/// let conv = cpu_ops::conv2d(&x, &w, None, 1, 1)?;
/// let (y2, mean2, _) = cpu_ops::batch_norm_train(&conv, &gamma, &beta, 1e-5, true)?;
/// let diff = (&y - &y2)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert!(diff < 1e-5);
/// let grads = y.sum_all()?.backward()?;
/// assert!(grads.get(&w).is_some() && grads.get(&gamma).is_some());
/// # let _ = (mean, mean2);
///
/// // With the 2×2 pool inside:
/// let (yp, _, _) = cpu_ops::conv_bn_train(&x, &params, &cfg, Some((2, 2)))?;
/// assert_eq!(yp.dims(), &[2, 4, 3, 3]);
/// let diff = (&yp - cpu_ops::max_pool2d(&y, 2, 2)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert!(diff < 1e-5);
/// # Ok(())
/// # }
/// ```
pub fn conv_bn_train(
    x: &Tensor,
    params: &ConvBnParams<'_>,
    cfg: &ConvBnConfig,
    pool: Option<(usize, usize)>,
) -> Result<(Tensor, Tensor, Tensor)> {
    let ConvBnParams {
        weight,
        bias,
        gamma,
        beta,
    } = *params;
    let ConvBnConfig {
        stride,
        padding,
        eps,
        relu,
    } = *cfg;
    let (co, _, _, _) = dims4(weight, "conv_bn_train weight")?;
    check_vec(gamma, co, "conv_bn_train gamma")?;
    check_vec(beta, co, "conv_bn_train beta")?;
    let all_fast = fast(&[x, weight, gamma, beta]) && bias.is_none_or(|b| fast(&[b]));
    if !all_fast {
        let y = conv2d(x, weight, bias, stride, padding)?;
        let (y, mean, var) = batch_norm_train(&y, gamma, beta, eps, relu)?;
        return match pool {
            Some((k, s)) => Ok((max_pool2d(&y, k, s)?, mean, var)),
            None => Ok((y, mean, var)),
        };
    }
    let (_, ci, _, _) = dims4(x, "conv_bn_train input")?;
    let (_, wci, kh, kw) = dims4(weight, "conv_bn_train weight")?;
    if wci != ci || kh != kw || stride == 0 {
        bail!(
            "cpu-ops conv_bn_train: weight {:?} does not fit input {:?} (square kernel, stride ≥ 1)",
            weight.dims(),
            x.dims()
        )
    }
    let mut rows = Vec::with_capacity(3);
    if let Some(b) = bias {
        check_vec(b, co, "conv_bn_train bias")?;
        rows.push(b.clone());
    }
    rows.push(gamma.clone());
    rows.push(beta.clone());
    let params = Tensor::stack(&rows, 0)?;
    let saved = Arc::new(OnceLock::new());
    let op = block::ConvBnTrainOp {
        stride,
        padding,
        eps,
        relu,
        pool,
        saved: saved.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &params, op)?;
    let Some(sv) = saved.get() else {
        bail!("cpu-ops conv_bn_train: forward produced no statistics")
    };
    let mean = Tensor::new(sv.stats.mean.as_slice(), x.device())?;
    let var = Tensor::new(sv.stats.var.as_slice(), x.device())?;
    Ok((y, mean, var))
}

/// Eval-mode conv2d → batch norm (running statistics, frozen) → optional ReLU → optional
/// channel mask, as one op: the same result as [`conv2d`] + [`batch_norm_eval`] (or
/// [`batch_norm_relu_mask`]) + [`channel_mask`]. The batch-norm affine (with the conv bias
/// folded in) is applied to each output row while it is hot, and the conv output is not a
/// node of candle's graph; when nothing needs a gradient it is not even kept.
///
/// `mask`, if given, is `[G, Co]` for a batch of `G·B` images (GradSplitter's modules).
/// Gradients flow to `x`, `weight` and `mask` (each only if it tracks; the backward computes
/// the conv output's gradient and the mask's in one pass). If `bias`, `gamma` or `beta`
/// tracks, the unfused ops are used so that they get gradients too.
///
/// ```
/// use candle_core::{DType, Device, Tensor, Var};
/// use cpu_ops::{ConvBnConfig, ConvBnParams, RunningStats};
/// # fn main() -> candle_core::Result<()> {
/// let dev = Device::Cpu;
/// let x = Var::randn(0f32, 1.0, (4, 3, 6, 6), &dev)?;
/// let w = Tensor::randn(0f32, 0.2, (5, 3, 3, 3), &dev)?;
/// let (gamma, beta) = (Tensor::ones(5, DType::F32, &dev)?, Tensor::zeros(5, DType::F32, &dev)?);
/// let (rm, rv) = (Tensor::zeros(5, DType::F32, &dev)?, Tensor::ones(5, DType::F32, &dev)?);
/// let mask = Var::ones((2, 5), DType::F32, &dev)?; // 2 modules × 2 images
/// let params = ConvBnParams { weight: &w, bias: None, gamma: &gamma, beta: &beta };
/// let stats = RunningStats { mean: &rm, var: &rv };
/// let cfg = ConvBnConfig { padding: 1, relu: true, ..Default::default() };
/// let y = cpu_ops::conv_bn_eval(&x, &params, &stats, &cfg, Some(&mask))?;
/// assert_eq!(y.dims(), &[4, 5, 6, 6]);
/// let grads = y.sum_all()?.backward()?;
/// assert!(grads.get(&mask).is_some() && grads.get(&x).is_some() && grads.get(&w).is_none());
/// # Ok(())
/// # }
/// ```
pub fn conv_bn_eval(
    x: &Tensor,
    params: &ConvBnParams<'_>,
    stats: &RunningStats<'_>,
    cfg: &ConvBnConfig,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let ConvBnParams {
        weight,
        bias,
        gamma,
        beta,
    } = *params;
    let RunningStats {
        mean: running_mean,
        var: running_var,
    } = *stats;
    let ConvBnConfig {
        stride,
        padding,
        eps,
        relu,
    } = *cfg;
    let (co, _, _, _) = dims4(weight, "conv_bn_eval weight")?;
    for (t, what) in [
        (gamma, "gamma"),
        (beta, "beta"),
        (running_mean, "running mean"),
        (running_var, "running var"),
    ] {
        check_vec(t, co, what)?;
    }
    if let Some(b) = bias {
        check_vec(b, co, "conv_bn_eval bias")?;
    }
    let consts: Vec<&Tensor> = [gamma, beta, running_mean, running_var]
        .into_iter()
        .chain(bias)
        .collect();
    let all_fast = fast(&[x, weight]) && fast(&consts) && mask.is_none_or(|m| fast(&[m]));
    if !all_fast || consts.iter().any(|t| t.track_op()) {
        let y = conv2d(x, weight, bias, stride, padding)?;
        return match mask {
            Some(m) if relu => {
                batch_norm_relu_mask(&y, gamma, beta, running_mean, running_var, eps, m)
            }
            Some(m) => channel_mask(
                &batch_norm_eval(&y, gamma, beta, running_mean, running_var, eps, false)?,
                m,
            ),
            None => batch_norm_eval(&y, gamma, beta, running_mean, running_var, eps, relu),
        };
    }
    let (_, ci, _, _) = dims4(x, "conv_bn_eval input")?;
    let (_, wci, kh, kw) = dims4(weight, "conv_bn_eval weight")?;
    if wci != ci || kh != kw || stride == 0 {
        bail!(
            "cpu-ops conv_bn_eval: weight {:?} does not fit input {:?} (square kernel, stride ≥ 1)",
            weight.dims(),
            x.dims()
        )
    }
    let (scale, mut shift) = bn::eval_affine(
        &gamma.to_vec1::<f32>()?,
        &beta.to_vec1::<f32>()?,
        &running_mean.to_vec1::<f32>()?,
        &running_var.to_vec1::<f32>()?,
        eps,
    );
    if let Some(b) = bias {
        for ((s, a), bv) in shift.iter_mut().zip(&scale).zip(b.to_vec1::<f32>()?) {
            *s += bv * a;
        }
    }
    let mask = match mask {
        Some(m) => m.contiguous()?,
        None => Tensor::ones((1, co), DType::F32, x.device())?,
    };
    let keep = x.track_op() || weight.track_op() || mask.track_op();
    let op = block::ConvBnEvalOp {
        stride,
        padding,
        scale,
        shift,
        relu,
        keep,
        conv_out: Arc::new(OnceLock::new()),
    };
    x.contiguous()?.apply_op3(&weight.contiguous()?, &mask, op)
}

/// Training-mode batch norm over (N, H, W) per channel, optionally followed by a fused ReLU.
/// `x` is `[N, C, H, W]`, `gamma`/`beta` `[C]`.
///
/// Returns `(y, batch_mean, batch_var_biased)`, the statistics as `[C]` tensors without a
/// graph (for the caller's running-statistics update). `y` is differentiable with respect to
/// `x`, `gamma` and `beta` (each only if it tracks), through a fused backward.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, c, _, _) = dims4(x, "batch_norm_train input")?;
    check_vec(gamma, c, "batch_norm_train gamma")?;
    check_vec(beta, c, "batch_norm_train beta")?;
    if !fast(&[x, gamma, beta]) {
        return reference::batch_norm_train(x, gamma, beta, eps, relu);
    }
    let stats = Arc::new(OnceLock::new());
    let op = bn::BnTrainOp {
        eps,
        relu,
        stats: stats.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let Some(st) = stats.get() else {
        bail!("cpu-ops batch_norm_train: forward produced no statistics")
    };
    let mean = Tensor::new(st.mean.as_slice(), x.device())?;
    let var = Tensor::new(st.var.as_slice(), x.device())?;
    Ok((y, mean, var))
}

/// Eval-mode batch norm with running statistics (a per-channel affine), optionally followed
/// by a fused ReLU. Differentiable with respect to `x`, and to `gamma`/`beta` only if they
/// track; the running statistics are constants.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let (_, c, _, _) = dims4(x, "batch_norm_eval input")?;
    for (t, what) in [
        (gamma, "gamma"),
        (beta, "beta"),
        (running_mean, "running mean"),
        (running_var, "running var"),
    ] {
        check_vec(t, c, what)?;
    }
    if !fast(&[x, gamma, beta, running_mean, running_var]) {
        return reference::batch_norm_eval(x, gamma, beta, running_mean, running_var, eps, relu);
    }
    let op = bn::BnEvalOp {
        eps,
        relu,
        running_mean: running_mean.to_vec1()?,
        running_var: running_var.to_vec1()?,
    };
    x.contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

/// GradSplitter's batched channel mask: `x` is `[G·B, C, H, W]` (G modules' batches of B
/// stacked), `mask` `[G, C]`; `y[i, c, :, :] = x[i, c, :, :] · mask[i / B, c]`.
/// Differentiable with respect to `x` and `mask` (each only if it tracks).
pub fn channel_mask(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (n, c, _, _) = dims4(x, "channel_mask input")?;
    let (g, mc) = mask.dims2()?;
    if mc != c || g == 0 || n % g != 0 {
        bail!(
            "cpu-ops channel_mask: mask {:?} does not fit input {:?}",
            mask.dims(),
            x.dims()
        )
    }
    if !fast(&[x, mask]) {
        return reference::channel_mask(x, mask);
    }
    x.contiguous()?
        .apply_op2(&mask.contiguous()?, bn::ChannelMaskOp)
}

/// Fused eval-mode batch norm → ReLU → [`channel_mask`] in one pass (GradSplitter's step over
/// a frozen model): `y[i, c] = relu(bn_eval(x)[i, c]) · mask[i / B, c]`.
/// Differentiable with respect to `x` and `mask`. The BN parameters are treated as frozen:
/// if `gamma` or `beta` tracks, the unfused composition [`batch_norm_eval`] +
/// [`channel_mask`] is used instead so that they get gradients too.
pub fn batch_norm_relu_mask(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    mask: &Tensor,
) -> Result<Tensor> {
    let (n, c, _, _) = dims4(x, "batch_norm_relu_mask input")?;
    for (t, what) in [
        (gamma, "gamma"),
        (beta, "beta"),
        (running_mean, "running mean"),
        (running_var, "running var"),
    ] {
        check_vec(t, c, what)?;
    }
    let (g, mc) = mask.dims2()?;
    if mc != c || g == 0 || n % g != 0 {
        bail!(
            "cpu-ops batch_norm_relu_mask: mask {:?} does not fit input {:?}",
            mask.dims(),
            x.dims()
        )
    }
    if !fast(&[x, gamma, beta, running_mean, running_var, mask]) {
        return reference::batch_norm_relu_mask(
            x,
            gamma,
            beta,
            running_mean,
            running_var,
            eps,
            mask,
        );
    }
    if gamma.track_op() || beta.track_op() {
        let y = batch_norm_eval(x, gamma, beta, running_mean, running_var, eps, true)?;
        return channel_mask(&y, mask);
    }
    let op = bn::BnReluMaskOp::new(
        &gamma.to_vec1::<f32>()?,
        &beta.to_vec1::<f32>()?,
        &running_mean.to_vec1::<f32>()?,
        &running_var.to_vec1::<f32>()?,
        eps,
    );
    x.contiguous()?.apply_op2(&mask.contiguous()?, op)
}

/// One SGD step for a parameter: with `d = grad + weight_decay·w`, the new momentum buffer is
/// `momentum·buffer + d` (just `d` without a buffer) and the new weight `w - lr·buffer'`.
/// Returns `(new_w, new_buffer)`, both without a graph.
///
/// One parallel pass instead of six tensor ops (each with its own output buffer), with the
/// same f32 operations in the same order, so the result has the same bits as the tensor-op
/// composition in [`reference::sgd_update`] (the fallback off the CPU).
///
/// ```
/// use candle_core::{Device, Tensor};
/// # fn main() -> candle_core::Result<()> {
/// let w = Tensor::new(&[1.0f32, -2.0], &Device::Cpu)?;
/// let g = Tensor::new(&[0.5f32, 0.25], &Device::Cpu)?;
/// let (w1, v1) = cpu_ops::sgd_update(&w, &g, None, 0.1, 0.9, 0.0)?;
/// assert_eq!(v1.to_vec1::<f32>()?, [0.5, 0.25]);
/// assert_eq!(w1.to_vec1::<f32>()?, [0.95, -2.025]);
/// let (_, v2) = cpu_ops::sgd_update(&w1, &g, Some(&v1), 0.1, 0.9, 0.0)?;
/// assert_eq!(v2.to_vec1::<f32>()?, [0.5 * 0.9 + 0.5, 0.25 * 0.9 + 0.25]);
/// # Ok(())
/// # }
/// ```
pub fn sgd_update(
    w: &Tensor,
    grad: &Tensor,
    buffer: Option<&Tensor>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> Result<(Tensor, Tensor)> {
    if grad.shape() != w.shape() || buffer.is_some_and(|b| b.shape() != w.shape()) {
        bail!(
            "cpu-ops sgd_update: gradient {:?} or momentum buffer {:?} does not match weight {:?}",
            grad.dims(),
            buffer.map(|b| b.dims().to_vec()),
            w.dims()
        )
    }
    if !fast(&[w, grad]) || buffer.is_some_and(|b| !fast(&[b])) {
        return reference::sgd_update(w, grad, buffer, lr, momentum, weight_decay);
    }
    let wv = w.flatten_all()?.to_vec1::<f32>()?;
    let gv = grad.flatten_all()?.to_vec1::<f32>()?;
    let bv = buffer
        .map(|b| b.flatten_all()?.to_vec1::<f32>())
        .transpose()?;
    let (nw, nv) = optim::sgd_update(
        &wv,
        &gv,
        bv.as_deref(),
        lr as f32,
        momentum as f32,
        weight_decay as f32,
    );
    Ok((
        Tensor::from_vec(nw, w.shape(), w.device())?,
        Tensor::from_vec(nv, w.shape(), w.device())?,
    ))
}

/// Max-pool with a `kernel × kernel` window and stride `stride`, no padding (output size
/// `(H - k)/s + 1`). The backward routes each output gradient to its window's maximum, the
/// first one in row-major order on ties (like PyTorch); NaN propagates as the maximum.
/// Overlapping windows (`stride < kernel`) are supported in the backward too.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = dims4(x, "max_pool2d input")?;
    pool::pooled(h, kernel, stride)?;
    pool::pooled(w, kernel, stride)?;
    if !fast(&[x]) {
        return reference::max_pool2d(x, kernel, stride);
    }
    let op = pool::MaxPoolOp {
        kernel,
        stride,
        argmax: Arc::new(OnceLock::new()),
        need_argmax: x.track_op(),
    };
    x.contiguous()?.apply_op1(op)
}
