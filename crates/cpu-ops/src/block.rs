//! A training-mode conv → batch norm (→ ReLU) block as one candle op.
//!
//! As two ops, the conv output is a node of candle's graph, and candle's backward gives every
//! node's gradient its own zero-filled buffer plus an addition (single-threaded), a full extra
//! pass over an activation-sized tensor per layer. As one op the conv output stays inside: the
//! backward runs the batch-norm backward straight into the conv backward.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use crate::bn::{bn_train_bwd, bn_train_fwd, BnStats};
use crate::conv::{bias_grad, conv_bwd, conv_fwd, ConvGeom};
use crate::pool::{pool_bwd, pool_fwd, PoolGeom};
use crate::rows;
use crate::util::{cpu_tensor, layout_slice, storage_slice};

/// What the forward keeps for the backward: the conv output, the batch statistics and, with
/// a pool, the batch-norm output and the pool's argmax.
pub(crate) struct BlockSaved {
    pub conv_out: Vec<f32>,
    pub stats: BnStats,
    pub pooled: Option<(Vec<f32>, Vec<u32>)>,
}

/// The stacked parameters split into `(bias, γ, β)`.
type BlockParams<'a> = (Option<&'a [f32]>, &'a [f32], &'a [f32]);

/// The op behind [`crate::conv_bn_train`]: `(x, w, params)` with `params` = `[γ; β]` or
/// `[bias; γ; β]` stacked as a `[2 or 3, Co]` tensor.
pub(crate) struct ConvBnTrainOp {
    pub stride: usize,
    pub padding: usize,
    pub eps: f64,
    pub relu: bool,
    /// A max-pool `(kernel, stride)` after the batch norm, inside the op.
    pub pool: Option<(usize, usize)>,
    pub saved: Arc<OnceLock<BlockSaved>>,
}

impl ConvBnTrainOp {
    fn pool_geom(&self, g: &ConvGeom) -> Result<Option<PoolGeom>> {
        self.pool
            .map(|(k, s)| PoolGeom::new(&[g.n, g.co, g.ho, g.wo], k, s))
            .transpose()
    }

    /// `(bias, γ, β)` rows of the stacked parameters.
    fn split<'a>(&self, p: &'a [f32], co: usize) -> Result<BlockParams<'a>> {
        match p.len() / co.max(1) {
            2 if p.len() == 2 * co => Ok((None, &p[..co], &p[co..])),
            3 if p.len() == 3 * co => Ok((Some(&p[..co]), &p[co..2 * co], &p[2 * co..])),
            _ => bail!(
                "cpu-ops conv_bn_train: parameters have {} elements, expected 2 or 3 × {co}",
                p.len()
            ),
        }
    }
}

