//! Hostile configuration values: each is refused by `modobox render` with an error that names
//! the field and the rule, and nothing at all is written.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails loudly

use std::process::Command;

/// (field as the error names it, TOML that sets it, a word of the rule the error must give).
fn cases() -> Vec<(&'static str, String, &'static str)> {
    let raw: Vec<(&str, String, &str)> = vec![
    ("hostname", r#"hostname = "mail\n.example.com""#.to_string(), "line break"),
    ("hostname", r#"hostname = "mail.example.com\r""#.to_string(), "line break"),
    ("hostname", r#"hostname = "mail.example.com\u0000""#.to_string(), "control"),
    ("hostname", r#"hostname = "mail.exam\u001bple.com""#.to_string(), "control"),
    ("hostname", r#"hostname = "../etc/passwd""#.to_string(), "label"),
    ("hostname", r#"hostname = "mail.example.com;reboot""#.to_string(), "valid domain name"),
    ("hostname", r#"hostname = "mail'example.com""#.to_string(), "quotes"),
    ("hostname", r#"hostname = "mail\"x.example.com""#.to_string(), "quotes"),
    ("hostname", r#"hostname = "mail.exa mple.com""#.to_string(), "spaces"),
    ("hostname", r#"hostname = "mail""#.to_string(), "fully-qualified"),
    ("hostname", r#"hostname = "-mail.example.com""#.to_string(), "valid domain name"),
    ("hostname", r#"hostname = "mail.example.123""#.to_string(), "numeric"),
    ("hostname", r#"hostname = "p\u0430ypal.example.com""#.to_string(), "writing systems"),
    ("hostname", "hostname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com\"".to_string(), "63"),
    ("hostname", const_long_hostname(), "253"),
    ("primary_domain", "hostname = \"mail.example.com\"\nprimary_domain = \"example.com\\nmyhostname = evil\"".to_string(), "line break"),
    ("primary_domain", "hostname = \"mail.example.com\"\nprimary_domain = \"ex..ample.com\"".to_string(), "empty label"),
    ("primary_domain", "hostname = \"mail.example.com\"\nprimary_domain = \"\u{0435}xample.com\"".to_string(), "writing systems"),
    ("primary_domain", const_long_domain(), "100"),
    ("admin_address", "hostname = \"mail.example.com\"\nadmin_address = \"root@example.com\\nBcc: x\"".to_string(), "line break"),
    ("admin_address", "hostname = \"mail.example.com\"\nadmin_address = \"a/b@example.com\"".to_string(), "local part"),
    ("admin_address", "hostname = \"mail.example.com\"\nadmin_address = \"..a@example.com\"".to_string(), "dot"),
    ("admin_address", "hostname = \"mail.example.com\"\nadmin_address = \"postmaster\"".to_string(), "local@domain"),
    ("admin_address", "hostname = \"mail.example.com\"\nadmin_address = \"x'@example.com\"".to_string(), "quotes"),
    ("paths.mail_root", "hostname = \"mail.example.com\"\n[paths]\nmail_root = \"/srv/../etc\"".to_string(), ".."),
    ("paths.mail_root", "hostname = \"mail.example.com\"\n[paths]\nmail_root = \"srv/vmail\"".to_string(), "absolute"),
    ("paths.mail_root", "hostname = \"mail.example.com\"\n[paths]\nmail_root = \"/srv/vmail\\n\"".to_string(), "line break"),
    ("paths.mail_root", "hostname = \"mail.example.com\"\n[paths]\nmail_root = \"/\"".to_string(), "root directory"),
    ("paths.dkim_keys", "hostname = \"mail.example.com\"\n[paths]\ndkim_keys = \"/var/lib/dkim;rm\"".to_string(), "may only contain"),
    ("paths.rrd", "hostname = \"mail.example.com\"\n[paths]\nrrd = \"/var/lib/$(id)\"".to_string(), "may only contain"),
    ("paths.dkim_keys", "hostname = \"mail.example.com\"\n[paths]\ndkim_keys = \"/srv/vmail/dkim\"".to_string(), "inside paths.mail_root"),
    ("database.sqlite_path", "hostname = \"mail.example.com\"\n[database]\nsqlite_path = \"/var/lib/./x.db\"".to_string(), "`.`"),
    ("mail.owner", "hostname = \"mail.example.com\"\n[mail]\nowner = \"vmail\\nroot\"".to_string(), "line break"),
    ("mail.owner", "hostname = \"mail.example.com\"\n[mail]\nowner = \"Root\"".to_string(), "Unix name"),
    ("database.name", "hostname = \"mail.example.com\"\n[database]\nname = \"modobox; DROP TABLE x\"".to_string(), "spaces"),
    ("database.user", "hostname = \"mail.example.com\"\n[database]\nuser = \"a'b\"".to_string(), "quotes"),
    ("database.host", "hostname = \"mail.example.com\"\n[database]\nhost = \"db.example.com\\n\"".to_string(), "line break"),
    ("web.listen", "hostname = \"mail.example.com\"\n[web]\nlisten = \"0.0.0.0:8000\"".to_string(), "loopback"),
    ("tls.cert", "hostname = \"mail.example.com\"\n[tls]\nmode = \"manual\"\ncert = \"/etc/ssl/../../x\"\nkey = \"/k\"".to_string(), ".."),
    ("tls.cert", "hostname = \"mail.example.com\"\n[tls]\nmode = \"manual\"".to_string(), "required"),
    ("schedule.check_mx", "hostname = \"mail.example.com\"\n[schedule]\ncheck_mx = \"* * * * * *\"".to_string(), "5 fields"),
    ("components.clamav", "hostname = \"mail.example.com\"\n[components]\namavis = false\nspamassassin = false".to_string(), "requires components.amavis"),
    ("database.engin", "hostname = \"mail.example.com\"\n[database]\nengin = \"mysql\"".to_string(), "unknown field"),
    ];
    raw
}

fn const_long_hostname() -> String {
    let label = "a".repeat(60);
    format!("hostname = \"{label}.{label}.{label}.{label}.{label}.example.com\"")
}

fn const_long_domain() -> String {
    let label = "b".repeat(50);
    format!("hostname = \"mail.example.com\"\nprimary_domain = \"{label}.{label}.com\"")
}

fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn hostile_values_are_refused_and_nothing_is_written() {
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut problems = Vec::new();
    for (field, toml, rule) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("modobox.toml");
        std::fs::write(&config, toml).unwrap();
        let root = dir.path().join("root");
        let out = Command::new(env!("CARGO_BIN_EXE_modobox"))
            .arg("--config")
            .arg(&config)
            .args(["--distro", "debian:12", "render", "--root"])
            .arg(&root)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        if out.status.success() {
            problems.push(format!("{field}: accepted {toml:?}"));
        } else if !first.contains(&format!("{field}:")) || !first.contains(rule) {
            problems.push(format!(
                "{field}: error does not name field and rule `{rule}`: {first}"
            ));
        }
        if err.lines().count() > 1 {
            problems.push(format!(
                "{field}: the error spans several lines (injection?): {err:?}"
            ));
        }
        let written = all_files(&root);
        if !written.is_empty() {
            problems.push(format!("{field}: files written: {written:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
