//! `cargo xtask bench`: time one training step or one evaluation forward of a paper
//! architecture, with the same interface and JSON field names as
//! `../shared/bench/torch_peer.py`, and optionally run the peer right after for a ratio.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use cnn_models::{presets, ForwardOptions, Model, OpsBackend};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// What one timed iteration does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward + cross-entropy + backward + SGD (lr 0.01, momentum 0.9, wd 1e-4).
    TrainStep,
    /// Evaluation-mode forward, no autograd.
    Eval,
    /// One GradSplitter mask-phase step of N = 10 modules: batched masked forward of the
    /// frozen model, heads, loss, backward to masks and heads, Adam.
    GradsplitterStep,
    /// One CNNSplitter generation of the SimCNN preset's GA (population 20 per class, 300
    /// fitness images, as the `fashion` reproduction): ours alone, the peer has no GA. An
    /// iteration is a generation; generation 0 (the whole initial population) is a warm-up.
    GaGeneration,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::TrainStep => "train-step",
            Mode::Eval => "eval",
            Mode::GradsplitterStep => "gradsplitter-step",
            Mode::GaGeneration => "ga-generation",
        }
    }
}

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// simcnn or rescnn (the peer's two models).
    #[arg(long, default_value = "simcnn")]
    pub arch: String,
    /// Width multiplier.
    #[arg(long, default_value_t = 0.25)]
    pub width: f64,
    /// What to time.
    #[arg(long, value_enum, default_value_t = Mode::TrainStep)]
    pub mode: Mode,
    /// Images per iteration.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed iterations.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Op implementations (fast CPU ops or candle's own).
    #[arg(long, default_value = "fast")]
    pub ops: OpsBackend,
    /// Print one JSON object as the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// Also run ../shared/bench/torch_peer.py with this Python, same flags, right after.
    #[arg(long)]
    pub peer: Option<PathBuf>,
    /// Path of torch_peer.py.
    #[arg(long, default_value = "../shared/bench/torch_peer.py")]
    pub peer_script: PathBuf,
    /// The peer's GradSplitter implementation (`loop`: modules one after another, its default;
    /// `batched`: one N·B batch, as ours always runs).
    #[arg(long)]
    pub gs_impl: Option<String>,
    /// Run every configuration (SimCNN and ResCNN, width 0.25 and 1.0, the three modes the
    /// peer has, then SimCNN-0.25's `ga-generation` alone), write
    /// `docs/benchmarks.json` and the table between the `bench:all` markers of
    /// `docs/benchmarks.md`.
    #[arg(long)]
    pub all: bool,
    /// Threads for the peer (ours uses rayon's default, one per core).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Measure this many times, ours and the peer alternating, each in a fresh process, and
    /// report the median ratio (for shared machines whose speed drifts between runs). With
    /// more than one round, or with `--all`, ours also runs in a fresh process, so that each
    /// configuration's peak RSS is its own.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| (kib / 1024.0 * 10.0).round() / 10.0)
}

/// The CPU model and the vector extensions that matter for fp32 conv speed.
pub fn cpu_info() -> Value {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = text
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut isa = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") {
            isa.push("avx2");
        }
        if is_x86_feature_detected!("fma") {
            isa.push("fma");
        }
        if is_x86_feature_detected!("avx512f") {
            isa.push("avx512f");
        }
    }
    json!({"model": model, "isa": isa, "cores": std::thread::available_parallelism().map_or(1, |n| n.get())})
}

