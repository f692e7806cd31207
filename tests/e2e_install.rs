//! The end-to-end install test: `tests/e2e/install-test` with the freshly built binary, in a
//! throw-away Debian bookworm booted with real systemd (see tests/e2e/harness/README.md).
//! Skipped (with a note) when not root or without debootstrap, except under CI where it must run.
//!
//! The script's output is shown as it comes. When it fails, a scenario prints the journal of its
//! container last, which buries the line that says what failed: the panic message repeats the
//! lines printed just before that journal, and the host's free disk space.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// Lines of the script's own output kept in the failure message.
const CONTEXT_LINES: usize = 80;
const JOURNAL_MARKER: &str = "--- failed; journal of the container:";

#[test]
fn install_then_real_mail_then_zero_changes() {
    let ci = std::env::var_os("CI").is_some();
    let root = uzers::get_effective_uid() == 0;
    let tools = ["debootstrap", "slirp4netns"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !(root && tools) {
        assert!(
            !ci,
            "CI must run the e2e install test: needs root, debootstrap and slirp4netns"
        );
        eprintln!("skipped: the e2e install test needs root, debootstrap and slirp4netns");
        return;
    }
    // One stream for both outputs, in the order they were written.
    let mut child = Command::new("sh")
        .args(["-c", "exec \"$0\" \"$1\" 2>&1"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/e2e/install-test"
        ))
        .arg(env!("CARGO_BIN_EXE_modobox"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("running tests/e2e/install-test");
    let mut lines = Vec::new();
    let reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    for line in reader.split(b'\n') {
        let line =
            String::from_utf8_lossy(&line.expect("reading the script's output")).into_owned();
        // Straight to the process's stdout: the test harness captures only print!/println!, and
        // this output is wanted live (and in CI logs) whether the test passes or not.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        lines.push(line);
    }
    let status = child.wait().expect("waiting for tests/e2e/install-test");
    assert!(
        status.success(),
        "tests/e2e/install-test failed: {status}\n--- what the scenario printed last:\n{}\n--- free space on the host:\n{}",
        context_of_failure(&lines),
        free_space(),
    );
}

/// The last progress stamp (`[123 s] …`, `[upgrade 45 s] …`: how far it got) and the lines
/// printed before the first container journal (or the last lines when there is none).
fn context_of_failure(lines: &[String]) -> String {
    let end = lines
        .iter()
        .position(|l| l.starts_with(JOURNAL_MARKER))
        .unwrap_or(lines.len());
    let stamp = lines[..end]
        .iter()
        .rev()
        .find(|l| l.starts_with('[') && l.contains(" s] "))
        .map_or("(no stage reached)", String::as_str);
    format!(
        "last stage passed: {stamp}\n{}",
        lines[end.saturating_sub(CONTEXT_LINES)..end].join("\n")
    )
}

fn free_space() -> String {
    Command::new("df")
        .args(["-h", "/", "/var/tmp", "/tmp"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("df: {e}"))
}
