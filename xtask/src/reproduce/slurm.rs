//! `--executor slurm`: every step that has no record becomes one `sbatch` job that runs
//! `cargo xtask reproduce --run-step <id>` (so a job writes the same record, resumes the same
//! way and refuses the same collapsed patches as the local executor), chained with
//! `--dependency=afterok:` along the step graph, plus a last job that writes the report.
//!
//! Files, all under `<out>/work/slurm/` (the `--out` folder must be shared with the nodes):
//! `<step>.sh` (the batch script), `logs/<step>-<job id>.log` (its output), `jobs/<step>.json`
//! (the job record: job id, script, log, the job ids it waits for) and, with `--dry-run`,
//! `submit.sh` (the submission order as a script). A rerun submits only the steps without a
//! record whose job is not queued or running, so a failed, cancelled or lost job is submitted
//! again and a queued one never twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::plan::Step;
use super::{absolute, build_cnnsplit, data_dir, release_cnnsplit, ReproduceArgs};

/// Resources and options of the Slurm jobs.
#[derive(clap::Args, Debug, Clone)]
pub struct SlurmArgs {
    /// Slurm executor: partition of every job (`--partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm executor: account the jobs are charged to (`--account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Slurm executor: one more `#SBATCH` option for every job, e.g.
    /// `--sbatch-arg=--qos=long` (repeatable).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Slurm executor: GPUs per step (`--gres=gpu:N`); cnnsplit then runs with `--device cuda`.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub gpus_per_step: u32,
    /// Slurm executor: CPUs per step (`--cpus-per-task`; cnnsplit runs as many threads).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub cpus_per_step: u32,
    /// Slurm executor: memory per step (`--mem`, Slurm's units: `8G`, `500M`).
    #[arg(long, default_value = "8G", value_name = "SIZE")]
    pub mem_per_step: String,
    /// Slurm executor: a job's time limit is its step's estimate (for a 2-core CPU) times this
    /// factor, at least 10 minutes.
    #[arg(long, default_value_t = 3.0, value_name = "F")]
    pub time_factor: f64,
}

/// Format tag of a job record.
const JOB_FORMAT: &str = "cnnsplit-reproduce-job";
/// The job-record version this build writes and reads.
const JOB_FORMAT_VERSION: u32 = 1;
/// The id of the report job in `jobs/` (no plan step has it).
const REPORT_JOB: &str = "report";

/// Slurm states of a job that is still waiting or running (`squeue`'s long names).
const LIVE: &[&str] = &[
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
];

fn slurm_dir(work: &Path) -> PathBuf {
    work.join("slurm")
}

fn job_record_path(work: &Path, id: &str) -> PathBuf {
    slurm_dir(work).join("jobs").join(format!("{id}.json"))
}

/// A job record: which job runs (or ran) a step, and where its log goes.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// Slurm job id.
    pub job_id: String,
    /// Slurm job name (`cnnsplit-<preset>-<step>`): a queued job with the same id but another
    /// name (a restarted cluster reuses ids) is not this one.
    pub name: String,
    /// The job's log file.
    pub log: PathBuf,
}

fn read_job(work: &Path, id: &str) -> Result<Option<JobRecord>> {
    let p = job_record_path(work, id);
    if !p.exists() {
        return Ok(None);
    }
    let v = cnn_models::files::read_versioned_json(
        &p,
        JOB_FORMAT,
        JOB_FORMAT_VERSION,
        "reproduce Slurm job record",
    )?;
    let (Some(job), Some(log)) = (v["job_id"].as_str(), v["log"].as_str()) else {
        bail!("{}: the job record lacks `job_id` or `log`", p.display());
    };
    Ok(Some(JobRecord {
        job_id: job.to_string(),
        name: v["job_name"].as_str().unwrap_or_default().to_string(),
        log: PathBuf::from(log),
    }))
}

