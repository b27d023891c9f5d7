//! 3×3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(2×2, 3×3)
//! (design §14).
//!
//! The output is cut into 2×2 tiles; each tile reads a 4×4 input patch. With the transforms
//! `V = Bᵀ·d·B` of every patch (per input channel) and `U = G·g·Gᵀ` of every 3×3 kernel, the
//! convolution becomes 16 independent GEMMs `M[ξ] = U[ξ]·V[ξ]` (`[Co, Ci]·[Ci, tiles]`, one
//! per position ξ of the 4×4 transformed tile), and each output tile is `Aᵀ·M·A`. That is
//! 16 multiplications per tile and channel pair instead of the direct conv's 36: 2.25× less
//! arithmetic in the part that dominates the step.
//!
//! The input gradient of such a conv is again a 3×3, stride-1, padding-1 conv (of `dY`, with
//! the kernels flipped and the channel axes swapped), so it runs through the same path.
//!
//! Every transform is a fixed sequence of adds and halvings: the result for one image does
//! not depend on the grouping or the thread count.

use rayon::prelude::*;

use crate::conv::{sgemm, ConvGeom};
use crate::rows::dispatched;
use crate::util::{give_scratch, take_scratch, uninit_vec, SendPtr};

/// True when `g` is a 3×3, stride-1, padding-1 conv on which F(2×2, 3×3) measured faster
/// than im2col + GEMM (`cargo run --release -p cpu-ops --example op_bench -- --width all`,
/// design §14).
///
/// The GEMMs save 20 of 36 multiplications per tile and channel pair, in proportion to
/// `Ci·Co`; the transforms cost in proportion to `Ci + Co` and, per tile row, a fixed
/// overhead that narrow maps do not amortise. So the rule asks for a large harmonic mean of
/// the channel counts (`2·Ci·Co / (Ci + Co)`) and a wide enough map: ≥ 64 channels on maps at
/// least 16 wide (SimCNN-1.0's 64- and 128-channel layers: 1.1–1.6× faster forward), or
/// ≥ 256 channels on maps at least 8 wide (its 256-channel layers: 2×). Below that — every
/// conv of the width-0.25 networks, and the 4×4 and 2×2 maps — the transforms cost more than
/// the GEMM saves.
pub(crate) fn applies(g: &ConvGeom) -> bool {
    let shape = g.k == 3 && g.stride == 1 && g.pad == 1;
    let hm = 2 * g.ci * g.co / (g.ci + g.co).max(1);
    shape && ((hm >= 64 && g.wo >= 16) || (hm >= 256 && g.wo >= 8))
}

/// The geometry of the input-gradient conv of `g`: `dY` (`Co` channels, `Ho×Wo`) in, `dX`
/// (`Ci` channels, `H×W`) out. For a same-size conv the sizes are unchanged.
pub(crate) fn input_grad_geom(g: &ConvGeom) -> ConvGeom {
    ConvGeom {
        n: g.n,
        ci: g.co,
        h: g.ho,
        w: g.wo,
        co: g.ci,
        k: g.k,
        stride: 1,
        pad: g.pad,
        ho: g.h,
        wo: g.w,
    }
}

/// `U = G·g·Gᵀ` for every output/input channel pair, laid out `[16][Co][Ci]`. With
/// `input_grad`, `w` is the forward conv's `[Co, Ci, 3, 3]` and the result is that of the
/// input-gradient conv: kernels flipped, channel axes swapped (`[16][Ci][Co]`).
fn transform_weights(w: &[f32], co: usize, ci: usize, input_grad: bool) -> Vec<f32> {
    let (out_ch, in_ch) = if input_grad { (ci, co) } else { (co, ci) };
    let mut u = vec![0f32; 16 * out_ch * in_ch];
    for o in 0..out_ch {
        for i in 0..in_ch {
            let mut g = [[0f32; 3]; 3];
            for (ky, row) in g.iter_mut().enumerate() {
                for (kx, v) in row.iter_mut().enumerate() {
                    *v = if input_grad {
                        w[((i * ci + o) * 3 + (2 - ky)) * 3 + (2 - kx)]
                    } else {
                        w[((o * ci + i) * 3 + ky) * 3 + kx]
                    };
                }
            }
            // t = G·g (4×3), then u = t·Gᵀ (4×4)
            let mut t = [[0f32; 3]; 4];
            for c in 0..3 {
                let (a, b, d) = (g[0][c], g[1][c], g[2][c]);
                t[0][c] = a;
                t[1][c] = 0.5 * ((a + b) + d);
                t[2][c] = 0.5 * ((a - b) + d);
                t[3][c] = d;
            }
            for (r, tr) in t.iter().enumerate() {
                let (a, b, d) = (tr[0], tr[1], tr[2]);
                let row = [a, 0.5 * ((a + b) + d), 0.5 * ((a - b) + d), d];
                for (c, v) in row.into_iter().enumerate() {
                    u[((r * 4 + c) * out_ch + o) * in_ch + i] = v;
                }
            }
        }
    }
    u
}

