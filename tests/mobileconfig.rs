//! Apple configuration profiles from the account page, over real HTTP with the supervisor's
//! signer on a Unix socket: signed with a CA-issued certificate (checked by `openssl cms
//! -verify` against the CA), read back by Python's plistlib, the password only when typed and
//! right, CSRF and domain permissions enforced; unsigned with a self-signed certificate or
//! when the signer cannot be reached.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::web::{enc, http, login, start_with_signer, Answer, PASSWORD};
use modobox::config::Config;
use modobox::keys::mobileconfig;
use modobox::names::{DomainName, Hostname};
use modobox::store::access::{Actor, Role};
use modobox::store::domains::{self, DomainSpec};
use modobox::store::{migrate, Store};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate it issued for mail.example.test (as a public authority would).
fn ca_issued(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "2",
        "-subj",
        "/CN=Test Public CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=mail.example.test",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:mail.example.test\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
    (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("ca.pem"),
    )
}

fn signer(
    socket: &Path,
    cert: &Path,
    key: &Path,
    store: &Store,
) -> tokio::sync::watch::Sender<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signer = mobileconfig::Signer {
        socket: socket.to_path_buf(),
        hostname: Hostname::parse("hostname", "mail.example.test").unwrap(),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        // The tests run as root: the one user answered besides root does not matter here.
        allowed: None,
        store: store.clone(),
    };
    tokio::spawn(mobileconfig::serve(signer, stopped));
    stop
}

