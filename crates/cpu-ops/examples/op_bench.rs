//! Times cpu-ops against stock candle ops on SimCNN layer shapes (batch 64).
//!
//! `cargo run --release -p cpu-ops --example op_bench [-- [--width 0.25|1.0|all] [--no-layers] [--no-step]]`
//!
//! Prints, per layer, forward and forward+backward times of conv2d (+bias), training batch
//! norm + ReLU and max-pool, ours against candle's, with the ratio candle/ours and our conv
//! GFLOP/s; then whole SimCNN steps: a training step (13 conv+BN+ReLU, 5 pools, FC head in
//! candle ops on both sides) and a GradSplitter-style step (frozen weights, 10 modules as one
//! batch of 640, eval BN + ReLU + channel masks, gradients for the masks only).

use std::time::Instant;

use candle_core::{DType, Device, Module, Result, Tensor, Var};

const BATCH: usize = 64;
const CH: [usize; 13] = [
    64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
];
const POOL_AFTER: [usize; 5] = [1, 3, 6, 9, 12];

/// `--ours-only`: skip the candle timings (for profiling our ops).
static OURS_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Times candle's side unless `--ours-only`.
fn time_candle(f: impl FnMut() -> Result<()>) -> Result<f64> {
    if OURS_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        Ok(f64::NAN)
    } else {
        time_ms(f)
    }
}

/// Median wall time in ms of `f`, after one warm-up; repeats until 5 runs or 1.5 s.
fn time_ms(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut ts = Vec::new();
    let start = Instant::now();
    while ts.len() < 5 && (ts.len() < 2 || start.elapsed().as_secs_f64() < 1.5) {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ts.sort_by(|a, b| a.total_cmp(b));
    Ok(ts[ts.len() / 2])
}

fn scaled(width: f64, c: usize) -> usize {
    ((width * c as f64).round() as usize).max(1)
}

fn randn(dims: &[usize], std: f64) -> Result<Tensor> {
    Tensor::randn(0f32, std as f32, dims, &Device::Cpu)
}

fn row(name: &str, shape: &str, ours: f64, candle: f64, gflop: Option<f64>) {
    let gf = gflop.map_or(String::from("      -"), |g| {
        format!("{:7.1}", g / ours * 1e3)
    });
    println!(
        "{name:<22} {shape:<22} {ours:>9.2} {candle:>10.2} {:>7.1}x {gf}",
        candle / ours
    );
}

/// Candle's batch norm (training mode) + ReLU from tensor ops, as a plain candle model would.
fn candle_bn(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    cpu_ops::reference::batch_norm_train(x, gamma, beta, 1e-5, true).map(|r| r.0)
}

fn layer_bench(width: f64) -> Result<()> {
    println!("\n== SimCNN width {width}, batch {BATCH}: per layer (ms, median) ==");
    println!(
        "{:<22} {:<22} {:>9} {:>10} {:>8} {:>7}",
        "op", "shape", "ours", "candle", "ratio", "GFLOP/s"
    );
    let mut ci = 3;
    let mut hw = 32;
    let mut seen = std::collections::HashSet::new();
    for (i, &c) in CH.iter().enumerate() {
        let co = scaled(width, c);
        let key = (ci, co, hw);
        if seen.insert(key) {
            let shape = format!("{ci}->{co} {hw}x{hw}");
            let x = Var::from_tensor(&randn(&[BATCH, ci, hw, hw], 1.0)?)?;
            let w = Var::from_tensor(&randn(&[co, ci, 3, 3], 0.1)?)?;
            let b = Var::zeros(co, DType::F32, &Device::Cpu)?;
            let flop = 2.0 * (BATCH * co * hw * hw * ci * 9) as f64 / 1e9;
            let ours = time_ms(|| {
                cpu_ops::conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), 1, 1).map(|_| ())
            })?;
            let cand = time_candle(|| {
                cpu_ops::reference::conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), 1, 1)
                    .map(|_| ())
            })?;
            row(&format!("conv{i} fwd"), &shape, ours, cand, Some(flop));
            // The first layer's input is the images: no input gradient (2× fwd work), else 3×.
            let xin = if i == 0 {
                x.as_tensor().detach()
            } else {
                x.as_tensor().clone()
            };
            let bwd_flop = flop * if i == 0 { 2.0 } else { 3.0 };
            let ours = time_ms(|| {
                cpu_ops::conv2d(&xin, w.as_tensor(), Some(b.as_tensor()), 1, 1)?
                    .backward()
                    .map(|_| ())
            })?;
            let cand = time_candle(|| {
                cpu_ops::reference::conv2d(&xin, w.as_tensor(), Some(b.as_tensor()), 1, 1)?
                    .backward()
                    .map(|_| ())
            })?;
            row(
                &format!("conv{i} fwd+bwd"),
                &shape,
                ours,
                cand,
                Some(bwd_flop),
            );

            let y = Var::from_tensor(&randn(&[BATCH, co, hw, hw], 1.0)?)?;
            let gamma = Var::ones(co, DType::F32, &Device::Cpu)?;
            let beta = Var::zeros(co, DType::F32, &Device::Cpu)?;
            let shape = format!("{co} {hw}x{hw}");
            let ours = time_ms(|| {
                cpu_ops::batch_norm_train(
                    y.as_tensor(),
                    gamma.as_tensor(),
                    beta.as_tensor(),
                    1e-5,
                    true,
                )
                .map(|_| ())
            })?;
            let cand = time_candle(|| {
                candle_bn(y.as_tensor(), gamma.as_tensor(), beta.as_tensor()).map(|_| ())
            })?;
            row(&format!("bn+relu{i} fwd"), &shape, ours, cand, None);
            let ours = time_ms(|| {
                cpu_ops::batch_norm_train(
                    y.as_tensor(),
                    gamma.as_tensor(),
                    beta.as_tensor(),
                    1e-5,
                    true,
                )?
                .0
                .backward()
                .map(|_| ())
            })?;
            let cand = time_candle(|| {
                candle_bn(y.as_tensor(), gamma.as_tensor(), beta.as_tensor())?
                    .backward()
                    .map(|_| ())
            })?;
            row(&format!("bn+relu{i} fwd+bwd"), &shape, ours, cand, None);
            if POOL_AFTER.contains(&i) {
                let ours = time_ms(|| {
                    cpu_ops::max_pool2d(y.as_tensor(), 2, 2)?
                        .backward()
                        .map(|_| ())
                })?;
                let cand = time_candle(|| y.as_tensor().max_pool2d(2)?.backward().map(|_| ()))?;
                row(&format!("maxpool{i} fwd+bwd"), &shape, ours, cand, None);
            }
        }
        ci = co;
        if POOL_AFTER.contains(&i) {
            hw /= 2;
        }
    }
    Ok(())
}

