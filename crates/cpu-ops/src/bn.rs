//! Batch norm (training and eval), fused ReLU, GradSplitter's channel mask and the fused eval
//! BN → ReLU → mask, as candle custom ops with one-pass-per-channel backward.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::rows;
use crate::util::{cpu_tensor, layout_slice, map_rows, reduce_rows, storage_slice};

/// Batch statistics of a training-mode forward, kept for the backward.
#[derive(Debug)]
pub(crate) struct BnStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub invstd: Vec<f32>,
}

/// `(n, c, p)` of an NCHW tensor with `p = H·W`.
fn ncp(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        &[n, c, h, w] => Ok((n, c, h * w)),
        d => bail!("cpu-ops: expected an NCHW tensor, got shape {d:?}"),
    }
}

fn check_len(v: &[f32], len: usize, what: &str) -> Result<()> {
    if v.len() != len {
        bail!("cpu-ops: {what} has {} elements, expected {len}", v.len())
    }
    Ok(())
}

/// Training-mode forward. Statistics from one streaming pass over the (n, c) rows (each
/// row's mean and centred sum of squares, two passes inside the cached row), combined per
/// channel exactly (Chan et al.); then `y = relu?((x - mean) · invstd · γ + β)` in a second
/// streaming pass. Both passes walk memory in order, parallel over rows.
pub(crate) fn bn_train_fwd(
    x: &[f32],
    (n, c, p): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
) -> (Vec<f32>, BnStats) {
    let (mut mean, mut var, mut invstd) = (vec![0f32; c], vec![0f32; c], vec![0f32; c]);
    if p == 0 || n == 0 {
        return (vec![0f32; x.len()], BnStats { mean, var, invstd });
    }
    let rows: Vec<(f32, f32)> = reduce_rows(n * c, p, |r| {
        let row = &x[r * p..(r + 1) * p];
        let m = rows::sum(row) / p as f32;
        (m, rows::sum_sq_dev(row, m))
    });
    for ch in 0..c {
        let mut s = 0f64;
        for i in 0..n {
            s += rows[i * c + ch].0 as f64;
        }
        let mu = s / n as f64;
        let mut m2 = 0f64;
        for i in 0..n {
            let (rm, rm2) = rows[i * c + ch];
            m2 += rm2 as f64 + p as f64 * (rm as f64 - mu) * (rm as f64 - mu);
        }
        let v = m2 / (n * p) as f64;
        mean[ch] = mu as f32;
        var[ch] = v as f32;
        invstd[ch] = (1.0 / (v + eps).sqrt()) as f32;
    }
    let a: Vec<f32> = (0..c).map(|ch| invstd[ch] * gamma[ch]).collect();
    let b: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * a[ch]).collect();
    let y = map_rows(x.len(), p, |r, o| {
        rows::affine(&x[r * p..(r + 1) * p], o, a[r % c], b[r % c], relu)
    });
    (y, BnStats { mean, var, invstd })
}

/// Training-mode backward. With `g = dy · [y > 0]` (ReLU) per channel:
/// `dβ = Σg`, `dγ = invstd · Σ g (x - mean)`,
/// `dx = γ·invstd · (g - dβ/M - x̂ · dγ/M)`.
/// One streaming pass for the row sums, one for `dx`, parallel over rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_train_bwd(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    (n, c, p): (usize, usize, usize),
    gamma: &[f32],
    st: &BnStats,
    relu: bool,
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (mut dgamma, mut dbeta) = (vec![0f32; c], vec![0f32; c]);
    if p == 0 || n == 0 {
        return (need_dx.then(|| vec![0f32; x.len()]), dgamma, dbeta);
    }
    let rows: Vec<(f32, f32)> = reduce_rows(n * c, p, |r| {
        let rg = r * p..(r + 1) * p;
        rows::masked_sums(
            &x[rg.clone()],
            &y[rg.clone()],
            &dy[rg],
            st.mean[r % c],
            relu,
        )
    });
    for ch in 0..c {
        let (mut sg, mut sgx) = (0f64, 0f64);
        for i in 0..n {
            let (a, b) = rows[i * c + ch];
            sg += a as f64;
            sgx += b as f64;
        }
        dbeta[ch] = sg as f32;
        dgamma[ch] = (sgx * st.invstd[ch] as f64) as f32;
    }
    let dx = need_dx.then(|| {
        let m = (n * p) as f32;
        let coef: Vec<(f32, f32, f32)> = (0..c)
            .map(|ch| {
                let a = gamma[ch] * st.invstd[ch];
                (a, a * dbeta[ch] / m, a * st.invstd[ch] * dgamma[ch] / m)
            })
            .collect();
        map_rows(x.len(), p, |r, out| {
            let ch = r % c;
            let rg = r * p..(r + 1) * p;
            let (xr, yr, gr) = (&x[rg.clone()], &y[rg.clone()], &dy[rg]);
            rows::bn_train_grad(xr, yr, gr, out, coef[ch], st.mean[ch], relu)
        })
    });
    (dx, dgamma, dbeta)
}

