//! The canary: one real message through the whole server, as a user's would go — a throw-away
//! account on the primary domain submits it on 587 (STARTTLS, AUTH PLAIN), Postfix passes it
//! through the milters (OpenDKIM signs) and Amavis, Dovecot delivers it by LMTP, and it is
//! read back over IMAPS and its DKIM signature checked against the domain's key in the
//! database. The account (and so the message) is deleted afterwards, whatever happened.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};

use crate::config::Config;
use crate::names::Username;
use crate::secrets::Secret;
use crate::store::access::{Actor, Role};
use crate::store::accounts::{self, AccountSpec, Password};
use crate::store::Store;

/// How long the message may take from submission to the mailbox: after a restart of Amavis
/// the queue it left behind (minutes of a busy server's mail) goes first.
const DELIVERY: Duration = Duration::from_secs(300);
const MAX_LINE: usize = 8192;
const MAX_MESSAGE: usize = 1024 * 1024;

/// What the canary proved.
#[derive(Debug, Clone)]
pub struct Flown {
    pub address: String,
    pub seconds: f64,
    pub dkim: bool,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Sends the canary and reads it back; `Ok(None)` when there is no hosted primary domain to
/// send it in.
pub async fn fly(config: &Config, store: &Store) -> Result<Option<Flown>, String> {
    let Some(domain) = config.primary_domain() else {
        return Ok(None);
    };
    let mut tx = store.begin().await.map_err(|e| err("the database", e))?;
    let hosted = crate::store::domains::get(&mut tx, Actor::System, &domain).await;
    let Ok(hosted) = hosted else {
        return Ok(None);
    };
    let tag = Secret::generate(10).expose().to_ascii_lowercase();
    let address = format!("modobox-canary-{tag}@{domain}");
    let username = Username::parse(&address).map_err(|e| err("the canary's address", e))?;
    let password = Secret::generate(32);
    let policy = accounts::hash_policy(&mut tx)
        .await
        .map_err(|e| err("the database", e))?;
    let spec = AccountSpec {
        username: username.clone(),
        password: Password::Clear(password.expose().to_string()),
        first_name: String::new(),
        last_name: String::new(),
        enabled: true,
        role: Role::SimpleUsers,
        mailbox: Some(None),
        mailbox_address: None,
        domains: Vec::new(),
        profile: Default::default(),
        mailbox_settings: Default::default(),
    };
    accounts::create(&mut tx, Actor::System, &spec, policy)
        .await
        .map_err(|e| err("creating the canary's account", e))?;
    tx.commit().await.map_err(|e| err("the database", e))?;

    let started = Instant::now();
    let result = tokio::time::timeout(
        DELIVERY + Duration::from_secs(30),
        send_and_read(config, &address, password.expose(), &tag),
    )
    .await
    .unwrap_or_else(|_| Err("the canary was not read back in time".into()));
    let seconds = started.elapsed().as_secs_f64();

    // Deleted whatever happened; its mail directory goes with the account's on-disk removal.
    let removed = async {
        let mut tx = store.begin().await?;
        let opts = accounts::Options {
            mail_root: config.paths.mail_root.as_path().to_path_buf(),
            handle_mailboxes_on_filesystem: config.mail.handle_mailboxes_on_filesystem,
        };
        accounts::delete(&mut tx, Actor::System, &username, &opts).await?;
        tx.commit().await
    }
    .await;
    let message = result?;
    removed.map_err(|e| err("deleting the canary's account", e))?;

    let dkim =
        config.components.opendkim && hosted.enable_dkim && !hosted.dkim_public_key.is_empty();
    if dkim {
        crate::keys::dkim_verify::verify(&message, domain.as_str(), &hosted.dkim_public_key)
            .map_err(|e| format!("the canary arrived, but {e}"))?;
    }
    Ok(Some(Flown {
        address,
        seconds,
        dkim,
    }))
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn send_and_read(
    config: &Config,
    address: &str,
    password: &str,
    tag: &str,
) -> Result<String, String> {
    let host = config.hostname.as_str();
    let message_id = format!("<modobox-canary-{tag}@{host}>");
    submit(host, address, password, &message_id)
        .await
        .map_err(|e| err("submitting the canary on port 587", e))?;
    read_back(address, password, &message_id)
        .await
        .map_err(|e| err("reading the canary back over IMAPS", e))
}

async fn line<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufStream<S>) -> Result<String, String> {
    let mut buf = Vec::new();
    let n = (&mut *s)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufStream<S>,
    text: &str,
) -> Result<(), String> {
    s.write_all(text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"\r\n").await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())
}

