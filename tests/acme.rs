//! modobox's ACME client and the `tls_renew` job against a real ACME server: Debian's pebble,
//! with pebble-challtestsrv as the DNS both pebble and modobox ask (tests/e2e/pebble-up), and
//! a small HTTP server standing in for nginx's challenge location. The same flow through the
//! real nginx, Postfix and Dovecot of an installed server is tests/e2e/acme-test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use modobox::config::{Config, TlsMode};
use modobox::distro::{Distro, DistroId};
use modobox::jobs::tls_renew::{self, RenewalState};
use modobox::jobs::{JobContext, JobError};
use modobox::keys::acme::{self, AcmeError};
use modobox::keys::tls;
use modobox::names::{DomainName, Hostname, HttpUrl, SafePath};
use modobox::store::access::Actor;
use modobox::store::domains::{self, DomainSpec};
use modobox::store::migrate;

const PEBBLE_UP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/pebble-up");

/// Twelve free ports in a row: HTTP, then DNS (+2 management), then ACME (+1, +2). Each test
/// of this process takes its own range (two tests probing at once would find the same one).
fn free_base() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let start = 20000 + (std::process::id() % 500) as u16 * 30;
    loop {
        let slot = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(slot < 200, "no free ports");
        let base = start.wrapping_add(slot * 13) % 40000 + 20000;
        if (base..base + 12).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
}

/// pebble, its DNS, and the challenge server, stopped when dropped.
struct Pebble {
    dir: tempfile::TempDir,
    http_port: u16,
    dns_port: u16,
    acme_port: u16,
    web: Option<Child>,
    webroot: PathBuf,
}

/// Serves `<webroot>/.well-known/acme-challenge/` as nginx does, except to the names starting
/// holding `refused-` (a 403: a name whose DNS points here but whose validation fails).
const CHALLENGE_SERVER: &str = r#"
import http.server, os, sys
root = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        path = os.path.join(root, self.path.lstrip("/"))
        if "refused-" in host or ".." in self.path or not os.path.isfile(path):
            self.send_response(403 if "refused-" in host else 404); self.end_headers(); return
        body = open(path, "rb").read()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

impl Pebble {
    fn start() -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base();
        let (http_port, dns_port, acme_port) = (base, base + 3, base + 6);
        let out = Command::new(PEBBLE_UP)
            .arg(dir.path().join("pebble"))
            .args([http_port, dns_port, acme_port].map(|p| p.to_string()))
            .output()
            .expect("tests/e2e/pebble-up (pebble from tests/setup-host)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let webroot = dir.path().join("webroot");
        std::fs::create_dir_all(&webroot).unwrap();
        let mut p = Pebble {
            dir,
            http_port,
            dns_port,
            acme_port,
            web: None,
            webroot,
        };
        p.serve_challenges();
        p
    }

    fn serve_challenges(&mut self) {
        let child = Command::new("python3")
            .args(["-c", CHALLENGE_SERVER, &self.http_port.to_string()])
            .arg(&self.webroot)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.web = Some(child);
    }

