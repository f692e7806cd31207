//! The From: header milter. Postfix ties the envelope sender to the login
//! (`reject_sender_login_mismatch`), but mail readers show the From: header and OpenDKIM signs
//! for its domain. On submission (587, 465) Postfix asks this milter first, then OpenDKIM: a
//! message whose From: header names any address its login may not send as (the rule of
//! `store::accounts::senders`, the same as the sender-login map) is refused with 550 5.7.1 at the end of
//! the headers, so it is never accepted and never signed. Unauthenticated sessions are not its
//! business (port 25 does not use it; OpenDKIM signs only for logins and loopback).

pub mod inbound;
pub mod protocol;

use std::future::Future;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::names::EmailAddress;
use crate::store::accounts::senders;
use crate::store::Store;

/// Where the milter listens (loopback; master.cf names it for submission and smtps).
pub const PORT: u16 = 8893;

pub fn address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], PORT))
}

/// At most this many MTA connections at once (Postfix opens one per SMTP session).
const MAX_SESSIONS: usize = 256;

/// What becomes of a message after its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to object to.
    Pass,
    /// 550 5.7.1 with this text.
    Refuse(String),
    /// 451 4.3.0: the rule could not be checked (database down); the client tries again.
    Later(String),
}

/// Why the From: header gives no address to check (the refusal's text).
#[derive(Debug, thiserror::Error)]
pub enum FromHeaderError {
    #[error("the From: header cannot be read as a list of addresses")]
    Unreadable,
    /// `shown` is the address made printable for the answer.
    #[error("the From: header address {shown} is not a valid address")]
    InvalidAddress { shown: String },
    #[error("the From: header names no address")]
    NoAddress,
}

/// The addresses of From: header values (each may list several, with display names, comments
/// and groups), or why they cannot be read.
pub fn from_addresses(values: &[String]) -> Result<Vec<EmailAddress>, FromHeaderError> {
    let mut out = Vec::new();
    for value in values {
        let unfolded = value.replace(['\r', '\n'], "");
        let list = mailparse::addrparse(&unfolded).map_err(|_| FromHeaderError::Unreadable)?;
        let mut singles = Vec::new();
        for a in list.iter() {
            match a {
                mailparse::MailAddr::Single(s) => singles.push(s.addr.clone()),
                mailparse::MailAddr::Group(g) => {
                    singles.extend(g.addrs.iter().map(|s| s.addr.clone()))
                }
            }
        }
        for s in singles {
            let parsed = EmailAddress::parse("From", s.trim()).map_err(|_| {
                FromHeaderError::InvalidAddress {
                    shown: crate::names::printable(&s),
                }
            })?;
            out.push(parsed);
        }
    }
    if out.is_empty() && !values.is_empty() {
        return Err(FromHeaderError::NoAddress);
    }
    Ok(out)
}

/// The rule for one message: every From: address must be one `login` may send as.
pub async fn judge(store: &Store, login: &str, from_values: &[String]) -> Verdict {
    let addresses = match from_addresses(from_values) {
        Ok(a) => a,
        Err(e) => return Verdict::Refuse(format!("5.7.1 {e}")),
    };
    let mut tx = match store.begin_read().await {
        Ok(tx) => tx,
        Err(e) => return Verdict::Later(format!("4.3.0 sender check unavailable ({e})")),
    };
    for address in &addresses {
        match senders::may_send_as(&mut tx, login, address).await {
            Ok(true) => {}
            Ok(false) => {
                return Verdict::Refuse(format!(
                    "5.7.1 From: header address {address} is not one {login} may send as \
                     (its own address, an alias delivering to it, its sender addresses, or its \
                     address at a domain alias)"
                ))
            }
            Err(e) => return Verdict::Later(format!("4.3.0 sender check unavailable ({e})")),
        }
    }
    Verdict::Pass
}

/// Serves MTA connections until `shutdown` completes (Postfix applies the milter's default
/// action, tempfail, to a connection refused over `MAX_SESSIONS`).
pub async fn serve(
    listener: TcpListener,
    store: Store,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    crate::system::net::serve_connections(
        "milter",
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

/// One MTA connection: any number of messages, until QUIT.
pub async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    store: &Store,
) -> std::io::Result<()> {
    use protocol::*;
    let mut login: Option<String> = None;
    let mut from: Vec<String> = Vec::new();
    while let Some(p) = read(&mut stream).await? {
        match p.command {
            OPTNEG => write(&mut stream, OPTNEG, &negotiate_reply(&p.data)).await?,
            MACRO => {
                for (name, value) in macros(&p.data) {
                    if name == "{auth_authen}" {
                        login = Some(value.to_lowercase()).filter(|v| !v.is_empty());
                    }
                }
            }
            MAIL => {
                from.clear();
                if login.is_none() {
                    // Not a logged-in sender: nothing more to see in this message.
                    write(&mut stream, ACCEPT, &[]).await?;
                } else {
                    write(&mut stream, CONTINUE, &[]).await?;
                }
            }
            HEADER => {
                let f = strings(&p.data);
                if f.first().is_some_and(|n| n.eq_ignore_ascii_case("from")) {
                    from.push(f.get(1).cloned().unwrap_or_default());
                }
                write(&mut stream, CONTINUE, &[]).await?;
            }
            EOH => {
                let verdict = match &login {
                    Some(l) => judge(store, l, &from).await,
                    None => Verdict::Pass,
                };
                match verdict {
                    Verdict::Pass => write(&mut stream, CONTINUE, &[]).await?,
                    Verdict::Refuse(text) => {
                        tracing::info!(
                            "milter: refused for {}: {text}",
                            login.as_deref().unwrap_or("")
                        );
                        write(&mut stream, REPLYCODE, &reply_code("550", &text)).await?
                    }
                    Verdict::Later(text) => {
                        tracing::warn!("milter: {text}");
                        write(&mut stream, REPLYCODE, &reply_code("451", &text)).await?
                    }
                }
            }
            ABORT => from.clear(),
            QUIT => return Ok(()),
            QUIT_NC => {
                login = None;
                from.clear();
            }
            // Anything else that expects an answer (the steps negotiated away may still come
            // from an MTA that ignores the flags).
            _ => write(&mut stream, CONTINUE, &[]).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(v: &[&str]) -> Result<Vec<String>, FromHeaderError> {
        from_addresses(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map(|a| a.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn every_address_of_every_from_header_counts() {
        assert_eq!(
            addrs(&["\"Alice, CEO\" <Alice@Example.test>, bob@example.test"]).unwrap(),
            vec!["alice@example.test", "bob@example.test"]
        );
        assert_eq!(
            addrs(&[
                "=?utf-8?q?Caf=C3=A9?= <cafe@example.test>",
                "x@other.test (comment)"
            ])
            .unwrap(),
            vec!["cafe@example.test", "x@other.test"]
        );
        assert_eq!(
            addrs(&["Team: a@example.test, b@other.test;"]).unwrap(),
            vec!["a@example.test", "b@other.test"]
        );
        assert!(addrs(&["   "]).is_err());
        assert!(addrs(&["<not an address>"]).is_err());
        assert_eq!(addrs(&[]).unwrap(), Vec::<String>::new());
    }
}