/// SimCNN parameters: per conv (w, b, gamma, beta, running mean, running var), FC layers.
struct Model {
    convs: Vec<[Var; 4]>,
    running: Vec<(Tensor, Tensor)>,
    fcs: Vec<candle_nn::Linear>,
    fc_vars: Vec<Var>,
}

fn model(width: f64) -> Result<Model> {
    let mut convs = Vec::new();
    let mut running = Vec::new();
    let mut ci = 3;
    for &c in CH.iter() {
        let co = scaled(width, c);
        let std = (2.0 / (co * 9) as f64).sqrt();
        convs.push([
            Var::from_tensor(&randn(&[co, ci, 3, 3], std)?)?,
            Var::zeros(co, DType::F32, &Device::Cpu)?,
            Var::ones(co, DType::F32, &Device::Cpu)?,
            Var::zeros(co, DType::F32, &Device::Cpu)?,
        ]);
        running.push((randn(&[co], 0.1)?, (randn(&[co], 0.1)?.abs()? + 1.0)?));
        ci = co;
    }
    let hidden = scaled(width, 4096);
    let mut fcs = Vec::new();
    let mut fc_vars = Vec::new();
    for (i, o) in [(ci, hidden), (hidden, hidden), (hidden, 10)] {
        let w = Var::from_tensor(&randn(&[o, i], (1.0 / i as f64).sqrt())?)?;
        let b = Var::zeros(o, DType::F32, &Device::Cpu)?;
        fcs.push(candle_nn::Linear::new(
            w.as_tensor().clone(),
            Some(b.as_tensor().clone()),
        ));
        fc_vars.push(w);
        fc_vars.push(b);
    }
    Ok(Model {
        convs,
        running,
        fcs,
        fc_vars,
    })
}

fn head(m: &Model, x: &Tensor) -> Result<Tensor> {
    let x = x.flatten_from(1)?;
    let x = m.fcs[0].forward(&x)?.relu()?;
    let x = m.fcs[1].forward(&x)?.relu()?;
    m.fcs[2].forward(&x)
}

/// One training step's forward + backward (the optimiser update is the same on both sides and
/// left out), with our ops or candle's.
fn train_step(m: &Model, x: &Tensor, ours: bool) -> Result<()> {
    let mut h = x.clone();
    for (i, [w, b, g, be]) in m.convs.iter().enumerate() {
        h = if ours {
            let y = cpu_ops::conv2d(&h, w.as_tensor(), Some(b.as_tensor()), 1, 1)?;
            cpu_ops::batch_norm_train(&y, g.as_tensor(), be.as_tensor(), 1e-5, true)?.0
        } else {
            let y = cpu_ops::reference::conv2d(&h, w.as_tensor(), Some(b.as_tensor()), 1, 1)?;
            candle_bn(&y, g.as_tensor(), be.as_tensor())?
        };
        if POOL_AFTER.contains(&i) {
            h = if ours {
                cpu_ops::max_pool2d(&h, 2, 2)?
            } else {
                h.max_pool2d(2)?
            };
        }
    }
    let logits = head(m, &h)?;
    let grads = logits.sum_all()?.backward()?;
    assert!(grads.get(m.fc_vars[0].as_tensor()).is_some());
    Ok(())
}