/// The custom op behind [`crate::batch_norm_train`]: `(x, γ, β)`.
pub(crate) struct BnTrainOp {
    pub eps: f64,
    pub relu: bool,
    pub stats: Arc<OnceLock<BnStats>>,
}

impl CustomOp3 for BnTrainOp {
    fn name(&self) -> &'static str {
        "cpu-ops-batch-norm-train"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = ncp(l1.dims())?;
        let (x, gamma, beta) = (
            layout_slice(s1, l1)?,
            layout_slice(s2, l2)?,
            layout_slice(s3, l3)?,
        );
        check_len(gamma, dims.1, "gamma")?;
        check_len(beta, dims.1, "beta")?;
        let (y, st) = bn_train_fwd(x, dims, gamma, beta, self.eps, self.relu);
        // A second forward of the same op object (not done by candle) would keep the first stats.
        let _ = self.stats.set(st);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (need_dx, need_dg, need_db) = (x.track_op(), gamma.track_op(), beta.track_op());
        if !need_dx && !need_dg && !need_db {
            return Ok((None, None, None));
        }
        let Some(st) = self.stats.get() else {
            bail!("cpu-ops batch_norm_train: backward before forward")
        };
        let dims = ncp(x.dims())?;
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ys, yl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (gms, gml) = gamma.storage_and_layout();
        let (dx, dg, db) = bn_train_bwd(
            storage_slice(&xs, xl)?,
            storage_slice(&ys, yl)?,
            storage_slice(&gs, gl)?,
            dims,
            storage_slice(&gms, gml)?,
            st,
            self.relu,
            need_dx,
        );
        let dx = dx.map(|v| cpu_tensor(v, x.shape().clone())).transpose()?;
        let dg = if need_dg {
            Some(cpu_tensor(dg, dims.1)?)
        } else {
            None
        };
        let db = if need_db {
            Some(cpu_tensor(db, dims.1)?)
        } else {
            None
        };
        Ok((dx, dg, db))
    }
}

