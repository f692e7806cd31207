//! The web UI over real HTTP: a server on a free port over a test database, a minimal
//! HTTP/1.1 client, logins. Shared by the web test files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use modobox::config::Config;
use modobox::distro::Distro;
use modobox::names::Hostname;
use modobox::store::access::Role;
use modobox::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
/// One HTTP/1.1 exchange; the answer's status, headers (lower-case names) and body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as sent (downloads that are not text).
    pub bytes: Vec<u8>,
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
    http_with(port, method, path, &[], cookies, form).await
}

/// `http` with extra header lines ("X-Forwarded-For: 192.0.2.1", "Authorization: Token …";
/// a body that starts with `{` is sent as JSON).
pub async fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    cookies: &[&str],
    form: Option<&str>,
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let body = form.unwrap_or("");
    // A `Host:` among the headers replaces the default one.
    let host = if headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        String::new()
    } else {
        "Host: mail.example.test\r\n".to_string()
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\n{host}Connection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    match form {
        Some(b) if b.starts_with('{') => req.push_str("Content-Type: application/json\r\n"),
        Some(_) => req.push_str("Content-Type: application/x-www-form-urlencoded\r\n"),
        None => {}
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !cookies.is_empty() {
        req.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let bytes = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(Vec::new, |at| raw[at + 4..].to_vec());
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
        bytes,
    }
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub const PASSWORD: &str = "correct horse 1";

pub async fn account(store: &Store, username: &str, role: Role) {
    let mut tx = store.begin().await.unwrap();
    let spec = super::account_spec(username, role, false, &[]);
    super::create_account(&mut tx, &spec).await;
    tx.commit().await.unwrap();
}

/// A server on a free port over this database; stops when the runtime ends.
pub async fn start(store: &Store) -> u16 {
    let config = Config::new(Hostname::parse("hostname", "mail.example.test").unwrap());
    start_with(store, config).await
}

/// `start` with this configuration.
pub async fn start_with(store: &Store, config: Config) -> u16 {
    start_with_signer(store, config, None).await
}

/// `start_with`, the Apple profiles signed by the signer at `profile_socket`.
pub async fn start_with_signer(
    store: &Store,
    config: Config,
    profile_socket: Option<std::path::PathBuf>,
) -> u16 {
    let distro = Distro::load(&"debian:12".parse().unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // The status the supervisor would publish for the dashboard.
    let status = modobox::supervisor::status::gather(
        &config,
        &distro,
        Some(store),
        env!("CARGO_PKG_VERSION"),
    )
    .await;
    let status_file = std::env::temp_dir().join(format!("modobox-test-status-{port}.json"));
    modobox::health::published::write_snapshot(&status_file, &status, None).unwrap();
    let mut web = modobox::web::Web::new(store.clone(), config, distro, false)
        .unwrap()
        .with_status_file(status_file);
    if let Some(socket) = profile_socket {
        web = web.with_profile_socket(socket);
    }
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
