//! `cargo xtask cluster up|down`: a single-node Slurm on this machine, for the tests of
//! `reproduce --executor slurm` and for trying it out.
//!
//! `up` installs Debian's `slurm-wlm` and `munge` when they are missing (as root, `apt-get`),
//! writes a configuration under `target/slurm/` of the source tree (its own munge key and
//! socket, state, spool and logs; the node has this machine's CPUs and 90 % of its memory),
//! starts `munged`, `slurmctld` and `slurmd` in the foreground of their own process groups,
//! keeps their pids in `target/slurm/daemons.json`, waits until the node is idle and prints
//! `export SLURM_CONF=…` as its last line. `down` stops exactly those pids (after checking that
//! each still runs the daemon it started). The daemons, and so the jobs, run at the niceness
//! `up` runs at (Slurm's default `PropagatePrioProcess=0`): `nice -n 19 cargo xtask cluster up`
//! gives jobs that only take idle CPU.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

/// The folder of the cluster's configuration, state and logs.
fn cluster_dir() -> PathBuf {
    crate::reproduce::source_tree().join("target").join("slurm")
}

/// Whether `program` can be started (it is on the PATH).
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Install `slurm-wlm` and `munge` with apt-get unless every program is there.
fn ensure_installed() -> Result<()> {
    let needed = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo"];
    let missing: Vec<&str> = needed.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u`")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!(
            "{} not found; install them as root: `apt-get install -y slurm-wlm munge`",
            missing.join(", ")
        );
    }
    eprintln!(
        "{} not found: apt-get install -y slurm-wlm munge",
        missing.join(", ")
    );
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "slurm-wlm",
                "munge",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install().context("running apt-get")?.success() {
        let updated = Command::new("apt-get")
            .arg("update")
            .status()
            .context("running apt-get update")?;
        if !updated.success() || !install().context("running apt-get")?.success() {
            bail!("apt-get install -y slurm-wlm munge failed (see its output above)");
        }
    }
    Ok(())
}

/// Short host name (Slurm's node name).
fn host_name() -> Result<String> {
    let out = Command::new("hostname")
        .arg("-s")
        .output()
        .context("running `hostname -s`")?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if name.is_empty() {
        bail!("`hostname -s` printed nothing; Slurm needs the node's name");
    }
    Ok(name)
}

/// Megabytes Slurm may give jobs: 90 % of MemTotal.
fn node_memory_mb() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("/proc/meminfo has no MemTotal")?;
    Ok(kb / 1024 * 9 / 10)
}

/// The `slurm.conf` of the single-node cluster in `dir`.
fn slurm_conf(dir: &Path, host: &str, cpus: usize, memory_mb: u64) -> String {
    let d = dir.display();
    format!(
        "# written by `cargo xtask cluster up`: a single-node Slurm for cnnsplit's tests
ClusterName=cnnsplit
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"
    )
}

/// Pids of the daemons `up` started, from `daemons.json`.
fn read_pids(dir: &Path) -> Result<Vec<(String, u32)>> {
    let path = dir.join("daemons.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{}: not JSON", path.display()))?;
    Ok(v["daemons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| Some((d["name"].as_str()?.to_string(), d["pid"].as_u64()? as u32)))
                .collect()
        })
        .unwrap_or_default())
}

fn write_pids(dir: &Path, pids: &[(String, u32)]) -> Result<()> {
    let list: Vec<_> = pids
        .iter()
        .map(|(n, p)| json!({"name": n, "pid": p}))
        .collect();
    Ok(cnn_models::files::atomic_write(
        &dir.join("daemons.json"),
        &serde_json::to_vec_pretty(&json!({"daemons": list}))?,
    )?)
}

/// Whether `pid` still runs the program `name` (a pid reused by another program is not ours,
/// and a zombie waiting for its parent no longer runs).
fn runs(pid: u32, name: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state …"; comm may hold spaces and parentheses, so split at the last ')'
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let state = stat[close + 1..].trim_start().chars().next();
    &stat[open + 1..close] == name && !matches!(state, Some('Z') | Some('X'))
}

/// Start `program` with `args` in its own process group, output to `log`; returns its pid.
fn spawn(program: &str, args: &[&str], log: &Path, conf: &Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(program)
        .args(args)
        .env("SLURM_CONF", conf)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    Ok(child.id())
}

/// Wait until `ok()` holds, up to `secs`; the error names what was awaited and the log to read.
fn wait_until(secs: u64, what: &str, log: &Path, mut ok: impl FnMut() -> bool) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!(
        "{what} did not happen within {secs} s; see {}",
        log.display()
    )
}

/// `cargo xtask cluster up`.
pub fn up() -> Result<()> {
    ensure_installed()?;
    let dir = cluster_dir();
    let conf = dir.join("slurm.conf");
    let running = read_pids(&dir)?;
    if !running.is_empty() && running.iter().all(|(n, p)| runs(*p, n)) {
        eprintln!(
            "the cluster is already up (pids in {})",
            dir.join("daemons.json").display()
        );
        println!("export SLURM_CONF={}", conf.display());
        return Ok(());
    }
    if running.iter().any(|(n, p)| runs(*p, n)) {
        bail!(
            "some daemons of an earlier `cluster up` still run ({}); run `cargo xtask cluster down` first",
            dir.join("daemons.json").display()
        );
    }
    for sub in ["state", "spool", "log", "munge"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    use std::os::unix::fs::PermissionsExt;
    let munge = dir.join("munge");
    std::fs::set_permissions(&munge, std::fs::Permissions::from_mode(0o700))?;
    let key = munge.join("munge.key");
    if !key.exists() {
        let mut bytes = vec![0u8; 1024];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("reading /dev/urandom for the munge key")?;
        std::fs::write(&key, &bytes).with_context(|| format!("writing {}", key.display()))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400))?;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::fs::write(
        &conf,
        slurm_conf(&dir, &host_name()?, cpus, node_memory_mb()?),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let log = dir.join("log");
    let socket = munge.join("munge.socket");
    let mut pids: Vec<(String, u32)> = Vec::new();
    let key_arg = format!("--key-file={}", key.display());
    let socket_arg = format!("--socket={}", socket.display());
    let pid_arg = format!("--pid-file={}", munge.join("munged.pid").display());
    let log_arg = format!("--log-file={}", log.join("munged.log").display());
    let seed_arg = format!("--seed-file={}", munge.join("munged.seed").display());
    let conf_s = conf.to_string_lossy().into_owned();
    let starts: [(&str, Vec<&str>); 3] = [
        (
            "munged",
            vec![
                "--foreground",
                "--force",
                &key_arg,
                &socket_arg,
                &pid_arg,
                &log_arg,
                &seed_arg,
            ],
        ),
        ("slurmctld", vec!["-D", "-f", &conf_s]),
        ("slurmd", vec!["-D", "-f", &conf_s]),
    ];
    for (name, args) in starts.iter() {
        let out = log.join(format!("{name}.out"));
        let pid = spawn(name, args, &out, &conf)?;
        pids.push((name.to_string(), pid));
        write_pids(&dir, &pids)?;
        eprintln!("started {name} (pid {pid}, output {})", out.display());
        if *name == "munged" {
            wait_until(20, "munged creating its socket", &out, || socket.exists())?;
        }
        std::thread::sleep(Duration::from_millis(500));
        if !runs(pid, name) {
            bail!("{name} exited right after starting; see {}", out.display());
        }
    }
    let sinfo_state = || {
        Command::new("sinfo")
            .args(["--noheader", "--Node", "--format=%T"])
            .env("SLURM_CONF", &conf)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    wait_until(
        90,
        "the node becoming idle",
        &log.join("slurmctld.log"),
        || {
            let st = sinfo_state();
            if st.starts_with("down") || st.starts_with("drain") {
                // a node left down by an earlier run: take it back
                let _ = Command::new("scontrol")
                    .args([
                        "update",
                        &format!("nodename={}", host_name().unwrap_or_default()),
                        "state=resume",
                    ])
                    .env("SLURM_CONF", &conf)
                    .output();
            }
            st == "idle" || st == "mixed" || st == "allocated"
        },
    )?;
    eprintln!("single-node Slurm up: {cpus} CPUs; stop it with `cargo xtask cluster down`");
    println!("export SLURM_CONF={}", conf.display());
    Ok(())
}

/// `cargo xtask cluster down`.
pub fn down() -> Result<()> {
    let dir = cluster_dir();
    let pids = read_pids(&dir)?;
    if pids.is_empty() {
        eprintln!(
            "no cluster of ours is up ({} is absent)",
            dir.join("daemons.json").display()
        );
        return Ok(());
    }
    for (name, pid) in pids.iter().rev() {
        if !runs(*pid, name) {
            eprintln!("{name} (pid {pid}) no longer runs");
            continue;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let gone = wait_until(
            20,
            &format!("{name} (pid {pid}) stopping"),
            &dir.join("log"),
            || !runs(*pid, name),
        );
        if gone.is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(500));
        }
        if runs(*pid, name) {
            bail!("{name} (pid {pid}) still runs after SIGKILL");
        }
        eprintln!("stopped {name} (pid {pid})");
    }
    std::fs::remove_file(dir.join("daemons.json"))
        .with_context(|| format!("removing {}", dir.join("daemons.json").display()))?;
    Ok(())
}
