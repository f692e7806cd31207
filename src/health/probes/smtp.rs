//! SMTP and LMTP share one dialogue: a 220 banner, EHLO or LHLO answered by 250, QUIT.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    check_word, connect_tcp, connect_unix, quoted, unexpected, Clock, Conn, ProbeError, ProbeOk,
    GOODBYE_WAIT, MAX_LINES,
};

/// An SMTP/LMTP reply: its code and its lines (multi-line replies joined).
async fn smtp_reply<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    expected: &str,
    waiting: &str,
) -> Result<(u16, Vec<String>), ProbeError> {
    let mut code = None;
    let mut lines = Vec::new();
    for _ in 0..MAX_LINES {
        let line = conn.some_line(expected, waiting).await?;
        let bytes = line.as_bytes();
        let well_formed = bytes.len() >= 3
            && bytes[..3].iter().all(u8::is_ascii_digit)
            && matches!(bytes.get(3), None | Some(b' ') | Some(b'-'));
        let this: u16 = match line.get(..3).map(str::parse) {
            Some(Ok(n)) if well_formed => n,
            _ => return Err(unexpected(expected, quoted(&line))),
        };
        if code.is_some_and(|c| c != this) {
            return Err(unexpected(expected, quoted(&line)));
        }
        code = Some(this);
        let last = bytes.get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Ok((this, lines));
        }
    }
    Err(unexpected(
        expected,
        format!("more than {MAX_LINES} reply lines"),
    ))
}

/// Banner (220), greeting verb (EHLO/LHLO) → 250, then QUIT.
async fn smtp_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Conn<S>,
    verb: &str,
    helo: &str,
) -> Result<ProbeOk, ProbeError> {
    let expected = "220 banner";
    let (code, banner) = smtp_reply(&mut conn, expected, "the banner").await?;
    let first = banner.first().cloned().unwrap_or_default();
    if code != 220 {
        return Err(unexpected(expected, quoted(&first)));
    }
    conn.send(format!("{verb} {helo}\r\n").as_bytes(), verb)
        .await?;
    let expected = format!("250 reply to {verb}");
    let (code, reply) = smtp_reply(&mut conn, &expected, &format!("the {verb} reply")).await?;
    if code != 250 {
        let first = reply.first().cloned().unwrap_or_default();
        return Err(unexpected(&expected, quoted(&first)));
    }
    let latency = conn.clock.elapsed();
    // Goodbye: the answer (221) is read only so the daemon logs a clean QUIT.
    conn.clock = conn.clock.shortened(GOODBYE_WAIT);
    if conn.send(b"QUIT\r\n", "QUIT").await.is_ok() {
        let _ = smtp_reply(&mut conn, "221", "the QUIT reply").await;
    }
    conn.close().await;
    Ok(ProbeOk {
        detail: first,
        latency,
        peer_cert: None,
    })
}

/// SMTP on `addr` (Postfix on 25 and 587, Amavis on 10024): the 220 banner, `EHLO helo` → 250,
/// QUIT. `detail` is the banner's first line.
pub async fn smtp(addr: SocketAddr, helo: &str, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    check_word("EHLO name", helo)?;
    let clock = Clock::start(timeout);
    let stream = connect_tcp(&clock, addr).await?;
    smtp_session(Conn::new(stream, clock), "EHLO", helo).await
}

/// LMTP on a unix socket (Dovecot's `/var/spool/postfix/private/dovecot-lmtp`): the 220
/// banner, `LHLO helo` → 250, QUIT.
pub async fn lmtp_unix(path: &Path, helo: &str, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    check_word("LHLO name", helo)?;
    let clock = Clock::start(timeout);
    let stream = connect_unix(&clock, path).await?;
    smtp_session(Conn::new(stream, clock), "LHLO", helo).await
}

#[cfg(test)]
mod tests {
    use tokio::net::UnixListener;

    use super::*;
    use crate::health::probes::test_support::*;

