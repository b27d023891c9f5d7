//! The fast ops against stock candle ops on random shapes: forward values and gradients
//! (through candle's `backward()` with `Var`s).

mod common;

use candle_core::{Device, Result, Tensor, Var};
use common::{assert_close, mismatch, rand_tensor, rand_var};
use proptest::prelude::*;

/// `Σ y·r` for a fixed random `r`, so every output element gets a distinct gradient.
fn loss(y: &Tensor, seed: u64) -> Result<Tensor> {
    (y * rand_tensor(seed, y.dims()))?.sum_all()
}

fn grad(g: &candle_core::backprop::GradStore, v: &Var, what: &str) -> Tensor {
    g.get(v.as_tensor())
        .unwrap_or_else(|| panic!("no gradient for {what}"))
        .clone()
}

/// Batch norm from candle tensor ops (training mode): the test's own reference.
fn bn_train_ref(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = x.dim(1)?;
    let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc
        .sqr()?
        .mean_keepdim(0)?
        .mean_keepdim(2)?
        .mean_keepdim(3)?;
    let xhat = xc.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let y = xhat
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    let y = if relu { y.relu()? } else { y };
    Ok((y, mean.flatten_all()?, var.flatten_all()?))
}

fn bn_eval_ref(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    rm: &Tensor,
    rv: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let sh = |t: &Tensor| t.reshape((1, c, 1, 1));
    let y = x
        .broadcast_sub(&sh(rm)?)?
        .broadcast_div(&sh(&(rv + eps)?.sqrt()?)?)?
        .broadcast_mul(&sh(gamma)?)?
        .broadcast_add(&sh(beta)?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

fn mask_ref(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let g = mask.dim(0)?;
    x.reshape((g, n / g, c, h, w))?
        .broadcast_mul(&mask.reshape((g, 1, c, 1, 1))?)?
        .reshape((n, c, h, w))
}

/// Naive max-pool input gradient (first maximum of each window in row-major order).
fn pool_grad_naive(x: &Tensor, dy: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (_, _, ho, wo) = dy.dims4()?;
    let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let gv: Vec<f32> = dy.flatten_all()?.to_vec1()?;
    let mut dx = vec![0f32; xv.len()];
    for pl in 0..n * c {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut best = (f32::NEG_INFINITY, 0);
                for ky in 0..k {
                    for kx in 0..k {
                        let i = pl * h * w + (oy * s + ky) * w + ox * s + kx;
                        if xv[i] > best.0 {
                            best = (xv[i], i);
                        }
                    }
                }
                dx[best.1] += gv[pl * ho * wo + oy * wo + ox];
            }
        }
    }
    Tensor::from_vec(dx, (n, c, h, w), x.device())
}

#[derive(Debug, Clone)]
struct ConvCase {
    n: usize,
    ci: usize,
    co: usize,
    k: usize,
    pad: usize,
    stride: usize,
    h: usize,
    w: usize,
    bias: bool,
    seed: u64,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1usize..=5,
        1usize..=5,
        1usize..=6,
        prop::sample::select(vec![1usize, 3, 5]),
        0usize..=2,
        1usize..=2,
    )
        .prop_flat_map(|(n, ci, co, k, pad, stride)| {
            let lo = k.saturating_sub(2 * pad).max(1);
            (
                Just((n, ci, co, k, pad, stride)),
                lo..=lo + 9,
                lo..=lo + 9,
                any::<bool>(),
                any::<u64>(),
            )
        })
        .prop_map(|((n, ci, co, k, pad, stride), h, w, bias, seed)| ConvCase {
            n,
            ci,
            co,
            k,
            pad,
            stride,
            h,
            w,
            bias,
            seed,
        })
}

/// `t[..., ::s, ::s]` from candle ops that have a gradient.
fn subsample(t: &Tensor, s: usize) -> Result<Tensor> {
    let (n, c, h, w) = t.dims4()?;
    let (ho, wo) = ((h - 1) / s + 1, (w - 1) / s + 1);
    t.pad_with_zeros(2, 0, ho * s - h)?
        .pad_with_zeros(3, 0, wo * s - w)?
        .reshape((n, c, ho, s, wo, s))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, ho, wo))
}

