//! Crash safety of the long-running commands (`train`, `decompose --method grad`,
//! `decompose --method ga`): each is killed with SIGKILL at seeded random moments and resumed
//! with `--resume`; the final artefacts must equal an uninterrupted run's, and no file under a
//! final name may ever be half-written. A full disk and a read-only output directory must give
//! a clear error and leave the earlier artefacts byte for byte as they were.
//!
//! Files compared byte for byte: every `.safetensors` file (model, modules, checkpoints), every
//! `module.json` and `ga_prelude.json`. Compared with their timing fields removed: `model.json`
//! and the training checkpoint (per-epoch `seconds`, total `seconds`), `decomposition.json`
//! (`seconds`, per-epoch / per-generation `seconds`, and for the GA the rates derived from
//! timings and the evaluator's cache counters, which a restarted process starts from zero),
//! the GradSplitter checkpoint (per-epoch `seconds`) and `ga_state.json`
//! (`generation_seconds`).

#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cnnsplit");

/// Every file under `dir` (relative path → bytes).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn is_temp(name: &str) -> bool {
    cnn_models::files::is_temp_file_name(name)
}

/// Check every file now under `dir`: a temp file of `atomic_write`, or a JSON / safetensors
/// file that parses completely. Files that vanish while being read (renamed over, old
/// checkpoints removed) are skipped. Returns how many final-name files were checked.
fn check_visible_files(dir: &Path) -> usize {
    fn walk(dir: &Path, checked: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                walk(&path, checked);
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            if is_temp(&name) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if name.ends_with(".json") {
                if let Err(err) = serde_json::from_slice::<Value>(&bytes) {
                    panic!("{} is visible but not valid JSON: {err}", path.display());
                }
            } else if name.ends_with(".safetensors") {
                if let Err(err) =
                    candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu)
                {
                    panic!(
                        "{} is visible but not a whole safetensors file: {err}",
                        path.display()
                    );
                }
            } else {
                panic!("unexpected file {} in an output directory", path.display());
            }
            *checked += 1;
        }
    }
    let mut checked = 0;
    walk(dir, &mut checked);
    checked
}

fn spawn(cwd: &Path, args: &[String]) -> Child {
    Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cnnsplit")
}

