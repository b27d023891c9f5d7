//! A training-mode conv → batch norm (→ ReLU) block as one candle op.
//!
//! As two ops, the conv output is a node of candle's graph, and candle's backward gives every
//! node's gradient its own zero-filled buffer plus an addition (single-threaded), a full extra
//! pass over an activation-sized tensor per layer. As one op the conv output stays inside: the
//! backward runs the batch-norm backward straight into the conv backward.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use crate::bn::{bn_train_bwd, bn_train_fwd, BnStats};
use crate::conv::{bias_grad, conv_bwd, conv_fwd, ConvGeom};
use crate::util::{cpu_tensor, layout_slice, storage_slice};

/// What the forward keeps for the backward: the conv output and the batch statistics.
pub(crate) struct BlockSaved {
    pub conv_out: Vec<f32>,
    pub stats: BnStats,
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
    pub saved: Arc<OnceLock<BlockSaved>>,
}

impl ConvBnTrainOp {
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
        // A second forward of the same op object (not done by candle) would keep the first.
        let _ = self.saved.set(BlockSaved { conv_out, stats });
        Ok((CpuStorage::F32(y), g.out_shape()))
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
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (ps, pl) = params.storage_and_layout();
        let (ys, yl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let pv = storage_slice(&ps, pl)?;
        let (bias, gamma, _) = self.split(pv, g.co)?;
        let dims = (g.n, g.co, g.p());
        let (dconv, dgamma, dbeta) = bn_train_bwd(
            &saved.conv_out,
            storage_slice(&ys, yl)?,
            storage_slice(&gs, gl)?,
            dims,
            gamma,
            &saved.stats,
            self.relu,
            need_dx || need_dw || (need_dp && bias.is_some()),
        );
        let dconv = dconv.unwrap_or_default();
        let (dx, dw) = if need_dx || need_dw {
            conv_bwd(
                &g,
                storage_slice(&xs, xl)?,
                storage_slice(&ws, wl)?,
                &dconv,
                need_dx,
                need_dw,
            )
        } else {
            (None, None)
        };
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
        let dx = dx.map(|v| cpu_tensor(v, x.shape().clone())).transpose()?;
        let dw = dw.map(|v| cpu_tensor(v, w.shape().clone())).transpose()?;
        Ok((dx, dw, dp))
    }
}
