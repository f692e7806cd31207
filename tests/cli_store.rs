//! The admin commands as a user runs them: the real binary on a SQLite database given with
//! MODOBOX_DATABASE_URL, passwords on standard input, JSON output, refusals that change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

struct Cli {
    url: String,
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        Cli { url, dir }
    }
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modobox"))
            .args(args)
            .env("MODOBOX_DATABASE_URL", &self.url)
            .env("MODOBOX_CONFIG", self.dir.path().join("absent.toml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command refused before it reads its input has exited: the pipe is closed then.
        match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
        child.wait_with_output().unwrap()
    }
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
    fn fails(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
fn db_status_exits_non_zero_until_migrated() {
    let cli = Cli::new();
    let out = cli.run(&["db", "status"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending"));
    cli.ok(&["db", "migrate"], "");
    let json: serde_json::Value =
        serde_json::from_str(&cli.ok(&["db", "status", "--json"], "")).unwrap();
    assert!(json["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["applied"] == true));
}

#[test]
fn mailboxes_are_managed_with_passwords_on_stdin() {
    let cli = Cli::new();
    cli.ok(&["db", "migrate"], "");
    cli.ok(
        &[
            "domain",
            "add",
            "Example.COM",
            "--quota",
            "500",
            "--default-mailbox-quota",
            "100",
        ],
        "",
    );
    cli.ok(
        &["mailbox", "add", "alice@example.com"],
        "a long password\n",
    );
    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["mailbox", "list", "--json"], "")).unwrap();
    assert_eq!(list[0]["username"], "alice@example.com");
    assert_eq!(list[0]["mailbox"]["quota"], 100);
    assert_eq!(list[0]["password_scheme"], "SHA512-CRYPT");
    // The JSON never carries the hash.
    assert!(!cli
        .ok(&["mailbox", "show", "alice@example.com", "--json"], "")
        .contains("$6$"));
    // An empty standard input is refused (no silent empty password).
    let err = cli.fails(&["mailbox", "add", "bob@example.com"], "");
    assert!(err.contains("password"), "{err}");
    let err = cli.fails(&["mailbox", "add", "bob@example.com"], "short\n");
    assert!(err.contains("password: must be at least 8"), "{err}");
    // A generated password is printed once.
    let out = cli.ok(
        &["mailbox", "add", "bob@example.com", "--generate-password"],
        "",
    );
    assert!(out.starts_with("password for bob@example.com: "), "{out}");
    cli.ok(
        &["mailbox", "passwd", "bob@example.com"],
        "another long one\n",
    );
    cli.ok(&["alias", "add", "@example.com", "alice@example.com"], "");
    cli.ok(&["alias", "edit", "@example.com", "--expires", "7d"], "");
    let shown: serde_json::Value =
        serde_json::from_str(&cli.ok(&["alias", "show", "@example.com", "--json"], "")).unwrap();
    assert!(shown["expire_at"].is_string());
    // Destructive commands want --yes without a terminal.
    let err = cli.fails(&["domain", "del", "example.com"], "");
    assert!(err.contains("--yes"), "{err}");
    assert!(cli.ok(&["domain", "list"], "").contains("example.com"));
    cli.ok(&["domain", "del", "example.com", "--yes"], "");
    assert!(!cli.ok(&["domain", "list"], "").contains("example.com"));
}

#[test]
fn bad_input_names_the_field_and_writes_nothing() {
    let cli = Cli::new();
    cli.ok(&["db", "migrate"], "");
    for (args, field) in [
        (vec!["domain", "add", "bad\nname.com"], "name"),
        (vec!["domain", "add", "ok.com", "--quota", "-1"], "quota"),
        (
            vec!["domain", "add", "ok.com", "--dkim-selector", "a b"],
            "dkim-selector",
        ),
        (
            vec!["domain", "add", "ok.com", "--dkim-key-length", "512"],
            "dkim_key_length",
        ),
        (vec!["relaydomain", "add", "r.com"], "--target-host"),
        (vec!["mailbox", "add", "x@nowhere.test"], "nowhere.test"),
        (
            vec!["alias", "add", "x@nowhere.test", "a@b.test"],
            "nowhere.test",
        ),
        (vec!["admin", "add", "boss", "--role", "Kings"], "role"),
    ] {
        let err = cli.fails(&args, "long enough pw\n");
        assert!(err.contains(field), "{args:?}: {err}");
    }
    assert!(cli.ok(&["domain", "list", "--json"], "").trim() == "[]");
    // The CLI has no way to pass a password as an argument.
    let help = cli.ok(&["mailbox", "add", "--help"], "");
    assert!(!help.contains("--password "), "{help}");
}

#[test]
fn import_is_all_or_nothing_and_export_is_private() {
    let cli = Cli::new();
    cli.ok(&["db", "migrate"], "");
    let csv = cli.dir.path().join("in.csv");
    std::fs::write(&csv, "domain;example.com;0;0;true\naccount;a@example.com;long enough;A;B;true;SimpleUsers;a@example.com;\nalias;x@example.com;true;ghost@example.com\n").unwrap();
    let err = cli.fails(&["import", csv.to_str().unwrap()], "");
    assert!(err.contains("line 3: recipients[1]"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(cli.ok(&["domain", "list", "--json"], "").trim(), "[]");
    std::fs::write(&csv, "domain;example.com;0;0;true\naccount;a@example.com;long enough;A;B;true;SimpleUsers;a@example.com;\n").unwrap();
    let out = cli.ok(&["import", csv.to_str().unwrap(), "--json"], "");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["accounts"], 1);
    let dest = cli.dir.path().join("out.csv");
    cli.ok(
        &["export", "identities", "--output", dest.to_str().unwrap()],
        "",
    );
    let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&dest)
        .unwrap()
        .contains("account;a@example.com;{SHA512-CRYPT}$6$rounds=70000$"));
}

#[test]
fn run_migrates_the_database_on_start() {
    let cli = Cli::new();
    let cfg = cli.dir.path().join("modobox.toml");
    std::fs::write(&cfg, "hostname = \"mail.example.com\"\n").unwrap();
    assert_eq!(cli.run(&["db", "status"], "").status.code(), Some(1));
    // `run` migrates before anything else; without systemd (a test host) it then stops with an
    // error, with systemd it keeps running: either way the database must be migrated.
    let mut child = Command::new(env!("CARGO_BIN_EXE_modobox"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "run",
            "--manager",
            "systemd",
        ])
        .env("MODOBOX_DATABASE_URL", &cli.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while cli.run(&["db", "status"], "").status.code() != Some(0) {
        assert!(
            start.elapsed().as_secs() < 20,
            "modobox run did not migrate"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `modobox tls status`: the certificate of the configuration, the names clients ask for (the
/// hostname; autoconfig., autodiscover., mta-sts. of every hosted domain), and an exit code
/// that says whether anything is missing.
#[test]
fn tls_status_names_what_the_certificate_lacks() {
    let cli = Cli::new();
    cli.ok(&["db", "migrate"], "");
    cli.ok(&["domain", "add", "example.org"], "");
    let h = |n: &str| modobox::names::Hostname::parse("h", n).unwrap();
    let write_config = |cert: &modobox::keys::tls::CertPair, name: &str| {
        let dir = cli.dir.path();
        std::fs::write(dir.join(format!("{name}.pem")), &cert.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &cert.key_pem).unwrap();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "hostname = \"mail.example.test\"\n[tls]\nmode = \"manual\"\ncert = \"{0}/{name}.pem\"\nkey = \"{0}/{name}.key\"\n",
                dir.display()
            ),
        )
        .unwrap();
        config
    };
    let status = |config: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_modobox"))
            .args(["tls", "status", "--json"])
            .env("MODOBOX_DATABASE_URL", &cli.url)
            .env("MODOBOX_CONFIG", config)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), json)
    };
    // Every name: fine.
    let all = modobox::keys::tls::generate_self_signed(
        &h("mail.example.test"),
        &[
            h("autoconfig.example.org"),
            h("autodiscover.example.org"),
            h("mta-sts.example.org"),
        ],
        30,
    )
    .unwrap();
    let (code, json) = status(&write_config(&all, "all"));
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["self_signed"], true);
    assert_eq!(json["mode"], "manual");
    assert_eq!(json["days_left"], 30);
    assert_eq!(json["coverage"].as_array().unwrap().len(), 4, "{json}");
    // Without the domain's client names: a warning naming each.
    let bare = modobox::keys::tls::generate_self_signed(&h("mail.example.test"), &[], 30).unwrap();
    let (code, json) = status(&write_config(&bare, "bare"));
    assert_eq!(code, Some(1), "{json}");
    let problems = json["problems"].to_string();
    for name in [
        "autoconfig.example.org",
        "autodiscover.example.org",
        "mta-sts.example.org",
    ] {
        assert!(problems.contains(name), "{problems}");
    }
    // For another host: a failure.
    let other = modobox::keys::tls::generate_self_signed(&h("mx.elsewhere.test"), &[], 30).unwrap();
    let (code, json) = status(&write_config(&other, "other"));
    assert_eq!(code, Some(2), "{json}");
    assert!(json["problems"][0]
        .as_str()
        .unwrap()
        .contains("does not hold the hostname mail.example.test"));
}
