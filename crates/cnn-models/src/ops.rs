//! The ops a forward pass needs, dispatched to one of two implementations from the `cpu-ops`
//! crate: its fast fused CPU ops (default on CPU; they fall back to candle off the CPU) or the
//! same ops composed from candle's own tensor ops (`cpu_ops::reference`).

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Run candle's own CPU element-wise ops on the calling thread: sets `CANDLE_NUM_THREADS=1`
/// unless the variable is already set. Call it first thing in `main`, before any thread or
/// candle op exists.
///
/// candle 0.11 runs its element-wise CPU ops on a barrier pool whose threads spin while they
/// wait. With the fast ops doing the heavy work on rayon's threads, that pool only competes for
/// the same cores: `perf` showed 33 % of a SimCNN training step spinning in candle's barrier,
/// and the step ran 1.7–2× faster on the loaded 2-core machine without it (see
/// `docs/benchmarks.md`). Matrix products are not affected (they follow `RAYON_NUM_THREADS`).
///
/// ```
/// cnn_models::ops::single_thread_candle_pool();
/// assert!(std::env::var("CANDLE_NUM_THREADS").is_ok());
/// ```
pub fn single_thread_candle_pool() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Keep freed memory in the process (glibc): every large block comes from the heap instead of
/// its own `mmap`, and the heap is never trimmed. Call it first thing in `main`, before any
/// other thread exists.
///
/// The training and splitting loops allocate and free the same large activation buffers
/// every step. With glibc's defaults each block above the mmap threshold (at most 32 MiB) is
/// mapped and unmapped per use, so every step pays page faults, page zeroing and TLB
/// shoot-downs: measured, BatchNorm backward 33 → 12 ms and max-pool backward 17 → 3 ms at
/// SimCNN width 0.25, batch 64, and 11 % of a GradSplitter step in the kernel's page-fault
/// path (its 10 × 64-image activations exceed 32 MiB). A no-op on other platforms.
///
/// ```
/// cnn_models::ops::keep_freed_memory();
/// let v = vec![1f32; 1 << 24]; // 64 MiB, from the heap
/// assert_eq!(v[v.len() - 1], 1.0);
/// ```
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Which implementation of the conv/BN/pool ops the forward pass uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpsBackend {
    /// The `cpu-ops` crate's fused CPU ops (falls back to candle off the CPU).
    #[default]
    Fast,
    /// candle's own ops, composed from tensor operations.
    Candle,
}

impl OpsBackend {
    /// The default for a device: fast ops on CPU, candle's elsewhere.
    pub fn default_for(device: &Device) -> Self {
        if device.is_cpu() {
            OpsBackend::Fast
        } else {
            OpsBackend::Candle
        }
    }
}

impl std::str::FromStr for OpsBackend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fast" => Ok(OpsBackend::Fast),
            "candle" => Ok(OpsBackend::Candle),
            other => Err(format!(
                "unknown ops backend `{other}` (expected fast or candle)"
            )),
        }
    }
}

macro_rules! dispatch {
    ($ops:expr, $f:ident($($arg:expr),*)) => {
        Ok(match $ops {
            OpsBackend::Fast => cpu_ops::$f($($arg),*)?,
            OpsBackend::Candle => cpu_ops::reference::$f($($arg),*)?,
        })
    };
}

/// Conv2d with optional bias.
pub fn conv2d(
    ops: OpsBackend,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    dispatch!(ops, conv2d(x, w, b, stride, padding))
}

/// Training-mode BatchNorm (+ReLU): returns (y, batch mean, biased batch variance).
pub fn batch_norm_train(
    ops: OpsBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    dispatch!(ops, batch_norm_train(x, gamma, beta, eps, relu))
}

/// Evaluation-mode BatchNorm (+ReLU) with running statistics.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval(
    ops: OpsBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    dispatch!(ops, batch_norm_eval(x, gamma, beta, mean, var, eps, relu))
}

/// Evaluation-mode BatchNorm → ReLU → channel mask (`mask` `[G, C]`), fused on the fast path.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_relu_mask_eval(
    ops: OpsBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    mask: &Tensor,
) -> Result<Tensor> {
    dispatch!(
        ops,
        batch_norm_relu_mask(x, gamma, beta, mean, var, eps, mask)
    )
}

/// Multiply channels by a per-group mask: x `[G·B, C, H, W]`, mask `[G, C]`.
pub fn channel_mask(ops: OpsBackend, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    dispatch!(ops, channel_mask(x, mask))
}