impl CustomOp3 for ConvBnTrainOp {
    fn name(&self) -> &'static str {
        "cpu-ops-conv-bn-train"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = ConvGeom::new(xl.dims(), wl.dims(), self.stride, self.padding)?;
        let (x, w, p) = (
            layout_slice(xs, xl)?,
            layout_slice(ws, wl)?,
            layout_slice(ps, pl)?,
        );
        let (bias, gamma, beta) = self.split(p, g.co)?;
        let conv_out = conv_fwd(&g, x, w, bias);
        let (y, stats) = bn_train_fwd(
            &conv_out,
            (g.n, g.co, g.p()),
            gamma,
            beta,
            self.eps,
            self.relu,
        );
        let (out, shape, pooled) = match self.pool_geom(&g)? {
            Some(pg) => {
                let (yp, idx) = pool_fwd(&pg, &y, true);
                let idx = idx.unwrap_or_default();
                (yp, pg.out_shape(), Some((y, idx)))
            }
            None => (y, g.out_shape(), None),
        };
        // A second forward of the same op object (not done by candle) would keep the first.
        let _ = self.saved.set(BlockSaved {
            conv_out,
            stats,
            pooled,
        });
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (need_dx, need_dw, need_dp) = (x.track_op(), w.track_op(), params.track_op());
        if !need_dx && !need_dw && !need_dp {
            return Ok((None, None, None));
        }
        let Some(saved) = self.saved.get() else {
            bail!("cpu-ops conv_bn_train: backward before forward")
        };
        let g = ConvGeom::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let grad = grad.contiguous()?;
        let (ps, pl) = params.storage_and_layout();
        let (ys, yl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let pv = storage_slice(&ps, pl)?;
        let (bias, gamma, _) = self.split(pv, g.co)?;
        let dims = (g.n, g.co, g.p());
        // With a pool inside, the batch norm's output and its gradient come from the pool.
        let dbn_pooled;
        let (bn_out, dbn) = match (&saved.pooled, self.pool_geom(&g)?) {
            (Some((y, idx)), Some(pg)) => {
                dbn_pooled = pool_bwd(&pg, storage_slice(&gs, gl)?, idx);
                (&y[..], &dbn_pooled[..])
            }
            _ => (storage_slice(&ys, yl)?, storage_slice(&gs, gl)?),
        };
        let (dconv, dgamma, dbeta) = bn_train_bwd(
            &saved.conv_out,
            bn_out,
            dbn,
            dims,
            gamma,
            &saved.stats,
            self.relu,
            need_dx || need_dw || (need_dp && bias.is_some()),
        );
        let dconv = dconv.unwrap_or_default();
        let dp = if need_dp {
            let mut v = Vec::with_capacity(pv.len());
            if bias.is_some() {
                v.extend(bias_grad(g.n, g.co, g.p(), &dconv));
            }
            v.extend(dgamma);
            v.extend(dbeta);
            Some(cpu_tensor(v, params.shape().clone())?)
        } else {
            None
        };
        let (dx, dw) = conv_grads(&g, x, w, &dconv, need_dx, need_dw)?;
        Ok((dx, dw, dp))
    }
}

/// The op behind [`crate::conv_bn_eval`]: `(x, w, mask)` with `mask` `[G, Co]`, the batch
/// `G·B` images; `y = act(conv(x, w) · scale + shift) · mask[i / B]` per channel, the
/// batch-norm affine (`scale`, `shift`, from frozen running statistics) and the bias folded
/// in as constants.
pub(crate) struct ConvBnEvalOp {
    pub stride: usize,
    pub padding: usize,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub relu: bool,
    /// Keep the conv output for a backward (false when nothing needs a gradient: the epilogue
    /// then runs in place).
    pub keep: bool,
    pub conv_out: Arc<OnceLock<Vec<f32>>>,
}

impl ConvBnEvalOp {
    fn groups(g: &ConvGeom, mask: &[usize]) -> Result<usize> {
        match mask {
            &[mg, mc] if mc == g.co && mg > 0 && g.n.is_multiple_of(mg) => Ok(g.n / mg),
            d => bail!(
                "cpu-ops conv_bn_eval: mask {d:?} does not fit {} images of {} channels",
                g.n,
                g.co
            ),
        }
    }
}

