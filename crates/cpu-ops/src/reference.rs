//! The same ops composed from stock candle tensor ops. The crate's public functions use these
//! on non-CPU devices and for non-f32 dtypes; they are also handy as a slow, obviously-correct
//! reference. Semantics match the fast ops, except that candle's own backward computes some
//! gradients the fast ops skip (e.g. a frozen conv weight's).

use candle_core::{Result, Tensor};

/// ReLU with PyTorch's derivative: 0 at exactly 0. candle's own `relu` passes the gradient at
/// 0 (its backward uses `x >= 0`), which differs from the fast ops and from PyTorch whenever a
/// pre-activation is exactly 0 — e.g. a BatchNorm channel whose input is constant (a dead
/// channel) normalises to exactly β = 0, and the 1/√eps factor then amplifies the difference.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.mul(&x.gt(0.0)?.to_dtype(x.dtype())?)
}

fn per_channel(t: &Tensor) -> Result<Tensor> {
    t.reshape((1, (), 1, 1))
}

/// Every `s`-th element of the last two axes, starting at 0 (`t[..., ::s, ::s]`), from
/// pad/reshape/narrow so that it has a gradient.
fn subsample(t: &Tensor, s: usize) -> Result<Tensor> {
    let mut t = t.clone();
    for axis in [2, 3] {
        let len = t.dim(axis)?;
        let out = (len - 1) / s + 1;
        let mut dims = t.dims().to_vec();
        t = t.pad_with_zeros(axis, 0, out * s - len)?;
        dims[axis] = out;
        dims.insert(axis + 1, s);
        t = t.reshape(dims)?.narrow(axis + 1, 0, 1)?.squeeze(axis + 1)?;
    }
    Ok(t)
}

/// [`crate::conv2d`] with candle's `conv2d` plus a broadcast bias. A strided conv is computed
/// at stride 1 and subsampled, because candle 0.11.1's conv backward fails for some strided
/// shapes (a weight-gradient shape mismatch) and this keeps the fallback differentiable.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let y = if stride == 1 {
        x.conv2d(weight, padding, 1, 1, 1)?
    } else {
        subsample(&x.conv2d(weight, padding, 1, 1, 1)?, stride)?
    };
    match bias {
        Some(b) => y.broadcast_add(&per_channel(b)?),
        None => Ok(y),
    }
}

/// [`crate::batch_norm_train`] from tensor ops: batch mean and biased variance over (N, H, W).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mean = x.mean_keepdim((0, 2, 3))?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim((0, 2, 3))?;
    let y = xc
        .broadcast_div(&(&var + eps)?.sqrt()?)?
        .broadcast_mul(&per_channel(gamma)?)?
        .broadcast_add(&per_channel(beta)?)?;
    let y = if relu { self::relu(&y)? } else { y };
    Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()))
}

/// [`crate::batch_norm_eval`] from tensor ops.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let y = x
        .broadcast_sub(&per_channel(&running_mean.detach())?)?
        .broadcast_div(&per_channel(&(running_var.detach() + eps)?.sqrt()?)?)?
        .broadcast_mul(&per_channel(gamma)?)?
        .broadcast_add(&per_channel(beta)?)?;
    if relu {
        self::relu(&y)
    } else {
        Ok(y)
    }
}

/// [`crate::channel_mask`] as a broadcast multiply over the module axis.
pub fn channel_mask(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (g, _) = mask.dims2()?;
    let b = n / g;
    x.reshape((g, b, c, h, w))?
        .broadcast_mul(&mask.reshape((g, 1, c, 1, 1))?)?
        .reshape((n, c, h, w))
}

/// [`crate::batch_norm_relu_mask`]: eval batch norm, ReLU, then the channel mask.
pub fn batch_norm_relu_mask(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    mask: &Tensor,
) -> Result<Tensor> {
    channel_mask(
        &batch_norm_eval(x, gamma, beta, running_mean, running_var, eps, true)?,
        mask,
    )
}

/// [`crate::max_pool2d`]. For `kernel == stride` as a max over window axes (the input cropped
/// to whole windows and reshaped to `[N, C, Ho, k, Wo, k]`), whose backward routes the
/// gradient to the maximum (to every one of tied maxima); candle 0.11.1's own max-pool
/// backward scales it by 1/k² instead. Other strides use candle's `max_pool2d_with_stride`,
/// which has no backward for them.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    if kernel != stride {
        return x.max_pool2d_with_stride(kernel, stride);
    }
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / kernel, w / kernel);
    x.narrow(2, 0, ho * kernel)?
        .narrow(3, 0, wo * kernel)?
        .reshape((n, c, ho, kernel, wo, kernel))?
        .max(5)?
        .max(3)
}

/// [`crate::sgd_update`] as tensor ops: `d = g + wd·w`, `v' = momentum·v + d` (or `d`),
/// `w' = w - lr·v'`.
pub fn sgd_update(
    w: &Tensor,
    grad: &Tensor,
    buffer: Option<&Tensor>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> Result<(Tensor, Tensor)> {
    let (w, g) = (w.detach(), grad.detach());
    let d = if weight_decay != 0.0 {
        (g + (&w * weight_decay)?)?
    } else {
        g
    };
    let v = match buffer {
        Some(v) => ((v.detach() * momentum)? + d)?,
        None => d,
    };
    let nw = (w - (&v * lr)?)?;
    Ok((nw, v))
}