fn finish(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// How far a run has come, read from its checkpoint: finished units (epochs, or the GA's
/// prelude plus generations); 0 before the first checkpoint.
type Progress = fn(&Path) -> usize;

fn json_at(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn epochs_done(ckpt_json: &Path) -> usize {
    json_at(ckpt_json)
        .and_then(|v| v["epochs_done"].as_u64())
        .unwrap_or(0) as usize
}

fn train_progress(out: &Path) -> usize {
    epochs_done(&out.join("checkpoint/checkpoint.json"))
}

fn grad_progress(out: &Path) -> usize {
    epochs_done(&out.join("checkpoint/gradsplit.json"))
}

fn ga_progress(out: &Path) -> usize {
    let prelude = usize::from(out.join("checkpoint/ga_prelude.json").exists());
    let generations = json_at(&out.join("checkpoint/ga_state.json"))
        .and_then(|v| v["state"]["next_generation"].as_u64())
        .unwrap_or(0) as usize;
    prelude + generations
}

/// Timings of an uninterrupted run.
struct Reference {
    /// Units the finished run reports.
    units: usize,
    /// Shortest time between two successive units (spawn counts as unit 0).
    shortest_unit: Duration,
}

/// Run to completion, checking the visible files all along and timing its units.
fn run_watched(cwd: &Path, args: &[String], progress: Progress) -> Reference {
    let out = cwd.join("out");
    let mut last = (0, Instant::now());
    let mut shortest = Duration::MAX;
    let mut child = spawn(cwd, args);
    loop {
        check_visible_files(&out);
        let p = progress(&out);
        if p > last.0 {
            shortest = shortest.min(last.1.elapsed() / (p - last.0) as u32);
            last = (p, Instant::now());
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    finish(child, "an uninterrupted run");
    assert!(last.0 >= 2, "the reference run reported {} units", last.0);
    Reference {
        units: last.0,
        shortest_unit: shortest,
    }
}

/// Simulate the debris of a kill inside a checkpoint write: a whole tensors file under the
/// next epoch's name (what a kill between renaming the new tensors and renaming the new JSON
/// leaves; its contents here are the current epoch's, so reading it would change the result)
/// and a half-written temp file of the checkpoint JSON. The resumed run must neither read nor
/// keep either.
fn add_checkpoint_debris(ckpt: &Path, json_name: &str, tensors_prefix: &str) {
    let Some(meta) = json_at(&ckpt.join(json_name)) else {
        return;
    };
    let done = meta["epochs_done"].as_u64().unwrap();
    let current = meta["tensors_file"].as_str().unwrap();
    std::fs::copy(
        ckpt.join(current),
        ckpt.join(format!("{tensors_prefix}{}.safetensors", done + 1)),
    )
    .unwrap();
    let text = std::fs::read(ckpt.join(json_name)).unwrap();
    std::fs::write(
        ckpt.join(format!(".{json_name}.tmp-4000000")),
        &text[..text.len() / 2],
    )
    .unwrap();
}

/// Attempts killed per run (fewer when an attempt finishes before its kill).
const KILLS: usize = 3;

/// What happened to the interrupted run.
struct KillLog {
    /// Progress (units done) at each kill.
    killed_at: Vec<usize>,
    /// Final-name files found whole while the processes ran.
    files_checked: usize,
}

/// Run `first` then `resume` in `cwd`, killing up to [`KILLS`] attempts with SIGKILL at seeded random
/// points, then resume to completion. Each kill point is a unit `m` drawn from those not yet
/// done and a delay drawn within half the reference's shortest unit, counted from the moment
/// unit `m` is seen done (`m` = the current progress: from the start of the process), so
/// every kill lands while the process still works. `debris` runs after the first kill.
fn kill_and_resume(
    cwd: &Path,
    first: &[String],
    resume: &[String],
    reference: &Reference,
    progress: Progress,
    seed: u64,
    debris: &dyn Fn(&Path),
) -> KillLog {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut log = KillLog {
        killed_at: Vec::new(),
        files_checked: 0,
    };
    let out = cwd.join("out");
    let half_unit = (reference.shortest_unit / 2).as_millis().max(2) as u64;
    for attempt in 0..KILLS {
        if progress(&out) >= reference.units && attempt > 0 {
            break;
        }
        let args = if attempt == 0 { first } else { resume };
        let done = progress(&out);
        // up to the last unit: a kill after it lands in the writing of the final artefacts,
        // unless the process is faster than the delay; the first kill always lands earlier
        let last = if attempt == 0 {
            reference.units - 1
        } else {
            reference.units
        };
        let unit = rng.random_range(done.min(last)..=last);
        let delay = Duration::from_millis(rng.random_range(0..half_unit));
        let mut child = spawn(cwd, args);
        let mut reached = if unit == done {
            Some(Instant::now())
        } else {
            None
        };
        loop {
            log.files_checked += check_visible_files(&out);
            if reached.is_none() && progress(&out) >= unit {
                reached = Some(Instant::now());
            }
            if child.try_wait().unwrap().is_some() {
                let out = child.wait_with_output().unwrap();
                if unit == reference.units && out.status.success() {
                    log.files_checked += check_visible_files(&cwd.join("out"));
                    return log;
                }
                panic!(
                    "attempt {attempt} ended before its kill (unit {unit} + {delay:?}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if reached.is_some_and(|t| t.elapsed() >= delay) {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                log.killed_at.push(progress(&out));
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        log.files_checked += check_visible_files(&out);
        if attempt == 0 {
            debris(&out);
        }
    }
    let mut child = spawn(cwd, resume);
    loop {
        log.files_checked += check_visible_files(&out);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    finish(child, "the final --resume");
    log
}

/// A write obstacle put in a command's way.
#[derive(Clone, Copy, Debug)]
enum Obstacle {
    /// No file may grow beyond this many bytes (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored, so a
    /// write past it fails with `EFBIG` as a full disk fails with `ENOSPC`).
    FileSizeLimit(u64),
    /// The output directory and everything in it is read-only; as root, where permissions do
    /// not stop writes, the command also runs as user `nobody`.
    ReadOnly,
}

/// Set the permissions of `dir`, its subdirectories (`dirs`) and files (`files`).
fn set_modes(dir: &Path, dirs: u32, files: u32) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            set_modes(&path, dirs, files);
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(files)).unwrap();
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dirs)).unwrap();
}

/// Run `args` in `cwd` against `obstacle`; the command must fail naming `needles`, and every
/// file under `cwd/out` must be byte for byte what it was (no temp file left either).
fn fails_cleanly(cwd: &Path, args: &[String], obstacle: Obstacle, needles: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let out = cwd.join("out");
    let before = snapshot(&out);
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd).args(args);
    // SAFETY: only async-signal-safe calls (setrlimit, signal, setgroups, setgid, setuid)
    // run between fork and exec.
    match obstacle {
        Obstacle::FileSizeLimit(bytes) => unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: bytes as libc::rlim_t,
                    rlim_max: bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0
                    || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        },
        Obstacle::ReadOnly => {
            set_modes(&out, 0o555, 0o444);
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                // `nobody` must reach the working directory through the temp directory
                for dir in cwd
                    .ancestors()
                    .take_while(|d| d.starts_with(std::env::temp_dir()))
                {
                    if dir != std::env::temp_dir() {
                        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                            .unwrap();
                    }
                }
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::setgroups(0, std::ptr::null()) != 0
                            || libc::setgid(65534) != 0
                            || libc::setuid(65534) != 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
        }
    }
    let result = cmd.output().expect("start cnnsplit");
    if matches!(obstacle, Obstacle::ReadOnly) {
        set_modes(&out, 0o755, 0o644);
    }
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "{args:?} against {obstacle:?} succeeded: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
    assert_eq!(err.matches("(os error").count(), 1, "the cause once: {err}");
    let after = snapshot(&out);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "files appeared or vanished"
    );
    for (name, bytes) in &before {
        assert!(after[name] == *bytes, "{name} changed");
    }
}

/// Remove `keys` (dotted paths; `*` maps over an array) from a JSON value.
fn strip(v: &mut Value, key: &str) {
    let (head, rest) = match key.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (key, None),
    };
    match (head, rest, v) {
        ("*", Some(r), Value::Array(items)) => items.iter_mut().for_each(|i| strip(i, r)),
        (h, None, Value::Object(m)) => {
            assert!(m.remove(h).is_some(), "no field `{h}` to strip");
        }
        (h, Some(r), Value::Object(m)) => strip(m.get_mut(h).unwrap(), r),
        (h, _, other) => panic!("cannot strip `{h}` from {other}"),
    }
}

