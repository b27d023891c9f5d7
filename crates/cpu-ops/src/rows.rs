//! The element-wise row passes of the batch-norm, ReLU and mask ops, each dispatched at run
//! time to a build with AVX2 + FMA when the CPU has them.
//!
//! A "row" is one (image, channel) plane of an NCHW tensor. Every kernel walks its row in
//! fixed 8-lane blocks (`[f32; 8]`), which the compiler turns into one 256-bit vector
//! operation per block under AVX2 (two 128-bit ones otherwise); the ReLU masks are bit-ands,
//! so no kernel branches per element. Outputs are written into uninitialised memory
//! (`MaybeUninit`), so no buffer is zero-filled before it is overwritten.

use std::mem::MaybeUninit;

/// True when this CPU has AVX2 and FMA (cached by the standard library after the first call).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Defines `pub(crate) fn $name(args) -> ret` whose body is compiled twice, for the baseline
/// target and with AVX2 + FMA enabled, choosing the second at run time when the CPU has them.
macro_rules! dispatched {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if $crate::rows::avx2_fma() {
                    // SAFETY: the CPU has the features `avx2` was compiled for (checked above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

pub(crate) use dispatched;

/// `g` where `keep` holds, else `+0.0`, as a bit-and (a NaN or infinite `g` where `keep` is
/// false still gives 0, as the ReLU backward must).
#[inline(always)]
fn keep_if(keep: bool, g: f32) -> f32 {
    f32::from_bits(g.to_bits() & (keep as u32).wrapping_neg())
}

/// Sum of eight lanes, pairwise.
#[inline(always)]
fn hsum(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Defines a row map: `out[i] = f(inputs[i]…)` over equal-length rows, blockwise in 8 lanes.
macro_rules! row_map {
    ($out:ident, [$($src:ident),+], |$($v:ident),+| $e:expr) => {{
        let n = $out.len();
        $(let $src = &$src[..n];)+
        let (ob, ot) = $out.as_chunks_mut::<8>();
        let split = ob.len() * 8;
        $(let $src = $src.split_at(split);)+
        {
            $(let $v = $src.0.as_chunks::<8>().0;)+
            for (i, o) in ob.iter_mut().enumerate() {
                for l in 0..8 {
                    $(let $v = $v[i][l];)+
                    o[l].write($e);
                }
            }
        }
        $(let $v = $src.1;)+
        for (i, o) in ot.iter_mut().enumerate() {
            $(let $v = $v[i];)+
            o.write($e);
        }
    }};
}

/// Defines a row reduction: `Σ f(inputs[i]…)`, with eight lane accumulators.
macro_rules! row_sum {
    ([$($src:ident),+], |$($v:ident),+| $e:expr) => {{
        let n = row_sum!(@len $($src),+);
        $(let $src = &$src[..n];)+
        let split = n / 8 * 8;
        $(let $src = $src.split_at(split);)+
        let mut acc = [0f32; 8];
        {
            $(let $v = $src.0.as_chunks::<8>().0;)+
            for i in 0..split / 8 {
                for l in 0..8 {
                    $(let $v = $v[i][l];)+
                    acc[l] += $e;
                }
            }
        }
        let mut s = hsum(acc);
        $(let $v = $src.1;)+
        for i in 0..n - split {
            $(let $v = $v[i];)+
            s += $e;
        }
        s
    }};
    (@len $first:ident $(, $rest:ident)*) => {{
        let n = $first.len();
        $(let n = n.min($rest.len());)*
        n
    }};
}

dispatched! {
    /// Σ x.
    fn sum(x: &[f32]) -> f32 {
        row_sum!([x], |v| v)
    }
}

dispatched! {
    /// Σ (x - m)².
    fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
        row_sum!([x], |v| (v - m) * (v - m))
    }
}

dispatched! {
    /// Σ a·b over the common length.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        row_sum!([a, b], |u, v| u * v)
    }
}

dispatched! {
    /// `(Σ g, Σ g·(x - mean))` with `g = dy · [y > 0]` under ReLU (else `g = dy`): the two
    /// sums of the training batch-norm backward.
    fn masked_sums(x: &[f32], y: &[f32], dy: &[f32], mean: f32, relu: bool) -> (f32, f32) {
        let s1 = row_sum!([y, dy], |yv, gv| keep_if(!relu || yv > 0.0, gv));
        let s2 = row_sum!([x, y, dy], |xv, yv, gv| keep_if(!relu || yv > 0.0, gv) * (xv - mean));
        (s1, s2)
    }
}

dispatched! {
    /// `out = relu?(x·a + b)`: the batch-norm forward as a per-channel affine.
    fn affine(x: &[f32], out: &mut [MaybeUninit<f32>], a: f32, b: f32, relu: bool) {
        if relu {
            row_map!(out, [x], |v| (v * a + b).max(0.0))
        } else {
            row_map!(out, [x], |v| v * a + b)
        }
    }
}

dispatched! {
    /// `out = a·g - b - c·(x - mean)` with `g = dy · [y > 0]` under ReLU: the input gradient
    /// of the training batch norm.
    fn bn_train_grad(
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        out: &mut [MaybeUninit<f32>],
        coef: (f32, f32, f32),
        mean: f32,
        relu: bool,
    ) {
        let (a, b, c) = coef;
        row_map!(out, [x, y, dy], |xv, yv, gv| {
            a * keep_if(!relu || yv > 0.0, gv) - b - c * (xv - mean)
        })
    }
}

dispatched! {
    /// `out = dy·a · [y > 0]` under ReLU (else `dy·a`): the input gradient of an affine
    /// (eval batch norm, channel mask) whose output was `y`.
    fn scaled_grad(dy: &[f32], y: &[f32], out: &mut [MaybeUninit<f32>], a: f32, relu: bool) {
        row_map!(out, [dy, y], |gv, yv| keep_if(!relu || yv > 0.0, gv * a))
    }
}

dispatched! {
    /// `out = x·m`.
    fn scale(x: &[f32], out: &mut [MaybeUninit<f32>], m: f32) {
        row_map!(out, [x], |v| v * m)
    }
}

dispatched! {
    /// `out = max(x·a + b, 0)·m`: eval batch norm, ReLU and a channel mask in one pass.
    fn affine_relu_mask(x: &[f32], out: &mut [MaybeUninit<f32>], a: f32, b: f32, m: f32) {
        row_map!(out, [x], |v| (v * a + b).max(0.0) * m)
    }
}

dispatched! {
    /// `out = dy·am · [x·a + b > 0]`: the input gradient of [`affine_relu_mask`] with
    /// `am = a·m`.
    fn affine_relu_mask_grad(
        dy: &[f32],
        x: &[f32],
        out: &mut [MaybeUninit<f32>],
        a: f32,
        b: f32,
        am: f32,
    ) {
        row_map!(out, [dy, x], |gv, xv| keep_if(xv * a + b > 0.0, gv * am))
    }
}

dispatched! {
    /// Σ dy·max(x·a + b, 0): a mask's gradient through [`affine_relu_mask`].
    fn relu_affine_dot(dy: &[f32], x: &[f32], a: f32, b: f32) -> f32 {
        row_sum!([dy, x], |gv, xv| gv * (xv * a + b).max(0.0))
    }
}

dispatched! {
    /// In place, `x = act(x·a + b)·m` with `act` = ReLU or identity: the epilogue of a conv
    /// followed by eval batch norm, ReLU and a channel mask.
    fn affine_act_mask_in_place(x: &mut [f32], a: f32, b: f32, m: f32, relu: bool) {
        let f = |v: f32| {
            let t = v * a + b;
            (if relu { t.max(0.0) } else { t }) * m
        };
        let (xb, xt) = x.as_chunks_mut::<8>();
        for lanes in xb.iter_mut() {
            for v in lanes.iter_mut() {
                *v = f(*v);
            }
        }
        for v in xt.iter_mut() {
            *v = f(*v);
        }
    }
}

dispatched! {
    /// `out = act(x·a + b)·m` with `act` = ReLU or identity.
    fn affine_act_mask(x: &[f32], out: &mut [MaybeUninit<f32>], a: f32, b: f32, m: f32, relu: bool) {
        if relu {
            row_map!(out, [x], |v| (v * a + b).max(0.0) * m)
        } else {
            row_map!(out, [x], |v| (v * a + b) * m)
        }
    }
}

dispatched! {
    /// The backward of `y = act(x·a + b)·m` in one pass over `x` and `dy`: writes
    /// `out = dy·a·m · act'(x·a + b)` and returns `Σ dy·act(x·a + b)` (the row's share of the
    /// mask gradient).
    fn affine_act_mask_grad(
        dy: &[f32],
        x: &[f32],
        out: &mut [MaybeUninit<f32>],
        a: f32,
        b: f32,
        m: f32,
        relu: bool,
    ) -> f32 {
        let am = a * m;
        let n = out.len();
        let (dy, x) = (&dy[..n], &x[..n]);
        let (ob, ot) = out.as_chunks_mut::<8>();
        let split = ob.len() * 8;
        let (gb, xb) = (dy[..split].as_chunks::<8>().0, x[..split].as_chunks::<8>().0);
        let mut acc = [0f32; 8];
        for ((o, g), xv) in ob.iter_mut().zip(gb).zip(xb) {
            for l in 0..8 {
                let t = xv[l] * a + b;
                let on = !relu || t > 0.0;
                o[l].write(keep_if(on, g[l] * am));
                acc[l] += g[l] * if relu { t.max(0.0) } else { t };
            }
        }
        let mut s = hsum(acc);
        for ((o, &g), &xv) in ot.iter_mut().zip(&dy[split..]).zip(&x[split..]) {
            let t = xv * a + b;
            o.write(keep_if(!relu || t > 0.0, g * am));
            s += g * if relu { t.max(0.0) } else { t };
        }
        s
    }
}

dispatched! {
    /// `dst += src` over the common length.
    fn add_assign(dst: &mut [f32], src: &[f32]) {
        let n = dst.len().min(src.len());
        let (dst, src) = (&mut dst[..n], &src[..n]);
        let (db, dt) = dst.as_chunks_mut::<8>();
        let (sb, st) = src.as_chunks::<8>();
        for (d, s) in db.iter_mut().zip(sb) {
            for l in 0..8 {
                d[l] += s[l];
            }
        }
        for (d, s) in dt.iter_mut().zip(st) {
            *d += s;
        }
    }
}

/// Whether `v` replaces `best` as a window's maximum: larger, or the first NaN.
#[inline(always)]
pub(crate) fn beats(v: f32, best: f32) -> bool {
    // Non-short-circuit `|`/`&`: no branch, so the callers' lane loops vectorise.
    (v > best) | (v.is_nan() & !best.is_nan())
}

dispatched! {
    /// One output row `oy` of a 2×2, stride-2 max-pool over the plane `x` of width `w`: the
    /// maxima into `y`, their indices in the plane into `idx`. Ties keep the first element in
    /// row-major order and NaN wins, as in the general loop; selects, not branches.
    fn max_pool_2x2_row(x: &[f32], w: usize, oy: usize, y: &mut [f32], idx: &mut [u32]) {
        let r0 = 2 * oy * w;
        let (a, b) = (&x[r0..r0 + w], &x[r0 + w..r0 + 2 * w]);
        let wo = y.len();
        // Eight outputs at a time from 16-wide slices of the two rows: the even and odd
        // columns are de-interleaved into lanes, and each lane runs the same four-way select
        // (offsets 0, 1, w, w + 1 from the window's corner) as the scalar tail below.
        let full = (wo / 8).min(w / 16);
        let (w32, r032) = (w as u32, r0 as u32);
        for blk in 0..full {
            let (a16, b16) = (&a[blk * 16..blk * 16 + 16], &b[blk * 16..blk * 16 + 16]);
            let mut best = [0f32; 8];
            let mut off = [0u32; 8];
            for l in 0..8 {
                best[l] = a16[2 * l];
            }
            // (row, column parity, offset from the corner) of the other three candidates.
            for (cand, col, o) in [(a16, 1, 1u32), (b16, 0, w32), (b16, 1, w32 + 1)] {
                for l in 0..8 {
                    let v = cand[2 * l + col];
                    let t = beats(v, best[l]);
                    best[l] = if t { v } else { best[l] };
                    off[l] = if t { o } else { off[l] };
                }
            }
            let (yb, ib) = (&mut y[blk * 8..blk * 8 + 8], &mut idx[blk * 8..blk * 8 + 8]);
            for l in 0..8 {
                yb[l] = best[l];
                ib[l] = r032 + 2 * (blk * 8 + l) as u32 + off[l];
            }
        }
        for ox in full * 8..wo {
            let c = 2 * ox;
            let mut best = a[c];
            let mut bi = r0 + c;
            for (v, i) in [(a[c + 1], r0 + c + 1), (b[c], r0 + w + c), (b[c + 1], r0 + w + c + 1)] {
                let t = beats(v, best);
                best = if t { v } else { best };
                bi = if t { i } else { bi };
            }
            y[ox] = best;
            idx[ox] = bi as u32;
        }
    }
}

/// `v` if it [`beats`] `best`, else `best`.
#[inline(always)]
fn pool_max(best: f32, v: f32) -> f32 {
    if beats(v, best) {
        v
    } else {
        best
    }
}

dispatched! {
    /// The maxima of output row `oy` of a 2×2, stride-2 max-pool (no indices, for inputs
    /// without a gradient), into uninitialised `y`: the same values as
    /// [`max_pool_2x2_row`], pairwise (ties keep the earlier element; NaN wins).
    fn max_pool_2x2_values_row(x: &[f32], w: usize, oy: usize, y: &mut [MaybeUninit<f32>]) {
        let r0 = 2 * oy * w;
        let (a, b) = (&x[r0..r0 + w], &x[r0 + w..r0 + 2 * w]);
        for (ox, yv) in y.iter_mut().enumerate() {
            let c = 2 * ox;
            yv.write(pool_max(pool_max(a[c], a[c + 1]), pool_max(b[c], b[c + 1])));
        }
    }
}

dispatched! {
    /// The input gradient of two plane rows under one output row of a 2×2, stride-2 max-pool
    /// on an even-width plane: `rows` holds input rows `2·oy` and `2·oy + 1` (starting at
    /// plane index `base`); each element gets its window's gradient `dy[ox]` if it was the
    /// window's maximum (`idx[ox]`, a plane index) and 0 otherwise.
    fn max_pool_2x2_grad_row(dy: &[f32], idx: &[u32], base: usize, rows: &mut [f32]) {
        let w = rows.len() / 2;
        let (r0, r1) = rows.split_at_mut(w);
        let wo = dy.len();
        // Eight windows at a time: each lane's offset from its window's corner (0, 1, w or
        // w + 1) selects which of the four written values gets the gradient; the 16-wide
        // row slices are written interleaved.
        let full = (wo / 8).min(w / 16);
        for blk in 0..full {
            let mut off = [0usize; 8];
            let mut g = [0f32; 8];
            for l in 0..8 {
                let ox = blk * 8 + l;
                off[l] = (idx[ox] as usize).wrapping_sub(base + 2 * ox);
                g[l] = dy[ox];
            }
            let (a16, b16) = (&mut r0[blk * 16..blk * 16 + 16], &mut r1[blk * 16..blk * 16 + 16]);
            for l in 0..8 {
                a16[2 * l] = keep_if(off[l] == 0, g[l]);
                a16[2 * l + 1] = keep_if(off[l] == 1, g[l]);
                b16[2 * l] = keep_if(off[l] == w, g[l]);
                b16[2 * l + 1] = keep_if(off[l] == w + 1, g[l]);
            }
        }
        for ox in full * 8..wo {
            let (c, g, at) = (2 * ox, dy[ox], idx[ox] as usize);
            let (a, b) = (base + c, base + w + c);
            r0[c] = keep_if(at == a, g);
            r0[c + 1] = keep_if(at == a + 1, g);
            r1[c] = keep_if(at == b, g);
            r1[c + 1] = keep_if(at == b + 1, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize, f: impl Fn(&mut [MaybeUninit<f32>])) -> Vec<f32> {
        let mut v = Vec::with_capacity(n);
        f(&mut v.spare_capacity_mut()[..n]);
        // SAFETY: every kernel writes its whole output row.
        unsafe { v.set_len(n) };
        v
    }

    #[test]
    fn kernels_match_scalar_formulas_on_every_tail_length() {
        for n in [0usize, 1, 7, 8, 9, 16, 23] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.91).cos() - 0.2).collect();
            let g: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 0.5).collect();
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
            assert!(close(sum(&x), x.iter().sum()));
            assert!(close(
                dot(&x, &g),
                x.iter().zip(&g).map(|(a, b)| a * b).sum()
            ));
            let (s1, s2) = masked_sums(&x, &y, &g, 0.1, true);
            let e1: f32 = y.iter().zip(&g).filter(|p| *p.0 > 0.0).map(|p| p.1).sum();
            let e2: f32 = (0..n)
                .filter(|&i| y[i] > 0.0)
                .map(|i| g[i] * (x[i] - 0.1))
                .sum();
            assert!(
                close(s1, e1) && close(s2, e2),
                "n={n}: {s1} {s2} vs {e1} {e2}"
            );
            let out = filled(n, |o| affine(&x, o, 2.0, -0.5, true));
            for i in 0..n {
                assert_eq!(out[i], (x[i] * 2.0 - 0.5).max(0.0));
            }
            let out = filled(n, |o| scaled_grad(&g, &y, o, 3.0, true));
            for i in 0..n {
                assert_eq!(out[i], if y[i] > 0.0 { g[i] * 3.0 } else { 0.0 });
            }
        }
    }

    #[test]
    fn pool_2x2_propagates_nan_and_keeps_the_first_of_ties() {
        // Plane 2×6: windows [1, NaN | 3, 2], [5, 5 | 5, 1], [-0.0, 0.0 | 0.0, -1].
        let x = [
            1.0,
            f32::NAN,
            5.0,
            5.0,
            -0.0,
            0.0,
            3.0,
            2.0,
            5.0,
            1.0,
            0.0,
            -1.0f32,
        ];
        let (mut y, mut idx) = ([0f32; 3], [0u32; 3]);
        max_pool_2x2_row(&x, 6, 0, &mut y, &mut idx);
        assert!(y[0].is_nan() && y[1] == 5.0 && y[2] == 0.0);
        assert_eq!(idx, [1, 2, 4]);
        assert!(y[2].is_sign_negative(), "the first of the tied zeros");
        let v = filled(3, |o| max_pool_2x2_values_row(&x, 6, 0, o));
        assert!(v[0].is_nan() && v[1] == 5.0 && v[2] == 0.0 && v[2].is_sign_negative());
    }

    #[test]
    fn relu_gradient_is_zero_where_inactive_even_for_nan_or_infinite_upstream() {
        let y = [-1.0f32, 0.0, 2.0, -3.0, 1.0, -1.0, -1.0, -1.0, -2.0];
        let g = [
            f32::NAN,
            f32::INFINITY,
            1.0,
            f32::NEG_INFINITY,
            2.0,
            1.0,
            1.0,
            1.0,
            f32::NAN,
        ];
        let out = filled(9, |o| scaled_grad(&g, &y, o, 1.0, true));
        assert_eq!(out, vec![0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
