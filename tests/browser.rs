//! The admin UI in headless Chromium: `modobox web` on a free port over a fresh SQLite
//! database with a superadmin, driven by `tests/browser/ui.mjs` (playwright-core from
//! `tests/browser/node_modules`, the system's chromium). Screenshots land in
//! `target/browser-artifacts/`. Without node, chromium or `npm ci` done: a skip with a note,
//! except under CI where it is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modobox::store::access::{Actor, Role};
use modobox::store::accounts::{self, AccountSpec, Password};
use modobox::store::{migrate, DatabaseUrl, Store};

const PASSWORD: &str = "browser admin 1";

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the server even when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path) -> PathBuf {
    let d = dir.display();
    let config = dir.join("modobox.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mail.example.test\"\n[database]\nengine = \"sqlite\"\nsqlite_path = \"{d}/m.db\"\n\
             [paths]\nmail_root = \"{d}/vmail\"\ndkim_keys = \"{d}/dkim\"\nrrd = \"{d}/rrd\"\n\
             data = \"{d}/data\"\nsecrets = \"{d}/secrets.toml\"\n\
             [stats]\nlog_file = \"{d}/mail.log\"\njournal = false\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("dkim")).unwrap();
    config
}

#[tokio::test]
async fn admin_ui_in_headless_chromium() {
    let ci = std::env::var_os("CI").is_some();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let playwright = repo.join("tests/browser/node_modules/playwright-core");
    let missing: Vec<&str> = [
        (!found("node")).then_some("node"),
        (!Path::new(&chromium).exists()).then_some("chromium"),
        (!playwright.exists()).then_some("playwright-core (cd tests/browser && npm ci)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(
            !ci,
            "CI must run the browser test; missing: {} (tests/setup-host installs them)",
            missing.join(", ")
        );
        eprintln!(
            "skipped: the browser test needs {} (tests/setup-host installs them)",
            missing.join(", ")
        );
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let url = DatabaseUrl::parse(&format!("sqlite://{}/m.db", dir.path().display())).unwrap();
    let store = Store::connect(&url).await.unwrap();
    migrate::migrate(&store).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let spec = AccountSpec {
        username: modobox::names::Username::parse("admin").unwrap(),
        password: Password::Clear(PASSWORD.into()),
        first_name: String::new(),
        last_name: String::new(),
        enabled: true,
        role: Role::SuperAdmins,
        mailbox: None,
        mailbox_address: None,
        domains: vec![],
        profile: Default::default(),
        mailbox_settings: Default::default(),
    };
    let fast = modobox::password::HashPolicy::sha512_crypt(5000);
    accounts::create(&mut tx, Actor::System, &spec, fast)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.close().await;

    // Statistics for the graph step: the real log of the e2e stack parsed into the RRD files
    // for example.test, as the logparser job does.
    let bin = env!("CARGO_BIN_EXE_modobox");
    let cli = |args: &[&str]| {
        let o = Command::new(bin)
            .args(["--distro", "debian:12"])
            .args(args)
            .env("MODOBOX_CONFIG", &config)
            .env_remove("MODOBOX_DATABASE_URL")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "modobox {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    cli(&["domain", "add", "example.test"]);
    let fixture = repo.join("tests/fixtures/stats/mail.log");
    cli(&["stats", "parse", "--file", fixture.to_str().unwrap()]);

    // The status the supervisor would publish for the dashboard.
    let status_file = dir.path().join("status.json");
    {
        let c = modobox::config::Config::load(&config).unwrap();
        let d = modobox::distro::Distro::load(&"debian:12".parse().unwrap()).unwrap();
        let store = modobox::store::Store::connect(&url).await.unwrap();
        let st =
            modobox::supervisor::status::gather(&c, &d, Some(&store), env!("CARGO_PKG_VERSION"))
                .await;
        modobox::health::published::write_snapshot(&status_file, &st, None).unwrap();
        store.close().await;
    }
    let port = free_port();
    let _server = Server(
        Command::new(bin)
            .args(["--distro", "debian:12", "web", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--insecure-cookies")
            .arg("--status-file")
            .arg(&status_file)
            .env("MODOBOX_CONFIG", &config)
            .env_remove("MODOBOX_DATABASE_URL")
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "modobox web did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let artifacts = repo.join("target/browser-artifacts");
    let out = Command::new("node")
        .arg(repo.join("tests/browser/ui.mjs"))
        .arg(format!("http://127.0.0.1:{port}"))
        .current_dir(repo.join("tests/browser"))
        .env("MODOBOX_UI_USER", "admin")
        .env("MODOBOX_UI_PASSWORD", PASSWORD)
        .env("MODOBOX_BIN", bin)
        .env("MODOBOX_CONFIG", &config)
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "the browser test failed:\n{text}");
    assert!(text.contains("browser UI test: ok"), "{text}");
    assert!(artifacts.join("07-domain-dns.png").exists(), "{text}");
}