/// Compare two output directories: same file names, no temp files, bytes equal except for
/// the JSON files in `timed`, which are equal once their timing fields are removed.
fn assert_same_artefacts(a: &Path, b: &Path, timed: &[(&str, &[&str])]) -> usize {
    let (sa, sb) = (snapshot(a), snapshot(b));
    let names_a: Vec<&String> = sa.keys().collect();
    let names_b: Vec<&String> = sb.keys().collect();
    assert_eq!(
        names_a,
        names_b,
        "different files in {} and {}",
        a.display(),
        b.display()
    );
    for name in sa.keys() {
        let file = name.rsplit('/').next().unwrap();
        assert!(!is_temp(file), "temp file {name} left behind");
        match timed.iter().find(|(t, _)| t == name) {
            Some((_, fields)) => {
                let mut va: Value = serde_json::from_slice(&sa[name]).unwrap();
                let mut vb: Value = serde_json::from_slice(&sb[name]).unwrap();
                for f in *fields {
                    strip(&mut va, f);
                    strip(&mut vb, f);
                }
                assert_eq!(va, vb, "{name} differs beyond its timings");
            }
            None => assert!(sa[name] == sb[name], "{name} differs"),
        }
    }
    sa.len()
}

/// A command line written as one string (no argument contains a space), with `MODEL`
/// replaced by `model`.
fn command_line(line: &str, model: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|a| {
            if a == "MODEL" {
                model.to_string()
            } else {
                a.to_string()
            }
        })
        .collect()
}

fn with_resume(args: &[String]) -> Vec<String> {
    let mut v = args.to_vec();
    v.push("--resume".into());
    v
}

/// `args` with the value of `flag` replaced.
fn with_value(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut v = args.to_vec();
    let at = v.iter().position(|a| a == flag).expect("flag present");
    v[at + 1] = value.to_string();
    v
}