/// Single-quote `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Run a Slurm command and return its standard output; an error names the command, its
/// message, and what to check.
fn slurm_cmd(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("running `{program}`: is Slurm installed here (e.g. `cargo xtask cluster up`)?")
    })?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The jobs of this user in the queue: job id → (state, job name).
fn queue() -> Result<HashMap<String, (String, String)>> {
    let text = slurm_cmd("squeue", &["--me", "--noheader", "--format=%i|%T|%j"])?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '|').map(str::trim);
            let (id, st, name) = (f.next()?, f.next()?, f.next()?);
            Some((id.to_string(), (st.to_string(), name.to_string())))
        })
        .collect())
}

/// The Slurm job name of a step's (or the report's) job.
fn job_name(preset: &str, id: &str) -> String {
    format!("cnnsplit-{preset}-{id}")
}

/// The final Slurm state of an ended job (`scontrol`, then `sacct`), if Slurm still knows it.
fn ended_state(job_id: &str) -> Option<String> {
    if let Ok(text) = slurm_cmd("scontrol", &["show", "job", job_id, "--oneliner"]) {
        if let Some(state) = text
            .split_whitespace()
            .find_map(|f| f.strip_prefix("JobState="))
        {
            return Some(state.to_string());
        }
    }
    let text = slurm_cmd(
        "sacct",
        &[
            "--noheader",
            "--allocations",
            "--parsable2",
            "--format=State",
            "--jobs",
            job_id,
        ],
    )
    .ok()?;
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Where a step stands.
#[derive(Clone, Debug, PartialEq)]
pub enum StepState {
    /// Its record exists (the job that wrote it, if one did).
    Done(Option<String>),
    /// Its job waits in the queue.
    Queued(JobRecord),
    /// Its job runs.
    Running(JobRecord),
    /// Its job ended without a record after it started (the Slurm state if known).
    Failed(JobRecord, Option<String>),
    /// Its job ended without ever starting (a dependency failed, or it was cancelled while
    /// queued).
    Cancelled(JobRecord, Option<String>),
    /// No record and no job.
    NotSubmitted,
}

impl StepState {
    /// The word `--status` prints.
    pub fn word(&self) -> &'static str {
        match self {
            StepState::Done(_) => "done",
            StepState::Queued(_) => "queued",
            StepState::Running(_) => "running",
            StepState::Failed(..) => "failed",
            StepState::Cancelled(..) => "cancelled",
            StepState::NotSubmitted => "not submitted",
        }
    }

    /// Whether its job is queued or running.
    fn live_job(&self) -> Option<&JobRecord> {
        match self {
            StepState::Queued(j) | StepState::Running(j) => Some(j),
            _ => None,
        }
    }
}

/// The state of `id` from its record, its job record and the queue (`queue` is asked only
/// when a job record exists).
fn state_of(
    work: &Path,
    id: &str,
    queue: &mut Option<HashMap<String, (String, String)>>,
) -> Result<StepState> {
    let record = work.join("records").join(format!("{id}.json"));
    if record.exists() {
        let v: Value = super::read_record(&record)?;
        return Ok(StepState::Done(
            v["slurm_job_id"].as_str().map(str::to_string),
        ));
    }
    let Some(job) = read_job(work, id)? else {
        return Ok(StepState::NotSubmitted);
    };
    if queue.is_none() {
        *queue = Some(queue_or_explain()?);
    }
    let q = queue
        .as_ref()
        .and_then(|q| q.get(&job.job_id))
        .filter(|(_, name)| job.name.is_empty() || *name == job.name)
        .map(|(st, _)| st.clone());
    Ok(match q {
        Some(st) if st == "PENDING" || st == "REQUEUED" || st == "REQUEUE_HOLD" => {
            StepState::Queued(job)
        }
        Some(st) if LIVE.contains(&st.as_str()) => StepState::Running(job),
        _ => {
            let st = ended_state(&job.job_id);
            if id == REPORT_JOB && st.as_deref() == Some("COMPLETED") {
                // the report job writes no step record; Slurm's word is its record
                StepState::Done(Some(job.job_id))
            } else if job.log.exists() {
                StepState::Failed(job, st)
            } else {
                StepState::Cancelled(job, st)
            }
        }
    })
}