/// Candle's conv2d; a strided one as stride 1 + subsampling, because candle 0.11.1's own
/// strided conv backward fails on some shapes (its forward is checked separately).
fn conv_ref(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    let y = x.conv2d(w, pad, 1, 1, 1)?;
    if stride == 1 {
        Ok(y)
    } else {
        let y = subsample(&y, stride)?;
        assert_close(
            &y,
            &x.conv2d(w, pad, stride, 1, 1)?,
            "strided reference vs candle forward",
        );
        Ok(y)
    }
}

fn check_conv(cc: &ConvCase) -> Result<()> {
    let x = rand_var(cc.seed, &[cc.n, cc.ci, cc.h, cc.w]);
    let w = rand_var(cc.seed + 1, &[cc.co, cc.ci, cc.k, cc.k]);
    let b = rand_var(cc.seed + 2, &[cc.co]);
    let bias = cc.bias.then(|| b.as_tensor());
    let ours = cpu_ops::conv2d(x.as_tensor(), w.as_tensor(), bias, cc.stride, cc.pad)?;
    let mut want = conv_ref(x.as_tensor(), w.as_tensor(), cc.pad, cc.stride)?;
    if let Some(b) = bias {
        want = want.broadcast_add(&b.reshape((1, cc.co, 1, 1))?)?;
    }
    assert_close(&ours, &want, "conv2d forward");
    let g1 = loss(&ours, cc.seed + 3)?.backward()?;
    let g2 = loss(&want, cc.seed + 3)?.backward()?;
    assert_close(&grad(&g1, &x, "x"), &grad(&g2, &x, "x"), "conv2d dx");
    assert_close(&grad(&g1, &w, "w"), &grad(&g2, &w, "w"), "conv2d dw");
    if cc.bias {
        assert_close(&grad(&g1, &b, "b"), &grad(&g2, &b, "b"), "conv2d db");
    } else {
        assert!(g1.get(b.as_tensor()).is_none());
    }
    // The public fallback composition agrees too.
    let fb = cpu_ops::reference::conv2d(x.as_tensor(), w.as_tensor(), bias, cc.stride, cc.pad)?;
    assert_close(&fb, &want, "reference::conv2d");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Run on one thread (images batched into the widest GEMM groups) and on two (the
    /// per-image and small-group paths), whatever the machine's core count.
    #[test]
    fn conv2d_matches_candle(cc in conv_case(), threads in 1usize..=2) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| check_conv(&cc)).unwrap();
    }

    #[test]
    fn batch_norm_train_matches(
        n in 1usize..=4, c in 1usize..=5, h in 1usize..=7, w in 1usize..=7,
        relu in any::<bool>(), seed in any::<u64>(),
    ) {
        prop_assume!(n * h * w >= 2);
        let x = rand_var(seed, &[n, c, h, w]);
        let gamma = rand_var(seed + 1, &[c]);
        let beta = rand_var(seed + 2, &[c]);
        let eps = 1e-5;
        let (y, mean, var) = cpu_ops::batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), eps, relu).unwrap();
        let (y2, mean2, var2) = bn_train_ref(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), eps, relu).unwrap();
        assert_close(&y, &y2, "bn train forward");
        assert_close(&mean, &mean2, "bn mean");
        assert_close(&var, &var2, "bn var");
        let g1 = loss(&y, seed + 3).unwrap().backward().unwrap();
        let g2 = loss(&y2, seed + 3).unwrap().backward().unwrap();
        assert_close(&grad(&g1, &x, "x"), &grad(&g2, &x, "x"), "bn train dx");
        assert_close(&grad(&g1, &gamma, "gamma"), &grad(&g2, &gamma, "gamma"), "bn train dgamma");
        assert_close(&grad(&g1, &beta, "beta"), &grad(&g2, &beta, "beta"), "bn train dbeta");
        let (yf, _, _) = cpu_ops::reference::batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), eps, relu).unwrap();
        assert_close(&yf, &y2, "reference::batch_norm_train");
    }

    /// The fused training block gives the composition's output, statistics and all five
    /// gradients (stride and padding as the models use them, odd sizes, batch 1).
    #[test]
    fn conv_bn_train_matches_composition(
        n in 1usize..=3, ci in 1usize..=4, co in 1usize..=5, hw in 2usize..=7,
        (k, pad) in prop_oneof![Just((3usize, 1usize)), Just((1, 0)), Just((3, 0))],
        stride in 1usize..=2, bias in any::<bool>(), relu in any::<bool>(), seed in any::<u64>(),
    ) {
        prop_assume!(hw + 2 * pad >= k);
        let x = rand_var(seed, &[n, ci, hw, hw]);
        let w = rand_var(seed + 1, &[co, ci, k, k]);
        let b = rand_var(seed + 2, &[co]);
        let gamma = rand_var(seed + 3, &[co]);
        let beta = rand_var(seed + 4, &[co]);
        let bt = bias.then(|| b.as_tensor());
        let (ga, be) = (gamma.as_tensor(), beta.as_tensor());
        let ho = (hw + 2 * pad - k) / stride + 1;
        prop_assume!(n * ho * ho >= 2);
        let params = cpu_ops::ConvBnParams { weight: w.as_tensor(), bias: bt, gamma: ga, beta: be };
        let cfg = cpu_ops::ConvBnConfig { stride, padding: pad, eps: 1e-5, relu };
        let (y, mean, var) = cpu_ops::conv_bn_train(x.as_tensor(), &params, &cfg, None).unwrap();
        let conv = cpu_ops::conv2d(x.as_tensor(), w.as_tensor(), bt, stride, pad).unwrap();
        let (y2, mean2, var2) = cpu_ops::batch_norm_train(&conv, ga, be, 1e-5, relu).unwrap();
        assert_close(&y, &y2, "fused forward");
        assert_close(&mean, &mean2, "fused mean");
        assert_close(&var, &var2, "fused var");
        let g1 = loss(&y, seed + 5).unwrap().backward().unwrap();
        let g2 = loss(&y2, seed + 5).unwrap().backward().unwrap();
        for (v, what) in [(&x, "x"), (&w, "w"), (&gamma, "gamma"), (&beta, "beta")] {
            assert_close(&grad(&g1, v, what), &grad(&g2, v, what), &format!("fused d{what}"));
        }
        if bias {
            assert_close(&grad(&g1, &b, "bias"), &grad(&g2, &b, "bias"), "fused dbias");
        }
    }

    /// The training block with its max-pool inside gives the composition conv → BN → pool:
    /// output, statistics and all gradients (2×2/2 as the models use it, and 3×3/2 with
    /// overlapping windows and odd sizes).
    #[test]
    fn conv_bn_train_with_pool_matches_composition(
        n in 1usize..=3, ci in 1usize..=3, co in 1usize..=4, hw in 3usize..=9,
        (pk, ps) in prop_oneof![Just((2usize, 2usize)), Just((3, 2)), Just((2, 1))],
        bias in any::<bool>(), relu in any::<bool>(), seed in any::<u64>(),
    ) {
        let x = rand_var(seed, &[n, ci, hw, hw]);
        let w = rand_var(seed + 1, &[co, ci, 3, 3]);
        let b = rand_var(seed + 2, &[co]);
        let gamma = rand_var(seed + 3, &[co]);
        let beta = rand_var(seed + 4, &[co]);
        let bt = bias.then(|| b.as_tensor());
        let (ga, be) = (gamma.as_tensor(), beta.as_tensor());
        let params = cpu_ops::ConvBnParams { weight: w.as_tensor(), bias: bt, gamma: ga, beta: be };
        let cfg = cpu_ops::ConvBnConfig { stride: 1, padding: 1, eps: 1e-5, relu };
        let (y, mean, var) = cpu_ops::conv_bn_train(x.as_tensor(), &params, &cfg, Some((pk, ps))).unwrap();
        let (y2, mean2, var2) = cpu_ops::conv_bn_train(x.as_tensor(), &params, &cfg, None).unwrap();
        let y2 = cpu_ops::max_pool2d(&y2, pk, ps).unwrap();
        assert_close(&y, &y2, "pooled block forward");
        assert_close(&mean, &mean2, "pooled block mean");
        assert_close(&var, &var2, "pooled block var");
        let g1 = loss(&y, seed + 5).unwrap().backward().unwrap();
        let g2 = loss(&y2, seed + 5).unwrap().backward().unwrap();
        for (v, what) in [(&x, "x"), (&w, "w"), (&gamma, "gamma"), (&beta, "beta")] {
            assert_close(&grad(&g1, v, what), &grad(&g2, v, what), &format!("pooled block d{what}"));
        }
        if bias {
            assert_close(&grad(&g1, &b, "bias"), &grad(&g2, &b, "bias"), "pooled block dbias");
        }
    }

    /// The fused eval block (GradSplitter's masked forward, and inference) gives the
    /// composition's output and the gradients of x, w and the mask; without anything to
    /// differentiate it runs in place and still gives the same output.
    #[test]
    fn conv_bn_eval_matches_composition(
        gm in 1usize..=3, b in 1usize..=2, ci in 1usize..=4, co in 1usize..=5, hw in 2usize..=6,
        (k, pad) in prop_oneof![Just((3usize, 1usize)), Just((1, 0)), Just((3, 0))],
        stride in 1usize..=2, bias in any::<bool>(), relu in any::<bool>(),
        masked in any::<bool>(), seed in any::<u64>(),
    ) {
        prop_assume!(hw + 2 * pad >= k);
        let n = gm * b;
        let x = rand_var(seed, &[n, ci, hw, hw]);
        let w = rand_var(seed + 1, &[co, ci, k, k]);
        let bt = rand_tensor(seed + 2, &[co]);
        let gamma = rand_tensor(seed + 3, &[co]);
        let beta = rand_tensor(seed + 4, &[co]);
        let rm = rand_tensor(seed + 5, &[co]);
        let rv = (rand_tensor(seed + 6, &[co]).abs().unwrap() + 0.5).unwrap();
        let mask = rand_var(seed + 7, &[gm, co]);
        let (bias_t, mask_t) = (bias.then_some(&bt), masked.then(|| mask.as_tensor()));
        let params = cpu_ops::ConvBnParams { weight: w.as_tensor(), bias: bias_t, gamma: &gamma, beta: &beta };
        let stats = cpu_ops::RunningStats { mean: &rm, var: &rv };
        let cfg = cpu_ops::ConvBnConfig { stride, padding: pad, eps: 1e-5, relu };
        let y = cpu_ops::conv_bn_eval(x.as_tensor(), &params, &stats, &cfg, mask_t).unwrap();
        let conv = cpu_ops::conv2d(x.as_tensor(), w.as_tensor(), bias_t, stride, pad).unwrap();
        let mut y2 = cpu_ops::batch_norm_eval(&conv, &gamma, &beta, &rm, &rv, 1e-5, relu).unwrap();
        if let Some(m) = mask_t {
            y2 = cpu_ops::channel_mask(&y2, m).unwrap();
        }
        assert_close(&y, &y2, "fused eval forward");
        let g1 = loss(&y, seed + 8).unwrap().backward().unwrap();
        let g2 = loss(&y2, seed + 8).unwrap().backward().unwrap();
        assert_close(&grad(&g1, &x, "x"), &grad(&g2, &x, "x"), "fused eval dx");
        assert_close(&grad(&g1, &w, "w"), &grad(&g2, &w, "w"), "fused eval dw");
        if masked {
            assert_close(&grad(&g1, &mask, "mask"), &grad(&g2, &mask, "mask"), "fused eval dmask");
        }
        let w_plain = w.as_tensor().detach();
        let plain_params = cpu_ops::ConvBnParams { weight: &w_plain, ..params };
        let plain = cpu_ops::conv_bn_eval(&x.as_tensor().detach(), &plain_params, &stats, &cfg, mask_t.map(|m| m.detach()).as_ref()).unwrap();
        assert_close(&plain, &y2, "fused eval forward, nothing tracked");
    }

    #[test]
    fn batch_norm_eval_matches(
        n in 1usize..=4, c in 1usize..=5, h in 1usize..=7, w in 1usize..=7,
        relu in any::<bool>(), affine_tracks in any::<bool>(), seed in any::<u64>(),
    ) {
        let x = rand_var(seed, &[n, c, h, w]);
        let gamma = rand_var(seed + 1, &[c]);
        let beta = rand_var(seed + 2, &[c]);
        let rm = rand_tensor(seed + 4, &[c]);
        let rv = (rand_tensor(seed + 5, &[c]).abs().unwrap() + 0.1).unwrap();
        let (g_in, b_in) = if affine_tracks {
            (gamma.as_tensor().clone(), beta.as_tensor().clone())
        } else {
            (gamma.as_tensor().detach(), beta.as_tensor().detach())
        };
        let y = cpu_ops::batch_norm_eval(x.as_tensor(), &g_in, &b_in, &rm, &rv, 1e-5, relu).unwrap();
        let y2 = bn_eval_ref(x.as_tensor(), &g_in, &b_in, &rm, &rv, 1e-5, relu).unwrap();
        assert_close(&y, &y2, "bn eval forward");
        let g1 = loss(&y, seed + 3).unwrap().backward().unwrap();
        let g2 = loss(&y2, seed + 3).unwrap().backward().unwrap();
        assert_close(&grad(&g1, &x, "x"), &grad(&g2, &x, "x"), "bn eval dx");
        if affine_tracks {
            assert_close(&grad(&g1, &gamma, "gamma"), &grad(&g2, &gamma, "gamma"), "bn eval dgamma");
            assert_close(&grad(&g1, &beta, "beta"), &grad(&g2, &beta, "beta"), "bn eval dbeta");
        } else {
            prop_assert!(g1.get(&g_in).is_none() && g1.get(&b_in).is_none());
        }
        let yf = cpu_ops::reference::batch_norm_eval(x.as_tensor(), &g_in, &b_in, &rm, &rv, 1e-5, relu).unwrap();
        assert_close(&yf, &y2, "reference::batch_norm_eval");
    }

    #[test]
    fn channel_mask_matches(
        g in 1usize..=3, b in 1usize..=3, c in 1usize..=5, h in 1usize..=6, w in 1usize..=6, seed in any::<u64>(),
    ) {
        let x = rand_var(seed, &[g * b, c, h, w]);
        let m = rand_var(seed + 1, &[g, c]);
        let y = cpu_ops::channel_mask(x.as_tensor(), m.as_tensor()).unwrap();
        let y2 = mask_ref(x.as_tensor(), m.as_tensor()).unwrap();
        assert_close(&y, &y2, "mask forward");
        let g1 = loss(&y, seed + 3).unwrap().backward().unwrap();
        let g2 = loss(&y2, seed + 3).unwrap().backward().unwrap();
        assert_close(&grad(&g1, &x, "x"), &grad(&g2, &x, "x"), "mask dx");
        assert_close(&grad(&g1, &m, "mask"), &grad(&g2, &m, "mask"), "mask dmask");
        assert_close(&cpu_ops::reference::channel_mask(x.as_tensor(), m.as_tensor()).unwrap(), &y2, "reference::channel_mask");
    }

    #[test]
    fn batch_norm_relu_mask_matches(
        g in 1usize..=3, b in 1usize..=3, c in 1usize..=5, h in 1usize..=6, w in 1usize..=6,
        seed in any::<u64>(), affine_tracks in any::<bool>(),
    ) {
        let x = rand_var(seed, &[g * b, c, h, w]);
        let m = rand_var(seed + 1, &[g, c]);
        let gamma = rand_var(seed + 2, &[c]);
        let beta = rand_var(seed + 4, &[c]);
        let (g_in, b_in) = if affine_tracks {
            (gamma.as_tensor().clone(), beta.as_tensor().clone())
        } else {
            (gamma.as_tensor().detach(), beta.as_tensor().detach())
        };
        let rm = rand_tensor(seed + 5, &[c]);
        let rv = (rand_tensor(seed + 6, &[c]).abs().unwrap() + 0.1).unwrap();
        let y = cpu_ops::batch_norm_relu_mask(x.as_tensor(), &g_in, &b_in, &rm, &rv, 1e-5, m.as_tensor()).unwrap();
        let y2 = mask_ref(&bn_eval_ref(x.as_tensor(), &g_in, &b_in, &rm, &rv, 1e-5, true).unwrap(), m.as_tensor()).unwrap();
        assert_close(&y, &y2, "bn-relu-mask forward");
        let g1 = loss(&y, seed + 3).unwrap().backward().unwrap();
        let g2 = loss(&y2, seed + 3).unwrap().backward().unwrap();
        assert_close(&grad(&g1, &x, "x"), &grad(&g2, &x, "x"), "bn-relu-mask dx");
        assert_close(&grad(&g1, &m, "mask"), &grad(&g2, &m, "mask"), "bn-relu-mask dmask");
        if affine_tracks {
            assert_close(&grad(&g1, &gamma, "gamma"), &grad(&g2, &gamma, "gamma"), "bn-relu-mask dgamma");
        } else {
            prop_assert!(g1.get(&g_in).is_none());
        }
    }

    #[test]
    fn max_pool2d_matches(
        n in 1usize..=3, c in 1usize..=4, k in 1usize..=3, s in 1usize..=3,
        dh in 0usize..=6, dw in 0usize..=6, seed in any::<u64>(),
    ) {
        let (h, w) = (k + dh, k + dw);
        let x = rand_var(seed, &[n, c, h, w]);
        let y = cpu_ops::max_pool2d(x.as_tensor(), k, s).unwrap();
        let y2 = x.as_tensor().max_pool2d_with_stride(k, s).unwrap();
        assert_close(&y, &y2, "max-pool forward");
        let r = rand_tensor(seed + 3, y.dims());
        let g1 = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = grad(&g1, &x, "x");
        assert_close(&dx, &pool_grad_naive(x.as_tensor(), &r, k, s).unwrap(), "max-pool dx (naive)");
        if k == s && h % k == 0 && w % k == 0 {
            // candle 0.11.1's max-pool backward scales the routed gradient by 1/k² (and
            // misroutes it when the windows do not tile the input).
            let g2 = (&y2 * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let want = (grad(&g2, &x, "x") * (k * k) as f64).unwrap();
            assert_close(&dx, &want, "max-pool dx (candle × k²)");
            let yf = cpu_ops::reference::max_pool2d(x.as_tensor(), k, s).unwrap();
            assert_close(&yf, &y2, "reference::max_pool2d");
            let g3 = (&yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
            assert_close(&grad(&g3, &x, "x"), &dx, "reference::max_pool2d dx");
        }
    }
}

/// The typical model shapes (3×3 pad 1, 1×1, 5×5 pad 2; batch large enough for image
/// grouping) once each, with larger channel counts than the property test draws.
/// The fused SGD update gives the same bits as its tensor-op composition, with and without
/// a momentum buffer and weight decay, on a length that is not a multiple of its chunks.
#[test]
fn sgd_update_matches_tensor_ops_exactly() -> Result<()> {
    let n = (1 << 14) * 2 + 37;
    let w = rand_tensor(1, &[n]);
    let g = rand_tensor(2, &[n]);
    let v = rand_tensor(3, &[n]);
    for (buf, wd) in [(None, 0.0), (Some(&v), 5e-4), (Some(&v), 0.0), (None, 1e-4)] {
        let (w1, v1) = cpu_ops::sgd_update(&w, &g, buf, 0.05, 0.9, wd)?;
        let (w2, v2) = cpu_ops::reference::sgd_update(&w, &g, buf, 0.05, 0.9, wd)?;
        assert_eq!(
            w1.to_vec1::<f32>()?,
            w2.to_vec1::<f32>()?,
            "weights, wd {wd}"
        );
        assert_eq!(
            v1.to_vec1::<f32>()?,
            v2.to_vec1::<f32>()?,
            "buffer, wd {wd}"
        );
    }
    let bad = cpu_ops::sgd_update(&w, &rand_tensor(4, &[n - 1]), None, 0.1, 0.9, 0.0);
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("does not match weight"));
    Ok(())
}