/// Max-pool without padding.
pub fn max_pool2d(ops: OpsBackend, x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    dispatch!(ops, max_pool2d(x, kernel, stride))
}

/// Geometry of a conv the fused ops do not take: rectangular kernel, stride or padding,
/// dilation, or a depthwise grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Stride along height and width.
    pub stride: crate::spec::HeightWidth,
    /// Zero padding on each side along height and width.
    pub padding: crate::spec::HeightWidth,
    /// Dilation (both axes).
    pub dilation: usize,
    /// Channel groups (1, or the channel count for a depthwise conv).
    pub groups: usize,
}

impl ConvGeometry {
    /// The geometry of a conv spec.
    pub fn of(c: &crate::spec::ConvSpec) -> Self {
        ConvGeometry {
            stride: c.stride,
            padding: c.padding,
            dilation: c.dilation,
            groups: c.groups,
        }
    }
}

/// Every `step`-th element of axis `axis` starting at 0, from pad/reshape/narrow so that it
/// has a gradient.
fn subsample_axis(t: &Tensor, axis: usize, step: usize) -> Result<Tensor> {
    if step == 1 {
        return Ok(t.clone());
    }
    let len = t.dim(axis)?;
    let out = (len - 1) / step + 1;
    let mut dims = t.dims().to_vec();
    let t = t.pad_with_zeros(axis, 0, out * step - len)?;
    dims[axis] = out;
    dims.insert(axis + 1, step);
    Ok(t.reshape(dims)?.narrow(axis + 1, 0, 1)?.squeeze(axis + 1)?)
}

/// A kernel `[O, I, kh, kw]` with `dilation − 1` zeros between its taps (so a plain conv with
/// it is the dilated conv), differentiable.
fn dilate_kernel(w: &Tensor, dilation: usize) -> Result<Tensor> {
    if dilation == 1 {
        return Ok(w.clone());
    }
    let mut w = w.clone();
    for axis in [2, 3] {
        let len = w.dim(axis)?;
        // [.., len, ..] → [.., len, 1, ..] → pad to dilation → [.., len·dilation, ..] → trim
        let w2 = w
            .unsqueeze(axis + 1)?
            .pad_with_zeros(axis + 1, 0, dilation - 1)?;
        let mut dims = w.dims().to_vec();
        dims[axis] = len * dilation;
        w = w2
            .reshape(dims)?
            .narrow(axis, 0, (len - 1) * dilation + 1)?;
    }
    Ok(w)
}

/// A conv of any geometry the spec allows (design §3): rectangular kernel, stride and padding,
/// dilation, depthwise groups. Differentiable; a depthwise conv takes `cpu_ops`'s direct
/// depthwise op on the fast path, other convs the fast square conv where it fits and candle's
/// conv otherwise; ordinary convs take [`conv2d`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use cnn_models::ops::{conv2d, conv2d_general, ConvGeometry, OpsBackend};
/// let dev = Device::Cpu;
/// let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 9), &dev).unwrap();
/// let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev).unwrap();
/// let geometry = ConvGeometry { stride: 2.into(), padding: 1.into(), dilation: 1, groups: 1 };
/// let general = conv2d_general(OpsBackend::Fast, &x, &w, None, &geometry).unwrap();
/// let plain = conv2d(OpsBackend::Fast, &x, &w, None, 2, 1).unwrap();
/// let diff = (general - plain).unwrap().abs().unwrap().max_all().unwrap();
/// assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
/// ```
pub fn conv2d_general(
    ops: OpsBackend,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    geometry: &ConvGeometry,
) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (o, wi, kh, kw) = w.dims4()?;
    let pad = || -> Result<Tensor> {
        Ok(x.pad_with_zeros(2, geometry.padding.h, geometry.padding.h)?
            .pad_with_zeros(3, geometry.padding.w, geometry.padding.w)?)
    };
    let y = if geometry.groups > 1 {
        if geometry.groups != c || o != c || wi != 1 {
            return Err(crate::error::ModelError::Mismatch(format!(
                "grouped conv: weight {:?} with {} groups on {c} input channels; only \
                 depthwise convs are supported",
                w.dims(),
                geometry.groups
            )));
        }
        if ops == OpsBackend::Fast && x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let g = cpu_ops::DepthwiseGeometry {
                stride: (geometry.stride.h, geometry.stride.w),
                padding: (geometry.padding.h, geometry.padding.w),
                dilation: geometry.dilation,
            };
            let y = cpu_ops::depthwise_conv2d(x, w, g)?;
            return Ok(match b {
                Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
                None => y,
            });
        }
        // depthwise from tensor ops: Σ over taps of a shifted input times that tap's
        // per-channel weight
        let xp = pad()?;
        let (_, _, hp, wp) = xp.dims4()?;
        let d = geometry.dilation;
        let (ho, wo) = (hp - (kh - 1) * d, wp - (kw - 1) * d);
        let mut acc: Option<Tensor> = None;
        for i in 0..kh {
            for j in 0..kw {
                let patch = xp.narrow(2, i * d, ho)?.narrow(3, j * d, wo)?;
                let tap = w.narrow(2, i, 1)?.narrow(3, j, 1)?.reshape((1, c, 1, 1))?;
                let term = patch.broadcast_mul(&tap)?;
                acc = Some(match acc {
                    Some(a) => (a + term)?,
                    None => term,
                });
            }
        }
        acc.ok_or_else(|| {
            crate::error::ModelError::Mismatch(format!("conv weight {:?} has no taps", w.dims()))
        })?
    } else {
        let wd = dilate_kernel(w, geometry.dilation)?;
        let xp = pad()?;
        if wd.dim(2)? == wd.dim(3)? {
            conv2d(ops, &xp, &wd, None, 1, 0)?
        } else {
            xp.conv2d(&wd, 0, 1, 1, 1)?
        }
    };
    let y = subsample_axis(&y, 3, geometry.stride.w)?;
    let y = subsample_axis(&y, 2, geometry.stride.h)?;
    Ok(match b {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        None => y,
    })
}

