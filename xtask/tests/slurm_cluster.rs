//! `reproduce --executor slurm` against a real Slurm (`cargo xtask cluster up`; `.ci/run`
//! brings it up for this test and down afterwards). A small plan from the `tiny` preset — a
//! model trained, decomposed and composed (three steps in a chain) beside an independent
//! training — gives the same tables and artefacts one step at a time, two at a time
//! (`--jobs 2`) and through Slurm; a rerun submits nothing; a job cancelled with `scancel` mid-run is resubmitted
//! by the rerun and the result equals the uninterrupted run's; a failing step shows as failed
//! with its log, and its dependant never runs.
//!
//! Run it with `cargo test --workspace --test slurm_cluster -- --ignored` and `SLURM_CONF` set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ONLY: &str = "compose-grad-simcnn-est1,train-weak";
const DECOMPOSE: &str = "decompose-grad-simcnn-est1";
const COMPOSE: &str = "compose-grad-simcnn-est1";

/// The debug `cnnsplit` beside this test's binary (`cargo test --workspace` builds it).
fn cnnsplit() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("cnnsplit");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo test --workspace` or `cargo build --workspace --bins`)",
        bin.display()
    );
    bin
}

fn xtask(out: &Path, extra: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "reproduce",
            "--preset",
            "tiny",
            "--only",
            ONLY,
            "--device",
            "cpu",
        ])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "xtask failed:\n{}", text(&o));
    text(&o)
}

/// `--executor slurm` with two CPUs per step (cnnsplit's two threads of the local runs).
fn slurm_args<'a>(bin: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--executor",
        "slurm",
        "--cnnsplit",
        bin,
        "--cpus-per-step",
        "2",
        "--mem-per-step",
        "1G",
    ];
    a.extend_from_slice(extra);
    a
}

/// Split one CSV line (fields may be double-quoted and hold commas).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Every table of the report without its timing columns (headers ending in " s").
fn tables(out: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut all = BTreeMap::new();
    for e in std::fs::read_dir(out.join("tables")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines = text.lines();
        let header = csv_fields(lines.next().unwrap_or_default());
        let keep: Vec<usize> = (0..header.len())
            .filter(|&i| !header[i].ends_with(" s"))
            .collect();
        let rows: Vec<Vec<String>> = std::iter::once(header.clone())
            .chain(lines.map(csv_fields))
            .map(|r| {
                keep.iter()
                    .map(|&i| r.get(i).cloned().unwrap_or_default())
                    .collect()
            })
            .collect();
        all.insert(p.file_name().unwrap().to_string_lossy().into_owned(), rows);
    }
    assert!(
        all.contains_key("t1.csv") && all.contains_key("t2.csv"),
        "{all:?}"
    );
    all
}

/// The bytes of every `.safetensors` file under `work/models` and `work/modules`.
fn artefacts(out: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, into: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, into);
            } else if p.extension().is_some_and(|x| x == "safetensors")
                && !p.to_string_lossy().contains("checkpoint")
            {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                into.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut all = BTreeMap::new();
    for sub in ["models", "modules"] {
        walk(&out.join("work").join(sub), &out.join("work"), &mut all);
    }
    assert!(
        all.keys()
            .any(|k| k.starts_with("modules/grad-simcnn-est1/")),
        "no module files: {:?}",
        all.keys().collect::<Vec<_>>()
    );
    all
}

fn job_record(out: &Path, step: &str) -> serde_json::Value {
    let p = out.join(format!("work/slurm/jobs/{step}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn record(out: &Path, step: &str) -> Option<serde_json::Value> {
    let p = out.join(format!("work/records/{step}.json"));
    p.exists()
        .then(|| serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap())
}

/// The `--status` line of `step`.
fn status_line(out: &Path, bin: &str, step: &str) -> String {
    let text = ok(xtask(out, &slurm_args(bin, &["--status"])));
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(step))
        .unwrap_or_else(|| panic!("no status line for {step}:\n{text}"))
        .to_string()
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs a Slurm cluster: `cargo xtask cluster up` and SLURM_CONF (.ci/run does both)"]
fn slurm_runs_the_plan_like_local_resubmits_what_was_cancelled_and_stops_at_a_failure() {
    assert!(
        std::env::var_os("SLURM_CONF").is_some(),
        "SLURM_CONF is not set: run `cargo xtask cluster up` and export what it prints"
    );
    let bin = cnnsplit();
    let bin = bin.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // the reference: the local executor one step at a time, then two at a time (each step
    // keeps its two cnnsplit threads, so the numbers are the same)
    let local = tmp.path().join("local");
    ok(xtask(&local, &["--cnnsplit", bin, "--jobs", "1"]));
    let want_tables = tables(&local);
    let want_artefacts = artefacts(&local);
    let parallel = tmp.path().join("parallel");
    let said = ok(xtask(&parallel, &["--cnnsplit", bin, "--jobs", "2"]));
    assert!(said.contains("up to 2 steps at a time"), "{said}");
    assert_eq!(tables(&parallel), want_tables);
    assert!(
        artefacts(&parallel) == want_artefacts,
        "--jobs 2 trained other models than --jobs 1"
    );

    // the same plan through Slurm, waiting for the jobs
    let slurm = tmp.path().join("slurm");
    let said = ok(xtask(&slurm, &slurm_args(bin, &["--wait"])));
    assert!(said.contains("submitted 5 job(s)"), "{said}");
    for step in ["train-simcnn-est1", "train-weak", DECOMPOSE, COMPOSE] {
        let r = record(&slurm, step).unwrap_or_else(|| panic!("{step} has no record"));
        assert_eq!(r["executor"], "slurm", "{step}");
        assert_eq!(
            r["slurm_job_id"],
            job_record(&slurm, step)["job_id"],
            "{step}"
        );
    }
    assert_eq!(tables(&slurm), want_tables);
    assert!(
        artefacts(&slurm) == want_artefacts,
        "Slurm's models and modules differ from the local run's"
    );
    assert!(slurm.join("report.md").exists());
    // a second run submits nothing
    let jobs_before = job_record(&slurm, DECOMPOSE);
    let said = ok(xtask(&slurm, &slurm_args(bin, &[])));
    assert!(said.contains("nothing to submit"), "{said}");
    assert_eq!(job_record(&slurm, DECOMPOSE), jobs_before);

    // a job cancelled mid-run is submitted again by the rerun, and only it and its dependants
    let cancelled = tmp.path().join("cancelled");
    let said = ok(xtask(&cancelled, &slurm_args(bin, &[])));
    assert!(said.contains("submitted 5 job(s)"), "{said}");
    let first = job_record(&cancelled, DECOMPOSE);
    // submitting again while the jobs are queued or running submits no step twice
    let said = ok(xtask(&cancelled, &slurm_args(bin, &[])));
    assert!(
        said.contains(&format!(
            "{DECOMPOSE}: job {} is",
            first["job_id"].as_str().unwrap()
        )),
        "{said}"
    );
    assert_eq!(job_record(&cancelled, DECOMPOSE), first);
    let train_job = job_record(&cancelled, "train-simcnn-est1")["job_id"].clone();
    let modules = cancelled.join("work/modules/grad-simcnn-est1");
    wait_for("the decomposition to start writing", 900, || {
        modules.exists()
    });
    let job = first["job_id"].as_str().unwrap().to_string();
    let st = Command::new("scancel").arg(&job).status().unwrap();
    assert!(st.success());
    wait_for("the cancelled job to leave the queue", 120, || {
        !status_line(&cancelled, bin, DECOMPOSE).contains(" running ")
    });
    assert!(
        record(&cancelled, DECOMPOSE).is_none(),
        "the decomposition finished before scancel reached it; the test cannot tell a resubmission"
    );
    let line = status_line(&cancelled, bin, DECOMPOSE);
    assert!(
        line.contains("failed") && line.contains("CANCELLED"),
        "{line}"
    );
    // the dependant and the report job were cancelled with it; the trainings are done
    let said = ok(xtask(&cancelled, &slurm_args(bin, &["--wait"])));
    assert!(
        said.contains("submitted 3 job(s), 0 step(s) already queued or running"),
        "{said}"
    );
    let second = job_record(&cancelled, DECOMPOSE);
    assert_ne!(
        second["job_id"], first["job_id"],
        "the cancelled step was not resubmitted"
    );
    // the finished training was not submitted again
    assert_eq!(
        job_record(&cancelled, "train-simcnn-est1")["job_id"],
        train_job
    );
    assert_eq!(tables(&cancelled), want_tables);
    assert!(
        artefacts(&cancelled) == want_artefacts,
        "the resubmitted run's modules differ from an uninterrupted run's"
    );

    // a failing step shows as failed with its log; its dependant never runs
    let failing = tmp.path().join("failing");
    std::fs::create_dir_all(&failing).unwrap();
    let fake = failing.join("cnnsplit-refusing-decompose.sh");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" decompose \"*) echo 'this cnnsplit refuses to decompose' >&2; exit 3;; esac\nexec '{bin}' \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = fake.to_str().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "reproduce",
            "--preset",
            "tiny",
            "--only",
            COMPOSE,
            "--device",
            "cpu",
        ])
        .arg("--out")
        .arg(&failing)
        .args(slurm_args(fake, &["--wait"]))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(DECOMPOSE), "{}", text(&o));
    let status = |step: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args([
                "reproduce",
                "--preset",
                "tiny",
                "--only",
                COMPOSE,
                "--status",
            ])
            .arg("--out")
            .arg(&failing)
            .output()
            .unwrap();
        let t = ok(o);
        t.lines()
            .find(|l| l.split_whitespace().next() == Some(step))
            .unwrap_or_else(|| panic!("no status line for {step}:\n{t}"))
            .to_string()
    };
    let line = status(DECOMPOSE);
    assert!(line.contains(" failed "), "{line}");
    let log = line
        .split("log ")
        .nth(1)
        .unwrap_or_else(|| panic!("no log in: {line}"));
    let log_text = std::fs::read_to_string(log.trim()).unwrap();
    assert!(
        log_text.contains("this cnnsplit refuses to decompose"),
        "{log_text}"
    );
    let line = status(COMPOSE);
    assert!(line.contains(" cancelled "), "{line}");
    assert!(record(&failing, COMPOSE).is_none());
    let compose_log = PathBuf::from(job_record(&failing, COMPOSE)["log"].as_str().unwrap());
    assert!(!compose_log.exists(), "the dependant of a failed step ran");
    assert!(status("train-simcnn-est1").contains(" done "));
}