async fn wait_for(socket: &Path) {
    for _ in 0..100 {
        if socket.exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the signer did not listen on {}", socket.display());
}

/// The profile's property list as JSON, read by Python's plistlib (a real plist reader).
fn plist(document: &[u8]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.plist");
    std::fs::write(&f, document).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plistlib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The signed content, verified against `ca`.
fn verified(der: &[u8], ca: &Path) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.der"), der).unwrap();
    openssl(
        dir.path(),
        &[
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            "p.der",
            "-CAfile",
            ca.to_str().unwrap(),
            "-purpose",
            "any",
            "-out",
            "content",
        ],
    );
    std::fs::read(dir.path().join("content")).unwrap()
}

async fn setup(store: &Store) {
    migrate::migrate(store).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for d in ["example.test", "other.test"] {
        domains::create(
            &mut tx,
            Actor::System,
            &DomainName::parse("d", d).unwrap(),
            &DomainSpec::default(),
            None,
        )
        .await
        .unwrap();
    }
    let mut alice = common::account_spec("alice@example.test", Role::SimpleUsers, true, &[]);
    alice.first_name = "Alice".into();
    alice.last_name = "Liddell & Co".into();
    common::create_account(&mut tx, &alice).await;
    common::create_account(
        &mut tx,
        &common::account_spec("admin", Role::SuperAdmins, false, &[]),
    )
    .await;
    common::create_account(
        &mut tx,
        &common::account_spec("da@other.test", Role::DomainAdmins, true, &["other.test"]),
    )
    .await;
    tx.commit().await.unwrap();
}

fn account_of(profile: &serde_json::Value) -> &serde_json::Value {
    assert_eq!(profile["PayloadType"], "Configuration");
    &profile["PayloadContent"][0]
}

const ALICE: &str = "/accounts/alice@example.test/mobileconfig";

#[tokio::test]
async fn profiles_are_signed_by_the_supervisor_and_hold_the_password_only_when_typed_and_right() {
    let db = common::sqlite().await;
    let store = db.connect().await;
    setup(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = ca_issued(dir.path());
    let socket = dir.path().join("profile.sock");
    let _stop = signer(&socket, &cert, &key, &store);
    wait_for(&socket).await;
    let config = Config::new(Hostname::parse("hostname", "mail.example.test").unwrap());
    let port = start_with_signer(&store, config.clone(), Some(socket.clone())).await;
    let (session, csrf) = login(port, "admin").await;

    // The account page offers it.
    let page = http(
        port,
        "GET",
        "/accounts/alice@example.test",
        &[&session],
        None,
    )
    .await;
    assert!(page.body.contains(ALICE), "{}", page.body);

    let a = http(port, "GET", ALICE, &[&session], None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.header("content-type"),
        Some("application/x-apple-aspen-config")
    );
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("x-modobox-profile"), Some("signed"));
    assert!(a
        .header("content-disposition")
        .unwrap()
        .contains("alice@example.test.mobileconfig"));
    let profile = plist(&verified(&a.bytes, &ca));
    let mail = account_of(&profile);
    assert_eq!(mail["PayloadType"], "com.apple.mail.managed");
    assert_eq!(mail["EmailAddress"], "alice@example.test");
    assert_eq!(mail["EmailAccountName"], "Alice Liddell & Co");
    assert_eq!(mail["IncomingMailServerHostName"], "mail.example.test");
    assert_eq!(mail["IncomingMailServerPortNumber"], 993);
    assert_eq!(mail["OutgoingMailServerPortNumber"], 465);
    assert_eq!(mail["IncomingMailServerUseSSL"], true);
    assert_eq!(mail["IncomingMailServerUsername"], "alice@example.test");
    assert!(mail.get("IncomingPassword").is_none());

    // With a wrong password: refused next to the field, no profile.
    let wrong = format!("csrf={csrf}&password=not-hers");
    let a = http(port, "POST", ALICE, &[&session], Some(&wrong)).await;
    assert_eq!(a.status, 400);
    assert!(
        a.body.contains("is not this account&#x27;s password")
            || a.body.contains("is not this account's password"),
        "{}",
        a.body
    );
    // With her password: inside, signed.
    let right = format!("csrf={csrf}&password={}", enc(PASSWORD));
    let a = http(port, "POST", ALICE, &[&session], Some(&right)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mail = plist(&verified(&a.bytes, &ca));
    assert_eq!(account_of(&mail)["IncomingPassword"], PASSWORD);
    assert_eq!(
        account_of(&mail)["OutgoingPasswordSameAsIncomingPassword"],
        true
    );
    // A forged token: nothing.
    let forged = format!("csrf=forged&password={}", enc(PASSWORD));
    assert_eq!(
        http(port, "POST", ALICE, &[&session], Some(&forged))
            .await
            .status,
        403
    );

    // No mailbox, no profile; another domain's admin sees nothing of alice.
    assert_eq!(
        http(
            port,
            "GET",
            "/accounts/admin/mobileconfig",
            &[&session],
            None
        )
        .await
        .status,
        404
    );
    let (da, _) = login(port, "da@other.test").await;
    let a: Answer = http(port, "GET", ALICE, &[&da], None).await;
    assert_eq!(a.status, 404);
    assert!(!a.body.contains("Liddell"));

    // The signer builds the document itself: what it is given is checked, never pasted.
    let hostile = mobileconfig::Request {
        email: "x@example.test</string><key>PayloadType</key>".into(),
        name: String::new(),
        password: None,
    };
    let e = mobileconfig::request(&socket, &hostile)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("email"), "{e}");
    // An address of no mailbox here is not signed either.
    let stranger = mobileconfig::Request {
        email: "nobody@example.test".into(),
        name: String::new(),
        password: None,
    };
    let e = mobileconfig::request(&socket, &stranger)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a mailbox of this server"), "{e}");
    // Nor a password with a control character (it would not come back unchanged).
    let cr = mobileconfig::Request {
        email: "alice@example.test".into(),
        name: String::new(),
        password: Some("a\rb".into()),
    };
    let e = mobileconfig::request(&socket, &cr)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("password"), "{e}");

    // The signer gone: the profile still comes, unsigned.
    let web2 = start_with_signer(&store, config, Some(dir.path().join("nobody.sock"))).await;
    let (s2, _) = login(web2, "admin").await;
    let a = http(web2, "GET", ALICE, &[&s2], None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-modobox-profile"), Some("unsigned"));
    assert_eq!(
        account_of(&plist(&a.bytes))["EmailAddress"],
        "alice@example.test"
    );
}

#[tokio::test]
async fn a_self_signed_certificate_leaves_the_profile_unsigned() {
    let db = common::sqlite().await;
    let store = db.connect().await;
    setup(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let host = Hostname::parse("hostname", "mail.example.test").unwrap();
    let pair = modobox::keys::tls::generate_self_signed(&host, &[], 30).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, pair.cert_pem).unwrap();
    std::fs::write(&key, pair.key_pem).unwrap();
    let socket = dir.path().join("profile.sock");
    let _stop = signer(&socket, &cert, &key, &store);
    wait_for(&socket).await;
    let req = mobileconfig::Request {
        email: "alice@example.test".into(),
        name: "Alice".into(),
        password: None,
    };
    let (signed, bytes) = mobileconfig::request(&socket, &req).await.unwrap();
    assert!(!signed);
    assert_eq!(
        account_of(&plist(&bytes))["EmailAddress"],
        "alice@example.test"
    );
}
