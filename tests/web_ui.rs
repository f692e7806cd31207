//! The web UI's authentication and safety rules over real HTTP against a real database:
//! login, sessions, CSRF, throttling, password change, logout, security headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use modobox::config::Config;
use modobox::distro::Distro;
use modobox::names::Hostname;
use modobox::store::access::{Actor, Role};
use modobox::store::accounts::{self, AccountSpec, Password};
use modobox::store::{migrate, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
/// One HTTP/1.1 exchange; the answer's status, headers (lower-case names) and body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// `name=value` of a Set-Cookie header for `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .find(|kv| kv.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }
    /// The value of `<input ... name="NAME" value="...">`.
    pub fn field(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\" value=\""))?;
        let rest = &self.body[at + name.len() + 15..];
        Some(rest[..rest.find('"')?].to_string())
    }
}

pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    cookies: &[&str],
    form: Option<&str>,
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let body = form.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    if !cookies.is_empty() {
        req.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const PASSWORD: &str = "correct horse 1";

pub async fn account(store: &Store, username: &str, role: Role) {
    let mut tx = store.begin().await.unwrap();
    let spec = AccountSpec {
        username: username.into(),
        password: Password::Clear(PASSWORD.into()),
        first_name: String::new(),
        last_name: String::new(),
        enabled: true,
        role,
        mailbox: None,
        domains: vec![],
    };
    accounts::create(&mut tx, Actor::System, &spec, 5000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// A server on a free port over this database; stops when the runtime ends.
pub async fn start(store: &Store) -> u16 {
    let config = Config::new(Hostname::parse("hostname", "mail.example.test").unwrap());
    let distro = Distro::load(&"debian:12".parse().unwrap()).unwrap();
    let web = modobox::web::Web::new(store.clone(), config, distro, false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(modobox::web::serve_on(
        web,
        listener,
        std::future::pending(),
    ));
    port
}

/// Logs in; the session cookie and the page's CSRF token.
pub async fn login(port: u16, username: &str) -> (String, String) {
    let form = http(port, "GET", "/login", &[], None).await;
    let pre = form.cookie("modobox_login").unwrap();
    let csrf = form.field("csrf").unwrap();
    let body = format!(
        "csrf={csrf}&next=%2F&username={}&password={}",
        enc(username),
        enc(PASSWORD)
    );
    let a = http(port, "POST", "/login", &[&pre], Some(&body)).await;
    assert_eq!(a.status, 303, "login of {username}: {}", a.body);
    let session = a.cookie("modobox_session").unwrap();
    let page = http(port, "GET", "/", &[&session], None).await;
    assert_eq!(page.status, 200);
    let csrf = page.field("csrf").unwrap();
    (session, csrf)
}

async fn log_lines(store: &Store, logger: &str) -> Vec<String> {
    let mut tx = store.begin().await.unwrap();
    tx.rows(
        "SELECT message FROM core_log WHERE logger = ? ORDER BY id",
        modobox::args![logger],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.text("message").unwrap())
    .collect()
}

async fn scenario(store: Store) {
    migrate::migrate(&store).await.unwrap();
    account(&store, "admin", Role::SuperAdmins).await;
    let port = start(&store).await;

    // Pages need a session: the browser is sent to the login page, keeping where it was going.
    let a = http(port, "GET", "/account/password?x=2", &[], None).await;
    assert_eq!(a.status, 303);
    assert_eq!(
        a.header("location"),
        Some("/login?next=%2Faccount%2Fpassword%3Fx%3D2")
    );

    // The login form carries a token that must match its cookie.
    let form = http(port, "GET", "/login", &[], None).await;
    assert_eq!(form.status, 200);
    assert_eq!(form.header("x-frame-options"), Some("DENY"));
    assert!(form
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    let pre = form.cookie("modobox_login").unwrap();
    let csrf = form.field("csrf").unwrap();
    let good = format!(
        "csrf={csrf}&next=%2F&username=admin&password={}",
        enc(PASSWORD)
    );
    let a = http(port, "POST", "/login", &[], Some(&good)).await;
    assert_eq!(a.status, 403, "no login cookie");
    let forged = good.replace(&csrf, "forged");
    let a = http(port, "POST", "/login", &[&pre], Some(&forged)).await;
    assert_eq!(a.status, 403, "wrong token");

    // A wrong password: 401, logged, no session.
    let bad = format!("csrf={csrf}&next=%2F&username=admin&password=nope");
    let a = http(port, "POST", "/login", &[&pre], Some(&bad)).await;
    assert_eq!(a.status, 401);
    assert!(a.cookie("modobox_session").is_none());
    assert!(a.body.contains("wrong username or password"));

    // The right one: a session cookie, HttpOnly and SameSite=Strict; an open redirect is refused.
    let evil = good.replace("next=%2F", "next=%2F%2Fevil.test");
    let a = http(port, "POST", "/login", &[&pre], Some(&evil)).await;
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/"));
    let set = a
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("modobox_session="))
        .unwrap()
        .1
        .clone();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let session = a.cookie("modobox_session").unwrap();
    let page = http(port, "GET", "/", &[&session], None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Dashboard") && page.body.contains("Services"));
    let lines = log_lines(&store, "modoboa.auth").await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Login failed for admin from 127.0.0.1")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("User admin logged in from 127.0.0.1")),
        "{lines:?}"
    );

    // The database holds the token's digest, never the token.
    let token = session.split_once('=').unwrap().1.to_string();
    let mut tx = store.begin().await.unwrap();
    let n = tx
        .count(
            "SELECT COUNT(*) FROM modobox_session WHERE id = ?",
            modobox::args![token.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(n, 0);
    drop(tx);

    // Password change: CSRF checked, current password checked, rules named.
    let page_csrf = page.field("csrf").unwrap();
    let change = |csrf: &str, current: &str, new: &str| {
        format!(
            "csrf={csrf}&current={}&new={}&confirm={}",
            enc(current),
            enc(new),
            enc(new)
        )
    };
    let a = http(
        port,
        "POST",
        "/account/password",
        &[&session],
        Some(&change("x", PASSWORD, "a new password")),
    )
    .await;
    assert_eq!(a.status, 403);
    let a = http(
        port,
        "POST",
        "/account/password",
        &[&session],
        Some(&change(&page_csrf, "wrong one", "a new password")),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("current password: wrong password"));
    let a = http(
        port,
        "POST",
        "/account/password",
        &[&session],
        Some(&change(&page_csrf, PASSWORD, "short")),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("password"), "{}", a.body);
    let a = http(
        port,
        "POST",
        "/account/password",
        &[&session],
        Some(&change(&page_csrf, PASSWORD, "a new password")),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("Password changed."));
    let mut tx = store.begin().await.unwrap();
    assert!(accounts::authenticate(&mut tx, "admin", "a new password")
        .await
        .unwrap()
        .is_some());
    // Back to the shared test password for the rest.
    accounts::set_password(
        &mut tx,
        Actor::System,
        "admin",
        &Password::Clear(PASSWORD.into()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // Logout needs the token too, then the session is gone.
    let a = http(port, "POST", "/logout", &[&session], Some("csrf=nope")).await;
    assert_eq!(a.status, 403);
    let a = http(
        port,
        "POST",
        "/logout",
        &[&session],
        Some(&format!("csrf={page_csrf}")),
    )
    .await;
    assert_eq!(a.status, 303);
    let a = http(port, "GET", "/", &[&session], None).await;
    assert_eq!(a.status, 303, "the session ended");

    // Throttling: five failures on one account lock it, even with the right password.
    // (the wrong current password above counted as one failure).
    let mut failures = 1;
    loop {
        let a = http(port, "POST", "/login", &[&pre], Some(&bad)).await;
        if a.status == 429 {
            break;
        }
        assert_eq!(a.status, 401);
        failures += 1;
    }
    assert_eq!(failures, 5);
    let a = http(port, "POST", "/login", &[&pre], Some(&good)).await;
    assert_eq!(a.status, 429);
    assert!(a.body.contains("too many failed logins"));
    assert!(log_lines(&store, "modoboa.auth")
        .await
        .iter()
        .any(|l| l.starts_with("Login refused (throttled) for admin")));

    // Unknown pages and assets.
    assert_eq!(
        http(port, "GET", "/assets/modobox.css", &[], None)
            .await
            .status,
        200
    );
    assert_eq!(
        http(port, "GET", "/assets/../Cargo.toml", &[], None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn sessions_csrf_throttling_on_sqlite() {
    let db = common::sqlite().await;
    scenario(db.connect().await).await;
}

#[tokio::test]
async fn sessions_csrf_throttling_on_postgres() {
    if let Some(db) = common::postgres().await {
        scenario(db.connect().await).await;
    }
}

#[tokio::test]
async fn sessions_csrf_throttling_on_mariadb() {
    if let Some(db) = common::mysql().await {
        scenario(db.connect().await).await;
    }
}