    fn smtp_server(line: &str) -> Option<String> {
        if line.starts_with("EHLO ") {
            Some("250-mail.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into())
        } else if line == "QUIT" {
            Some("221 2.0.0 Bye\r\n".into())
        } else {
            Some("502 5.5.2 Error: command not recognized\r\n".into())
        }
    }

    #[tokio::test]
    async fn smtp_multi_line_banner_and_ehlo() {
        let (listener, addr) = tcp().await;
        let server = serve_tcp(
            listener,
            "220-mail.example.test ESMTP Postfix\r\n220 second line\r\n",
            smtp_server,
        );
        let ok = smtp(addr, HELO, SHORT).await.unwrap();
        assert_eq!(ok.detail, "220-mail.example.test ESMTP Postfix");
        assert!(ok.latency < SHORT);
        assert_eq!(ok.peer_cert, None);
        assert_eq!(
            server.await.unwrap(),
            [format!("EHLO {HELO}"), "QUIT".into()]
        );
    }

    #[tokio::test]
    async fn smtp_wrong_banner() {
        let (listener, addr) = tcp().await;
        serve_tcp(listener, "554 5.3.2 go away\r\n", smtp_server);
        let err = smtp(addr, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected 220 banner, got "554 5.3.2 go away""#
        );
    }

    #[tokio::test]
    async fn smtp_wrong_ehlo_reply_and_garbage() {
        let (listener, addr) = tcp().await;
        serve_tcp(listener, "220 mail ESMTP\r\n", |_| {
            Some("421-4.3.2 shutting\r\n421 4.3.2 down\r\n".into())
        });
        let err = smtp(addr, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected 250 reply to EHLO, got "421-4.3.2 shutting""#
        );

        let (listener, addr) = tcp().await;
        serve_tcp(listener, "SSH-2.0-OpenSSH_9.2\r\n", smtp_server);
        let err = smtp(addr, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected 220 banner, got "SSH-2.0-OpenSSH_9.2""#
        );

        let (listener, addr) = tcp().await;
        hang_up(listener, "");
        let err = smtp(addr, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected 220 banner, got the connection closed"
        );
    }

    #[tokio::test]
    async fn smtp_silence_times_out() {
        let (listener, addr) = tcp().await;
        silent_tcp(listener);
        let err = smtp(addr, HELO, SHORT).await.unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the banner"
        );

        let (listener, addr) = tcp().await;
        serve_tcp(listener, "220 mail ESMTP\r\n", |_| Some(String::new()));
        let err = smtp(addr, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the EHLO reply"
        );
    }

    #[tokio::test]
    async fn smtp_refused_and_bad_helo() {
        let addr = refused_addr().await;
        let err = smtp(addr, HELO, SHORT).await.unwrap_err();
        assert_eq!(err.to_string(), refused_message(addr));

        let err = smtp(addr, "two words", SHORT).await.unwrap_err();
        assert_eq!(err.to_string(), r#"invalid EHLO name "two words""#);
    }

    fn lmtp_server(line: &str) -> Option<String> {
        if line.starts_with("LHLO ") {
            Some("250-mail.example.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n".into())
        } else if line == "QUIT" {
            Some("221 2.0.0 OK\r\n".into())
        } else {
            Some("500 5.5.1 Unknown command\r\n".into())
        }
    }

    #[tokio::test]
    async fn lmtp_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dovecot-lmtp");
        let server = serve_unix(
            UnixListener::bind(&path).unwrap(),
            "220 mail.example.test Dovecot ready.\r\n",
            lmtp_server,
        );
        let ok = lmtp_unix(&path, HELO, SHORT).await.unwrap();
        assert_eq!(ok.detail, "220 mail.example.test Dovecot ready.");
        assert_eq!(
            server.await.unwrap(),
            [format!("LHLO {HELO}"), "QUIT".into()]
        );
    }

    #[tokio::test]
    async fn lmtp_wrong_silent_refused() {
        let dir = tempfile::tempdir().unwrap();
        // An SMTP server that does not know LHLO.
        let path = dir.path().join("wrong");
        serve_unix(
            UnixListener::bind(&path).unwrap(),
            "220 mail ESMTP\r\n",
            |_| Some("500 5.5.1 Unknown command\r\n".into()),
        );
        let err = lmtp_unix(&path, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected 250 reply to LHLO, got "500 5.5.1 Unknown command""#
        );

        let path = dir.path().join("silent");
        silent_unix(UnixListener::bind(&path).unwrap());
        let err = lmtp_unix(&path, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the banner"
        );

        let path = dead_socket(dir.path());
        let err = lmtp_unix(&path, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("connect {}: connection refused", path.display())
        );

        let path = dir.path().join("absent");
        let err = lmtp_unix(&path, HELO, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("connect {}: no such file or directory", path.display())
        );
    }
}
