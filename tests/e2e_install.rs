//! The end-to-end tests: `tests/e2e/install-test` with the freshly built binary, in a
//! throw-away Debian bookworm booted with real systemd (see tests/e2e/harness/README.md), and
//! beside it `tests/e2e/image-build-test` (an image built and two copies booted under qemu).
//! Skipped (with a note) when not root or without their tools, except under CI where they must run.
//!
//! The script's output is shown as it comes. When it fails, a scenario prints the journal of its
//! container last, which buries the line that says what failed: the panic message repeats the
//! lines printed just before that journal, and the host's free disk space.

#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// Lines of the script's own output kept in the failure message.
const CONTEXT_LINES: usize = 80;
const JOURNAL_MARKER: &str = "--- failed; ";

#[test]
fn install_then_real_mail_then_zero_changes() {
    if !can_run("the e2e install test", &["debootstrap", "slirp4netns"]) {
        return;
    }
    run_scenario("install-test", "");
}

/// `modobox image build` for real and two copies of the image booted under qemu. It runs
/// beside the install test (the test harness runs a binary's tests in parallel): qemu and
/// the build are niced, and most of the install test's time is spent waiting.
#[test]
fn image_build_then_two_copies_under_qemu() {
    let tools = [
        "mmdebstrap",
        "sfdisk",
        "grub-mkimage",
        "qemu-img",
        "qemu-system-x86_64",
        "mcopy",
        "debugfs",
    ];
    if !can_run("the image build and VM test", &tools) {
        return;
    }
    run_scenario("image-build-test", "[image-build] ");
}

/// Root and the tools: else skipped with a note, except under CI where it must run.
fn can_run(what: &str, tools: &[&str]) -> bool {
    let ci = std::env::var_os("CI").is_some();
    let root = uzers::get_effective_uid() == 0;
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if root && missing.is_empty() {
        return true;
    }
    assert!(
        !ci,
        "CI must run {what}: needs root and {} (missing: {missing:?})",
        tools.join(", ")
    );
    eprintln!("skipped: {what} needs root and {}", tools.join(", "));
    false
}

/// Runs tests/e2e/SCRIPT with the freshly built binary, its output shown live (each line
/// after `prefix`, so two scenarios running at once stay readable), and fails with the
/// context of the failure at the end.
fn run_scenario(script: &str, prefix: &str) {
    // One stream for both outputs, in the order they were written.
    let mut child = Command::new("sh")
        .args(["-c", "exec \"$0\" \"$1\" 2>&1"])
        .arg(format!("{}/tests/e2e/{script}", env!("CARGO_MANIFEST_DIR")))
        .arg(env!("CARGO_BIN_EXE_modobox"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running tests/e2e/{script}: {e}"));
    let mut lines = Vec::new();
    let reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    for line in reader.split(b'\n') {
        let line =
            String::from_utf8_lossy(&line.expect("reading the script's output")).into_owned();
        // Straight to the process's stdout: the test harness captures only print!/println!, and
        // this output is wanted live (and in CI logs) whether the test passes or not.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{prefix}{line}");
        let _ = out.flush();
        lines.push(line);
    }
    let status = child.wait().expect("waiting for the scenario");
    assert!(
        status.success(),
        "tests/e2e/{script} failed: {status}\n--- what the scenario printed last:\n{}\n--- free space on the host:\n{}",
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
