//! HTTPS (nginx, any status) and plain HTTP (the admin web UI, below 500): one GET and its
//! status line.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::ServerName;

use super::tls::tls_handshake;
use super::{check_word, connect_tcp, quoted, unexpected, Clock, Conn, ProbeError, ProbeOk};

/// HTTPS on `addr` for `host` (nginx on 443): TLS with SNI = `host` (any certificate), then
/// `GET /` with `Host: host`. Any HTTP status is a success (the application behind may answer
/// 502): `detail` is `HTTP <code> <reason>`, `peer_cert` the certificate nginx served.
pub async fn https(addr: SocketAddr, host: &str, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let invalid = || ProbeError::Invalid {
        what: "host name",
        value: host.to_string(),
    };
    check_word("host name", host)?;
    let name = ServerName::try_from(host.to_string()).map_err(|_| invalid())?;
    let clock = Clock::start(timeout);
    let tcp = connect_tcp(&clock, addr).await?;
    let target = format!("{addr} ({host})");
    let (stream, cert) = tls_handshake(&clock, tcp, name, &target, &[b"http/1.1"]).await?;
    let (detail, latency) = http_exchange(Conn::new(stream, clock), host, "/").await?;
    Ok(ProbeOk {
        detail,
        latency,
        peer_cert: cert,
    })
}

/// Plain HTTP (the admin web UI behind nginx, on loopback): GET `path` answers with an HTTP
/// status below 500.
pub async fn http(addr: SocketAddr, path: &str, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let clock = Clock::start(timeout);
    let tcp = connect_tcp(&clock, addr).await?;
    let (detail, latency) = http_exchange(Conn::new(tcp, clock), "localhost", path).await?;
    if detail.starts_with("HTTP 5") {
        return Err(unexpected("HTTP status below 500", detail));
    }
    Ok(ProbeOk {
        detail,
        latency,
        peer_cert: None,
    })
}

/// One GET and its status line: ("HTTP 200 OK", latency).
async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Conn<S>,
    host: &str,
    path: &str,
) -> Result<(String, Duration), ProbeError> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: modobox-health\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    );
    conn.send(request.as_bytes(), "the request").await?;
    let expected = "HTTP status line";
    let line = conn.some_line(expected, "the status line").await?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default().trim();
    let code_ok = code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit())
        && (b'1'..=b'5').contains(&code.as_bytes()[0]);
    if !version.starts_with("HTTP/1.") || !code_ok {
        return Err(unexpected(expected, quoted(&line)));
    }
    let latency = conn.clock.elapsed();
    conn.close().await;
    let detail = if reason.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code} {reason}")
    };
    Ok((detail, latency))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::health::probes::test_support::*;

    /// An HTTPS server answering `response` to one request; returns (SNI, request head).
    fn serve_https(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        response: &'static str,
    ) -> JoinHandle<(Option<String>, Vec<String>)> {
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(stream).await.unwrap();
            let sni = tls.get_ref().1.server_name().map(str::to_string);
            let mut io = BufReader::new(tls);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end().to_string();
                if line.is_empty() {
                    break;
                }
                head.push(line);
            }
            let _ = io.get_mut().write_all(response.as_bytes()).await;
            let _ = io.get_mut().shutdown().await;
            (sni, head)
        })
    }

    #[tokio::test]
    async fn https_any_status_with_the_served_certificate() {
        let (listener, addr) = tcp().await;
        let (acceptor, der) = acceptor();
        let server = serve_https(
            listener,
            acceptor,
            "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n",
        );
        let ok = https(addr, "mail.example.test", SHORT).await.unwrap();
        assert_eq!(ok.detail, "HTTP 502 Bad Gateway");
        assert_eq!(ok.peer_cert, Some(der));
        let (sni, head) = server.await.unwrap();
        assert_eq!(sni.as_deref(), Some("mail.example.test"));
        assert_eq!(head[0], "GET / HTTP/1.1");
        assert!(
            head.contains(&"Host: mail.example.test".to_string()),
            "{head:?}"
        );
    }

    #[tokio::test]
    async fn https_wrong_answers() {
        let (listener, addr) = tcp().await;
        let (acceptor, _) = acceptor();
        serve_https(listener, acceptor, "SSH-2.0-OpenSSH_9.2\r\n");
        let err = https(addr, "mail.example.test", SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected HTTP status line, got "SSH-2.0-OpenSSH_9.2""#
        );

        // Plain HTTP where TLS was expected.
        let (listener, addr) = tcp().await;
        serve_tcp(listener, "HTTP/1.1 400 Bad Request\r\n\r\n", |_| None);
        let err = https(addr, "mail.example.test", SHORT).await.unwrap_err();
        assert!(matches!(err, ProbeError::Tls { .. }), "{err}");

        let err = https(addr, "bad host\r\nX: y", SHORT).await.unwrap_err();
        assert!(matches!(err, ProbeError::Invalid { .. }), "{err}");
    }

    #[tokio::test]
    async fn http_below_500_is_up() {
        let (listener, addr) = tcp().await;
        serve_tcp(
            listener,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            |_| None,
        );
        let ok = http(addr, "/login", SHORT).await.unwrap();
        assert_eq!(ok.detail, "HTTP 200 OK");
        let (listener, addr) = tcp().await;
        serve_tcp(
            listener,
            "HTTP/1.1 500 Internal Server Error\r\n\r\n",
            |_| None,
        );
        let err = http(addr, "/login", SHORT).await.unwrap_err();
        assert!(err.to_string().contains("HTTP 500"), "{err}");
    }

    #[tokio::test]
    async fn https_silent_and_refused() {
        let (listener, addr) = tcp().await;
        silent_tcp(listener);
        let err = https(addr, "mail.example.test", SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the TLS handshake"
        );

        // Handshake done, then no answer to the request.
        let (listener, addr) = tcp().await;
        let (acceptor, _) = acceptor();
        serve_tls(listener, acceptor, "", |_| Some(String::new()));
        let err = https(addr, "mail.example.test", SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the status line"
        );

        let addr = refused_addr().await;
        let err = https(addr, "mail.example.test", SHORT).await.unwrap_err();
        assert_eq!(err.to_string(), refused_message(addr));
    }
}
