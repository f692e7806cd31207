//! Test servers the probes' unit tests talk to: line servers over TCP, unix sockets and TLS,
//! silent ones, hang-ups, refused addresses.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::names::Hostname;

pub(super) const SHORT: Duration = Duration::from_millis(300);
pub(super) const HELO: &str = "probe.example.test";

pub(super) async fn tcp() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// An address where nothing listens.
pub(super) async fn refused_addr() -> SocketAddr {
    let (listener, addr) = tcp().await;
    drop(listener);
    addr
}

pub(super) fn refused_message(addr: SocketAddr) -> String {
    format!("connect {addr}: connection refused")
}

/// A unix socket path whose listener is gone: connecting is refused.
pub(super) fn dead_socket(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    path
}

/// A line server: sends `greeting`, then writes `respond(line)` for each line it reads
/// (`None` hangs up); returns the lines it read.
pub(super) async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    greeting: &str,
    respond: fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut io = BufReader::new(stream);
    io.get_mut().write_all(greeting.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        match io.read_line(&mut line).await {
            Ok(0) | Err(_) => return seen,
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        let answer = respond(&line);
        seen.push(line);
        match answer {
            Some(text) => {
                if io.get_mut().write_all(text.as_bytes()).await.is_err() {
                    return seen;
                }
            }
            None => return seen,
        }
    }
}

pub(super) fn serve_tcp(
    listener: TcpListener,
    greeting: &'static str,
    respond: fn(&str) -> Option<String>,
) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        converse(stream, greeting, respond).await
    })
}

pub(super) fn serve_unix(
    listener: UnixListener,
    greeting: &'static str,
    respond: fn(&str) -> Option<String>,
) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        converse(stream, greeting, respond).await
    })
}

/// Accepts, sends `text` and hangs up.
pub(super) fn hang_up(listener: TcpListener, text: &'static str) {
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = stream.write_all(text.as_bytes()).await;
    });
}

/// Accepts and says nothing, for as long as the test lasts.
pub(super) fn silent_tcp(listener: TcpListener) {
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
}

pub(super) fn silent_unix(listener: UnixListener) {
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
}

/// A TLS server with a fresh self-signed certificate; returns it with the certificate's DER.
pub(super) fn acceptor() -> (TlsAcceptor, Vec<u8>) {
    let host = Hostname::parse("hostname", "mail.example.test").unwrap();
    let pair = crate::keys::tls::generate_self_signed(&host, &[], 30).unwrap();
    let cert = CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (TlsAcceptor::from(Arc::new(config)), cert.as_ref().to_vec())
}

pub(super) fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    greeting: &'static str,
    respond: fn(&str) -> Option<String>,
) -> JoinHandle<(Option<String>, Vec<String>)> {
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(stream).await.unwrap();
        let sni = tls.get_ref().1.server_name().map(str::to_string);
        (sni, converse(tls, greeting, respond).await)
    })
}
