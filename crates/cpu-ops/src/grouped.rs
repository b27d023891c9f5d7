//! Depthwise convolution (one filter per channel, groups = channels) as direct loops over each
//! channel plane, forward and backward — not a per-group loop of tiny GEMMs, whose set-up
//! cost dominates when each group holds one channel.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::util::{cpu_tensor, layout_slice, storage_slice};

/// Geometry of one depthwise convolution on an NCHW input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseGeometry {
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding on each side (height, width).
    pub padding: (usize, usize),
    /// Dilation (both axes).
    pub dilation: usize,
}

#[derive(Clone, Copy, Debug)]
struct Sizes {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    g: DepthwiseGeometry,
}

impl Sizes {
    fn new(x: &[usize], k: &[usize], g: DepthwiseGeometry) -> Result<Self> {
        let (&[n, c, h, w], &[kc, one, kh, kw]) = (x, k) else {
            bail!("cpu-ops depthwise_conv2d: expected NCHW input and [C, 1, kh, kw] weight, got {x:?} and {k:?}")
        };
        if kc != c || one != 1 || kh == 0 || kw == 0 {
            bail!("cpu-ops depthwise_conv2d: weight {k:?} does not fit input {x:?}")
        }
        let (sh, sw) = g.stride;
        if sh == 0 || sw == 0 || g.dilation == 0 {
            bail!("cpu-ops depthwise_conv2d: stride and dilation must be at least 1")
        }
        let out = |len: usize, pad: usize, k: usize, s: usize| {
            let span = (k - 1) * g.dilation + 1;
            let padded = len + 2 * pad;
            if padded < span {
                bail!("cpu-ops depthwise_conv2d: kernel span {span} larger than padded input {padded}")
            }
            Ok((padded - span) / s + 1)
        };
        Ok(Sizes {
            n,
            c,
            h,
            w,
            kh,
            kw,
            ho: out(h, g.padding.0, kh, sh)?,
            wo: out(w, g.padding.1, kw, sw)?,
            g,
        })
    }

    /// Visit every (output index, input index, tap index) of one plane whose input position
    /// lies inside the map.
    #[inline]
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (sh, sw) = self.g.stride;
        let (ph, pw) = self.g.padding;
        let d = self.g.dilation;
        for oy in 0..self.ho {
            for i in 0..self.kh {
                let iy = (oy * sh + i * d) as isize - ph as isize;
                if iy < 0 || iy >= self.h as isize {
                    continue;
                }
                let iy = iy as usize;
                for ox in 0..self.wo {
                    for j in 0..self.kw {
                        let ix = (ox * sw + j * d) as isize - pw as isize;
                        if ix < 0 || ix >= self.w as isize {
                            continue;
                        }
                        f(
                            oy * self.wo + ox,
                            iy * self.w + ix as usize,
                            i * self.kw + j,
                        );
                    }
                }
            }
        }
    }
}

struct DepthwiseOp {
    geometry: DepthwiseGeometry,
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "cpu-ops-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let z = Sizes::new(l1.dims(), l2.dims(), self.geometry)?;
        let (x, w) = (layout_slice(s1, l1)?, layout_slice(s2, l2)?);
        let (pi, po, taps) = (z.h * z.w, z.ho * z.wo, z.kh * z.kw);
        let mut y = vec![0f32; z.n * z.c * po];
        if po > 0 {
            y.par_chunks_mut(po).enumerate().for_each(|(plane, yo)| {
                let ch = plane % z.c;
                let xp = &x[plane * pi..(plane + 1) * pi];
                let wk = &w[ch * taps..(ch + 1) * taps];
                z.for_each_tap(|o, i, t| yo[o] += xp[i] * wk[t]);
            });
        }
        Ok((CpuStorage::F32(y), Shape::from((z.n, z.c, z.ho, z.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let z = Sizes::new(x.dims(), w.dims(), self.geometry)?;
        let (pi, po, taps) = (z.h * z.w, z.ho * z.wo, z.kh * z.kw);
        let grad = grad.contiguous()?;
        let (gs, gl) = grad.storage_and_layout();
        let dy = storage_slice(&gs, gl)?;
        let dx = if x.track_op() {
            let w = w.contiguous()?;
            let (ws, wl) = w.storage_and_layout();
            let wv = storage_slice(&ws, wl)?;
            let mut dx = vec![0f32; z.n * z.c * pi];
            if pi > 0 {
                dx.par_chunks_mut(pi).enumerate().for_each(|(plane, d)| {
                    let ch = plane % z.c;
                    let g = &dy[plane * po..(plane + 1) * po];
                    let wk = &wv[ch * taps..(ch + 1) * taps];
                    z.for_each_tap(|o, i, t| d[i] += g[o] * wk[t]);
                });
            }
            Some(cpu_tensor(dx, x.shape().clone())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            let x = x.contiguous()?;
            let (xs, xl) = x.storage_and_layout();
            let xv = storage_slice(&xs, xl)?;
            let mut dw = vec![0f32; z.c * taps];
            dw.par_chunks_mut(taps).enumerate().for_each(|(ch, d)| {
                for b in 0..z.n {
                    let plane = b * z.c + ch;
                    let g = &dy[plane * po..(plane + 1) * po];
                    let xp = &xv[plane * pi..(plane + 1) * pi];
                    z.for_each_tap(|o, i, t| d[t] += g[o] * xp[i]);
                }
            });
            Some(cpu_tensor(dw, w.shape().clone())?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// Depthwise 2-D convolution: `x` `[N, C, H, W]`, `weight` `[C, 1, kh, kw]`, rectangular
/// stride and padding, dilation; the result is `[N, C, Ho, Wo]` with
/// `Ho = (H + 2·ph − (kh − 1)·d − 1)/sh + 1` (likewise `Wo`). Forward and backward are direct
/// loops over each channel plane, parallel over planes (input gradient, output) or channels
/// (weight gradient). CPU and f32 only; other devices or dtypes are an error.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use cpu_ops::{depthwise_conv2d, DepthwiseGeometry};
/// # fn main() -> candle_core::Result<()> {
/// let x = Tensor::ones((1, 2, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
/// let w = Tensor::ones((2, 1, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
/// let g = DepthwiseGeometry { stride: (1, 1), padding: (1, 1), dilation: 1 };
/// let y = depthwise_conv2d(&x, &w, g)?;
/// assert_eq!(y.dims(), &[1, 2, 3, 3]);
/// // the centre sees all 9 taps, a corner 4
/// assert_eq!(y.get(0)?.get(0)?.to_vec2::<f32>()?[1][1], 9.0);
/// assert_eq!(y.get(0)?.get(1)?.to_vec2::<f32>()?[0][0], 4.0);
/// # Ok(())
/// # }
/// ```
pub fn depthwise_conv2d(
    x: &Tensor,
    weight: &Tensor,
    geometry: DepthwiseGeometry,
) -> Result<Tensor> {
    if !crate::fast(&[x, weight]) {
        bail!("cpu-ops depthwise_conv2d: needs f32 tensors on the CPU")
    }
    Sizes::new(x.dims(), weight.dims(), geometry)?;
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, DepthwiseOp { geometry })
}