/// `queue()`, with a hint when Slurm does not answer.
fn queue_or_explain() -> Result<HashMap<String, (String, String)>> {
    queue().context(
        "asking Slurm which jobs are queued (job records exist in <out>/work/slurm/jobs/); set SLURM_CONF or run where the cluster's commands work",
    )
}

/// Every step's state, in plan order.
pub fn step_states(work: &Path, steps: &[Step]) -> Result<Vec<(String, StepState)>> {
    let mut queue = None;
    let mut out = Vec::new();
    for s in steps {
        out.push((s.id.clone(), state_of(work, &s.id, &mut queue)?));
    }
    if read_job(work, REPORT_JOB)?.is_some() {
        out.push((
            REPORT_JOB.to_string(),
            state_of(work, REPORT_JOB, &mut queue)?,
        ));
    }
    Ok(out)
}

/// The `--status` table: step, state, job id, and the log of a failed job; then the counts.
pub fn status_text(states: &[(String, StepState)]) -> String {
    let mut out = String::new();
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (id, st) in states {
        let (job, detail) = match st {
            StepState::Done(job) => (job.clone().unwrap_or_else(|| "-".into()), String::new()),
            StepState::Queued(j) | StepState::Running(j) => (j.job_id.clone(), String::new()),
            StepState::Failed(j, s) => (
                j.job_id.clone(),
                format!(
                    "{}log {}",
                    s.as_ref().map(|s| format!("{s}; ")).unwrap_or_default(),
                    j.log.display()
                ),
            ),
            StepState::Cancelled(j, s) => (
                j.job_id.clone(),
                format!(
                    "{}never started (a step it reads failed, or the job was cancelled while queued)",
                    s.as_ref().map(|s| format!("{s}; ")).unwrap_or_default()
                ),
            ),
            StepState::NotSubmitted => ("-".into(), String::new()),
        };
        out.push_str(format!("{id:<40} {:<13} {job:<10} {detail}", st.word()).trim_end());
        out.push('\n');
        if id != REPORT_JOB {
            match counts.iter_mut().find(|(w, _)| *w == st.word()) {
                Some((_, n)) => *n += 1,
                None => counts.push((st.word(), 1)),
            }
        }
    }
    let summary: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    out.push_str(&format!("steps: {}\n", summary.join(", ")));
    out
}

/// What every job of one submission shares.
struct Jobs<'a> {
    args: &'a SlurmArgs,
    /// The xtask binary the jobs run (must be reachable from the nodes).
    xtask: PathBuf,
    preset: &'static str,
    out: PathBuf,
    cnnsplit: PathBuf,
    device: String,
    data_dir: PathBuf,
    only: Vec<String>,
}

