//! Renders the whole stack for every supported distribution × database engine, runs the
//! daemons' own checkers on the result (tests/validate/run-validators), and keeps snapshots of
//! the rendered files so that every template change shows up in review.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails loudly

use std::path::{Path, PathBuf};
use std::process::Command;

use modobox::config::Config;
use modobox::distro::{supported, Distro, DistroId};
use modobox::render::{self, context, RenderedFile};
use modobox::secrets::Secrets;
use modobox::system::Root;

const ENGINES: [&str; 3] = ["postgres", "mysql", "sqlite"];

fn config_for(engine: &str) -> Config {
    Config::from_toml(
        &format!("hostname = \"mail.example.test\"\n[database]\nengine = \"{engine}\"\n"),
        "test",
    )
    .unwrap()
}

/// Fixed secrets, so snapshots are stable.
fn test_secrets(root: &Root, config: &Config) -> Secrets {
    let path = root.path(config.paths.secrets.as_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "database_password = \"TestPassw0rdTestPassw0rd\"\nsession_key = \"k\"\n\
         postfix_db_password = \"PostfixPassw0rd\"\ndovecot_db_password = \"DovecotPassw0rd\"\n\
         opendkim_db_password = \"OpendkimPassw0rd\"\namavis_db_password = \"AmavisPassw0rd\"\nmilter_db_password = \"MilterPassw0rd\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    Secrets::load_or_create(&path).unwrap()
}

fn render_into(root: &Root, distro: &Distro, config: &Config) -> Vec<RenderedFile> {
    let secrets = test_secrets(root, config);
    let renderer = render::Renderer::new(None).unwrap();
    let ctx = context::build(config, distro, &secrets);
    let files = renderer.render_all(&ctx).unwrap();
    let manifest = config
        .paths
        .data
        .as_path()
        .join(render::manifest::FILE_NAME);
    render::write::apply(root, &files, &manifest, Default::default()).unwrap();
    files
}

/// One representative per fact file and version (rocky/alma/centos share rhel.toml).
fn distros() -> Vec<DistroId> {
    supported()
        .into_iter()
        .filter(|d| !matches!(d.id.as_str(), "centos" | "rocky" | "almalinux"))
        .collect()
}

#[test]
fn renders_for_every_distro_and_engine() {
    for id in distros() {
        let distro = Distro::load(&id).unwrap();
        for engine in ENGINES {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::new(dir.path());
            let files = render_into(&root, &distro, &config_for(engine));
            assert!(
                files.len() >= 15,
                "{id} {engine}: only {} files",
                files.len()
            );
            for f in &files {
                assert!(
                    root.path(&f.path).exists(),
                    "{id} {engine}: {} missing",
                    f.path.display()
                );
                assert!(
                    !f.content.contains("{{"),
                    "{}: unrendered Tera",
                    f.path.display()
                );
            }
            // Files holding the database password are never world-readable.
            for f in files.iter().filter(|f| f.content.contains("TestPassw0rd")) {
                assert_eq!(
                    f.mode & 0o007,
                    0,
                    "{id} {engine}: {} is world-readable",
                    f.path.display()
                );
            }
            // A second render changes nothing.
            let manifest =
                Config::new(modobox::names::Hostname::parse("h", "mail.example.test").unwrap())
                    .paths
                    .data
                    .as_path()
                    .join(render::manifest::FILE_NAME);
            let records = render::base::Records::load(&root.path(&manifest)).unwrap();
            let changes = render::write::compare(&root, &files, &records).unwrap();
            assert!(
                changes
                    .iter()
                    .all(|c| !c.changes_anything() && !c.base_pending),
                "{id} {engine}: not idempotent"
            );
        }
    }
}

#[test]
fn hand_edited_file_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let distro = Distro::load(&"debian:12".parse().unwrap()).unwrap();
    let config = config_for("postgres");
    let files = render_into(&root, &distro, &config);
    let main_cf = root.path(Path::new("/etc/postfix/main.cf"));
    std::fs::write(&main_cf, "# edited by the admin\n").unwrap();
    let manifest = config
        .paths
        .data
        .as_path()
        .join(render::manifest::FILE_NAME);
    let report = render::write::apply(&root, &files, &manifest, Default::default()).unwrap();
    assert_eq!(report.kept, vec![PathBuf::from("/etc/postfix/main.cf")]);
    assert_eq!(
        std::fs::read_to_string(&main_cf).unwrap(),
        "# edited by the admin\n"
    );
    let force = render::write::Options {
        force: true,
        ..Default::default()
    };
    let report = render::write::apply(&root, &files, &manifest, force).unwrap();
    assert!(report
        .written
        .contains(&PathBuf::from("/etc/postfix/main.cf")));
    assert!(std::fs::read_to_string(&main_cf)
        .unwrap()
        .contains("virtual_mailbox_domains"));
}