impl CustomOp3 for ConvBnEvalOp {
    fn name(&self) -> &'static str {
        "cpu-ops-conv-bn-eval"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ms: &CpuStorage,
        ml: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = ConvGeom::new(xl.dims(), wl.dims(), self.stride, self.padding)?;
        let b = Self::groups(&g, ml.dims())?;
        let (x, w, m) = (
            layout_slice(xs, xl)?,
            layout_slice(ws, wl)?,
            layout_slice(ms, ml)?,
        );
        let (co, p) = (g.co, g.p());
        let mut out = conv_fwd(&g, x, w, None);
        let epilogue = |r: usize, row: &mut [f32]| {
            let (i, c) = (r / co, r % co);
            let mv = m[(i / b) * co + c];
            rows::affine_act_mask_in_place(row, self.scale[c], self.shift[c], mv, self.relu)
        };
        if self.keep {
            let y = crate::util::map_rows(out.len(), p, |r, row| {
                let (i, c) = (r / co, r % co);
                let mv = m[(i / b) * co + c];
                let src = &out[r * p..(r + 1) * p];
                rows::affine_act_mask(src, row, self.scale[c], self.shift[c], mv, self.relu)
            });
            let _ = self.conv_out.set(out);
            Ok((CpuStorage::F32(y), g.out_shape()))
        } else {
            for_rows_mut(&mut out, p, epilogue);
            Ok((CpuStorage::F32(out), g.out_shape()))
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (need_dx, need_dw, need_dm) = (x.track_op(), w.track_op(), mask.track_op());
        if !need_dx && !need_dw && !need_dm {
            return Ok((None, None, None));
        }
        let Some(conv_out) = self.conv_out.get() else {
            bail!("cpu-ops conv_bn_eval: backward without a kept forward")
        };
        let g = ConvGeom::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let b = Self::groups(&g, mask.dims())?;
        let (co, p) = (g.co, g.p());
        let grad = grad.contiguous()?;
        let (ms, ml) = mask.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (m, dy) = (storage_slice(&ms, ml)?, storage_slice(&gs, gl)?);
        // One pass: the conv output's gradient and each row's share of the mask gradient.
        let shares: Vec<AtomicU32> = (0..g.n * co).map(|_| AtomicU32::new(0)).collect();
        let dconv = crate::util::map_rows(conv_out.len(), p, |r, out| {
            let (i, c) = (r / co, r % co);
            let rg = r * p..(r + 1) * p;
            let s = rows::affine_act_mask_grad(
                &dy[rg.clone()],
                &conv_out[rg],
                out,
                self.scale[c],
                self.shift[c],
                m[(i / b) * co + c],
                self.relu,
            );
            shares[r].store(s.to_bits(), Ordering::Relaxed);
        });
        let share = |r: usize| f32::from_bits(shares[r].load(Ordering::Relaxed));
        let dm = if need_dm {
            let mg = g.n / b;
            let mut v = vec![0f32; mg * co];
            for (gi, dst) in v.chunks_exact_mut(co).enumerate() {
                for (c, d) in dst.iter_mut().enumerate() {
                    let mut s = 0f64;
                    for i in gi * b..(gi + 1) * b {
                        s += share(i * co + c) as f64;
                    }
                    *d = s as f32;
                }
            }
            Some(cpu_tensor(v, mask.shape().clone())?)
        } else {
            None
        };
        let (dx, dw) = conv_grads(&g, x, w, &dconv, need_dx, need_dw)?;
        Ok((dx, dw, dm))
    }
}

/// The conv's input and weight gradients (each only if asked) from its output gradient
/// `dconv`, as tensors.
fn conv_grads(
    g: &ConvGeom,
    x: &Tensor,
    w: &Tensor,
    dconv: &[f32],
    need_dx: bool,
    need_dw: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    if !need_dx && !need_dw {
        return Ok((None, None));
    }
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (dx, dw) = conv_bwd(
        g,
        storage_slice(&xs, xl)?,
        storage_slice(&ws, wl)?,
        dconv,
        need_dx,
        need_dw,
    );
    let dx = dx.map(|v| cpu_tensor(v, x.shape().clone())).transpose()?;
    let dw = dw.map(|v| cpu_tensor(v, w.shape().clone())).transpose()?;
    Ok((dx, dw))
}

/// `f(r, row)` on every row of `p` elements of `v`, in parallel in blocks of rows.
fn for_rows_mut(v: &mut [f32], p: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    if p == 0 {
        return;
    }
    let rpt = crate::util::rows_per_task(p);
    v.par_chunks_mut(p * rpt).enumerate().for_each(|(bi, blk)| {
        for (k, row) in blk.chunks_exact_mut(p).enumerate() {
            f(bi * rpt + k, row)
        }
    });
}
