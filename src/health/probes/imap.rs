//! IMAP and IMAPS: the greeting, CAPABILITY, LOGOUT.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::ServerName;

use super::tls::tls_handshake;
use super::{
    connect_tcp, quoted, starts_with_ignore_case, unexpected, Clock, Conn, ProbeError, ProbeOk,
    GOODBYE_WAIT, MAX_LINES,
};

/// Reads IMAP responses until the one tagged `tag`, and returns it.
async fn imap_tagged<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &str,
    expected: &str,
    waiting: &str,
) -> Result<String, ProbeError> {
    let prefix = format!("{tag} ");
    for _ in 0..MAX_LINES {
        let line = conn.some_line(expected, waiting).await?;
        if line.starts_with(&prefix) {
            return Ok(line);
        }
    }
    Err(unexpected(
        expected,
        format!("more than {MAX_LINES} untagged lines"),
    ))
}

async fn imap_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Conn<S>,
    peer_cert: Option<Vec<u8>>,
) -> Result<ProbeOk, ProbeError> {
    let expected = "\"* OK\" greeting";
    let greeting = conn.some_line(expected, "the greeting").await?;
    if !starts_with_ignore_case(&greeting, "* OK") {
        return Err(unexpected(expected, quoted(&greeting)));
    }
    conn.send(b"a1 CAPABILITY\r\n", "CAPABILITY").await?;
    let expected = "\"a1 OK\"";
    let reply = imap_tagged(&mut conn, "a1", expected, "the CAPABILITY reply").await?;
    if !starts_with_ignore_case(&reply, "a1 OK") {
        return Err(unexpected(expected, quoted(&reply)));
    }
    let latency = conn.clock.elapsed();
    conn.clock = conn.clock.shortened(GOODBYE_WAIT);
    if conn.send(b"a2 LOGOUT\r\n", "LOGOUT").await.is_ok() {
        let _ = imap_tagged(&mut conn, "a2", "\"a2 OK\"", "the LOGOUT reply").await;
    }
    conn.close().await;
    Ok(ProbeOk {
        detail: greeting,
        latency,
        peer_cert,
    })
}

/// IMAP on `addr` (Dovecot on 143, or 993 with `tls`): the `* OK` greeting, `a1 CAPABILITY` →
/// `a1 OK`, LOGOUT. With `tls`, any certificate is accepted and returned in `peer_cert`.
pub async fn imap(addr: SocketAddr, tls: bool, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let clock = Clock::start(timeout);
    let tcp = connect_tcp(&clock, addr).await?;
    if tls {
        let target = addr.to_string();
        let name = ServerName::IpAddress(addr.ip().into());
        let (stream, cert) = tls_handshake(&clock, tcp, name, &target, &[]).await?;
        imap_session(Conn::new(stream, clock), cert).await
    } else {
        imap_session(Conn::new(tcp, clock), None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::probes::test_support::*;

    const IMAP_GREETING: &str = "* OK [CAPABILITY IMAP4rev1 LOGIN-REFERRALS] Dovecot ready.\r\n";

    fn imap_server(line: &str) -> Option<String> {
        match line {
            "a1 CAPABILITY" => Some(
                "* CAPABILITY IMAP4rev1 SASL-IR IDLE AUTH=PLAIN\r\n\
                 a1 OK Pre-login capabilities listed.\r\n"
                    .into(),
            ),
            "a2 LOGOUT" => Some("* BYE Logging out\r\na2 OK Logout completed.\r\n".into()),
            _ => Some("* BAD Error in IMAP command\r\n".into()),
        }
    }

    #[tokio::test]
    async fn imap_plain() {
        let (listener, addr) = tcp().await;
        let server = serve_tcp(listener, IMAP_GREETING, imap_server);
        let ok = imap(addr, false, SHORT).await.unwrap();
        assert_eq!(ok.detail, IMAP_GREETING.trim_end());
        assert_eq!(ok.peer_cert, None);
        assert_eq!(server.await.unwrap(), ["a1 CAPABILITY", "a2 LOGOUT"]);
    }

    #[tokio::test]
    async fn imap_wrong_answers() {
        let (listener, addr) = tcp().await;
        serve_tcp(listener, "* BYE Too many connections\r\n", imap_server);
        let err = imap(addr, false, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected "* OK" greeting, got "* BYE Too many connections""#
        );

        let (listener, addr) = tcp().await;
        serve_tcp(listener, IMAP_GREETING, |_| {
            Some("a1 BAD Error in IMAP command\r\n".into())
        });
        let err = imap(addr, false, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected "a1 OK", got "a1 BAD Error in IMAP command""#
        );
    }

    #[tokio::test]
    async fn imap_silent_and_refused() {
        let (listener, addr) = tcp().await;
        silent_tcp(listener);
        let err = imap(addr, false, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the greeting"
        );

        let (listener, addr) = tcp().await;
        silent_tcp(listener);
        let err = imap(addr, true, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the TLS handshake"
        );

        let addr = refused_addr().await;
        for tls in [false, true] {
            let err = imap(addr, tls, SHORT).await.unwrap_err();
            assert_eq!(err.to_string(), refused_message(addr));
        }
    }

    #[tokio::test]
    async fn imaps_accepts_a_self_signed_certificate_and_returns_it() {
        let (listener, addr) = tcp().await;
        let (acceptor, der) = acceptor();
        let server = serve_tls(listener, acceptor, IMAP_GREETING, imap_server);
        let ok = imap(addr, true, SHORT).await.unwrap();
        assert_eq!(ok.detail, IMAP_GREETING.trim_end());
        assert_eq!(ok.peer_cert, Some(der));
        let (_, seen) = server.await.unwrap();
        assert_eq!(seen, ["a1 CAPABILITY", "a2 LOGOUT"]);
    }

    #[tokio::test]
    async fn imaps_against_plain_imap_is_a_tls_error() {
        let (listener, addr) = tcp().await;
        serve_tcp(listener, IMAP_GREETING, imap_server);
        let err = imap(addr, true, SHORT).await.unwrap_err();
        assert!(matches!(err, ProbeError::Tls { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!("TLS with {addr}: ")),
            "{err}"
        );
    }
}