/// `len` floats at `v[off..]` as a mutable slice, for writing several disjoint rows of one
/// buffer at once.
///
/// # Safety
/// `off + len <= v.len()`, and no other live slice overlaps the range.
unsafe fn row_mut<'a>(v: *mut f32, off: usize, len: usize) -> &'a mut [f32] {
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(v.add(off), len) }
}

dispatched! {
    /// `Bᵀ·d·B` of the 4×4 patches of one tile row, `tw` tiles. `rows[r]` is patch row `r`
    /// (input row `2·ty − 1 + r`) zero-padded as `P[q] = x[q − 1]` (`2·tw + 2` long), or
    /// `None` above or below the image. The 16 transformed rows (`tw` each) go to
    /// `v[ξ·stride ..]`; `tmp` is scratch of at least `16·(tw + 1)`.
    fn input_tile_row(rows: [Option<&[f32]>; 4], tw: usize, v: &mut [f32], stride: usize, tmp: &mut [f32]) {
        let t1 = tw + 1;
        assert!(v.len() >= 15 * stride + tw && stride >= tw && tmp.len() >= 16 * t1);
        let (deint, cols) = tmp[..16 * t1].split_at_mut(8 * t1);
        // deinterleave every patch row: e = even columns P[2q], o = odd ones P[2q + 1]
        for (r, row) in rows.iter().enumerate() {
            let (e, rest) = deint[2 * r * t1..].split_at_mut(t1);
            let o = &mut rest[..t1];
            match row {
                Some(p) => {
                    let p = &p[..2 * t1];
                    for q in 0..t1 {
                        e[q] = p[2 * q];
                        o[q] = p[2 * q + 1];
                    }
                }
                None => {
                    e.fill(0.0);
                    o.fill(0.0);
                }
            }
        }
        // Bᵀ down the patch rows, on the even and the odd columns alike:
        // c0 = r0 − r2, c1 = r1 + r2, c2 = r2 − r1, c3 = r1 − r3
        for par in 0..2 {
            let src = |r: usize| &deint[(2 * r + par) * t1..(2 * r + par + 1) * t1];
            let (r0, r1, r2, r3) = (src(0), src(1), src(2), src(3));
            let dst = &mut cols[par * 4 * t1..(par + 1) * 4 * t1];
            let (c0, rest) = dst.split_at_mut(t1);
            let (c1, rest) = rest.split_at_mut(t1);
            let (c2, c3) = rest.split_at_mut(t1);
            for q in 0..t1 {
                c0[q] = r0[q] - r2[q];
                c1[q] = r1[q] + r2[q];
                c2[q] = r2[q] - r1[q];
                c3[q] = r1[q] - r3[q];
            }
        }
        // B along the patch columns: the patch of tile tx is (e[tx], o[tx], e[tx+1], o[tx+1])
        let vp = v.as_mut_ptr();
        for i in 0..4 {
            let e = &cols[i * t1..(i + 1) * t1];
            let o = &cols[(4 + i) * t1..(5 + i) * t1];
            // SAFETY: rows ξ = 4i..4i+4 of `tw` floats, `stride ≥ tw` apart, inside `v`
            // (asserted above), pairwise disjoint.
            let (d0, d1, d2, d3) = unsafe {
                (
                    row_mut(vp, 4 * i * stride, tw),
                    row_mut(vp, (4 * i + 1) * stride, tw),
                    row_mut(vp, (4 * i + 2) * stride, tw),
                    row_mut(vp, (4 * i + 3) * stride, tw),
                )
            };
            for tx in 0..tw {
                d0[tx] = e[tx] - e[tx + 1];
                d1[tx] = o[tx] + e[tx + 1];
                d2[tx] = e[tx + 1] - o[tx];
                d3[tx] = o[tx] - o[tx + 1];
            }
        }
    }
}

