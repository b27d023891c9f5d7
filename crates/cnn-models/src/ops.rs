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