/// One SMTP reply; an error unless its code is `want`.
async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufStream<S>,
    want: u16,
    after: &str,
) -> Result<(), String> {
    loop {
        let l = line(s).await?;
        if l.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        return if l.starts_with(&want.to_string()) {
            Ok(())
        } else {
            Err(format!("after {after}: {l}"))
        };
    }
}

async fn submit(host: &str, address: &str, password: &str, message_id: &str) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(local(587))
        .await
        .map_err(|e| e.to_string())?;
    let mut s = BufStream::new(tcp);
    reply(&mut s, 220, "connecting").await?;
    send(&mut s, &format!("EHLO {host}")).await?;
    reply(&mut s, 250, "EHLO").await?;
    send(&mut s, "STARTTLS").await?;
    reply(&mut s, 220, "STARTTLS").await?;
    let tls = super::probes::tls::any_certificate(s.into_inner(), local(587))
        .await
        .map_err(|e| e.to_string())?;
    let mut s = BufStream::new(tls);
    send(&mut s, &format!("EHLO {host}")).await?;
    reply(&mut s, 250, "EHLO").await?;
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{address}\0{password}"));
    send(&mut s, &format!("AUTH PLAIN {plain}")).await?;
    reply(&mut s, 235, "AUTH").await?;
    send(&mut s, &format!("MAIL FROM:<{address}>")).await?;
    reply(&mut s, 250, "MAIL FROM").await?;
    send(&mut s, &format!("RCPT TO:<{address}>")).await?;
    reply(&mut s, 250, "RCPT TO").await?;
    send(&mut s, "DATA").await?;
    reply(&mut s, 354, "DATA").await?;
    let date = chrono::Utc::now().to_rfc2822();
    let body = format!(
        "From: <{address}>\r\nTo: <{address}>\r\nSubject: modobox upgrade canary\r\n\
         Message-ID: {message_id}\r\nDate: {date}\r\n\r\n\
         modobox sent this message to itself to check mail works after an upgrade.\r\n\
         Its account is deleted right away.\r\n."
    );
    send(&mut s, &body).await?;
    reply(&mut s, 250, "the message").await?;
    let _ = send(&mut s, "QUIT").await;
    Ok(())
}

/// `"text"` as an IMAP quoted string.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn tagged<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufStream<S>,
    tag: &str,
    command: &str,
) -> Result<Vec<String>, String> {
    send(s, &format!("{tag} {command}")).await?;
    let mut untagged = Vec::new();
    loop {
        let l = line(s).await?;
        if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
            return if rest.starts_with("OK") {
                Ok(untagged)
            } else {
                let shown = command.split_whitespace().next().unwrap_or_default();
                Err(format!("{shown}: {rest}"))
            };
        }
        untagged.push(l);
    }
}

async fn read_back(address: &str, password: &str, message_id: &str) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(local(993))
        .await
        .map_err(|e| e.to_string())?;
    let tls = super::probes::tls::any_certificate(tcp, local(993))
        .await
        .map_err(|e| e.to_string())?;
    let mut s = BufStream::new(tls);
    line(&mut s).await?;
    tagged(
        &mut s,
        "a1",
        &format!("LOGIN {} {}", quoted(address), quoted(password)),
    )
    .await?;
    let deadline = Instant::now() + DELIVERY;
    let uid = loop {
        tagged(&mut s, "a2", "SELECT INBOX").await?;
        let found = tagged(
            &mut s,
            "a3",
            &format!("UID SEARCH HEADER Message-ID {}", quoted(message_id)),
        )
        .await?;
        if let Some(uid) = found
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(str::split_whitespace)
            .next()
        {
            break uid.to_string();
        }
        if Instant::now() > deadline {
            return Err(format!("not delivered within {} s", DELIVERY.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    send(&mut s, &format!("a4 UID FETCH {uid} BODY.PEEK[]")).await?;
    let first = line(&mut s).await?;
    let size: usize = first
        .rsplit_once('{')
        .and_then(|(_, n)| n.strip_suffix('}'))
        .and_then(|n| n.parse().ok())
        .filter(|n| *n <= MAX_MESSAGE)
        .ok_or_else(|| format!("FETCH: {first}"))?;
    let mut message = vec![0; size];
    s.read_exact(&mut message)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let l = line(&mut s).await?;
        if l.starts_with("a4 ") {
            break;
        }
    }
    let _ = tagged(&mut s, "a5", "LOGOUT").await;
    Ok(String::from_utf8_lossy(&message).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_strings_are_quoted() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
