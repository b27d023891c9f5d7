//! `--executor local --jobs N`: the steps run on this machine, up to N at a time, each as soon
//! as the steps it reads from are recorded (the step graph, [`super::graph`]). Records, resume
//! and report are the same as one at a time; after a failure the steps already running finish
//! and are recorded, nothing new starts, and the run stops with the first error.
//!
//! Every step keeps the thread count it has one at a time (`RAYON_NUM_THREADS`, else all
//! cores): cnnsplit's CPU convolution groups images per thread, so a step run with fewer threads
//! sums its gradients in another order and trains to other numbers (measured on the `tiny`
//! preset: `simcnn-est1` validation accuracy 26.82 % with 2 threads, 24.72 % with 1). Keeping
//! the threads makes `--jobs N` give the tables of `--jobs 1`; setting `RAYON_NUM_THREADS`
//! splits the cores instead, with numbers of that thread count.

use std::sync::mpsc;
use std::time::Instant;

use anyhow::{anyhow, Result};

use super::plan::Step;
use super::{fmt_duration, graph, StepRunner};

/// Threads each cnnsplit runs: `RAYON_NUM_THREADS` if set, else the available parallelism.
fn step_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Run `steps` (in plan order, each after its dependencies) with up to `jobs` at a time.
pub fn run(runner: &StepRunner, steps: &[Step], jobs: usize) -> Result<()> {
    let jobs = jobs.max(1);
    if jobs > 1 {
        eprintln!(
            "running up to {jobs} steps at a time, each with {} cnnsplit thread(s) as one at a time (the same numbers); RAYON_NUM_THREADS sets another count",
            step_threads()
        );
    }
    let n = steps.len();
    let index: std::collections::HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut waiting = vec![0usize; n];
    let mut dependants = vec![Vec::new(); n];
    for (i, s) in steps.iter().enumerate() {
        for d in s.deps.iter().filter_map(|d| index.get(d.as_str())) {
            waiting[i] += 1;
            dependants[*d].push(i);
        }
    }
    // one at a time keeps the plan order; in parallel the longest remaining chain goes first
    let priority: Vec<f64> = if jobs > 1 {
        graph::remaining_path(steps)
    } else {
        (0..n).map(|i| -(i as f64)).collect()
    };
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let estimate: f64 = steps.iter().map(|s| s.estimate_s).sum();
    let started = Instant::now();
    let mut done_estimate = 0.0;
    let mut finished = 0;
    let mut first_error: Option<anyhow::Error> = None;
    let (tx, rx) = mpsc::channel::<(usize, Result<bool>, f64)>();
    std::thread::scope(|scope| {
        let mut running = 0;
        loop {
            ready.sort_by(|&a, &b| priority[a].total_cmp(&priority[b]).then(b.cmp(&a)));
            while running < jobs && first_error.is_none() {
                let Some(i) = ready.pop() else { break };
                let tx = tx.clone();
                let step = &steps[i];
                scope.spawn(move || {
                    let t0 = Instant::now();
                    let result = runner.run_step(step);
                    // the receiver lives until every spawned step has reported
                    let _ = tx.send((i, result, t0.elapsed().as_secs_f64()));
                });
                running += 1;
            }
            if running == 0 {
                break;
            }
            let Ok((i, result, secs)) = rx.recv() else {
                break;
            };
            running -= 1;
            finished += 1;
            match result {
                Ok(ran) => {
                    if ran {
                        done_estimate += steps[i].estimate_s;
                        let elapsed = started.elapsed().as_secs_f64();
                        let left =
                            (estimate - done_estimate).max(0.0) * elapsed / done_estimate.max(1e-9);
                        eprintln!(
                            "[{finished}/{n}] {} done in {} (elapsed {}, about {} left)",
                            steps[i].id,
                            fmt_duration(secs),
                            fmt_duration(elapsed),
                            fmt_duration(left)
                        );
                    }
                    for &j in &dependants[i] {
                        waiting[j] -= 1;
                        if waiting[j] == 0 {
                            ready.push(j);
                        }
                    }
                }
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    } else {
                        eprintln!("also failed: {e:#}");
                    }
                }
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    if finished < n {
        return Err(anyhow!(
            "{} of {n} steps never became ready (a dependency cycle in the plan)",
            n - finished
        ));
    }
    Ok(())
}