#[test]
fn foreign_file_is_backed_up_before_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let main_cf = root.path(Path::new("/etc/postfix/main.cf"));
    std::fs::create_dir_all(main_cf.parent().unwrap()).unwrap();
    std::fs::write(&main_cf, "# the distribution's main.cf\n").unwrap();
    let distro = Distro::load(&"debian:12".parse().unwrap()).unwrap();
    render_into(&root, &distro, &config_for("postgres"));
    let backup = root.path(Path::new("/etc/postfix/main.cf.modobox-orig"));
    assert_eq!(
        std::fs::read_to_string(backup).unwrap(),
        "# the distribution's main.cf\n"
    );
}

/// `modobox render` through the binary, with the templates changed between two runs by
/// `--templates DIR` (a copy of the embedded main.cf, edited like a new version would).
struct Upgrade {
    dir: tempfile::TempDir,
    config: Config,
}

impl Upgrade {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("modobox.toml"),
            "hostname = \"mail.example.test\"\n[database]\nengine = \"postgres\"\n",
        )
        .unwrap();
        Upgrade {
            dir,
            config: config_for("postgres"),
        }
    }

    fn render(&self, extra: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_modobox"))
            .arg("--config")
            .arg(self.dir.path().join("modobox.toml"))
            .args(["--distro", "debian:12", "render", "--root"])
            .arg(self.dir.path().join("root"))
            .args(extra)
            .output()
            .unwrap()
    }

    fn render_ok(&self, extra: &[&str]) -> String {
        let out = self.render(extra);
        assert!(
            out.status.success(),
            "render {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A template directory whose main.cf has `from` replaced by `to`; its path as an argument.
    fn templates(&self, name: &str, from: &str, to: &str) -> String {
        let embedded = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/postfix/main.cf");
        let text = std::fs::read_to_string(embedded).unwrap();
        assert!(text.contains(from), "{from:?} not in the main.cf template");
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(dir.join("postfix")).unwrap();
        std::fs::write(dir.join("postfix/main.cf"), text.replacen(from, to, 1)).unwrap();
        dir.to_str().unwrap().to_string()
    }

    fn path(&self, target: &str) -> PathBuf {
        self.dir
            .path()
            .join("root")
            .join(target.trim_start_matches('/'))
    }

    fn read(&self, target: &str) -> String {
        std::fs::read_to_string(self.path(target)).unwrap()
    }

    fn base(&self, target: &str) -> PathBuf {
        let data = self.config.paths.data.as_path().display().to_string();
        self.path(&format!("{data}/rendered-base{target}"))
    }
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions())
        & 0o7777
}

#[test]
fn an_admins_line_in_main_cf_survives_a_template_change() {
    let site = Upgrade::new();
    site.render_ok(&[]);
    let main_cf = "/etc/postfix/main.cf";
    let rendered = site.read(main_cf);
    assert_eq!(
        std::fs::read_to_string(site.base(main_cf)).unwrap(),
        rendered
    );
    assert_eq!(mode(&site.base(main_cf)), 0o600);
    // The SQL maps hold the database password: their bases are as private.
    assert_eq!(mode(&site.base("/etc/postfix/sql-aliases.cf")), 0o600);
    assert_eq!(mode(&site.base("/etc/postfix")), 0o700);

    // The admin adds a line far from the one the next version changes.
    let admin_line = "smtpd_client_connection_rate_limit = 30\n";
    let edited = rendered.replacen(
        "inet_protocols = all\n",
        &format!("inet_protocols = all\n{admin_line}"),
        1,
    );
    assert_ne!(edited, rendered);
    std::fs::write(site.path(main_cf), &edited).unwrap();

    let next = site.templates("next", "delay_warning_time = 4h", "delay_warning_time = 2h");
    let diff = site.render_ok(&["--diff", "--templates", &next]);
    assert!(diff.contains("== /etc/postfix/main.cf: merged: "), "{diff}");
    assert!(diff.contains("+delay_warning_time = 2h"), "{diff}");
    assert!(diff.contains("\n1 of "), "only main.cf changes: {diff}");

    let out = site.render_ok(&["--templates", &next]);
    assert!(out.contains("merged /etc/postfix/main.cf"), "{out}");
    let merged = site.read(main_cf);
    assert_eq!(
        merged,
        edited.replacen("delay_warning_time = 4h", "delay_warning_time = 2h", 1)
    );
    // The base is the new template output, without the admin's line.
    let base = std::fs::read_to_string(site.base(main_cf)).unwrap();
    assert_eq!(
        base,
        rendered.replacen("delay_warning_time = 4h", "delay_warning_time = 2h", 1)
    );
    // Run again: nothing to do, the admin's line is still there.
    let diff = site.render_ok(&["--diff", "--templates", &next]);
    assert!(diff.contains("main.cf: kept: "), "{diff}");
    assert!(diff.contains("\n0 of "), "{diff}");

    // The admin and the following version change the same line: conflict.
    let conflicting = merged.replacen("delay_warning_time = 2h", "delay_warning_time = 1h", 1);
    std::fs::write(site.path(main_cf), &conflicting).unwrap();
    let later = site.templates(
        "later",
        "delay_warning_time = 4h",
        "delay_warning_time = 3h",
    );
    let out = site.render(&["--templates", &later]);
    assert!(!out.status.success(), "a conflict must fail the render");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(main_cf) && stderr.contains("--accept-conflicts"),
        "{stderr}"
    );
    assert_eq!(
        site.read(main_cf),
        conflicting,
        "the admin's file is untouched"
    );
    let beside = site.path("/etc/postfix/main.cf.modobox-new");
    assert!(std::fs::read_to_string(&beside)
        .unwrap()
        .contains("delay_warning_time = 3h"));
    assert_eq!(mode(&beside), mode(&site.path(main_cf)));

    let out = site.render_ok(&["--templates", &later, "--accept-conflicts"]);
    assert!(out.contains("conflict in /etc/postfix/main.cf"), "{out}");
    assert_eq!(site.read(main_cf), conflicting);
    let diff = site.render_ok(&["--diff", "--templates", &later]);
    assert!(diff.contains("\n0 of "), "accepted, so settled: {diff}");
}