dispatched! {
    /// `Aᵀ·m·A` for one tile row of one output channel: `m` starts at ξ = 0's row (`tw`
    /// tiles), the other positions `stride` apart; writes output rows `y0` and `y1` (`y1`
    /// absent past the bottom edge), `w` wide, adding `bias`. `tmp`: scratch of `12·tw`.
    fn output_tile_row(m: &[f32], stride: usize, tw: usize, y0: &mut [f32], y1: Option<&mut [f32]>, w: usize, bias: f32, tmp: &mut [f32]) {
        assert!(m.len() >= 15 * stride + tw && tmp.len() >= 12 * tw);
        let row = |xi: usize| &m[xi * stride..xi * stride + tw];
        let (s, y) = tmp[..12 * tw].split_at_mut(8 * tw);
        // Aᵀ down the rows: s0 = m0 + m1 + m2, s1 = m1 − m2 − m3 (per column j)
        for j in 0..4 {
            let (m0, m1, m2, m3) = (row(j), row(4 + j), row(8 + j), row(12 + j));
            let (s0, rest) = s[2 * j * tw..].split_at_mut(tw);
            let s1 = &mut rest[..tw];
            for tx in 0..tw {
                s0[tx] = (m0[tx] + m1[tx]) + m2[tx];
                s1[tx] = (m1[tx] - m2[tx]) - m3[tx];
            }
        }
        // A along the columns, for each of the two output rows a
        for a in 0..2 {
            let sr = |j: usize| &s[(2 * j + a) * tw..(2 * j + a + 1) * tw];
            let (q0, q1, q2, q3) = (sr(0), sr(1), sr(2), sr(3));
            let (ya, yb) = y[2 * a * tw..(2 * a + 2) * tw].split_at_mut(tw);
            for tx in 0..tw {
                ya[tx] = ((q0[tx] + q1[tx]) + q2[tx]) + bias;
                yb[tx] = ((q1[tx] - q2[tx]) - q3[tx]) + bias;
            }
        }
        let full = w / 2;
        let put = |dst: &mut [f32], a: usize| {
            let (ya, yb) = y[2 * a * tw..(2 * a + 2) * tw].split_at(tw);
            for tx in 0..full {
                dst[2 * tx] = ya[tx];
                dst[2 * tx + 1] = yb[tx];
            }
            if w % 2 == 1 {
                dst[2 * full] = ya[full];
            }
        };
        put(y0, 0);
        if let Some(y1) = y1 {
            put(y1, 1);
        }
    }
}