/// Time our implementation; returns the peer-shaped JSON object.
pub fn run_ours(a: &BenchArgs) -> Result<Value> {
    let dev = Device::Cpu;
    let spec = match a.arch.as_str() {
        "simcnn" => presets::simcnn(a.width, 3, 10, true),
        "rescnn" => presets::rescnn(a.width, 3, 10, true),
        other => bail!("--arch {other}: the peer has simcnn and rescnn"),
    };
    let mut model = Model::init(spec, 0, &dev)?;
    model.set_ops(a.ops);
    if a.mode == Mode::GaGeneration {
        return run_ga_generations(a, &model);
    }
    let mut gs_step = if a.mode == Mode::GradsplitterStep {
        model.freeze()?;
        let cfg = splitter_grad::GradSplitConfig {
            lambda: 0.1,
            mask_lr: 1e-3,
            ..Default::default()
        };
        Some(splitter_grad::MaskSearchStep::new(&model, &cfg)?)
    } else {
        None
    };
    let macs = model.analysis().macs();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let n = a.warmup + a.iters;
    let batches: Vec<(Tensor, Tensor)> = (0..n.min(4))
        .map(|_| {
            let x: Vec<f32> = (0..a.batch * 3 * 32 * 32)
                .map(|_| rng.random_range(-2.0f32..2.0))
                .collect();
            let y: Vec<u32> = (0..a.batch).map(|_| rng.random_range(0..10u32)).collect();
            Ok((
                Tensor::from_vec(x, (a.batch, 3, 32, 32), &dev)?,
                Tensor::from_vec(y, a.batch, &dev)?,
            ))
        })
        .collect::<Result<_>>()?;
    let vars = if a.mode == Mode::TrainStep {
        model.trainable_vars()?
    } else {
        vec![]
    };
    let mut momentum = BTreeMap::new();
    let mut dropout_rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let mut times = Vec::new();
    let mut last_loss = None;
    for it in 0..n {
        let (x, y) = &batches[it % batches.len()];
        let t0 = Instant::now();
        match a.mode {
            Mode::TrainStep => {
                let opts = ForwardOptions {
                    train: true,
                    dropout_rng: Some(&mut dropout_rng),
                    ..Default::default()
                };
                let (logits, updates) = model.forward(x, opts)?;
                let loss = candle_nn::loss::cross_entropy(&logits, y)?;
                let grads = loss.backward()?;
                cnn_models::train::sgd_step(&vars, &grads, &mut momentum, 0.01, 0.9, 1e-4)?;
                model.apply_bn_updates(updates);
                last_loss = Some(loss.to_scalar::<f32>()?);
            }
            Mode::Eval => {
                let y = model.forward_eval(x)?;
                y.to_vec2::<f32>()?;
            }
            Mode::GradsplitterStep => {
                let step = gs_step.as_mut().expect("built for this mode");
                last_loss = Some(step.step(&model, x, y)?);
            }
            Mode::GaGeneration => unreachable!("timed by run_ga_generations"),
        }
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        if it >= a.warmup {
            times.push(dt);
        }
        if !a.json {
            eprintln!("{} iter {}/{}: {dt:.1} ms", a.mode.name(), it + 1, n);
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = percentile(&sorted, 50.0);
    // a train step is ~3 forwards; a GradSplitter step runs N = 10 modules, ~2 forwards each
    // (no weight gradients)
    let passes = match a.mode {
        Mode::TrainStep => 3.0,
        Mode::Eval => 1.0,
        Mode::GradsplitterStep => 20.0,
        Mode::GaGeneration => unreachable!("timed by run_ga_generations"),
    };
    let work = passes * 2.0 * macs as f64 * a.batch as f64 / 1e9;
    Ok(json!({
        "tool": "cnnsplit-bench",
        "mode": a.mode.name(),
        "config": {"arch": a.arch, "width": a.width, "batch": a.batch, "iters": a.iters, "warmup": a.warmup, "ops": a.ops},
        "model": {"params": model.analysis().params(), "conv_kernels": model.analysis().total_kernels(),
                  "forward_gmac_per_image": macs as f64 / 1e9},
        "timing": {
            "median_ms": median, "p10_ms": percentile(&sorted, 10.0), "p90_ms": percentile(&sorted, 90.0),
            "mean_ms": times.iter().sum::<f64>() / times.len().max(1) as f64,
            "min_ms": sorted.first().copied().unwrap_or(0.0), "max_ms": sorted.last().copied().unwrap_or(0.0),
            "images_per_s": a.batch as f64 / (median / 1e3),
            "approx_gflop_per_iter": work, "approx_gflops": work / (median / 1e3),
            "last_loss": last_loss,
        },
        "peak_rss_mib": peak_rss_mib(),
        "cpu": cpu_info(),
        "threads": rayon::current_num_threads(),
    }))
}

/// Fitness images of `ga-generation`: the `fashion` preset's count.
const GA_FITNESS_IMAGES: usize = 300;

/// `--mode ga-generation`: `warmup + iters` generations of CNNSplitter on `model` (its
/// preset's GA numbers with the `fashion` reproduction's population of 20, 10 parents, 4
/// elites) over random fitness images, each class's generation timed as the GA reports it.
/// Generation 0 evaluates the whole initial population and belongs to the warm-up; later
/// generations re-run only the new children (elites and repeats come from the cache).
fn run_ga_generations(a: &BenchArgs, model: &Model) -> Result<Value> {
    let spec = model.spec();
    let classes = spec.num_classes;
    let generations = (a.warmup + a.iters).max(2);
    let mut ga = splitter_ga::ga_config_for(spec);
    ga.generations = generations - 1;
    ga.population = 20;
    ga.parents = 10;
    ga.keep = 4;
    let mut cfg = splitter_ga::GaSplitConfig::new(ga.clone());
    // the rule needs a trained model's accuracy; fix the paper's sensitive layers instead
    cfg.sensitive_layers = Some(ga.sensitive_layers.clone());
    cfg.sensitivity_ratios = vec![];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..GA_FITNESS_IMAGES * 3 * 32 * 32)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let x = Tensor::from_vec(x, (GA_FITNESS_IMAGES, 3, 32, 32), &Device::Cpu)?;
    let labels: Vec<u32> = (0..GA_FITNESS_IMAGES)
        .map(|i| (i % classes) as u32)
        .collect();
    let mut seconds = Vec::new();
    let mut evaluation = Vec::new();
    splitter_ga::ga_split(
        model,
        "bench",
        &x,
        &labels,
        &cfg,
        cnn_models::Checkpointing::Off,
        &mut |e| {
            if let splitter_ga::GaSplitEvent::Generation {
                record,
                seconds: s,
                evaluation_seconds,
                ..
            } = e
            {
                if !a.json {
                    eprintln!(
                        "ga-generation {}/{}: {:.1} ms",
                        record.generation + 1,
                        generations,
                        s * 1e3
                    );
                }
                seconds.push(s * 1e3);
                evaluation.push(evaluation_seconds * 1e3);
            }
        },
    )?;
    let skip = a.warmup.max(1).min(seconds.len().saturating_sub(1));
    let mut sorted: Vec<f64> = seconds[skip..].to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = percentile(&sorted, 50.0);
    let mut eval_sorted: Vec<f64> = evaluation[skip..].to_vec();
    eval_sorted.sort_by(|a, b| a.total_cmp(b));
    let candidates = (ga.population * classes) as f64;
    Ok(json!({
        "tool": "cnnsplit-bench",
        "mode": a.mode.name(),
        "config": {"arch": a.arch, "width": a.width, "population": ga.population, "classes": classes,
                   "fitness_images": GA_FITNESS_IMAGES, "generations_timed": sorted.len(), "ops": a.ops},
        "model": {"params": model.analysis().params(), "conv_kernels": model.analysis().total_kernels(),
                  "forward_gmac_per_image": model.analysis().macs() as f64 / 1e9},
        "timing": {
            "median_ms": median, "p10_ms": percentile(&sorted, 10.0), "p90_ms": percentile(&sorted, 90.0),
            "evaluation_median_ms": percentile(&eval_sorted, 50.0),
            "candidates_per_s": candidates / (median / 1e3),
        },
        "peak_rss_mib": peak_rss_mib(),
        "cpu": cpu_info(),
        "threads": rayon::current_num_threads(),
    }))
}

/// Run the PyTorch peer with the same flags; returns its JSON line.
pub fn run_peer(a: &BenchArgs, python: &PathBuf) -> Result<Value> {
    if a.mode == Mode::GaGeneration {
        bail!("--mode ga-generation has no peer (the PyTorch peer has no GA); drop --peer");
    }
    let out = Command::new(python)
        .arg(&a.peer_script)
        .args([
            "--arch",
            &a.arch,
            "--width",
            &a.width.to_string(),
            "--mode",
            a.mode.name(),
        ])
        .args([
            "--batch",
            &a.batch.to_string(),
            "--iters",
            &a.iters.to_string(),
            "--warmup",
            &a.warmup.to_string(),
        ])
        .args(["--threads", &a.threads.to_string()])
        .args(a.gs_impl.iter().flat_map(|i| ["--gs-impl", i.as_str()]))
        .output()
        .with_context(|| format!("running {} {}", python.display(), a.peer_script.display()))?;
    if !out.status.success() {
        bail!("the peer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("the peer printed nothing")?;
    serde_json::from_str(line).context("the peer's last line is not JSON")
}

/// Ours in a fresh process of this binary (`bench … --json` without `--peer`), so that the
/// peak RSS is this configuration's alone.
fn run_ours_fresh(a: &BenchArgs) -> Result<Value> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let ops = match a.ops {
        OpsBackend::Fast => "fast",
        OpsBackend::Candle => "candle",
    };
    let out = Command::new(&exe)
        .args(["bench", "--arch", &a.arch, "--width", &a.width.to_string()])
        .args(["--mode", a.mode.name(), "--batch", &a.batch.to_string()])
        .args([
            "--iters",
            &a.iters.to_string(),
            "--warmup",
            &a.warmup.to_string(),
        ])
        .args(["--ops", ops, "--json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!("the benchmark process failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the benchmark printed nothing")?;
    serde_json::from_str(line).context("the benchmark's last line is not JSON")
}

/// One configuration measured `a.rounds` times (ours, then the peer if given). Returns
/// `{"ours", "peer", "ratio_peer_over_ours", "rounds": [...]}` where ours/peer are the round
/// with the median ratio (or the median time without a peer) and the ratio is that median.
fn measure(a: &BenchArgs, fresh: bool) -> Result<Value> {
    let ms = |v: &Value| v["timing"]["median_ms"].as_f64().unwrap_or(f64::NAN);
    let mut rounds = Vec::new();
    for r in 0..a.rounds.max(1) {
        if a.rounds > 1 {
            eprintln!("round {}/{}", r + 1, a.rounds);
        }
        let ours = if fresh {
            run_ours_fresh(a)?
        } else {
            run_ours(a)?
        };
        let peer = a.peer.as_ref().map(|py| run_peer(a, py)).transpose()?;
        let ratio = peer.as_ref().map(|p| ms(p) / ms(&ours));
        rounds.push(json!({"ours": ours, "peer": peer, "ratio_peer_over_ours": ratio}));
    }
    Ok(median_round(&rounds))
}

/// The round with the median ratio (the lower middle one for an even count), or with the
/// median time when there is no peer, plus every round's ratio as `round_ratios`.
fn median_round(rounds: &[Value]) -> Value {
    let ms = |v: &Value| v["timing"]["median_ms"].as_f64().unwrap_or(f64::NAN);
    let key = |v: &Value| {
        v["ratio_peer_over_ours"]
            .as_f64()
            .unwrap_or_else(|| -ms(&v["ours"]))
    };
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by(|&i, &j| key(&rounds[i]).total_cmp(&key(&rounds[j])));
    let mid = rounds[order[(order.len() - 1) / 2]].clone();
    let ratios: Vec<Value> = rounds
        .iter()
        .map(|r| r["ratio_peer_over_ours"].clone())
        .collect();
    json!({
        "ours": mid["ours"],
        "peer": mid["peer"],
        "ratio_peer_over_ours": mid["ratio_peer_over_ours"],
        "round_ratios": ratios,
    })
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// ` (r1, r2, …)`: every round's ratio, when there was more than one.
fn per_round(m: &Value) -> String {
    let r: Vec<String> = m["round_ratios"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|v| format!("{v:.2}"))
                .collect()
        })
        .unwrap_or_default();
    if r.len() > 1 {
        format!(" ({})", r.join(", "))
    } else {
        String::new()
    }
}

/// The `--all` sweep: every configuration, ours then the peer's, written as JSON and as the
/// Markdown table of `docs/benchmarks.md`.
fn bench_all(a: &BenchArgs) -> Result<()> {
    let mut rows = Vec::new();
    let mut table = String::from(
        "| arch | width | mode | cnnsplit | peer | ratio peer/ours | cnnsplit peak RSS | peer peak RSS |\n|---|---|---|---|---|---|---|---|\n",
    );
    for arch in ["simcnn", "rescnn"] {
        for width in [0.25, 1.0] {
            for mode in [Mode::TrainStep, Mode::Eval, Mode::GradsplitterStep] {
                let args = BenchArgs {
                    arch: arch.into(),
                    width,
                    mode,
                    all: false,
                    peer: a.peer.clone(),
                    peer_script: a.peer_script.clone(),
                    gs_impl: a.gs_impl.clone(),
                    ..*a
                };
                eprintln!("== {arch} width {width} {}", mode.name());
                let m = measure(&args, true)?;
                let ours = m["ours"].clone();
                let peer = Some(m["peer"].clone()).filter(|p| !p.is_null());
                let ms = |v: &Value| v["timing"]["median_ms"].as_f64().unwrap_or(f64::NAN);
                let ratio = m["ratio_peer_over_ours"].as_f64();
                table.push_str(&format!(
                    "| {arch} | {width} | {} | {:.1} ms | {} | {} | {:.0} MiB | {} |\n",
                    mode.name(),
                    ms(&ours),
                    peer.as_ref()
                        .map_or("-".into(), |p| format!("{:.1} ms", ms(p))),
                    ratio.map_or("-".into(), |r| format!("**{r:.3}**{}", per_round(&m))),
                    ours["peak_rss_mib"].as_f64().unwrap_or(0.0),
                    peer.as_ref().map_or("-".into(), |p| format!(
                        "{:.0} MiB",
                        p["peak_rss_mib"].as_f64().unwrap_or(0.0)
                    )),
                ));
                rows.push(m);
            }
        }
    }
    // the GA generation: ours alone (the peer has no GA), one round
    let args = BenchArgs {
        arch: "simcnn".into(),
        width: 0.25,
        mode: Mode::GaGeneration,
        all: false,
        peer: None,
        peer_script: a.peer_script.clone(),
        gs_impl: None,
        rounds: 1,
        ..*a
    };
    eprintln!("== simcnn width 0.25 ga-generation");
    let m = run_ours_fresh(&args)?;
    table.push_str(&format!(
        "| simcnn | 0.25 | ga-generation | {:.0} ms ({:.1} candidates/s) | - | - | {:.0} MiB | - |\n",
        m["timing"]["median_ms"].as_f64().unwrap_or(f64::NAN),
        m["timing"]["candidates_per_s"].as_f64().unwrap_or(f64::NAN),
        m["peak_rss_mib"].as_f64().unwrap_or(0.0),
    ));
    rows.push(json!({"ours": m, "peer": null, "ratio_peer_over_ours": null}));
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpu = cpu_info();
    let header = format!(
        "Run {date}, commit {}, CPU {} ({} threads; flags {}), batch {}, median of {} timed iterations after {} warm-up ones{}; {} round(s) per row, ours and the peer alternating, each in a fresh process (the ratio is the median round's; the others in brackets).\n\n",
        git_commit(),
        cpu["model"].as_str().unwrap_or("?"),
        rayon::current_num_threads(),
        cpu["isa"],
        a.batch,
        a.iters,
        a.warmup,
        a.gs_impl.as_ref().map_or(String::new(), |g| format!(", peer GradSplitter implementation `{g}`")),
        a.rounds.max(1)
    );
    let doc = std::path::Path::new("docs/benchmarks.md");
    let json_path = std::path::Path::new("docs/benchmarks.json");
    std::fs::write(
        json_path,
        serde_json::to_vec_pretty(
            &json!({"date": date, "commit": git_commit(), "cpu": cpu, "rows": rows}),
        )?,
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    let (start, end) = ("<!-- bench:all:start -->", "<!-- bench:all:end -->");
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let block = format!("{start}\n{header}{table}{end}");
    let new = match (text.find(start), text.find(end)) {
        (Some(i), Some(j)) if j > i => format!("{}{block}{}", &text[..i], &text[j + end.len()..]),
        _ => format!("{text}\n## Full sweep (`cargo xtask bench --all`)\n\n{block}\n"),
    };
    std::fs::write(doc, new).with_context(|| format!("writing {}", doc.display()))?;
    println!("{header}{table}");
    println!("wrote {} and {}", json_path.display(), doc.display());
    Ok(())
}

/// `cargo xtask bench`.
pub fn bench(a: BenchArgs) -> Result<()> {
    if a.all {
        return bench_all(&a);
    }
    if a.rounds > 1 {
        let m = measure(&a, true)?;
        let ms = |v: &Value| v["timing"]["median_ms"].as_f64().unwrap_or(f64::NAN);
        if a.json {
            println!("{}", serde_json::to_string(&m)?);
        } else {
            println!(
                "{} {} width {} batch {}, {} rounds: ours {:.1} ms, peer {} ms, median ratio peer/ours {}{}",
                a.arch,
                a.mode.name(),
                a.width,
                a.batch,
                a.rounds,
                ms(&m["ours"]),
                m["peer"]["timing"]["median_ms"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.1}")),
                m["ratio_peer_over_ours"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.3}")),
                per_round(&m)
            );
        }
        return Ok(());
    }
    let ours = run_ours(&a)?;
    let ms = |v: &Value, key: &str| v["timing"][key].as_f64().unwrap_or(f64::NAN);
    let label = format!(
        "{} {} width {} batch {}",
        a.arch,
        a.mode.name(),
        a.width,
        a.batch
    );
    let result = match &a.peer {
        Some(py) => {
            let peer = run_peer(&a, py)?;
            let ratio = ms(&peer, "median_ms") / ms(&ours, "median_ms");
            if !a.json {
                println!(
                    "{label}: ours {:.1} ms (peak RSS {} MiB), peer {:.1} ms (peak RSS {} MiB), ratio peer/ours {ratio:.3}",
                    ms(&ours, "median_ms"),
                    ours["peak_rss_mib"],
                    ms(&peer, "median_ms"),
                    peer["peak_rss_mib"],
                );
            }
            json!({"ours": ours, "peer": peer, "ratio_peer_over_ours": ratio})
        }
        None if a.mode == Mode::GaGeneration => {
            if !a.json {
                println!(
                    "{} ga-generation width {}: median {:.1} ms per generation, p10 {:.1}, p90 {:.1}, {:.1} candidates/s, peak RSS {} MiB",
                    a.arch,
                    a.width,
                    ms(&ours, "median_ms"),
                    ms(&ours, "p10_ms"),
                    ms(&ours, "p90_ms"),
                    ms(&ours, "candidates_per_s"),
                    ours["peak_rss_mib"]
                );
            }
            ours
        }
        None => {
            if !a.json {
                println!(
                    "{label}: median {:.1} ms, p10 {:.1}, p90 {:.1}, {:.1} images/s, peak RSS {} MiB",
                    ms(&ours, "median_ms"),
                    ms(&ours, "p10_ms"),
                    ms(&ours, "p90_ms"),
                    ms(&ours, "images_per_s"),
                    ours["peak_rss_mib"]
                );
            }
            ours
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(ours_ms: f64, peer_ms: Option<f64>) -> Value {
        let t = |v: f64| json!({"timing": {"median_ms": v}});
        json!({
            "ours": t(ours_ms),
            "peer": peer_ms.map(t),
            "ratio_peer_over_ours": peer_ms.map(|p| p / ours_ms),
        })
    }

    #[test]
    fn the_reported_round_is_the_one_with_the_median_ratio() {
        let rounds = [
            round(100.0, Some(90.0)),
            round(100.0, Some(120.0)),
            round(50.0, Some(40.0)),
        ];
        let m = median_round(&rounds);
        assert_eq!(m["ratio_peer_over_ours"].as_f64(), Some(0.9));
        assert_eq!(m["ours"]["timing"]["median_ms"].as_f64(), Some(100.0));
        assert_eq!(per_round(&m), " (0.90, 1.20, 0.80)");
        // One round: no bracket; without a peer the median time is reported.
        assert_eq!(per_round(&median_round(&rounds[..1])), "");
        let alone = [round(30.0, None), round(10.0, None), round(20.0, None)];
        assert_eq!(
            median_round(&alone)["ours"]["timing"]["median_ms"].as_f64(),
            Some(20.0)
        );
    }
}
