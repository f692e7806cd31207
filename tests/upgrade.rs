//! `modobox upgrade`: which binaries are accepted. A copy of this very binary, signed with the
//! real `minisign` tool by a key the test trusts (upgrade.keys), is verified and staged; a
//! flipped byte, a key nobody trusts, a missing or legacy signature, and a release channel
//! whose SHA-256 does not match are each refused with nothing staged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

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

/// `openssl` with `args` (split on spaces) in `dir`.
fn openssl(args: &str, dir: &Path) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority of the test's own and a certificate for `localhost` signed by it.
fn test_ca(dir: &Path) {
    openssl(
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=modobox-test-CA -keyout ca.key \
         -out ca.pem -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
        dir,
    );
    openssl(
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr",
        dir,
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -out server.pem -extfile server.ext",
        dir,
    );
}

/// A static HTTPS server for `dir` on a free loopback port (Python's, with the test's
/// certificate); the port.
fn https_server(dir: &Path) -> (std::process::Child, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let script = "import http.server, ssl, sys\n\
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
        ctx.load_cert_chain('server.pem', 'server.key')\n\
        httpd = http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)\n\
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)\n\
        httpd.serve_forever()\n";
    let mut server = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (server, port);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    panic!("the test's HTTPS server did not start");
}

/// A release channel on a local HTTPS server whose certificate comes from the test's own CA
/// (trusted through `SSL_CERT_FILE`, as an admin's private CA would be): a checksum mismatch,
/// an untrusted signer and an untrusted server certificate are each refused with nothing
/// staged; the right binary is staged.
#[test]
fn the_release_channel_is_checked_by_checksum_and_signature() {
    let Some(s) = setup() else { return };
    s.sign("trusted.key", "modobox-new", &[]);
    test_ca(s.dir.path());
    let bytes = std::fs::read(s.path("modobox-new")).unwrap();
    let sum = modobox::render::manifest::checksum(&bytes);
    let (mut server, port) = https_server(s.dir.path());
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
    let url = format!("https://localhost:{port}/index.json");
    let ca = s.path("ca.pem");
    let check = |trust: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_modobox"));
        c.arg("--config")
            .arg(&s.config)
            .args(["upgrade", "--check", "--url", &url])
            .current_dir(s.dir.path());
        if trust {
            c.env("SSL_CERT_FILE", &ca);
        }
        c.output().unwrap()
    };

    write_index(&sum);
    // The system's CAs do not know the server's: refused before anything is downloaded.
    let o = check(false);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("TLS"), "{}", stderr(&o));
    assert!(!s.staged());

    write_index(&"0".repeat(64));
    let o = check(true);
    assert!(stderr(&o).contains("the index says"), "{}", stderr(&o));
    assert!(!s.staged());

    write_index(&sum);
    let o = check(true);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(s.staged());

    // The signature replaced by one from an untrusted key: refused.
    std::fs::remove_file(s.path("data/upgrade/staged/modobox")).unwrap();
    s.sign("other.key", "modobox-new", &[]);
    let o = check(true);
    assert!(
        stderr(&o).contains("neither a release key"),
        "{}",
        stderr(&o)
    );
    assert!(!s.staged());
    let _ = server.kill();
    let _ = server.wait();
}