/// The convolution `y = conv(x, w) + bias` of a geometry that [`applies`], or (with
/// `input_grad`) the input gradient `dX` of the conv `g` from `dy`, both through F(2×2, 3×3).
pub(crate) fn conv(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    input_grad: bool,
) -> Vec<f32> {
    // `cg` is the conv actually computed (the input-gradient conv when asked).
    let cg = if input_grad { input_grad_geom(g) } else { *g };
    let u = transform_weights(w, g.co, g.ci, input_grad);
    let (ci, co, h, wd) = (cg.ci, cg.co, cg.h, cg.w);
    let (th, tw) = (cg.ho.div_ceil(2), cg.wo.div_ceil(2));
    let tiles = th * tw;
    let in_img = ci * h * wd;
    let out_img = co * cg.ho * cg.wo;
    // SAFETY: every output element is written by `output_tile_row` below (each tile writes its
    // in-range pixels, and the tiles cover the output).
    let mut out = unsafe { uninit_vec::<f32>(cg.n * out_img) };
    if out.is_empty() {
        return out;
    }
    let nb = cg.group();
    let groups = cg.n.div_ceil(nb);
    let outp = SendPtr::new(&mut out);
    (0..groups).into_par_iter().for_each(|gi| {
        let n0 = gi * nb;
        let cnt = nb.min(cg.n - n0);
        let ncols = cnt * tiles;
        let mut v = take_scratch(16 * ci * ncols);
        let mut m = take_scratch(16 * co * ncols);
        let mut tmp = vec![0f32; 16 * (tw + 1)];
        // every input row once, zero-padded: P[q] = x[q − 1], 2·tw + 2 long
        let pw = 2 * tw + 2;
        let mut padded = vec![0f32; h * pw];
        for j in 0..cnt {
            let img = &x[(n0 + j) * in_img..(n0 + j + 1) * in_img];
            for c in 0..ci {
                let plane = &img[c * h * wd..(c + 1) * h * wd];
                for (prow, xrow) in padded.chunks_exact_mut(pw).zip(plane.chunks_exact(wd)) {
                    prow[1..=wd].copy_from_slice(xrow);
                }
                for ty in 0..th {
                    let rows: [Option<&[f32]>; 4] = std::array::from_fn(|r| {
                        (2 * ty + r)
                            .checked_sub(1)
                            .filter(|&y| y < h)
                            .map(|y| &padded[y * pw..(y + 1) * pw])
                    });
                    let off = c * ncols + j * tiles + ty * tw;
                    input_tile_row(rows, tw, &mut v[off..], ci * ncols, &mut tmp);
                }
            }
        }
        for xi in 0..16 {
            // SAFETY: u[ξ] is co×ci, v[ξ] ci×ncols, m[ξ] co×ncols, all inside their buffers.
            unsafe {
                sgemm(
                    co,
                    ncols,
                    ci,
                    m[xi * co * ncols..].as_mut_ptr(),
                    ncols,
                    1,
                    false,
                    u[xi * co * ci..].as_ptr(),
                    ci,
                    1,
                    v[xi * ci * ncols..].as_ptr(),
                    ncols,
                    1,
                )
            };
        }
        let (ho, wo) = (cg.ho, cg.wo);
        let mut otmp = vec![0f32; 12 * tw];
        for j in 0..cnt {
            // SAFETY: image n0+j's output block is owned by this task alone.
            let dst = unsafe { outp.slice((n0 + j) * out_img, out_img) };
            for (c, plane) in dst.chunks_exact_mut(ho * wo).enumerate() {
                let b = bias.map_or(0.0, |b| b[c]);
                for ty in 0..th {
                    let (top, rest) = plane[2 * ty * wo..].split_at_mut(wo);
                    let bottom = (2 * ty + 1 < ho).then(|| &mut rest[..wo]);
                    let src = &m[c * ncols + j * tiles + ty * tw..];
                    output_tile_row(src, co * ncols, tw, top, bottom, wo, b, &mut otmp);
                }
            }
        }
        give_scratch(v);
        give_scratch(m);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(seed: u64, len: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32) * 2.0
                    - 1.0
            })
            .collect()
    }

    /// Largest `|a − b|` over the largest `|b|`: the error relative to the output's scale.
    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// F(2×2, 3×3) against the direct (im2col) conv, forward and input gradient, on odd
        /// and even sizes, 1×1 images and single channels. Tolerance 2e-5 of the output's largest magnitude:
        /// the transforms add at most 3 exactly-representable coefficient sums (±1, ½) per
        /// term, so the rounding error grows like a handful of ulps of the largest partial
        /// sum, far below the SGD noise of a training step (design §14).
        #[test]
        fn matches_the_direct_conv(
            n in 1usize..=2, ci in 1usize..=20, co in 1usize..=20,
            h in 1usize..=11, w in 1usize..=11, bias in any::<bool>(), seed in any::<u64>(),
        ) {
            // `conv` itself takes any channel count and size; `applies` only decides speed
            let g = ConvGeom::new(&[n, ci, h, w], &[co, ci, 3, 3], 1, 1).unwrap();
            let x = data(seed, n * ci * h * w);
            let wt = data(seed + 1, co * ci * 9);
            let b = data(seed + 2, co);
            let bias = bias.then_some(&b[..]);
            let want = crate::conv::im2col_conv_fwd(&g, &x, &wt, bias);
            let got = conv(&g, &x, &wt, bias, false);
            prop_assert!(rel_err(&got, &want) < 2e-5, "forward error {}", rel_err(&got, &want));
            let dy = data(seed + 3, n * co * h * w);
            let (want_dx, _) = crate::conv::im2col_conv_bwd(&g, &x, &wt, &dy, true, false);
            let got_dx = conv(&g, &dy, &wt, None, true);
            let want_dx = want_dx.unwrap();
            prop_assert!(rel_err(&got_dx, &want_dx) < 2e-5, "dx error {}", rel_err(&got_dx, &want_dx));
        }
    }

    /// The rule picks the layers that measured faster, and never a conv of another shape.
    #[test]
    fn applies_to_wide_layers_only() {
        let geom = |ci: usize, co: usize, hw: usize, k: usize, s: usize, p: usize| {
            ConvGeom::new(&[2, ci, hw, hw], &[co, ci, k, k], s, p).unwrap()
        };
        assert!(applies(&geom(64, 64, 32, 3, 1, 1)));
        assert!(applies(&geom(128, 128, 16, 3, 1, 1)));
        assert!(applies(&geom(256, 256, 8, 3, 1, 1)));
        assert!(!applies(&geom(16, 16, 32, 3, 1, 1)));
        assert!(!applies(&geom(64, 64, 8, 3, 1, 1)));
        assert!(!applies(&geom(512, 512, 4, 3, 1, 1)));
        assert!(!applies(&geom(64, 64, 32, 3, 2, 1)));
        assert!(!applies(&geom(64, 64, 32, 1, 1, 0)));
        assert!(!applies(&geom(64, 64, 32, 5, 1, 2)));
    }
}