impl Jobs<'_> {
    /// The batch script of `step` (or of the report job when `step` is `None`).
    fn script(&self, id: &str, step: Option<&Step>, log: &Path) -> String {
        let a = self.args;
        let minutes = step.map_or(10.0, |s| {
            (s.estimate_s * a.time_factor / 60.0).ceil().max(10.0)
        }) as u64;
        let mut s = String::from("#!/bin/bash\n");
        let mut opt = |o: String| s.push_str(&format!("#SBATCH {o}\n"));
        opt(format!("--job-name={}", job_name(self.preset, id)));
        opt(format!("--output={}", log.display()));
        opt(format!(
            "--cpus-per-task={}",
            if step.is_some() { a.cpus_per_step } else { 1 }
        ));
        opt(format!("--mem={}", a.mem_per_step));
        opt(format!("--time={minutes}"));
        opt("--kill-on-invalid-dep=yes".into());
        if let Some(p) = &a.partition {
            opt(format!("--partition={p}"));
        }
        if let Some(acc) = &a.account {
            opt(format!("--account={acc}"));
        }
        if a.gpus_per_step > 0 && step.is_some() {
            opt(format!("--gres=gpu:{}", a.gpus_per_step));
        }
        for extra in &a.sbatch_args {
            opt(extra.clone());
        }
        match step {
            Some(st) => {
                s.push_str(&format!(
                    "# step {id} of preset {}: cnnsplit {}\n# reads the outputs of: {}\n# estimate {:.0} s on a 2-core CPU\n",
                    self.preset,
                    st.args.join(" "),
                    if st.deps.is_empty() { "-".to_string() } else { st.deps.join(", ") },
                    st.estimate_s
                ));
            }
            None => s.push_str(&format!(
                "# the report of preset {} from the step records\n",
                self.preset
            )),
        }
        s.push_str("set -eu\n");
        s.push_str(&format!(
            "export CNNSPLIT_DATA_DIR={}\n",
            sh_quote(&self.data_dir.to_string_lossy())
        ));
        s.push_str("export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n");
        let mut cmd = vec![
            sh_quote(&self.xtask.to_string_lossy()),
            "reproduce".into(),
            "--preset".into(),
            self.preset.into(),
            "--out".into(),
            sh_quote(&self.out.to_string_lossy()),
        ];
        match step {
            Some(_) => cmd.extend([
                "--cnnsplit".into(),
                sh_quote(&self.cnnsplit.to_string_lossy()),
                "--device".into(),
                sh_quote(&self.device),
                "--run-step".into(),
                sh_quote(id),
            ]),
            None => {
                cmd.push("--report-only".into());
                if !self.only.is_empty() {
                    cmd.push("--only".into());
                    cmd.push(sh_quote(&self.only.join(",")));
                }
            }
        }
        s.push_str(&format!("exec {}\n", cmd.join(" ")));
        s
    }
}

/// One job to submit: its id, script, and the ids of the jobs (submitted or already live) it
/// waits for.
struct Planned {
    id: String,
    script: PathBuf,
    log_pattern: PathBuf,
    after: Vec<usize>,
    /// Ids of jobs queued or running before this submission that it waits for.
    live_after: Vec<String>,
}

/// A job id as the submission knows it: a live job's id or one submitted in this run (by its
/// index in the submission list).
#[derive(Clone, Debug)]
enum JobRef {
    Live(String),
    New(usize),
}

