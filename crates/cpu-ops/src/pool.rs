//! Max-pooling with the argmax kept for a scatter backward.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::util::{cpu_tensor, layout_slice, storage_slice, uninit_vec};

/// Output size of a `kernel`/`stride` window along an axis of length `len`.
pub(crate) fn pooled(len: usize, kernel: usize, stride: usize) -> Result<usize> {
    if kernel == 0 || stride == 0 {
        bail!("cpu-ops max_pool2d: kernel and stride must be at least 1")
    }
    if len < kernel {
        bail!("cpu-ops max_pool2d: kernel {kernel} larger than input size {len}")
    }
    Ok((len - kernel) / stride + 1)
}

/// The custom op behind [`crate::max_pool2d`]; the forward records, per output element, the
/// index of its maximum inside the input plane.
pub(crate) struct MaxPoolOp {
    pub kernel: usize,
    pub stride: usize,
    pub argmax: Arc<OnceLock<Vec<u32>>>,
    /// Whether the input needs a gradient; if not, a 2×2 pool skips the argmax.
    pub need_argmax: bool,
}

/// Sizes of one max-pool: NCHW input `(n, c, h, w)`, window `k`, stride `s`, output `ho × wo`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub s: usize,
    pub ho: usize,
    pub wo: usize,
}

impl PoolGeom {
    pub(crate) fn new(dims: &[usize], k: usize, s: usize) -> Result<Self> {
        let &[n, c, h, w] = dims else {
            bail!("cpu-ops max_pool2d: expected NCHW input, got {dims:?}")
        };
        let (ho, wo) = (pooled(h, k, s)?, pooled(w, k, s)?);
        if h * w > u32::MAX as usize {
            bail!("cpu-ops max_pool2d: plane too large")
        }
        Ok(PoolGeom {
            n,
            c,
            h,
            w,
            k,
            s,
            ho,
            wo,
        })
    }
    pub(crate) fn out_shape(&self) -> Shape {
        Shape::from((self.n, self.c, self.ho, self.wo))
    }
}

/// The pooled maxima and, if `need_argmax`, each one's index inside its input plane.
pub(crate) fn pool_fwd(g: &PoolGeom, x: &[f32], need_argmax: bool) -> (Vec<f32>, Option<Vec<u32>>) {
    let (k, st, w, ho, wo) = (g.k, g.s, g.w, g.ho, g.wo);
    let (pi, po) = (g.h * g.w, ho * wo);
    if k == 2 && st == 2 && !need_argmax {
        let y = crate::util::map_rows(g.n * g.c * po, po, |r, yo| {
            let xp = &x[r * pi..(r + 1) * pi];
            for oy in 0..ho {
                crate::rows::max_pool_2x2_values_row(xp, w, oy, &mut yo[oy * wo..(oy + 1) * wo]);
            }
        });
        return (y, None);
    }
    // SAFETY: both loops below write every output element and index of every plane.
    let (mut y, mut idx) = unsafe {
        (
            uninit_vec::<f32>(g.n * g.c * po),
            uninit_vec::<u32>(g.n * g.c * po),
        )
    };
    if po > 0 {
        y.par_chunks_mut(po)
            .zip(idx.par_chunks_mut(po))
            .zip(x.par_chunks(pi))
            .with_min_len((4096 / pi).max(1))
            .for_each(|((yo, io), xp)| {
                if k == 2 && st == 2 {
                    for oy in 0..ho {
                        let (yr, ir) = (&mut yo[oy * wo..(oy + 1) * wo], &mut io[oy * wo..]);
                        crate::rows::max_pool_2x2_row(xp, w, oy, yr, &mut ir[..wo]);
                    }
                    return;
                }
                for oy in 0..ho {
                    for ox in 0..wo {
                        let base = oy * st * w + ox * st;
                        let mut best = xp[base];
                        let mut bi = base;
                        for ky in 0..k {
                            let row = base + ky * w;
                            for (kx, &v) in xp[row..row + k].iter().enumerate() {
                                if crate::rows::beats(v, best) {
                                    best = v;
                                    bi = row + kx;
                                }
                            }
                        }
                        yo[oy * wo + ox] = best;
                        io[oy * wo + ox] = bi as u32;
                    }
                }
            });
    }
    (y, Some(idx))
}

/// The input gradient of a max-pool: each output gradient routed to its window's maximum.
pub(crate) fn pool_bwd(g: &PoolGeom, dy: &[f32], idx: &[u32]) -> Vec<f32> {
    let (w, ho, wo) = (g.w, g.ho, g.wo);
    let (pi, po) = (g.h * g.w, ho * wo);
    let len = g.n * g.c * pi;
    if g.k == 2 && g.s == 2 && g.h.is_multiple_of(2) && g.w.is_multiple_of(2) && po > 0 {
        // The windows tile the plane: every input element is written once, the gradient
        // where it was its window's maximum and 0 elsewhere, without zero-fill or scatter.
        // SAFETY: each plane's rows 2·oy and 2·oy + 1 are written in full for every oy.
        let mut dx = unsafe { uninit_vec::<f32>(len) };
        dx.par_chunks_mut(pi)
            .zip(dy.par_chunks(po).zip(idx.par_chunks(po)))
            .with_min_len((4096 / pi).max(1))
            .for_each(|(d, (g, ix))| {
                for oy in 0..ho {
                    let rows = &mut d[2 * oy * w..(2 * oy + 2) * w];
                    let sel = oy * wo..(oy + 1) * wo;
                    crate::rows::max_pool_2x2_grad_row(&g[sel.clone()], &ix[sel], 2 * oy * w, rows);
                }
            });
        return dx;
    }
    let mut dx = vec![0f32; len];
    if po > 0 {
        dx.par_chunks_mut(pi)
            .zip(dy.par_chunks(po).zip(idx.par_chunks(po)))
            .with_min_len((4096 / pi).max(1))
            .for_each(|(d, (g, ix))| {
                for (&gv, &i) in g.iter().zip(ix) {
                    d[i as usize] += gv;
                }
            });
    }
    dx
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "cpu-ops-max-pool2d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = PoolGeom::new(l.dims(), self.kernel, self.stride)?;
        let (y, idx) = pool_fwd(&g, layout_slice(s, l)?, self.need_argmax);
        if let Some(idx) = idx {
            let _ = self.argmax.set(idx);
        }
        Ok((CpuStorage::F32(y), g.out_shape()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let Some(idx) = self.argmax.get() else {
            bail!("cpu-ops max_pool2d: backward before forward")
        };
        let g = PoolGeom::new(arg.dims(), self.kernel, self.stride)?;
        let grad = grad.contiguous()?;
        let (gs, gl) = grad.storage_and_layout();
        let dx = pool_bwd(&g, storage_slice(&gs, gl)?, idx);
        Ok(Some(cpu_tensor(dx, arg.shape().clone())?))
    }
}