    fn stop_serving(&mut self) {
        if let Some(mut c) = self.web.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn directory(&self) -> String {
        format!("https://localhost:{}/dir", self.acme_port)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("pebble/ca.pem")
    }

    /// Makes the test DNS answer `addr` for `name` (A record).
    fn set_a(&self, name: &str, addr: &str) {
        let body = format!(r#"{{"host":"{name}.","addresses":["{addr}"]}}"#);
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode()), timeout=5).read()",
                &format!("http://127.0.0.1:{}/add-a", self.dns_port + 2),
                &body,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn challenge_files(&self) -> Vec<String> {
        std::fs::read_dir(self.webroot.join(".well-known/acme-challenge"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop_serving();
        let _ = Command::new(PEBBLE_UP)
            .arg("--stop")
            .arg(self.dir.path().join("pebble"))
            .status();
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn the_client_gets_a_certificate_from_pebble_and_names_the_names_that_fail() {
    let pebble = Pebble::start();
    let file = pebble.dir.path().join("account.json");
    let settings = acme::AccountSettings {
        directory: &pebble.directory(),
        email: Some("hostmaster@example.test"),
        ca_root: Some(&pebble.ca()),
        file: &file,
    };
    let account = acme::account(&settings).await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The stored account is used again, not a new one.
    let again = acme::account(&settings).await.unwrap();
    assert_eq!(account.id(), again.id());

    let wanted = names(&["mail.example.test", "autoconfig.example.test"]);
    let issued = acme::obtain(&account, &wanted, &pebble.webroot)
        .await
        .unwrap();
    let info = tls::inspect(&issued.cert_pem).unwrap();
    assert!(
        info.issuer.contains("Pebble Intermediate CA"),
        "{}",
        info.issuer
    );
    assert!(!info.self_signed);
    let mut got = info.dns_names.clone();
    got.sort();
    assert_eq!(got, ["autoconfig.example.test", "mail.example.test"]);
    assert!(tls::key_matches(&issued.cert_pem, &issued.key_pem).unwrap());
    assert!(
        format!("{issued:?}").contains("(private)"),
        "the key is never printed"
    );
    assert!(
        pebble.challenge_files().is_empty(),
        "challenge files left behind"
    );

    // A name nothing answers for, and one whose server refuses: both named, with the reason.
    pebble.set_a("gone.example.test", "127.0.0.2");
    let wanted = names(&[
        "mail.example.test",
        "gone.example.test",
        "refused-x.example.test",
    ]);
    match acme::obtain(&account, &wanted, &pebble.webroot).await {
        Err(AcmeError::Validation(failed)) => {
            let failed_names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
            assert!(failed_names.contains(&"gone.example.test"), "{failed:?}");
            assert!(failed.iter().all(|(_, why)| !why.is_empty()), "{failed:?}");
        }
        other => panic!("want a validation failure, got {:?}", other.map(|_| ())),
    }
    assert!(
        pebble.challenge_files().is_empty(),
        "challenge files left behind"
    );

    // Another directory in the configuration: a new account there (the old one stays valid
    // only where it was made).
    let other = pebble.dir.path().join("other.json");
    std::fs::copy(&file, &other).unwrap();
    let moved = acme::AccountSettings {
        directory: &format!("https://127.0.0.1:{}/dir", pebble.acme_port),
        file: &other,
        ..settings.clone()
    };
    let fresh = acme::account(&moved).await.unwrap();
    assert_ne!(fresh.id(), account.id());
}

fn safe(field: &str, p: &Path) -> SafePath {
    SafePath::parse(field, &p.display().to_string()).unwrap()
}

/// A renewal's message, whether or not this host's (stopped) daemons reloaded.
fn renewed(result: Result<String, JobError>) -> String {
    match result {
        Ok(m) => m,
        Err(JobError::Partly { done, failures }) => {
            assert!(
                failures.iter().all(|f| f.starts_with("reload:")),
                "{failures:?}"
            );
            done
        }
        Err(e) => panic!("renewal failed: {e}"),
    }
}

#[tokio::test]
async fn the_renewal_job_asks_for_the_names_that_point_here_keeps_the_old_pair_on_failure_and_backs_off(
) {
    let mut pebble = Pebble::start();
    let db = common::sqlite().await;
    let store = db.connect().await;
    migrate::migrate(&store).await.unwrap();
    let root = pebble.dir.path().to_path_buf();
    let mut config = Config::new(Hostname::parse("hostname", "mail.example.test").unwrap());
    config.paths.data = safe("paths.data", &root.join("data"));
    config.tls.mode = TlsMode::Acme;
    config.tls.acme_directory = HttpUrl::parse("tls.acme_directory", &pebble.directory()).unwrap();
    config.tls.acme_ca_root = Some(safe("tls.acme_ca_root", &pebble.ca()));
    config.tls.acme_webroot = safe("tls.acme_webroot", &pebble.webroot);
    config.check_mx.resolver = Some(format!("127.0.0.1:{}", pebble.dns_port).parse().unwrap());
    config.validate().unwrap();
    let distro = Distro::load(&"debian:12".parse::<DistroId>().unwrap()).unwrap();
    let (cert, key) = modobox::render::context::tls_paths(&config, &distro);
    assert!(cert.as_path().starts_with(root.join("data/tls")), "{cert}");
    {
        let mut tx = store.begin().await.unwrap();
        for d in ["example.test", "other.test"] {
            let name = DomainName::parse("domain", d).unwrap();
            domains::create(&mut tx, Actor::System, &name, &DomainSpec::default(), None)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    // other.test: autoconfig. points elsewhere (left out before asking), refused-… answers 403.
    pebble.set_a("autoconfig.other.test", "192.0.2.1");
    let ctx = JobContext {
        config: config.clone(),
        distro,
        store: store.clone(),
        node: "node-test".into(),
    };
    // The install's placeholder.
    let host = config.hostname.clone();
    let placeholder = tls::generate_self_signed(&host, &[], 825).unwrap();
    tls_renew::install_pair(
        cert.as_path(),
        key.as_path(),
        &placeholder.cert_pem,
        &placeholder.key_pem,
    )
    .unwrap();

    let message = renewed(tls_renew::renew(&ctx, false).await);
    assert!(message.contains("Pebble Intermediate CA"), "{message}");
    let pem = std::fs::read_to_string(cert.as_path()).unwrap();
    let info = tls::inspect(&pem).unwrap();
    let mut got = info.dns_names.clone();
    got.sort();
    assert_eq!(
        got,
        [
            "autoconfig.example.test",
            "autodiscover.example.test",
            "autodiscover.other.test",
            "mail.example.test",
            "mail.other.test",
            "mta-sts.example.test",
            "mta-sts.other.test"
        ]
    );
    let state = RenewalState::load(&tls_renew::state_path(&config));
    assert_eq!(state.failures, 0);
    assert!(state.last_success.is_some());
    assert!(
        state
            .skipped
            .get("autoconfig.other.test")
            .is_some_and(|w| w.contains("192.0.2.1")),
        "{:?}",
        state.skipped
    );

    // Nothing due: nothing asked.
    let message = renewed(tls_renew::renew(&ctx, false).await);
    assert!(message.starts_with("not due"), "{message}");

    // A domain whose autodiscover. name points here but fails validation: left out for a
    // day, the rest issued at once.
    {
        let mut tx = store.begin().await.unwrap();
        let name = DomainName::parse("domain", "refused-x.test").unwrap();
        domains::create(&mut tx, Actor::System, &name, &DomainSpec::default(), None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    // (Its other names point elsewhere: only autodiscover. is asked for, and refused.)
    pebble.set_a("autoconfig.refused-x.test", "192.0.2.1");
    pebble.set_a("mta-sts.refused-x.test", "192.0.2.1");
    pebble.set_a("mail.refused-x.test", "192.0.2.1");
    let message = renewed(tls_renew::renew(&ctx, false).await);
    assert!(message.contains("issued"), "{message}");
    let state = RenewalState::load(&tls_renew::state_path(&config));
    let left_out = &state.left_out["autodiscover.refused-x.test"];
    assert!(left_out.until > chrono::Utc::now() + chrono::Duration::hours(23));
    assert!(
        !tls::inspect(&std::fs::read_to_string(cert.as_path()).unwrap())
            .unwrap()
            .dns_names
            .iter()
            .any(|n| n.contains("refused-"))
    );

    // The authority cannot reach us: the old pair stays, the failure is recorded and alerted,
    // and the next scheduled run waits.
    let before = std::fs::read(cert.as_path()).unwrap();
    let before_key = std::fs::read(key.as_path()).unwrap();
    pebble.stop_serving();
    let err = tls_renew::renew(&ctx, true).await.unwrap_err().to_string();
    assert!(err.contains("mail.example.test"), "{err}");
    assert!(err.contains("the current certificate is kept"), "{err}");
    assert_eq!(std::fs::read(cert.as_path()).unwrap(), before);
    assert_eq!(std::fs::read(key.as_path()).unwrap(), before_key);
    let state = RenewalState::load(&tls_renew::state_path(&config));
    assert_eq!(state.failures, 1);
    assert!(state.alerted_at.is_some());
    let next = state.next_attempt.unwrap();
    let wait = next - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::minutes(55) && wait <= chrono::Duration::hours(1),
        "{wait}"
    );
    let check = tls_renew::check(&state);
    assert_eq!(check.level, modobox::health::checks::Level::Warn);
    // A new name makes a renewal due, but not before the wait is over.
    {
        let mut tx = store.begin().await.unwrap();
        let name = DomainName::parse("domain", "third.test").unwrap();
        domains::create(&mut tx, Actor::System, &name, &DomainSpec::default(), None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let message = renewed(tls_renew::renew(&ctx, false).await);
    assert!(message.starts_with("due (it lacks"), "{message}");
    assert!(message.contains("waiting until"), "{message}");
    assert_eq!(std::fs::read(cert.as_path()).unwrap(), before);

    // Forced once the server answers again: renewed, the failures forgotten.
    pebble.serve_challenges();
    let message = renewed(tls_renew::renew(&ctx, true).await);
    assert!(message.contains("third.test"), "{message}");
    let state = RenewalState::load(&tls_renew::state_path(&config));
    assert_eq!((state.failures, state.last_error.as_deref()), (0, None));
    assert_ne!(std::fs::read(cert.as_path()).unwrap(), before);
    let pem = std::fs::read_to_string(cert.as_path()).unwrap();
    let key_pem = std::fs::read_to_string(key.as_path()).unwrap();
    assert!(tls::key_matches(&pem, &key_pem).unwrap());
}