/// The 2×2, stride-2 pool on even planes (every model's pool) has its own forward and a
/// backward that writes each input once: checked on values with many ties (the first maximum
/// in row-major order takes the gradient) against the naive scatter.
#[test]
fn max_pool_2x2_with_ties_matches_naive() -> Result<()> {
    for (i, &(n, c, h, w)) in [(1, 1, 2, 2), (2, 3, 4, 6), (3, 2, 8, 8), (1, 4, 32, 32)]
        .iter()
        .enumerate()
    {
        let len = n * c * h * w;
        // Three levels only, so most windows hold a tie.
        let v: Vec<f32> = (0..len).map(|j| ((j * 7 + i) % 3) as f32).collect();
        let x = Var::from_tensor(&Tensor::from_vec(v, (n, c, h, w), &Device::Cpu)?)?;
        let y = cpu_ops::max_pool2d(x.as_tensor(), 2, 2)?;
        assert_close(&y, &x.as_tensor().max_pool2d(2)?, "2x2 pool forward");
        // Without a gradient to route, the forward keeps no indices: same values.
        let y_plain = cpu_ops::max_pool2d(&x.as_tensor().detach(), 2, 2)?;
        assert_close(&y_plain, &y, "2x2 pool forward without argmax");
        let r = rand_tensor(i as u64 + 11, y.dims());
        let g = (&y * &r)?.sum_all()?.backward()?;
        let want = pool_grad_naive(x.as_tensor(), &r, 2, 2)?;
        assert_close(&grad(&g, &x, "x"), &want, "2x2 pool dx with ties");
    }
    Ok(())
}