/// While an upgrade holds the lock with the maintenance flag set, web and API writes answer
/// 503 with the upgrade's message and change nothing; pages still show; a released lock (an
/// upgrade that ended or was killed) ends it.
#[tokio::test]
async fn web_writes_wait_while_an_upgrade_runs() {
    use common::web::{account, http, login, start_with};
    use modobox::system::maintenance;
    let db = common::sqlite().await;
    let store = db.connect().await;
    modobox::store::migrate::migrate(&store).await.unwrap();
    account(&store, "admin", modobox::store::access::Role::SuperAdmins).await;
    let data = tempfile::tempdir().unwrap();
    let mut config = modobox::config::Config::new(
        modobox::names::Hostname::parse("hostname", "mail.example.test").unwrap(),
    );
    config.paths.data =
        modobox::names::SafePath::parse("data", &data.path().to_string_lossy()).unwrap();
    let port = start_with(&store, config).await;
    let (session, csrf) = login(port, "admin").await;

    let lock = maintenance::try_lock(data.path()).unwrap().unwrap();
    maintenance::enter(data.path(), "modobox is being upgraded to 9.9.9").unwrap();
    let page = http(port, "GET", "/", &[&session], None).await;
    assert_eq!(page.status, 200, "pages still show");
    assert!(
        page.body
            .contains(r#"<p class="notice" role="status">modobox is being upgraded to 9.9.9</p>"#),
        "every page carries the banner: {}",
        page.body
    );
    let body = format!("csrf={csrf}&name=paused.test&quota=0&default_mailbox_quota=0");
    let form = http(port, "POST", "/domains/new", &[&session], Some(&body)).await;
    assert_eq!(form.status, 503, "{}", form.body);
    assert!(form.body.contains("upgraded to 9.9.9"), "{}", form.body);
    let out = http(
        port,
        "POST",
        "/logout",
        &[&session],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(out.status, 503);
    let mut tx = store.begin().await.unwrap();
    let domains = tx
        .count("SELECT COUNT(*) FROM admin_domain", &[])
        .await
        .unwrap();
    drop(tx);
    assert_eq!(domains, 0, "nothing written");

    drop(lock);
    let page = http(port, "GET", "/", &[&session], None).await;
    assert!(
        !page.body.contains("being upgraded"),
        "no banner once the lock is released"
    );
    let form = http(port, "POST", "/domains/new", &[&session], Some(&body)).await;
    assert_ne!(form.status, 503, "{}", form.body);
    let out = http(
        port,
        "POST",
        "/logout",
        &[&session],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(out.status, 303);
}

/// The canary's DKIM check against an independent signer (dkimpy, the python3-dkim package):
/// its signatures verify in every canonicalization, a changed body or signed header does not.
#[test]
fn dkim_signatures_of_an_independent_signer_verify() {
    let python = "/usr/bin/python3";
    let has_dkim = Command::new(python)
        .args(["-c", "import dkim"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_dkim {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this: python3-dkim is missing"
        );
        eprintln!("skipped: python3-dkim is not installed");
        return;
    }
    let key = modobox::keys::dkim::generate_key(2048).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, &key.private_pem).unwrap();
    let message = "From: Canary <canary@example.test>\r\nTo: canary@example.test\r\nSubject:  the   canary \r\n\tfolded\r\nMessage-ID: <1@example.test>\r\n\r\nHello  there \r\nsecond line\r\n\r\n\r\n";
    for canon in [
        "relaxed/simple",
        "relaxed/relaxed",
        "simple/simple",
        "simple/relaxed",
    ] {
        let (h, b) = canon.split_once('/').unwrap();
        let script = format!(
            "import dkim, sys\nmsg = sys.stdin.buffer.read()\nkey = open({key:?}, 'rb').read()\nsig = dkim.sign(msg, b'modobox', b'example.test', key, canonicalize=(b'{h}', b'{b}'), include_headers=[b'from', b'to', b'subject', b'message-id'])\nsys.stdout.buffer.write(sig + msg)\n",
            key = key_file.display().to_string()
        );
        let mut child = Command::new(python)
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(message.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let signed = String::from_utf8(out.stdout).unwrap();
        let verify =
            |m: &str| modobox::keys::dkim_verify::verify(m, "example.test", &key.public_b64);
        assert_eq!(verify(&signed), Ok(()), "{canon}: {signed}");
        // Line ends as an IMAP server or a Maildir file may give them: LF only.
        assert_eq!(
            verify(&signed.replace("\r\n", "\n")),
            Ok(()),
            "{canon} with LF"
        );
        assert!(
            verify(&signed.replace("second line", "second  line!")).is_err(),
            "{canon}: body"
        );
        assert!(
            verify(&signed.replace("the   canary", "a canary")).is_err(),
            "{canon}: subject"
        );
        assert!(verify(&signed).is_ok());
        assert!(
            modobox::keys::dkim_verify::verify(&signed, "other.test", &key.public_b64).is_err()
        );
    }
}