/// Snapshots: one file per distro × engine combination that differs materially.
#[test]
fn snapshots_of_rendered_files() {
    let cases = [
        ("debian:12", "postgres"),
        ("debian:12", "mysql"),
        ("debian:12", "sqlite"),
        ("debian:13", "postgres"),
        ("ubuntu:24.04", "postgres"),
        ("rhel:9", "postgres"),
    ];
    for (id, engine) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let distro = Distro::load(&id.parse().unwrap()).unwrap();
        let files = render_into(&root, &distro, &config_for(engine));
        let mut all = String::new();
        for f in &files {
            all.push_str(&format!(
                "==== {} (mode {:o}, {}:{}){}\n{}\n",
                f.path.display(),
                f.mode,
                f.owner.user,
                f.owner.group,
                f.link
                    .as_ref()
                    .map(|l| format!(" <- {}", l.display()))
                    .unwrap_or_default(),
                f.content
            ));
        }
        let name = format!("{}-{engine}", id.replace(':', "-"));
        insta::assert_snapshot!(name, all);
    }
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The real checkers: postconf/postfix check, doveconf, nginx -t, opendkim -n, amavisd,
/// sh -n, systemd-analyze verify. Needs root (private mount namespace) and the daemons
/// installed; `.ci/run` provides both and sets MODOBOX_REQUIRE_VALIDATORS=1 so that a
/// missing tool is a failure there, not a skip.
#[test]
fn daemons_accept_the_rendered_configuration() {
    let required = std::env::var("MODOBOX_REQUIRE_VALIDATORS").is_ok_and(|v| v == "1");
    let available = [
        "postconf", "doveconf", "nginx", "opendkim", "amavisd", "unshare", "openssl",
    ]
    .iter()
    .all(|t| tool(t))
        && uzers::get_effective_uid() == 0;
    if !available {
        assert!(
            !required,
            "validators required but missing (run .ci/run's package step as root)"
        );
        eprintln!("skipping: validators not installed or not root");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate/run-validators");
    let binary = env!("CARGO_BIN_EXE_modobox");
    let mut failures = Vec::new();
    for id in distros() {
        let distro = Distro::load(&id).unwrap();
        for engine in ENGINES {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::new(dir.path());
            let config = config_for(engine);
            render_into(&root, &distro, &config);
            // What the installer provides before services start: a certificate, and for
            // SQLite the key tables the DKIM job writes.
            let (cert, key) = context::tls_paths(&config, &distro);
            for p in [&cert, &key] {
                std::fs::create_dir_all(root.path(p.as_path()).parent().unwrap()).unwrap();
            }
            let status = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=mail.example.test",
                ])
                .arg("-keyout")
                .arg(root.path(key.as_path()))
                .arg("-out")
                .arg(root.path(cert.as_path()))
                .output()
                .unwrap();
            assert!(status.status.success());
            if engine == "sqlite" {
                for t in ["keytable", "signingtable"] {
                    let p = root.path(&config.paths.dkim_keys.as_path().join(t));
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(p, "").unwrap();
                }
            }
            let out = Command::new(&script)
                .arg(dir.path())
                .arg(binary)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            println!("== {id} {engine}\n{text}");
            if !out.status.success() {
                failures.push(format!(
                    "{id} {engine}:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "validators failed:\n{}",
        failures.join("\n")
    );
}
