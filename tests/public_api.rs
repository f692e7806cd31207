//! The public_api job against an HTTP server started here on loopback: a good answer stored
//! (on every engine), HTTP errors, a server that never answers, garbage, an oversized body,
//! and the opt-out that sends nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use modobox::config::Config;
use modobox::jobs::public_api;
use modobox::names::Hostname;
use modobox::names::HttpUrl;
use modobox::store::{migrate, parameters, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
enum Reply {
    /// 200 with this JSON body (Content-Length).
    Json(String),
    Status(u16),
    /// Accepts, reads the request, never answers.
    Silent,
    /// 200, chunked, this many bytes of JSON-looking filler.
    Chunked(usize),
    /// 200 with a Content-Length larger than the cap (and a short body).
    Announced(usize),
}

struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn url(&self) -> HttpUrl {
        HttpUrl::parse("url", &format!("http://{}/1/", self.addr)).unwrap()
    }
}

async fn server(reply: Reply) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (reply, r) = (reply.clone(), r.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                r.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                match reply {
                    Reply::Json(body) => {
                        let text = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(text.as_bytes()).await;
                    }
                    Reply::Status(code) => {
                        let text = format!(
                            "HTTP/1.1 {code} Oops\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!"
                        );
                        let _ = sock.write_all(text.as_bytes()).await;
                    }
                    Reply::Silent => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Reply::Chunked(total) => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .await;
                        let chunk = vec![b' '; 64 * 1024];
                        let mut sent = 0;
                        while sent < total {
                            let head = format!("{:x}\r\n", chunk.len());
                            if sock.write_all(head.as_bytes()).await.is_err()
                                || sock.write_all(&chunk).await.is_err()
                                || sock.write_all(b"\r\n").await.is_err()
                            {
                                return;
                            }
                            sent += chunk.len();
                        }
                        let _ = sock.write_all(b"0\r\n\r\n").await;
                    }
                    Reply::Announced(len) => {
                        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n[]");
                        let _ = sock.write_all(text.as_bytes()).await;
                    }
                }
            });
        }
    });
    Server {
        addr,
        connections,
        requests,
    }
}

async fn fresh(db: &common::TestDb) -> Store {
    let store = db.connect().await;
    migrate::migrate(&store).await.unwrap();
    store
}

async fn setting(store: &Store, name: &str) -> Option<String> {
    let mut tx = store.begin().await.unwrap();
    let v = parameters::setting(&mut tx, name).await.unwrap();
    tx.commit().await.unwrap();
    v
}

const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_good_answer_is_stored_and_makes_the_upgrade_notice() {
    let newer = server(Reply::Json(
        r#"[{"name": "modoboa", "version": "2.4.1", "url": "https://example.invalid/changelog"},
            {"name": "modobox", "version": "99.0.0"}]"#
            .into(),
    ))
    .await;
    let same = server(Reply::Json(format!(
        r#"[{{"name": "modobox", "version": "{}"}}]"#,
        env!("CARGO_PKG_VERSION")
    )))
    .await;
    for db in common::all().await {
        let store = fresh(&db).await;
        assert_eq!(public_api::upgrade_notice(&store).await, None);
        let now = Utc::now();
        let msg = public_api::fetch_and_store(&store, &newer.url(), TIMEOUT, now)
            .await
            .unwrap();
        assert_eq!(msg, "2 versions received, modobox 99.0.0 is available");
        assert_eq!(
            setting(&store, "public_api.latest.modoboa")
                .await
                .as_deref(),
            Some("2.4.1")
        );
        assert_eq!(
            setting(&store, "public_api.checked_at").await,
            Some(now.to_rfc3339())
        );
        assert_eq!(
            public_api::upgrade_notice(&store).await,
            Some(format!(
                "modobox 99.0.0 is available (this is {}): `modobox upgrade` installs it",
                env!("CARGO_PKG_VERSION")
            ))
        );
        // A later answer with our own version replaces it: no notice.
        let msg = public_api::fetch_and_store(&store, &same.url(), TIMEOUT, Utc::now())
            .await
            .unwrap();
        assert!(msg.ends_with("modobox is up to date"), "{msg}");
        assert_eq!(public_api::upgrade_notice(&store).await, None);
        store.close().await;
    }
    let request = newer.requests.lock().unwrap()[0].clone();
    assert!(
        request.starts_with("GET /1/versions/ HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("user-agent: modobox/"),
        "{request}"
    );
}

#[tokio::test]
async fn failures_are_errors_that_change_nothing() {
    let db = common::sqlite().await;
    let store = fresh(&db).await;
    let url = |s: &Server| s.url();

    let e = public_api::fetch_and_store(
        &store,
        &url(&server(Reply::Status(500)).await),
        TIMEOUT,
        Utc::now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("answered HTTP 500"), "{e}");

    let e = public_api::fetch_and_store(
        &store,
        &url(&server(Reply::Json("<html>maintenance</html>".into())).await),
        TIMEOUT,
        Utc::now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("not the expected JSON"), "{e}");

    let e = public_api::fetch_and_store(
        &store,
        &url(&server(Reply::Json(r#"{"versions": []}"#.into())).await),
        TIMEOUT,
        Utc::now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("not the expected JSON"), "{e}");

    // A streamed body past the cap is cut off, not read to the end.
    let e = public_api::fetch_and_store(
        &store,
        &url(&server(Reply::Chunked(4 * public_api::MAX_BODY)).await),
        Duration::from_secs(10),
        Utc::now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("larger than 1048576 bytes"), "{e}");
    let e = public_api::fetch_and_store(
        &store,
        &url(&server(Reply::Announced(public_api::MAX_BODY + 1)).await),
        TIMEOUT,
        Utc::now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("larger than"), "{e}");

    // A server that accepts and never answers costs the timeout, not more.
    let silent = server(Reply::Silent).await;
    let started = Instant::now();
    let e = public_api::fetch_and_store(&store, &silent.url(), TIMEOUT, Utc::now())
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    assert!(e.contains("no complete answer within 2 s"), "{e}");
    assert!(
        took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(silent.connections.load(Ordering::SeqCst), 1);

    // Nothing was stored by any of these.
    assert_eq!(setting(&store, "public_api.checked_at").await, None);
    assert_eq!(public_api::upgrade_notice(&store).await, None);
    store.close().await;
}

#[tokio::test]
async fn disabled_sends_nothing() {
    let db = common::sqlite().await;
    let store = fresh(&db).await;
    let s = server(Reply::Json(
        r#"[{"name": "modobox", "version": "99.0.0"}]"#.into(),
    ))
    .await;
    let mut config = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
    config.public_api.url = s.url();
    config.public_api.timeout_secs = 2;

    config.public_api.enabled = false;
    let msg = public_api::run(&config, &store).await.unwrap();
    assert!(msg.starts_with("skipped"), "{msg}");
    // Give a stray connection time to arrive before saying none came.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.connections.load(Ordering::SeqCst), 0);
    assert_eq!(setting(&store, "public_api.checked_at").await, None);

    // The same configuration enabled does reach the server (the test above is not vacuous).
    config.public_api.enabled = true;
    public_api::run(&config, &store).await.unwrap();
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    assert!(public_api::upgrade_notice(&store).await.is_some());
    store.close().await;
}