/// A tiny trained model shared by the decomposition tests.
fn tiny_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash_safety_model");
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(BIN)
            .args([
                "-q",
                "train",
                "--arch",
                "simcnn",
                "--width",
                "0.125",
                "--epochs",
                "1",
                "--limit",
                "600",
                "--batch-size",
                "64",
                "--augment",
                "none",
                "--seed",
                "3",
                "--out",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

const TRAIN_TIMED: &[&str] = &["training.seconds", "training.records.*.seconds"];
const TRAIN_CKPT_TIMED: &[&str] = &["records.*.seconds"];
const GRAD_TIMED: &[&str] = &["seconds", "log.*.seconds"];
const GRAD_CKPT_TIMED: &[&str] = &["log.*.seconds"];
const GA_TIMED: &[&str] = &[
    "seconds",
    "generations.*.seconds",
    "generations_per_minute",
    "evaluation_fraction",
    "evaluated_modules",
    "reused_modules",
];
const GA_STATE_TIMED: &[&str] = &["generation_seconds"];

#[test]
fn train_killed_and_resumed_ends_as_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let args = command_line(
        "-q train --arch simcnn --width 0.125 --epochs 3 --limit 600 --batch-size 64 --augment none --seed 11 --out out",
        "",
    );
    let reference = run_watched(&a, &args, train_progress);
    let resume = with_resume(&args);
    let log = kill_and_resume(
        &b,
        &args,
        &resume,
        &reference,
        train_progress,
        0xC0FFEE,
        &|out| {
            add_checkpoint_debris(
                &out.join("checkpoint"),
                "checkpoint.json",
                "checkpoint-epoch",
            )
        },
    );
    assert!(!log.killed_at.is_empty(), "no attempt was killed");
    eprintln!("killed at units {:?} of {}", log.killed_at, reference.units);
    assert!(log.files_checked > 0);
    let files = assert_same_artefacts(
        &a.join("out"),
        &b.join("out"),
        &[
            ("model.json", TRAIN_TIMED),
            ("checkpoint/checkpoint.json", TRAIN_CKPT_TIMED),
        ],
    );
    // model.json, model.safetensors, checkpoint.json and one checkpoint tensors file
    assert_eq!(files, 4);

    // saving the model again (a resume of the finished run) on a full disk / into a
    // read-only directory fails on the model's weights, which stay as they were
    let needles = &[
        "cannot write out/model.safetensors",
        "any earlier version of the file is unchanged",
    ];
    fails_cleanly(
        &a,
        &resume,
        Obstacle::FileSizeLimit(64 << 10),
        &[needles[0], needles[1], "File too large"],
    );
    fails_cleanly(
        &a,
        &resume,
        Obstacle::ReadOnly,
        &[needles[0], needles[1], "Permission denied"],
    );
}

#[test]
fn grad_decompose_killed_and_resumed_ends_as_an_uninterrupted_run() {
    let model = tiny_model().to_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let args = command_line(
        "-q decompose --model MODEL --method grad --warmup-epochs 1 --epochs 2 --pattern-mask 1 --pattern-head 1 --limit 128 --seed 5 --out out",
        &model,
    );
    let reference = run_watched(&a, &args, grad_progress);
    let resume = with_resume(&args);
    let log = kill_and_resume(
        &b,
        &args,
        &resume,
        &reference,
        grad_progress,
        0xBEEF,
        &|out| add_checkpoint_debris(&out.join("checkpoint"), "gradsplit.json", "gradsplit-epoch"),
    );
    assert!(!log.killed_at.is_empty(), "no attempt was killed");
    eprintln!("killed at units {:?} of {}", log.killed_at, reference.units);
    let files = assert_same_artefacts(
        &a.join("out"),
        &b.join("out"),
        &[
            ("decomposition.json", GRAD_TIMED),
            ("checkpoint/gradsplit.json", GRAD_CKPT_TIMED),
        ],
    );
    // 10 modules × 2 files, the run record, the checkpoint's JSON and tensors
    assert_eq!(files, 23);

    // one epoch more on a full disk / into a read-only directory: the new checkpoint cannot
    // be written, and the modules, record and old checkpoint stay as they were
    let longer = with_value(&resume, "--epochs", "3");
    let needle = "cannot write out/checkpoint/gradsplit-epoch4.safetensors";
    fails_cleanly(
        &a,
        &longer,
        Obstacle::FileSizeLimit(16 << 10),
        &[needle, "File too large"],
    );
    fails_cleanly(
        &a,
        &longer,
        Obstacle::ReadOnly,
        &[needle, "Permission denied"],
    );
}

#[test]
fn ga_decompose_killed_and_resumed_ends_as_an_uninterrupted_run() {
    let model = tiny_model().to_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let args = command_line(
        "-q decompose --model MODEL --method ga --generations 3 --population 4 --parents 2 --keep 2 --fitness-images 60 --seed 9 --out out",
        &model,
    );
    let reference = run_watched(&a, &args, ga_progress);
    let resume = with_resume(&args);
    let log = kill_and_resume(
        &b,
        &args,
        &resume,
        &reference,
        ga_progress,
        0xFACADE,
        &|out| {
            // a half-written temp file of the next state
            let ckpt = out.join("checkpoint");
            if let Ok(text) = std::fs::read(ckpt.join("ga_state.json")) {
                std::fs::write(
                    ckpt.join(".ga_state.json.tmp-4000000"),
                    &text[..text.len() / 3],
                )
                .unwrap();
            }
        },
    );
    assert!(!log.killed_at.is_empty(), "no attempt was killed");
    eprintln!("killed at units {:?} of {}", log.killed_at, reference.units);
    let files = assert_same_artefacts(
        &a.join("out"),
        &b.join("out"),
        &[
            ("decomposition.json", GA_TIMED),
            ("checkpoint/ga_state.json", GA_STATE_TIMED),
        ],
    );
    // 10 modules × 2 files, the run record, the prelude and the state
    assert_eq!(files, 23);

    // writing the modules again (a resume of the finished run; a finished GA cannot be
    // extended) on a full disk / into a read-only directory fails on the first module
    let needle = "cannot write out/module_0/module.safetensors";
    fails_cleanly(
        &a,
        &resume,
        Obstacle::FileSizeLimit(1 << 10),
        &[needle, "File too large"],
    );
    fails_cleanly(
        &a,
        &resume,
        Obstacle::ReadOnly,
        &[needle, "Permission denied"],
    );
}
