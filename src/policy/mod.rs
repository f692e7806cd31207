//! The Postfix policy service for daily sending limits, with the semantics of Modoboa 2.x's
//! policy daemon (`modoboa/policyd`): only logged-in senders are its business; a login counts
//! against its own limit and its domain's (`store::sending`). At RCPT time a login whose
//! counter is used up gets `defer_if_permit Daily limit reached, retry later`; at the end of
//! the message every counter must have room for all its recipients, and is then moved by that
//! many, else the same answer. Deferred, never bounced: the client keeps the message and tries
//! again the next day. Served by the `modobox milter` process (same database role), on
//! loopback; Postfix's `check_policy_service` falls back to DUNNO when it cannot answer.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::store::sending::{self, Consumed};
use crate::store::Store;

/// Where the policy service listens (loopback; main.cf names it).
pub const PORT: u16 = 8894;

pub fn address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], PORT))
}

/// Modoboa's answer, word for word: its users' clients and scripts know it.
pub const OVER_LIMIT: &str = "defer_if_permit Daily limit reached, retry later";

/// At most this many Postfix connections at once.
const MAX_SESSIONS: usize = 256;
/// A request longer than this is not Postfix's.
const MAX_REQUEST: usize = 64 * 1024;

/// One policy request: Postfix's `name=value` attributes.
pub type Request = HashMap<String, String>;

/// The answer to one request (`action=...`).
pub async fn decide(store: &Store, req: &Request) -> String {
    let login = match req.get("sasl_username") {
        Some(l) if !l.is_empty() => l.to_lowercase(),
        _ => return "dunno".into(),
    };
    let state = req.get("protocol_state").map(String::as_str).unwrap_or("");
    if state != "RCPT" && state != "END-OF-MESSAGE" {
        return "dunno".into();
    }
    match judge(store, &login, state, req).await {
        Ok(action) => action,
        Err(e) => {
            // The database is unreachable: Modoboa's daemon would fail the same way; the
            // limit cannot be checked, so the message waits rather than passes uncounted.
            tracing::warn!("policy: {login}: {e}");
            "defer_if_permit sending limit check unavailable, retry later".into()
        }
    }
}

async fn judge(
    store: &Store,
    login: &str,
    state: &str,
    req: &Request,
) -> Result<String, crate::store::StoreError> {
    let day = sending::day_of(chrono::Utc::now());
    // Reading only, until a message is counted: no write lock for the logins without a limit
    // (on SQLite a write transaction holds the whole file).
    let mut tx = store.begin_read().await?;
    let limits = sending::limits(&mut tx, login).await?;
    if limits.is_empty() {
        return Ok("dunno".into());
    }
    if state == "RCPT" {
        for l in &limits {
            if sending::sent(&mut tx, &l.key, &day).await? >= l.limit {
                return Ok(OVER_LIMIT.into());
            }
        }
        return Ok("dunno".into());
    }
    drop(tx);
    let mut tx = store.begin().await?;
    let n = req
        .get("recipient_count")
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or(0)
        .max(1);
    match sending::consume(&mut tx, &limits, n, &day).await? {
        Consumed::Refused { key } => {
            drop(tx);
            tracing::info!("policy: {login}: {n} message(s) over the daily limit of {key}");
            Ok(OVER_LIMIT.into())
        }
        Consumed::Counted { now_exhausted } => {
            tx.commit().await?;
            for key in now_exhausted {
                tracing::warn!(
                    "policy: the daily sending limit of {key} is reached (last message from {login}); it starts again at 00:00 UTC"
                );
            }
            Ok("dunno".into())
        }
    }
}

/// Reads one request (attribute lines up to an empty line); None at the end of the connection.
pub async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<Request>> {
    let mut req = Request::new();
    let mut size = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).await?;
        if n == 0 {
            return Ok(None);
        }
        size += n;
        if size > MAX_REQUEST {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "policy request too long",
            ));
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l.is_empty() {
            return Ok(Some(req));
        }
        if let Some((k, v)) = l.split_once('=') {
            req.insert(k.to_string(), v.to_string());
        }
    }
}

/// One Postfix connection: any number of requests.
pub async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    store: &Store,
) -> std::io::Result<()> {
    let (r, mut w) = tokio::io::split(stream);
    let mut reader = BufReader::new(r);
    while let Some(req) = read_request(&mut reader).await? {
        let action = decide(store, &req).await;
        w.write_all(format!("action={action}\n\n").as_bytes())
            .await?;
        w.flush().await?;
    }
    Ok(())
}

/// Serves Postfix connections until `shutdown` completes (Postfix's default_action, DUNNO,
/// applies to a connection refused over `MAX_SESSIONS`).
pub async fn serve(
    listener: TcpListener,
    store: Store,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    crate::system::net::serve_connections(
        "policy",
        listener,
        MAX_SESSIONS,
        move |stream| {
            let store = store.clone();
            async move { session(stream, &store).await }
        },
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_read_up_to_the_empty_line() {
        let input = b"request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username=a@b.c\nodd line\n\nrequest=smtpd_access_policy\n\n";
        let mut r = BufReader::new(&input[..]);
        let first = read_request(&mut r).await.unwrap().unwrap();
        assert_eq!(first["protocol_state"], "RCPT");
        assert_eq!(first["sasl_username"], "a@b.c");
        assert_eq!(first.len(), 3);
        let second = read_request(&mut r).await.unwrap().unwrap();
        assert_eq!(second.len(), 1);
        assert!(read_request(&mut r).await.unwrap().is_none());
        let long = format!("a={}\n", "x".repeat(MAX_REQUEST));
        let mut r = BufReader::new(long.as_bytes());
        assert!(read_request(&mut r).await.is_err());
    }
}