/// GradSplitter-style step: frozen weights, `modules` masks over one stacked batch, eval BN +
/// ReLU + mask per conv, gradients for the masks only.
fn splitter_step(m: &Model, x: &Tensor, masks: &[Var], ours: bool) -> Result<()> {
    let mut h = x.clone();
    for (i, [w, b, g, be]) in m.convs.iter().enumerate() {
        let (w, b, g, be) = (
            w.as_tensor().detach(),
            b.as_tensor().detach(),
            g.as_tensor().detach(),
            be.as_tensor().detach(),
        );
        let (rm, rv) = &m.running[i];
        h = if ours {
            let y = cpu_ops::conv2d(&h, &w, Some(&b), 1, 1)?;
            cpu_ops::batch_norm_relu_mask(&y, &g, &be, rm, rv, 1e-5, masks[i].as_tensor())?
        } else {
            let y = cpu_ops::reference::conv2d(&h, &w, Some(&b), 1, 1)?;
            cpu_ops::reference::batch_norm_relu_mask(
                &y,
                &g,
                &be,
                rm,
                rv,
                1e-5,
                masks[i].as_tensor(),
            )?
        };
        if POOL_AFTER.contains(&i) {
            h = if ours {
                cpu_ops::max_pool2d(&h, 2, 2)?
            } else {
                h.max_pool2d(2)?
            };
        }
    }
    let frozen = Model {
        convs: Vec::new(),
        running: Vec::new(),
        fcs: m
            .fcs
            .iter()
            .map(|l| candle_nn::Linear::new(l.weight().detach(), l.bias().map(|b| b.detach())))
            .collect(),
        fc_vars: Vec::new(),
    };
    let logits = head(&frozen, &h)?;
    let grads = logits.sum_all()?.backward()?;
    assert!(grads.get(masks[0].as_tensor()).is_some());
    Ok(())
}

fn step_bench(width: f64) -> Result<()> {
    let m = model(width)?;
    let x = randn(&[BATCH, 3, 32, 32], 1.0)?;
    let conv_macs: f64 = {
        let (mut ci, mut hw, mut s) = (3, 32, 0.0);
        for (i, &c) in CH.iter().enumerate() {
            let co = scaled(width, c);
            s += (co * ci * 9 * hw * hw) as f64;
            ci = co;
            if POOL_AFTER.contains(&i) {
                hw /= 2;
            }
        }
        s
    };
    println!("\n== SimCNN width {width}: whole steps (ms, median) ==");
    println!(
        "{:<22} {:<22} {:>9} {:>10} {:>8} {:>7}",
        "step", "", "ours", "candle", "ratio", "GFLOP/s"
    );
    // Conv work of a training step ≈ 3 × forward (minus the first layer's input gradient).
    let train_gflop = 3.0 * 2.0 * conv_macs * BATCH as f64 / 1e9;
    let ours = time_ms(|| train_step(&m, &x, true))?;
    let cand = time_candle(|| train_step(&m, &x, false))?;
    row(
        "train fwd+bwd",
        &format!("batch {BATCH}"),
        ours,
        cand,
        Some(train_gflop),
    );
    if width <= 0.5 {
        let modules = 10;
        let xs = randn(&[modules * BATCH, 3, 32, 32], 1.0)?;
        let masks: Vec<Var> = CH
            .iter()
            .map(|&c| Var::from_tensor(&randn(&[modules, scaled(width, c)], 1.0)?.abs()?))
            .collect::<Result<_>>()?;
        let gs_gflop = 2.0 * 2.0 * conv_macs * (modules * BATCH) as f64 / 1e9;
        let ours = time_ms(|| splitter_step(&m, &xs, &masks, true))?;
        let cand = time_candle(|| splitter_step(&m, &xs, &masks, false))?;
        row(
            "gradsplitter step",
            &format!("{modules}x{BATCH} frozen"),
            ours,
            cand,
            Some(gs_gflop),
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let widths: Vec<f64> = match args
        .iter()
        .position(|a| a == "--width")
        .and_then(|i| args.get(i + 1))
    {
        Some(w) if w == "all" => vec![0.25, 1.0],
        Some(w) => vec![w
            .parse()
            .map_err(|e| candle_core::Error::Msg(format!("bad --width: {e}")))?],
        None => vec![0.25, 1.0],
    };
    #[cfg(target_arch = "x86_64")]
    let isa = if is_x86_feature_detected!("avx512f") {
        "AVX-512"
    } else if is_x86_feature_detected!("fma") {
        "AVX2+FMA"
    } else {
        "SSE"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let isa = "non-x86";
    OURS_ONLY.store(
        args.iter().any(|a| a == "--ours-only"),
        std::sync::atomic::Ordering::Relaxed,
    );
    println!(
        "cpu-ops op_bench: {} rayon threads, {isa}",
        rayon::current_num_threads()
    );
    for &w in &widths {
        if !args.iter().any(|a| a == "--no-layers") {
            layer_bench(w)?;
        }
        if !args.iter().any(|a| a == "--no-step") {
            step_bench(w)?;
        }
    }
    Ok(())
}
