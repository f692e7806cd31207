//! The end-to-end install test: `tests/e2e/install-test` with the freshly built binary, in a
//! throw-away Debian bookworm booted with real systemd (see tests/e2e/harness/README.md).
//! Skipped (with a note) when not root or without debootstrap, except under CI where it must run.

use std::process::Command;

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
    let status = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/install-test"
    ))
    .arg(env!("CARGO_BIN_EXE_modobox"))
    .status()
    .expect("running tests/e2e/install-test");
    assert!(status.success(), "tests/e2e/install-test failed: {status}");
}