/// Per-channel affine of eval-mode BN: `scale = γ / √(var + eps)`, `shift = β - mean·scale`.
pub(crate) fn eval_affine(
    gamma: &[f32],
    beta: &[f32],
    rm: &[f32],
    rv: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let inv: Vec<f32> = rv
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    let scale: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
    let shift = beta
        .iter()
        .zip(rm)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

/// The custom op behind [`crate::batch_norm_eval`]: `(x, γ, β)` with the running statistics
/// held as constants.
pub(crate) struct BnEvalOp {
    pub eps: f64,
    pub relu: bool,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

impl CustomOp3 for BnEvalOp {
    fn name(&self) -> &'static str {
        "cpu-ops-batch-norm-eval"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, p) = ncp(l1.dims())?;
        let (x, gamma, beta) = (
            layout_slice(s1, l1)?,
            layout_slice(s2, l2)?,
            layout_slice(s3, l3)?,
        );
        check_len(gamma, c, "gamma")?;
        check_len(beta, c, "beta")?;
        let (scale, shift) =
            eval_affine(gamma, beta, &self.running_mean, &self.running_var, self.eps);
        let relu = self.relu;
        let y = map_rows(x.len(), p, |r, o| {
            rows::affine(&x[r * p..(r + 1) * p], o, scale[r % c], shift[r % c], relu)
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (need_dx, need_dg, need_db) = (x.track_op(), gamma.track_op(), beta.track_op());
        if !need_dx && !need_dg && !need_db {
            return Ok((None, None, None));
        }
        let (n, c, p) = ncp(x.dims())?;
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ys, yl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (gms, gml) = gamma.storage_and_layout();
        let (bs, bl) = beta.storage_and_layout();
        let (xv, yv, dy) = (
            storage_slice(&xs, xl)?,
            storage_slice(&ys, yl)?,
            storage_slice(&gs, gl)?,
        );
        let (gv, bv) = (storage_slice(&gms, gml)?, storage_slice(&bs, bl)?);
        let (scale, _) = eval_affine(gv, bv, &self.running_mean, &self.running_var, self.eps);
        let relu = self.relu;
        let dx = if need_dx && p > 0 {
            let dx = map_rows(xv.len(), p, |r, o| {
                let rg = r * p..(r + 1) * p;
                rows::scaled_grad(&dy[rg.clone()], &yv[rg], o, scale[r % c], relu)
            });
            Some(cpu_tensor(dx, x.shape().clone())?)
        } else if need_dx {
            Some(x.zeros_like()?)
        } else {
            None
        };
        let (dg, db) = if need_dg || need_db {
            let sums: Vec<(f32, f32)> = (0..c)
                .into_par_iter()
                .map(|ch| {
                    let inv = (1.0 / (self.running_var[ch] as f64 + self.eps).sqrt()) as f32;
                    let mean = self.running_mean[ch];
                    let (mut sg, mut sgx) = (0f64, 0f64);
                    for i in 0..n {
                        let rg = (i * c + ch) * p..(i * c + ch + 1) * p;
                        let (s1, s2) = rows::masked_sums(
                            &xv[rg.clone()],
                            &yv[rg.clone()],
                            &dy[rg],
                            mean,
                            relu,
                        );
                        sg += s1 as f64;
                        sgx += s2 as f64;
                    }
                    ((sgx * inv as f64) as f32, sg as f32)
                })
                .collect();
            let dg: Vec<f32> = sums.iter().map(|s| s.0).collect();
            let db: Vec<f32> = sums.iter().map(|s| s.1).collect();
            (
                if need_dg {
                    Some(cpu_tensor(dg, c)?)
                } else {
                    None
                },
                if need_db {
                    Some(cpu_tensor(db, c)?)
                } else {
                    None
                },
            )
        } else {
            (None, None)
        };
        Ok((dx, dg, db))
    }
}

/// `(g, b, c, p)` of a masked activation: x [G·B, C, H, W], mask [G, C].
fn mask_geom(x: &[usize], m: &[usize]) -> Result<(usize, usize, usize, usize)> {
    let (n, c, p) = ncp(x)?;
    let &[g, mc] = m else {
        bail!("cpu-ops channel_mask: mask must be 2-D [G, C], got {m:?}")
    };
    if mc != c {
        bail!("cpu-ops channel_mask: mask has {mc} channels, input has {c}")
    }
    if g == 0 || n % g != 0 {
        bail!("cpu-ops channel_mask: batch {n} is not a multiple of the mask's {g} groups")
    }
    Ok((g, n / g, c, p))
}

/// The custom op behind [`crate::channel_mask`]: `(x, mask)`.
pub(crate) struct ChannelMaskOp;

impl CustomOp2 for ChannelMaskOp {
    fn name(&self) -> &'static str {
        "cpu-ops-channel-mask"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, b, c, p) = mask_geom(l1.dims(), l2.dims())?;
        let (x, m) = (layout_slice(s1, l1)?, layout_slice(s2, l2)?);
        let y = map_rows(x.len(), p, |r, o| {
            let (i, ch) = (r / c, r % c);
            let mv = m[(i / b) * c + ch];
            rows::scale(&x[r * p..(r + 1) * p], o, mv)
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (need_dx, need_dm) = (x.track_op(), mask.track_op());
        if !need_dx && !need_dm {
            return Ok((None, None));
        }
        let (g, b, c, p) = mask_geom(x.dims(), mask.dims())?;
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ms, ml) = mask.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (xv, mv, dy) = (
            storage_slice(&xs, xl)?,
            storage_slice(&ms, ml)?,
            storage_slice(&gs, gl)?,
        );
        let dx = if need_dx {
            let dx = map_rows(xv.len(), p, |r, o| {
                let mm = mv[(r / c / b) * c + r % c];
                rows::scale(&dy[r * p..(r + 1) * p], o, mm)
            });
            Some(cpu_tensor(dx, x.shape().clone())?)
        } else {
            None
        };
        let dm = if need_dm {
            let v: Vec<f32> = (0..g * c)
                .into_par_iter()
                .map(|gc| {
                    let (gi, ch) = (gc / c, gc % c);
                    let mut s = 0f64;
                    for i in gi * b..(gi + 1) * b {
                        let rg = (i * c + ch) * p..(i * c + ch + 1) * p;
                        s += rows::dot(&dy[rg.clone()], &xv[rg]) as f64;
                    }
                    s as f32
                })
                .collect();
            Some(cpu_tensor(v, (g, c))?)
        } else {
            None
        };
        Ok((dx, dm))
    }
}

/// The custom op behind [`crate::batch_norm_relu_mask`]: `(x, mask)` with the (frozen) BN
/// affine held as constants: `y = relu(x·scale + shift) · mask`.
pub(crate) struct BnReluMaskOp {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl BnReluMaskOp {
    pub(crate) fn new(gamma: &[f32], beta: &[f32], rm: &[f32], rv: &[f32], eps: f64) -> Self {
        let (scale, shift) = eval_affine(gamma, beta, rm, rv, eps);
        BnReluMaskOp { scale, shift }
    }
}

impl CustomOp2 for BnReluMaskOp {
    fn name(&self) -> &'static str {
        "cpu-ops-batch-norm-relu-mask"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, b, c, p) = mask_geom(l1.dims(), l2.dims())?;
        check_len(&self.scale, c, "batch-norm parameters")?;
        let (x, m) = (layout_slice(s1, l1)?, layout_slice(s2, l2)?);
        let y = map_rows(x.len(), p, |r, o| {
            let (i, ch) = (r / c, r % c);
            let mv = m[(i / b) * c + ch];
            let (a, sh) = (self.scale[ch], self.shift[ch]);
            rows::affine_relu_mask(&x[r * p..(r + 1) * p], o, a, sh, mv)
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (need_dx, need_dm) = (x.track_op(), mask.track_op());
        if !need_dx && !need_dm {
            return Ok((None, None));
        }
        let (g, b, c, p) = mask_geom(x.dims(), mask.dims())?;
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ms, ml) = mask.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (xv, mv, dy) = (
            storage_slice(&xs, xl)?,
            storage_slice(&ms, ml)?,
            storage_slice(&gs, gl)?,
        );
        let dx = if need_dx {
            let dx = map_rows(xv.len(), p, |r, o| {
                let ch = r % c;
                let mm = mv[(r / c / b) * c + ch];
                let (a, sh) = (self.scale[ch], self.shift[ch]);
                let am = a * mm;
                let rg = r * p..(r + 1) * p;
                rows::affine_relu_mask_grad(&dy[rg.clone()], &xv[rg], o, a, sh, am)
            });
            Some(cpu_tensor(dx, x.shape().clone())?)
        } else {
            None
        };
        let dm = if need_dm {
            let v: Vec<f32> = (0..g * c)
                .into_par_iter()
                .map(|gc| {
                    let (gi, ch) = (gc / c, gc % c);
                    let (a, sh) = (self.scale[ch], self.shift[ch]);
                    let mut s = 0f64;
                    for i in gi * b..(gi + 1) * b {
                        let rg = (i * c + ch) * p..(i * c + ch + 1) * p;
                        s += rows::relu_affine_dot(&dy[rg.clone()], &xv[rg], a, sh) as f64;
                    }
                    s as f32
                })
                .collect();
            Some(cpu_tensor(v, (g, c))?)
        } else {
            None
        };
        Ok((dx, dm))
    }
}
