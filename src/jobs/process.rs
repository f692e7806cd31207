//! Each scheduled run of `modobox run` happens in a process of its own (`modobox task exec
//! NAME`, the same executable), as Modoboa's cron jobs did. Why: a timeout really stops the
//! job (the process is killed, not just abandoned), a job that crashes or leaks cannot take
//! the supervisor with it, and the memory and code a job needs (DNS resolver, HTTPS client,
//! key generation, a first parse of months of mail log) is given back when it ends instead of
//! staying in the resident process. Locks and run records stay in the scheduler.
//!
//! The child prints one JSON line on standard output, `{"outcome": "ok", "message": "..."}`;
//! its log lines go to standard error, which is the supervisor's.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::scheduler::Runner;
use super::Outcome;

/// The most of a child's standard output that is read (its result is one short line).
const MAX_OUTPUT: u64 = 1 << 20;

/// What a job's process reports on its standard output.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecResult {
    pub outcome: Outcome,
    pub message: String,
}

/// How to start a job's process.
#[derive(Debug, Clone)]
pub struct JobCommand {
    /// The executable (`modobox run` uses /proc/self/exe: the very binary that runs, even
    /// after an upgrade replaced the file).
    pub program: PathBuf,
    /// Arguments before `task exec NAME` (the global options: --config, --distro, -v).
    pub args: Vec<OsString>,
    /// Extra environment (the database URL travels here, never in the arguments).
    pub envs: Vec<(String, String)>,
}

impl JobCommand {
    /// The command line of `modobox run` itself, for its jobs.
    pub fn this_executable(args: Vec<OsString>, envs: Vec<(String, String)>) -> Self {
        JobCommand {
            program: PathBuf::from("/proc/self/exe"),
            args,
            envs,
        }
    }
}

/// A runner that starts `program ARGS task exec NAME` for each run. Dropping the run's future
/// (timeout, shutdown) kills the process.
pub fn process_runner(cmd: JobCommand) -> Runner {
    let cmd = Arc::new(cmd);
    Arc::new(move |name: String| {
        let cmd = cmd.clone();
        Box::pin(async move { run_child(&cmd, &name).await })
    })
}

async fn run_child(cmd: &JobCommand, name: &str) -> (Outcome, String) {
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .args(["task", "exec", name])
        .envs(cmd.envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                Outcome::Failed,
                format!("starting the job's process {}: {e}", cmd.program.display()),
            )
        }
    };
    let mut out = Vec::new();
    let read = match child.stdout.take() {
        Some(stdout) => stdout.take(MAX_OUTPUT).read_to_end(&mut out).await.err(),
        None => None,
    };
    let status = match child.wait().await {
        Ok(s) => s,
        Err(e) => {
            return (
                Outcome::Failed,
                format!("waiting for the job's process: {e}"),
            )
        }
    };
    if let Some(e) = read {
        return (Outcome::Failed, format!("reading the job's result: {e}"));
    }
    let text = String::from_utf8_lossy(&out);
    let result = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<ExecResult>(l).ok());
    match result {
        Some(r) => (r.outcome, r.message),
        None => (Outcome::Failed, died(status)),
    }
}

/// Why a job's process ended without a result.
fn died(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => {
            format!("the job's process was killed by signal {sig} before it reported")
        }
        (Some(code), _) => format!("the job's process exited with code {code} without a result"),
        (None, None) => "the job's process ended without a result".into(),
    }
}
