//! Shared plumbing: reading CPU storage, per-thread scratch buffers, raw-pointer helpers and
//! the small vectorisable reductions the ops use.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use candle_core::{bail, CpuStorage, Device, Layout, Result, Shape, Storage, Tensor};

/// The contiguous f32 slice a CPU storage/layout pair describes.
pub(crate) fn layout_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("cpu-ops: expected a contiguous f32 tensor"),
    }
}

/// The f32 slice behind a locked storage guard of a contiguous CPU tensor.
pub(crate) fn storage_slice<'a>(s: &'a Storage, l: &Layout) -> Result<&'a [f32]> {
    match s {
        Storage::Cpu(cs) => layout_slice(cs, l),
        _ => bail!("cpu-ops: expected a CPU tensor"),
    }
}

/// Wraps a computed buffer as a fresh (untracked) CPU tensor.
pub(crate) fn cpu_tensor<S: Into<Shape>>(v: Vec<f32>, shape: S) -> Result<Tensor> {
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// A buffer of `len` floats whose contents are not initialised.
///
/// # Safety
/// The caller must write every element before anything reads it (the ops use it for outputs
/// that a GEMM without accumulation, a copy or a row kernel overwrites in full), so that no
/// large buffer is zero-filled only to be overwritten.
pub(crate) unsafe fn uninit_vec<T: Copy>(len: usize) -> Vec<T> {
    let mut v: Vec<MaybeUninit<T>> = Vec::with_capacity(len);
    // SAFETY: the capacity holds `len` elements, and `MaybeUninit` needs no initialisation.
    unsafe { v.set_len(len) };
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: same allocation, element size and alignment (`MaybeUninit<T>` has `T`'s
    // layout); the caller writes every element before reading it.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), len, v.capacity()) }
}

thread_local! {
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Takes a scratch buffer of at least `len` floats from this thread's pool. Its contents are
/// unspecified: callers overwrite what they read. Return it with [`give_scratch`].
pub(crate) fn take_scratch(len: usize) -> Vec<f32> {
    let mut v = SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    if v.len() < len {
        v.resize(len, 0.0);
    }
    v
}

/// Returns a buffer taken with [`take_scratch`] to this thread's pool (at most four kept).
pub(crate) fn give_scratch(v: Vec<f32>) {
    SCRATCH.with(|s| {
        let mut pool = s.borrow_mut();
        if pool.len() < 4 {
            pool.push(v);
        }
    });
}

/// A raw pointer that may cross rayon task boundaries; every use writes a disjoint region.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(*mut f32);

// SAFETY: the pointer is only dereferenced on regions that no other task touches at the
// same time (each parallel task owns a distinct set of rows/images).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(crate) fn new(v: &mut [f32]) -> Self {
        SendPtr(v.as_mut_ptr())
    }
    /// The row `[off, off + len)` of the buffer as a mutable slice.
    ///
    /// # Safety
    /// The range must lie inside the buffer and no other live reference may overlap it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(off), len)
    }
    /// The raw pointer at offset `off`.
    pub(crate) fn at(&self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// Rows of `p` elements handled per parallel task: enough elements to amortise scheduling.
pub(crate) fn rows_per_task(p: usize) -> usize {
    (8192 / p.max(1)).max(1)
}

/// A new buffer of `len` floats (`len` a multiple of `p`), filled row by row: `f(r, row)`
/// must write every element of row `r`. Rows run in parallel in blocks of
/// [`rows_per_task`]; the buffer is never zero-filled first.
pub(crate) fn map_rows<F>(len: usize, p: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
{
    let mut v: Vec<f32> = Vec::with_capacity(len);
    if p == 0 || len == 0 {
        return v;
    }
    assert_eq!(
        len % p,
        0,
        "map_rows: {len} is not a multiple of the row length {p}"
    );
    let rpt = rows_per_task(p);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(p * rpt)
        .enumerate()
        .for_each(|(bi, blk)| {
            for (k, row) in blk.chunks_exact_mut(p).enumerate() {
                f(bi * rpt + k, row)
            }
        });
    // SAFETY: the capacity holds `len` elements and `f` wrote every one of them.
    unsafe { v.set_len(len) };
    v
}

/// `f(r)` for each of `rows` rows of `p` elements, in order, computed in parallel in blocks of
/// [`rows_per_task`].
pub(crate) fn reduce_rows<T, F>(rows: usize, p: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync,
{
    let rpt = rows_per_task(p);
    (0..rows.div_ceil(rpt))
        .into_par_iter()
        .flat_map_iter(|bi| (bi * rpt..((bi + 1) * rpt).min(rows)).map(&f))
        .collect()
}

/// The dimensions of `t`, which must have rank 4 (NCHW).
pub(crate) fn dims4(t: &Tensor, what: &str) -> Result<(usize, usize, usize, usize)> {
    match t.dims() {
        &[a, b, c, d] => Ok((a, b, c, d)),
        d => bail!("cpu-ops: {what} must be 4-D (NCHW), got shape {d:?}"),
    }
}

/// `t` must be a vector of `len` elements.
pub(crate) fn check_vec(t: &Tensor, len: usize, what: &str) -> Result<()> {
    if t.dims() != [len] {
        bail!(
            "cpu-ops: {what} must have shape [{len}], got {:?}",
            t.dims()
        )
    }
    Ok(())
}