/// ReLU6: clip to [0, 6], with the ReLU's derivative (0 at exactly 0).
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    Ok(cpu_ops::reference::relu(x)?.minimum(6f32)?)
}

/// Max-pool with padding on each side; padded positions never win the max (PyTorch's and
/// ONNX's rule). Without padding this is [`max_pool2d`].
pub fn max_pool2d_padded(
    ops: OpsBackend,
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    if padding == 0 {
        return max_pool2d(ops, x, kernel, stride);
    }
    let mut t = x.clone();
    for axis in [2, 3] {
        let mut dims = t.dims().to_vec();
        dims[axis] = padding;
        let edge = Tensor::full(f32::MIN, dims.as_slice(), t.device())?.to_dtype(t.dtype())?;
        t = Tensor::cat(&[&edge, &t, &edge], axis)?;
    }
    max_pool2d(ops, &t, kernel, stride)
}

/// Average pooling over a square window with zero padding on each side; with
/// `count_include_pad` false the divisor counts only the window's positions inside the map.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
/// let with_pad = cnn_models::ops::avg_pool2d(&x, 2, 1, 1, true).unwrap();
/// let without = cnn_models::ops::avg_pool2d(&x, 2, 1, 1, false).unwrap();
/// assert_eq!(with_pad.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], 0.25);
/// assert_eq!(without.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], 1.0);
/// ```
pub fn avg_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
    count_include_pad: bool,
) -> Result<Tensor> {
    let window_sum = |t: &Tensor| -> Result<Tensor> {
        let t = t
            .pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?;
        let (_, _, hp, wp) = t.dims4()?;
        let (ho, wo) = (hp + 1 - kernel, wp + 1 - kernel);
        let mut acc: Option<Tensor> = None;
        for i in 0..kernel {
            for j in 0..kernel {
                let patch = t.narrow(2, i, ho)?.narrow(3, j, wo)?;
                acc = Some(match acc {
                    Some(a) => (a + patch)?,
                    None => patch,
                });
            }
        }
        let s = acc.ok_or_else(|| {
            crate::error::ModelError::Mismatch("average pool with an empty window".into())
        })?;
        subsample_axis(&subsample_axis(&s, 2, stride)?, 3, stride)
    };
    let sums = window_sum(x)?;
    if count_include_pad || padding == 0 {
        return Ok((sums / (kernel * kernel) as f64)?);
    }
    let (_, _, h, w) = x.dims4()?;
    let ones = Tensor::ones((1, 1, h, w), x.dtype(), x.device())?;
    let counts = window_sum(&ones)?;
    Ok(sums.broadcast_div(&counts)?)
}
