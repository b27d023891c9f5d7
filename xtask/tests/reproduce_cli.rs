//! `cargo xtask reproduce` options that need no cluster and run no cnnsplit step: the step
//! graph of `--plan`, and the batch scripts and submission order of `--executor slurm
//! --dry-run`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("reproduce")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "xtask failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Step id → the ids it reads from, as `--plan` prints them.
fn plan_graph(preset: &str, out: &Path) -> Vec<(String, Vec<String>)> {
    let text = stdout(&xtask(&["--preset", preset, "--plan"], out));
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let id = f.next()?.to_string();
            let needs = l.split("  needs ").nth(1)?.split_whitespace().next()?;
            let deps = if needs == "-" {
                Vec::new()
            } else {
                needs.split(',').map(str::to_string).collect()
            };
            Some((id, deps))
        })
        .collect()
}

#[test]
fn plan_prints_the_graph_the_critical_path_and_the_wall_time_on_k_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let graph = plan_graph("smoke", tmp.path());
    let deps: HashMap<&str, &Vec<String>> = graph.iter().map(|(i, d)| (i.as_str(), d)).collect();
    assert_eq!(
        deps["decompose-grad-simcnn-est1"],
        &vec!["train-simcnn-est1".to_string()]
    );
    assert!(deps["train-weak"].is_empty());
    let wall = |k: &str| -> String {
        let text = stdout(&xtask(
            &["--preset", "paper", "--plan", "--workers", k],
            tmp.path(),
        ));
        let cp = text
            .lines()
            .find(|l| l.starts_with("critical path"))
            .unwrap();
        assert!(
            cp.contains("train-simcnn-strong -> decompose-ga-simcnn-strong"),
            "{cp}"
        );
        text.lines()
            .find(|l| l.starts_with(&format!("wall time on {k} worker")))
            .unwrap_or_else(|| panic!("no wall time line:\n{text}"))
            .rsplit("about ")
            .next()
            .unwrap()
            .to_string()
    };
    // one worker runs everything in turn; fifty are held up by the critical path only
    assert_ne!(wall("1"), wall("50"));
}

#[test]
fn slurm_dry_run_writes_scripts_with_resources_and_afterok_edges_and_submits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let graph = plan_graph("smoke", &out);
    let o = xtask(
        &[
            "--preset",
            "smoke",
            "--executor",
            "slurm",
            "--dry-run",
            "--cnnsplit",
            "/shared/bin/cnnsplit",
            "--partition",
            "gpu",
            "--account",
            "proj42",
            "--sbatch-arg=--qos=long",
            "--gpus-per-step",
            "1",
            "--cpus-per-step",
            "4",
            "--mem-per-step",
            "16G",
        ],
        &out,
    );
    let printed = stdout(&o);
    let slurm = out.join("work/slurm");
    let submit = std::fs::read_to_string(slurm.join("submit.sh")).unwrap();
    assert_eq!(printed, submit);
    // one sbatch line per step, then the report: `job_N=$(sbatch … 'DIR/ID.sh' …)  # ID`
    let lines: Vec<&str> = submit.lines().filter(|l| l.starts_with("job_")).collect();
    assert_eq!(lines.len(), graph.len() + 1);
    let mut var_of: HashMap<String, String> = HashMap::new();
    for (line, (id, deps)) in lines.iter().zip(&graph) {
        assert!(line.ends_with(&format!("# {id}")), "{line} is not {id}");
        let var = line.split('=').next().unwrap().to_string();
        let mut after: Vec<String> = line
            .split("--dependency=afterok:")
            .nth(1)
            .map(|d| {
                d.split_whitespace()
                    .next()
                    .unwrap()
                    .split(':')
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut want: Vec<String> = deps.iter().map(|d| format!("${}", var_of[d])).collect();
        after.sort();
        want.sort();
        assert_eq!(
            after, want,
            "{id}: its jobs must wait for exactly the steps it reads"
        );
        var_of.insert(id.clone(), var);
        let script = std::fs::read_to_string(slurm.join(format!("{id}.sh"))).unwrap();
        for want in [
            "#SBATCH --partition=gpu",
            "#SBATCH --account=proj42",
            "#SBATCH --qos=long",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=16G",
            "#SBATCH --kill-on-invalid-dep=yes",
            "--cnnsplit '/shared/bin/cnnsplit' --device 'cuda'",
            &format!("--run-step '{id}'"),
            &format!("#SBATCH --output={}/logs/{id}-%j.log", slurm.display()),
        ] {
            assert!(script.contains(want), "{id}.sh lacks `{want}`:\n{script}");
        }
        let minutes: u64 = script
            .lines()
            .find_map(|l| l.strip_prefix("#SBATCH --time="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(minutes >= 10, "{id}: --time={minutes}");
    }
    let report = lines.last().unwrap();
    assert!(report.ends_with("# report"), "{report}");
    assert_eq!(
        report.matches("$job_").count(),
        graph.len(),
        "the report waits for every step: {report}"
    );
    // nothing was submitted: no job records, no status but "not submitted"
    assert!(!slurm.join("jobs").exists());
    let status = stdout(&xtask(&["--preset", "smoke", "--status"], &out));
    assert!(
        status.contains(&format!("steps: {} not submitted", graph.len())),
        "{status}"
    );
    // GPUs with a CPU device would sit idle: refused with a reason
    let o = xtask(
        &[
            "--preset",
            "smoke",
            "--executor",
            "slurm",
            "--dry-run",
            "--gpus-per-step",
            "1",
            "--device",
            "cpu",
        ],
        &out,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--gpus-per-step 1 with --device cpu"));
}
