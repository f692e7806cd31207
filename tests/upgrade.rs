//! `modobox upgrade`: which binaries are accepted. A copy of this very binary, signed with the
//! real `minisign` tool by a key the test trusts (upgrade.keys), is verified and staged; a
//! flipped byte, a key nobody trusts, a missing or legacy signature, and a release channel
//! whose SHA-256 does not match are each refused with nothing staged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn minisign(args: &[&str], dir: &Path) {
    let status = Command::new("minisign")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("minisign (tests/setup-host installs it)");
    assert!(status.success(), "minisign {args:?}");
}

fn setup() -> Option<Setup> {
    if Command::new("minisign").arg("-v").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the upgrade tests: minisign is missing"
        );
        eprintln!("skipped: minisign is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    minisign(&["-G", "-W", "-p", "trusted.pub", "-s", "trusted.key"], d);
    minisign(&["-G", "-W", "-p", "other.pub", "-s", "other.key"], d);
    // Without its debug symbols (430 MB in a test build): a release-sized file for the
    // channel's in-memory download.
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(d.join("modobox-new"))
        .arg(env!("CARGO_BIN_EXE_modobox"))
        .status()
        .expect("strip (binutils)");
    assert!(stripped.success());
    let key = std::fs::read_to_string(d.join("trusted.pub")).unwrap();
    let key = key.lines().last().unwrap().trim().to_string();
    let config = d.join("modobox.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mail.example.test\"\n[paths]\ndata = \"{}\"\n[upgrade]\nkeys = [\"{key}\"]\n",
            d.join("data").display()
        ),
    )
    .unwrap();
    Some(Setup { dir, config })
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn sign(&self, key: &str, file: &str, extra: &[&str]) {
        let mut args = vec!["-S", "-s", key, "-m", file];
        args.extend_from_slice(extra);
        minisign(&args, self.dir.path());
    }
    fn upgrade(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_modobox"))
            .arg("--config")
            .arg(&self.config)
            .arg("upgrade")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }
    fn staged(&self) -> bool {
        self.path("data/upgrade/staged/modobox").exists()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_binary_signed_by_a_trusted_key_is_staged_and_everything_else_refused() {
    let Some(s) = setup() else { return };
    // Unsigned.
    let o = s.upgrade(&["--check", "modobox-new"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not signed: no signature at modobox-new.minisig"),
        "{}",
        stderr(&o)
    );
    // Signed by a key nobody trusts.
    s.sign("other.key", "modobox-new", &[]);
    let o = s.upgrade(&["--check", "modobox-new"]);
    assert!(
        stderr(&o).contains("neither a release key nor in upgrade.keys"),
        "{}",
        stderr(&o)
    );
    assert!(!s.staged());
    // A legacy (not prehashed) signature by the trusted key.
    s.sign("trusted.key", "modobox-new", &["-l"]);
    let o = s.upgrade(&["--check", "modobox-new"]);
    assert!(stderr(&o).contains("legacy"), "{}", stderr(&o));
    // The right signature: verified, staged, and this very version: "current", exit 3.
    s.sign("trusted.key", "modobox-new", &[]);
    let o = s.upgrade(&["--check", "modobox-new", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["direction"], "current");
    assert_eq!(report["to"], env!("CARGO_PKG_VERSION"));
    assert!(s.staged());
    let staged = std::fs::read(s.path("data/upgrade/staged/modobox")).unwrap();
    assert_eq!(staged, std::fs::read(s.path("modobox-new")).unwrap());
    // One flipped byte: refused, and the staged binary is gone (never a copy that failed).
    let mut bytes = std::fs::read(s.path("modobox-new")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(s.path("modobox-flipped"), &bytes).unwrap();
    std::fs::copy(
        s.path("modobox-new.minisig"),
        s.path("modobox-flipped.minisig"),
    )
    .unwrap();
    let o = s.upgrade(&["--check", "modobox-flipped"]);
    assert!(
        stderr(&o).contains("does not match its signature"),
        "{}",
        stderr(&o)
    );
    assert!(!s.staged());
    assert_eq!(
        std::fs::read_dir(s.path("data/upgrade/staged"))
            .unwrap()
            .count(),
        0,
        "nothing of a refused binary is left"
    );
}

/// A release channel on a loopback HTTP server (plain http:// is accepted only there).
#[test]
fn the_release_channel_is_checked_by_checksum_and_signature() {
    let Some(s) = setup() else { return };
    s.sign("trusted.key", "modobox-new", &[]);
    let bytes = std::fs::read(s.path("modobox-new")).unwrap();
    let sum = modobox::render::manifest::checksum(&bytes);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(s.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let write_index = |sha: &str| {
        std::fs::write(
            s.path("index.json"),
            format!(
                r#"{{"releases": [{{"version": "{}", "url": "modobox-new", "sha256": "{sha}"}}]}}"#,
                env!("CARGO_PKG_VERSION")
            ),
        )
        .unwrap();
    };
    let url = format!("http://127.0.0.1:{port}/index.json");
    // Wait for the server.
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    write_index(&"0".repeat(64));
    let o = s.upgrade(&["--check", "--url", &url]);
    assert!(stderr(&o).contains("the index says"), "{}", stderr(&o));
    assert!(!s.staged());
    write_index(&sum);
    let o = s.upgrade(&["--check", "--url", &url]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(s.staged());
    // The signature replaced by one from an untrusted key: refused.
    std::fs::remove_file(s.path("data/upgrade/staged/modobox")).unwrap();
    s.sign("other.key", "modobox-new", &[]);
    let o = s.upgrade(&["--check", "--url", &url]);
    assert!(
        stderr(&o).contains("neither a release key"),
        "{}",
        stderr(&o)
    );
    assert!(!s.staged());
    let _ = server.kill();
    let _ = server.wait();
}