/// `--executor slurm`: write the scripts, submit (or with `--dry-run` write `submit.sh`), and
/// with `--wait` wait for the jobs. Returns whether the caller should write the report now
/// (every step recorded).
pub fn submit_and_wait(a: &ReproduceArgs, tree: &Path, out: &Path, steps: &[Step]) -> Result<bool> {
    let work = out.join("work");
    let dir = slurm_dir(&work);
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating {}", dir.join("logs").display()))?;
    let device = if a.slurm.gpus_per_step > 0 {
        match a.device.as_str() {
            "auto" | "cuda" => "cuda".to_string(),
            other => bail!("--gpus-per-step {} with --device {other}: the GPUs would sit idle; drop one of them", a.slurm.gpus_per_step),
        }
    } else {
        a.device.clone()
    };
    let cnnsplit = match (&a.cnnsplit, a.dry_run) {
        (Some(b), _) => b.clone(),
        (None, true) => release_cnnsplit(tree),
        (None, false) => build_cnnsplit(tree)?,
    };
    let jobs = Jobs {
        args: &a.slurm,
        xtask: std::env::current_exe().context("locating the xtask binary")?,
        preset: a.preset.name(),
        out: out.to_path_buf(),
        cnnsplit: absolute(&cnnsplit)?,
        device,
        data_dir: absolute(&data_dir(tree))?,
        only: a.only.clone(),
    };
    let states = step_states(&work, steps)?;
    let state: HashMap<&str, &StepState> = states.iter().map(|(id, s)| (id.as_str(), s)).collect();
    let mut refs: HashMap<String, JobRef> = HashMap::new();
    let mut planned: Vec<Planned> = Vec::new();
    let mut live = 0;
    for s in steps {
        match state.get(s.id.as_str()) {
            Some(StepState::Done(_)) => continue,
            Some(st) if st.live_job().is_some() => {
                let j = st.live_job().map(|j| j.job_id.clone()).unwrap_or_default();
                eprintln!("{}: job {j} is {}, not submitted again", s.id, st.word());
                refs.insert(s.id.clone(), JobRef::Live(j));
                live += 1;
                continue;
            }
            _ => {}
        }
        let mut after = Vec::new();
        let mut live_after = Vec::new();
        for d in &s.deps {
            match refs.get(d) {
                Some(JobRef::New(i)) => after.push(*i),
                Some(JobRef::Live(j)) => live_after.push(j.clone()),
                None => {}
            }
        }
        let log_pattern = dir.join("logs").join(format!("{}-%j.log", s.id));
        let script = dir.join(format!("{}.sh", s.id));
        cnn_models::files::atomic_write(
            &script,
            jobs.script(&s.id, Some(s), &log_pattern).as_bytes(),
        )?;
        refs.insert(s.id.clone(), JobRef::New(planned.len()));
        planned.push(Planned {
            id: s.id.clone(),
            script,
            log_pattern,
            after,
            live_after,
        });
    }
    if planned.is_empty() && live == 0 {
        eprintln!("every step is recorded: nothing to submit");
        return Ok(true);
    }
    // the report job waits for every step job of this submission and the live ones
    let report_live = state.get(REPORT_JOB).and_then(|st| st.live_job().cloned());
    if planned.is_empty() && report_live.is_some() {
        eprintln!("nothing to submit: {live} step job(s) and the report job are queued or running");
    } else {
        let log_pattern = dir.join("logs").join(format!("{REPORT_JOB}-%j.log"));
        let script = dir.join(format!("{REPORT_JOB}.sh"));
        cnn_models::files::atomic_write(
            &script,
            jobs.script(REPORT_JOB, None, &log_pattern).as_bytes(),
        )?;
        let idx = planned.len();
        let live_ids: Vec<String> = refs
            .values()
            .filter_map(|r| match r {
                JobRef::Live(j) => Some(j.clone()),
                JobRef::New(_) => None,
            })
            .collect();
        planned.push(Planned {
            id: REPORT_JOB.into(),
            script,
            log_pattern,
            after: (0..idx).collect(),
            live_after: live_ids,
        });
    }
    if a.dry_run {
        let text = submit_script(&planned);
        let path = dir.join("submit.sh");
        cnn_models::files::atomic_write(&path, text.as_bytes())?;
        print!("{text}");
        eprintln!(
            "dry run: {} job(s) would be submitted ({} step(s) already queued or running); scripts and {} written, nothing submitted",
            planned.len(),
            live,
            path.display()
        );
        return Ok(false);
    }
    let mut ids: Vec<String> = Vec::new();
    for p in &planned {
        let mut deps: Vec<String> = p.after.iter().map(|&k| ids[k].clone()).collect();
        deps.extend(p.live_after.iter().cloned());
        let mut args: Vec<String> = vec!["--parsable".into()];
        if !deps.is_empty() {
            args.push(format!("--dependency=afterok:{}", deps.join(":")));
        }
        args.push(p.script.to_string_lossy().into_owned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = slurm_cmd("sbatch", &argv)
            .with_context(|| format!("submitting step `{}` ({})", p.id, p.script.display()))?;
        let job = text
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        if job.is_empty() || !job.chars().all(|c| c.is_ascii_digit() || c == '_') {
            bail!(
                "sbatch answered `{}` for step `{}`: no job id",
                text.trim(),
                p.id
            );
        }
        let log = PathBuf::from(p.log_pattern.to_string_lossy().replace("%j", &job));
        let record = json!({
            "format": JOB_FORMAT, "format_version": JOB_FORMAT_VERSION,
            "step": p.id, "job_id": job, "job_name": job_name(a.preset.name(), &p.id),
            "script": p.script, "log": log,
            "after": deps, "submitted_unix": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        });
        cnn_models::files::atomic_write(
            &job_record_path(&work, &p.id),
            &serde_json::to_vec_pretty(&record)?,
        )?;
        eprintln!(
            "submitted {} as job {job}{}",
            p.id,
            if deps.is_empty() {
                String::new()
            } else {
                format!(" (after {})", deps.join(", "))
            }
        );
        ids.push(job);
    }
    println!(
        "submitted {} job(s), {} step(s) already queued or running; `cargo xtask reproduce --preset {} --out {} --status` shows where they stand",
        ids.len(),
        live,
        a.preset.name(),
        out.display()
    );
    if !a.wait {
        return Ok(false);
    }
    wait_for_jobs(&work, steps)?;
    let states = step_states(&work, steps)?;
    print!("{}", status_text(&states));
    let open: Vec<&str> = states
        .iter()
        .filter(|(id, s)| id != REPORT_JOB && !matches!(s, StepState::Done(_)))
        .map(|(id, _)| id.as_str())
        .collect();
    if !open.is_empty() {
        bail!(
            "{} step(s) did not finish: {}; see the logs above, fix the cause and run again (only those are resubmitted)",
            open.len(),
            open.join(", ")
        );
    }
    Ok(true)
}

/// `submit.sh` of a dry run: the `sbatch` commands in submission order, each job's id kept in
/// a shell variable for the dependants.
fn submit_script(planned: &[Planned]) -> String {
    let var = |i: usize| format!("job_{i}");
    let mut s = String::from(
        "#!/bin/sh\n# written by `cargo xtask reproduce --executor slurm --dry-run`: the jobs in submission order\nset -eu\n",
    );
    for (i, p) in planned.iter().enumerate() {
        let mut deps: Vec<String> = p.after.iter().map(|&k| format!("${}", var(k))).collect();
        deps.extend(p.live_after.iter().cloned());
        let dep = if deps.is_empty() {
            String::new()
        } else {
            format!(" --dependency=afterok:{}", deps.join(":"))
        };
        s.push_str(&format!(
            "{}=$(sbatch --parsable{dep} {} | cut -d';' -f1)  # {}\n",
            var(i),
            sh_quote(&p.script.to_string_lossy()),
            p.id
        ));
    }
    s
}

/// Wait until no job of the steps (or the report) is queued or running.
fn wait_for_jobs(work: &Path, steps: &[Step]) -> Result<()> {
    let mut ids: Vec<String> = Vec::new();
    for s in steps.iter().map(|s| s.id.as_str()).chain([REPORT_JOB]) {
        if let Some(j) = read_job(work, s)? {
            ids.push(j.job_id);
        }
    }
    let t0 = Instant::now();
    let mut last_note = Instant::now();
    let mut misses = 0;
    loop {
        // a controller that is busy or restarting answers again within a minute or so
        let q = match queue() {
            Ok(q) => {
                misses = 0;
                q
            }
            Err(e) if misses < 10 => {
                misses += 1;
                eprintln!("squeue did not answer ({e:#}); asking again");
                std::thread::sleep(Duration::from_secs(6));
                continue;
            }
            Err(e) => return Err(e),
        };
        let waiting = ids
            .iter()
            .filter(|j| q.get(*j).is_some_and(|(s, _)| LIVE.contains(&s.as_str())))
            .count();
        if waiting == 0 {
            return Ok(());
        }
        if last_note.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "waiting for {waiting} job(s) ({:.0} min so far)",
                t0.elapsed().as_secs_f64() / 60.0
            );
            last_note = Instant::now();
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
