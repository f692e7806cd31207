//! The web UI's authentication and safety rules over real HTTP against a real database:
//! login, sessions, CSRF, throttling, password change, logout, security headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::web::{account, enc, http, start, PASSWORD};
use modobox::store::access::{Actor, Role};
use modobox::store::accounts::{self, Password};
use modobox::store::{migrate, Store};

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

/// `GET /api/v1/domains/` with an API token: the raw answer.
async fn api_get(port: u16, key: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET /api/v1/domains/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Token {key}\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut answer)
        .await
        .unwrap();
    answer
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
    let mut page_csrf = page.field("csrf").unwrap();
    let mut session = session;
    // A second browser of the same account, and an API token: both end with the change.
    let other = http(port, "POST", "/login", &[&pre], Some(&good))
        .await
        .cookie("modobox_session")
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let admin_id = accounts::get(&mut tx, Actor::System, &common::user("admin"))
        .await
        .unwrap()
        .id;
    let old_key = modobox::store::tokens::create_token(&mut tx, admin_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
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
    // This browser goes on with a new session; the old cookie, the other browser and the API
    // token are done.
    let renewed = a.cookie("modobox_session").unwrap();
    assert_ne!(renewed, session);
    assert_eq!(http(port, "GET", "/", &[&session], None).await.status, 303);
    assert_eq!(http(port, "GET", "/", &[&other], None).await.status, 303);
    assert_eq!(http(port, "GET", "/", &[&renewed], None).await.status, 200);
    let api = api_get(port, &old_key).await;
    assert!(
        api.starts_with("HTTP/1.1 401"),
        "the API token ended with the password: {api}"
    );
    let mut tx = store.begin().await.unwrap();
    assert!(accounts::authenticate(&mut tx, "admin", "a new password")
        .await
        .unwrap()
        .is_some());
    // Back to the shared test password for the rest (a reset: every session ends again).
    accounts::set_password(
        &mut tx,
        Actor::System,
        &common::user("admin"),
        &Password::Clear(PASSWORD.into()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(http(port, "GET", "/", &[&renewed], None).await.status, 303);
    session = http(port, "POST", "/login", &[&pre], Some(&good))
        .await
        .cookie("modobox_session")
        .unwrap();
    page_csrf = http(port, "GET", "/", &[&session], None)
        .await
        .field("csrf")
        .unwrap();

    // The settings page makes an API key (CSRF-checked), shown once; the API accepts it.
    let a = http(
        port,
        "POST",
        "/account/token",
        &[&session],
        Some("csrf=nope"),
    )
    .await;
    assert_eq!(a.status, 403);
    let form = format!("csrf={page_csrf}");
    let a = http(port, "POST", "/account/token", &[&session], Some(&form)).await;
    assert_eq!(a.status, 200);
    let at = a.body.find("<pre id=\"token\">").unwrap() + 16;
    let key = a.body[at..at + a.body[at..].find("</pre>").unwrap()].to_string();
    assert_eq!(key.len(), 40, "{key}");
    let answer = api_get(port, &key).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

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

    // Throttling: five failures of this client on one account lock it out, even with the right
    // password (the wrong current password above no longer counts: a right one followed).
    let mut failures = 0;
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