#[test]
fn conv2d_model_shapes() {
    for (i, &(n, ci, co, k, pad, hw)) in [
        (8, 16, 32, 3, 1, 8),
        (9, 8, 8, 1, 0, 5),
        (6, 12, 10, 5, 2, 6),
        (4, 3, 16, 3, 1, 32),
        (17, 32, 16, 3, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let cc = ConvCase {
            n,
            ci,
            co,
            k,
            pad,
            stride: 1,
            h: hw,
            w: hw,
            bias: true,
            seed: 1000 + i as u64,
        };
        check_conv(&cc).unwrap();
    }
}

/// A frozen (plain-tensor) weight and bias get no gradient, while the input gradient is
/// still right; an untracked input gets no gradient while the weight's is right.
#[test]
fn frozen_weight_has_no_gradient() -> Result<()> {
    let x = rand_var(7, &[3, 4, 6, 6]);
    let w = rand_tensor(8, &[5, 4, 3, 3]);
    let b = rand_tensor(9, &[5]);
    let y = cpu_ops::conv2d(x.as_tensor(), &w, Some(&b), 1, 1)?;
    let g = loss(&y, 10)?.backward()?;
    assert!(g.get(&w).is_none(), "frozen weight got a gradient");
    assert!(g.get(&b).is_none(), "frozen bias got a gradient");
    let wv = Var::from_tensor(&w)?;
    let y2 = x
        .as_tensor()
        .conv2d(wv.as_tensor(), 1, 1, 1, 1)?
        .broadcast_add(&b.reshape((1, 5, 1, 1))?)?;
    let g2 = loss(&y2, 10)?.backward()?;
    assert_close(&grad(&g, &x, "x"), &grad(&g2, &x, "x"), "frozen-weight dx");

    let xp = x.as_tensor().detach();
    let y = cpu_ops::conv2d(&xp, wv.as_tensor(), None, 1, 1)?;
    let g = loss(&y, 11)?.backward()?;
    assert!(g.get(&xp).is_none(), "untracked input got a gradient");
    let y2 = xp.conv2d(wv.as_tensor(), 1, 1, 1, 1)?;
    let g2 = loss(&y2, 11)?.backward()?;
    assert_close(
        &grad(&g, &wv, "w"),
        &grad(&g2, &wv, "w"),
        "untracked-input dw",
    );
    Ok(())
}

/// The comparison itself can fail: a conv with the wrong padding or a perturbed weight is
/// flagged.
#[test]
fn comparison_detects_errors() -> Result<()> {
    let x = rand_tensor(1, &[2, 3, 7, 7]);
    let w = rand_tensor(2, &[4, 3, 3, 3]);
    let ours = cpu_ops::conv2d(&x, &w, None, 1, 1)?;
    let want = x.conv2d(&w, 1, 1, 1, 1)?;
    assert!(mismatch(&ours, &want)? <= 1.0);
    let shifted = cpu_ops::conv2d(&x.pad_with_zeros(3, 1, 0)?.narrow(3, 0, 7)?, &w, None, 1, 1)?;
    assert!(mismatch(&shifted, &want)? > 1.0);
    let w2 = (&w + rand_tensor(3, &[4, 3, 3, 3]).affine(1e-3, 0.0)?)?;
    assert!(mismatch(&cpu_ops::conv2d(&x, &w2, None, 1, 1)?, &want)? > 1.0);
    Ok(())
}

/// Non-contiguous inputs (a transposed view) are handled.
#[test]
fn non_contiguous_input() -> Result<()> {
    let x = rand_tensor(4, &[2, 3, 5, 6]).transpose(2, 3)?;
    let w = rand_tensor(5, &[2, 3, 3, 3]);
    assert_close(
        &cpu_ops::conv2d(&x, &w, None, 1, 1)?,
        &x.conv2d(&w, 1, 1, 1, 1)?,
        "transposed conv",
    );
    assert_close(
        &cpu_ops::max_pool2d(&x, 2, 2)?,
        &x.max_pool2d(2)?,
        "transposed pool",
    );
    Ok(())
}

/// Shape errors are reported, not panics.
#[test]
fn shape_errors() {
    let x = rand_tensor(1, &[2, 3, 5, 5]);
    assert!(cpu_ops::conv2d(&x, &rand_tensor(2, &[4, 2, 3, 3]), None, 1, 1).is_err());
    assert!(cpu_ops::conv2d(
        &x,
        &rand_tensor(2, &[4, 3, 3, 3]),
        Some(&rand_tensor(3, &[3])),
        1,
        1
    )
    .is_err());
    assert!(cpu_ops::conv2d(&x, &rand_tensor(2, &[4, 3, 7, 7]), None, 1, 0).is_err());
    assert!(cpu_ops::channel_mask(&x, &rand_tensor(4, &[3, 3])).is_err());
    assert!(cpu_ops::max_pool2d(&x, 6, 1).is_err());
    assert!(cpu_ops::batch_norm_train(
        &x,
        &rand_tensor(5, &[2]),
        &rand_tensor(6, &[3]),
        1e-5,
        false
    )
    .is_err());
}

/// The conv's output and both gradients on a pool of `threads` threads, as raw bits.
fn conv_bits(threads: usize, shape: [usize; 4], co: usize) -> Vec<Vec<u32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let x = rand_var(11, &shape);
        let w = rand_var(12, &[co, shape[1], 3, 3]);
        let y = cpu_ops::conv2d(x.as_tensor(), w.as_tensor(), None, 1, 1).unwrap();
        let g = loss(&y, 13).unwrap().backward().unwrap();
        [y, grad(&g, &x, "x"), grad(&g, &w, "w")]
            .iter()
            .map(|t| {
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            })
            .collect()
    })
}

/// Same inputs, same bits, whatever the thread count: the images are grouped into GEMMs by
/// the sizes alone (small feature maps batch many images into one GEMM, whose weight gradient
/// sums over the group), so a run with `RAYON_NUM_THREADS=1` and one on 2 or 16 cores train to
/// the same weights.
#[test]
fn conv2d_bits_do_not_depend_on_the_thread_count() {
    for (shape, co) in [([64, 8, 2, 2], 8), ([24, 4, 8, 8], 6), ([3, 5, 16, 16], 4)] {
        let one = conv_bits(1, shape, co);
        for threads in [2, 3, 5] {
            let many = conv_bits(threads, shape, co);
            for (what, (a, b)) in ["output", "dx", "dw"].iter().zip(one.iter().zip(&many)) {
                assert!(
                    a == b,
                    "conv {shape:?}→{co}: {what} differs between 1 and {threads} threads"
                );
            }
        }
    }
}
