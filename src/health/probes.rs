//! Protocol-level probes: each one speaks enough of its daemon's protocol to know the daemon
//! answers as it should (a banner and a reply to a command, not just an accepted connection),
//! then says goodbye politely. Every probe runs under one deadline (`timeout` from its start,
//! connection included); the error says what was expected and what came instead.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::milter::protocol;
use crate::store::{Store, StoreError};

/// The timeout the supervisor uses unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest line a probe reads; a longer one is an error, not a memory hog.
const MAX_LINE: u64 = 8192;
/// The most lines a probe reads for one reply (SMTP multi-line, IMAP untagged, Sieve greeting).
const MAX_LINES: usize = 200;
/// How long a probe waits for the answer to its goodbye (QUIT, LOGOUT) once the real exchange
/// succeeded: the daemon is healthy either way, the wait is only politeness.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// A probe that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOk {
    /// What the daemon said: its banner or greeting, the HTTP status, the database engine.
    pub detail: String,
    /// From the start of the probe (connection included) to the answer that proved health.
    pub latency: Duration,
    /// The DER of the certificate the server presented (TLS probes only).
    pub peer_cert: Option<Vec<u8>>,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("timed out after {} waiting for {waiting}", human(.after))]
    Timeout { after: Duration, waiting: String },
    /// `got` is quoted when it is what the peer sent, plain when it describes (`the connection
    /// closed`).
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: String, got: String },
    #[error("{during}: {reason}")]
    Io { during: String, reason: String },
    #[error("TLS with {target}: {reason}")]
    Tls { target: String, reason: String },
    #[error("invalid {what} {value:?}")]
    Invalid { what: &'static str, value: String },
    #[error(transparent)]
    Database(#[from] StoreError),
}

impl ProbeError {
    /// True for a timeout (the daemon may be alive but stuck or overloaded).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProbeError::Timeout { .. })
    }
}

/// `5 s`, `300 ms`.
fn human(d: &Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// An OS error as a person reads it: `connection refused`, not
/// `Connection refused (os error 111)`.
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error ").next().unwrap_or_default();
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text.to_string(),
    }
}

const CLOSED: &str = "the connection closed";

/// What the peer sent, quoted and cut to a readable length.
fn quoted(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}…")
    } else {
        format!("{text:?}")
    }
}

fn unexpected(expected: &str, got: impl Into<String>) -> ProbeError {
    ProbeError::Unexpected {
        expected: expected.to_string(),
        got: got.into(),
    }
}

/// A probe's deadline.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    deadline: Instant,
    timeout: Duration,
}

impl Clock {
    fn start(timeout: Duration) -> Self {
        let start = Instant::now();
        Clock {
            start,
            deadline: start + timeout,
            timeout,
        }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Runs `fut` until the deadline; past it, the error names what was awaited.
    async fn run<T>(
        &self,
        waiting: &str,
        fut: impl Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, ProbeError> {
        tokio::time::timeout_at(self.deadline, fut)
            .await
            .unwrap_or_else(|_| {
                Err(ProbeError::Timeout {
                    after: self.timeout,
                    waiting: waiting.to_string(),
                })
            })
    }

    /// The same clock with a deadline at most `wait` from now (for the goodbye).
    fn shortened(&self, wait: Duration) -> Clock {
        Clock {
            deadline: self.deadline.min(Instant::now() + wait),
            ..*self
        }
    }
}

async fn connect_tcp(clock: &Clock, addr: SocketAddr) -> Result<TcpStream, ProbeError> {
    let stream = clock
        .run(&format!("the connection to {addr}"), async {
            TcpStream::connect(addr)
                .await
                .map_err(|e| ProbeError::Connect {
                    target: addr.to_string(),
                    reason: io_reason(&e),
                })
        })
        .await?;
    // Probes write a few small commands and wait for each answer.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect_unix(clock: &Clock, path: &Path) -> Result<UnixStream, ProbeError> {
    let target = path.display().to_string();
    clock
        .run(&format!("the connection to {target}"), async {
            UnixStream::connect(path)
                .await
                .map_err(|e| ProbeError::Connect {
                    target: target.clone(),
                    reason: io_reason(&e),
                })
        })
        .await
}

/// A line-oriented conversation under a deadline.
struct Conn<S> {
    io: BufReader<S>,
    clock: Clock,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S, clock: Clock) -> Self {
        Conn {
            io: BufReader::new(stream),
            clock,
        }
    }

    /// One line without its line ending; `None` at the end of the stream.
    async fn line(&mut self, expected: &str, waiting: &str) -> Result<Option<String>, ProbeError> {
        let io = &mut self.io;
        self.clock
            .run(waiting, async move {
                let mut buf = Vec::new();
                let n = io
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut buf)
                    .await
                    .map_err(|e| ProbeError::Io {
                        during: format!("reading {waiting}"),
                        reason: io_reason(&e),
                    })?;
                if n == 0 {
                    return Ok(None);
                }
                if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
                    return Err(unexpected(
                        expected,
                        format!("a line longer than {MAX_LINE} bytes"),
                    ));
                }
                let text = String::from_utf8_lossy(&buf);
                Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
            })
            .await
    }

    /// One line; the end of the stream is an error.
    async fn some_line(&mut self, expected: &str, waiting: &str) -> Result<String, ProbeError> {
        self.line(expected, waiting)
            .await?
            .ok_or_else(|| unexpected(expected, CLOSED))
    }

    async fn send(&mut self, bytes: &[u8], what: &str) -> Result<(), ProbeError> {
        let io = self.io.get_mut();
        self.clock
            .run(&format!("sending {what}"), write_all(io, bytes, what))
            .await
    }

    /// Closes the write side (TLS close_notify included), briefly and best-effort.
    async fn close(mut self) {
        let clock = self.clock.shortened(GOODBYE_WAIT);
        let io = self.io.get_mut();
        let _ = clock
            .run("the shutdown", async move {
                io.shutdown().await.map_err(|e| ProbeError::Io {
                    during: "shutdown".into(),
                    reason: io_reason(&e),
                })
            })
            .await;
    }
}

async fn write_all<W: AsyncWrite + Unpin>(
    io: &mut W,
    bytes: &[u8],
    what: &str,
) -> Result<(), ProbeError> {
    let sent = async {
        io.write_all(bytes).await?;
        io.flush().await
    };
    sent.await.map_err(|e| ProbeError::Io {
        during: format!("sending {what}"),
        reason: io_reason(&e),
    })
}

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

/// Refuses a name that would break the command line it goes into.
fn check_word(what: &'static str, value: &str) -> Result<(), ProbeError> {
    if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ProbeError::Invalid {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
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

/// Accepts any certificate (the supervisor checks expiry and names on its own) but still
/// checks the handshake signatures, so the server does hold the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(target: &str, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, ProbeError> {
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The TLS handshake (any certificate) and the certificate the server presented.
async fn tls_handshake(
    clock: &Clock,
    tcp: TcpStream,
    name: ServerName<'static>,
    target: &str,
    alpn: &[&[u8]],
) -> Result<(TlsStream, Option<Vec<u8>>), ProbeError> {
    let connector = TlsConnector::from(client_config(target, alpn)?);
    let stream = clock
        .run("the TLS handshake", async {
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| ProbeError::Tls {
                    target: target.to_string(),
                    reason: io_reason(&e),
                })
        })
        .await?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| der.as_ref().to_vec());
    Ok((stream, cert))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

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

/// ManageSieve on `addr` (Dovecot Pigeonhole on 4190): capability lines ending with an `OK`
/// line, then LOGOUT. `detail` is the IMPLEMENTATION capability when there is one.
pub async fn managesieve(addr: SocketAddr, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let clock = Clock::start(timeout);
    let tcp = connect_tcp(&clock, addr).await?;
    let mut conn = Conn::new(tcp, clock);
    let expected = "greeting ending with an OK line";
    let mut implementation = None;
    let mut ok_line = None;
    for _ in 0..MAX_LINES {
        let line = conn.some_line(expected, "the greeting").await?;
        if starts_with_ignore_case(&line, "OK") {
            ok_line = Some(line);
            break;
        }
        if !line.starts_with('"') {
            // NO / BYE, or not ManageSieve at all.
            return Err(unexpected(expected, quoted(&line)));
        }
        if starts_with_ignore_case(&line, "\"IMPLEMENTATION\"") {
            implementation = line
                .get("\"IMPLEMENTATION\"".len()..)
                .map(|rest| rest.trim().trim_matches('"').to_string());
        }
    }
    let Some(ok_line) = ok_line else {
        return Err(unexpected(expected, format!("more than {MAX_LINES} lines")));
    };
    let latency = conn.clock.elapsed();
    conn.clock = conn.clock.shortened(GOODBYE_WAIT);
    if conn.send(b"LOGOUT\r\n", "LOGOUT").await.is_ok() {
        let _ = conn.line("OK", "the LOGOUT reply").await;
    }
    conn.close().await;
    Ok(ProbeOk {
        detail: implementation.unwrap_or(ok_line),
        latency,
        peer_cert: None,
    })
}

/// Milter commands and the version-6 option negotiation the MTA offers (Postfix offers the
/// same: every action and every protocol step).
const SMFIC_OPTNEG: u8 = b'O';
const SMFIC_QUIT: u8 = b'Q';
const MILTER_VERSION: u32 = 6;
const SMFIF_ALL: u32 = 0x0000_01ff;
const SMFIP_ALL: u32 = 0x001f_ffff;
const MAX_FRAME: u32 = 65_536;

fn be_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

/// A milter on `addr` (OpenDKIM on 127.0.0.1:8891): SMFIC_OPTNEG version 6 → an SMFIC_OPTNEG
/// reply, then SMFIC_QUIT. `detail` gives the version, actions and steps the milter chose.
pub async fn milter(addr: SocketAddr, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let clock = Clock::start(timeout);
    let mut tcp = connect_tcp(&clock, addr).await?;
    let mut offer = Vec::with_capacity(12);
    for word in [MILTER_VERSION, SMFIF_ALL, SMFIP_ALL] {
        offer.extend_from_slice(&word.to_be_bytes());
    }
    let frame = protocol::frame(SMFIC_OPTNEG, &offer);
    clock
        .run(
            "sending SMFIC_OPTNEG",
            write_all(&mut tcp, &frame, "SMFIC_OPTNEG"),
        )
        .await?;

    let expected = "SMFIC_OPTNEG reply";
    let read_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            unexpected(expected, CLOSED)
        } else {
            ProbeError::Io {
                during: format!("reading the {expected}"),
                reason: io_reason(&e),
            }
        }
    };
    let reply = clock
        .run("the SMFIC_OPTNEG reply", async {
            let mut len = [0u8; 4];
            tcp.read_exact(&mut len).await.map_err(read_err)?;
            let len = u32::from_be_bytes(len);
            if len == 0 || len > MAX_FRAME {
                return Err(unexpected(expected, format!("a frame length of {len}")));
            }
            let mut body = vec![0u8; len as usize];
            tcp.read_exact(&mut body).await.map_err(read_err)?;
            Ok(body)
        })
        .await?;
    match reply.first() {
        Some(&SMFIC_OPTNEG) if reply.len() >= 13 => {}
        Some(&SMFIC_OPTNEG) => {
            return Err(unexpected(
                expected,
                format!("an SMFIC_OPTNEG of {} bytes", reply.len()),
            ))
        }
        Some(&other) => {
            return Err(unexpected(
                expected,
                format!("command {:?}", char::from(other)),
            ))
        }
        None => return Err(unexpected(expected, "an empty frame")),
    }
    let (version, actions, steps) = (
        be_u32(&reply[1..]),
        be_u32(&reply[5..]),
        be_u32(&reply[9..]),
    );
    let latency = clock.elapsed();
    let goodbye = clock.shortened(GOODBYE_WAIT);
    let quit = protocol::frame(SMFIC_QUIT, &[]);
    let _ = goodbye
        .run("sending SMFIC_QUIT", async {
            write_all(&mut tcp, &quit, "SMFIC_QUIT").await?;
            let _ = tcp.shutdown().await;
            Ok(())
        })
        .await;
    Ok(ProbeOk {
        detail: format!(
            "milter protocol version {version}, actions {actions:#010x}, steps {steps:#010x}"
        ),
        latency,
        peer_cert: None,
    })
}

/// clamd on its unix socket: `zPING\0` → `PONG`.
pub async fn clamd_unix(path: &Path, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let clock = Clock::start(timeout);
    let stream = connect_unix(&clock, path).await?;
    let mut conn = Conn::new(stream, clock);
    conn.send(b"zPING\0", "zPING").await?;
    let expected = "PONG";
    let io = &mut conn.io;
    let answer = clock
        .run("the PONG", async move {
            let mut buf = Vec::new();
            io.take(256)
                .read_until(0, &mut buf)
                .await
                .map_err(|e| ProbeError::Io {
                    during: "reading the PONG".into(),
                    reason: io_reason(&e),
                })?;
            Ok(buf)
        })
        .await?;
    if answer.is_empty() {
        return Err(unexpected(expected, CLOSED));
    }
    let text = String::from_utf8_lossy(&answer);
    let text = text.trim_end_matches(['\0', '\n', '\r']);
    if text != "PONG" {
        return Err(unexpected(expected, quoted(text)));
    }
    let latency = clock.elapsed();
    conn.close().await;
    Ok(ProbeOk {
        detail: "PONG".into(),
        latency,
        peer_cert: None,
    })
}

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

/// The database answers a trivial query within the timeout.
pub async fn database(store: &Store, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let clock = Clock::start(timeout);
    let count = clock
        .run("the database", async {
            let mut tx = store.begin().await?;
            let count = tx
                .count("SELECT COUNT(*) FROM (SELECT 1 AS one) t", &[])
                .await?;
            tx.commit().await?;
            Ok(count)
        })
        .await?;
    if count != 1 {
        return Err(unexpected("a count of 1", count.to_string()));
    }
    Ok(ProbeOk {
        detail: format!("{} answered", store.backend().as_str()),
        latency: clock.elapsed(),
        peer_cert: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Hostname;
    use tokio::net::{TcpListener, UnixListener};
    use tokio::task::JoinHandle;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::TlsAcceptor;

    const SHORT: Duration = Duration::from_millis(300);
    const HELO: &str = "probe.example.test";

    async fn tcp() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// An address where nothing listens.
    async fn refused_addr() -> SocketAddr {
        let (listener, addr) = tcp().await;
        drop(listener);
        addr
    }

    fn refused_message(addr: SocketAddr) -> String {
        format!("connect {addr}: connection refused")
    }

    /// A unix socket path whose listener is gone: connecting is refused.
    fn dead_socket(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        path
    }

    /// A line server: sends `greeting`, then writes `respond(line)` for each line it reads
    /// (`None` hangs up); returns the lines it read.
    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
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

    fn serve_tcp(
        listener: TcpListener,
        greeting: &'static str,
        respond: fn(&str) -> Option<String>,
    ) -> JoinHandle<Vec<String>> {
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            converse(stream, greeting, respond).await
        })
    }

    fn serve_unix(
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
    fn hang_up(listener: TcpListener, text: &'static str) {
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.write_all(text.as_bytes()).await;
        });
    }

    /// Accepts and says nothing, for as long as the test lasts.
    fn silent_tcp(listener: TcpListener) {
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
    }

    fn silent_unix(listener: UnixListener) {
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
    }

    /// A TLS server with a fresh self-signed certificate; returns it with the certificate's DER.
    fn acceptor() -> (TlsAcceptor, Vec<u8>) {
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

    fn serve_tls(
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

    // SMTP

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

    #[test]
    fn durations_read_well() {
        assert_eq!(human(&Duration::from_secs(5)), "5 s");
        assert_eq!(human(&Duration::from_millis(300)), "300 ms");
        assert_eq!(human(&Duration::from_millis(1500)), "1500 ms");
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(io_reason(&e), "connection refused");
    }

    // LMTP

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

    // IMAP

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

    // ManageSieve

    const SIEVE_GREETING: &str = "\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\
        \"SIEVE\" \"fileinto reject envelope vacation\"\r\n\
        \"NOTIFY\" \"mailto\"\r\n\
        \"SASL\" \"PLAIN LOGIN\"\r\n\
        \"STARTTLS\"\r\n\
        \"VERSION\" \"1.0\"\r\n\
        OK \"Dovecot ready.\"\r\n";

    #[tokio::test]
    async fn managesieve_greeting() {
        let (listener, addr) = tcp().await;
        let server = serve_tcp(listener, SIEVE_GREETING, |line| {
            (line == "LOGOUT").then(|| "OK \"Logout completed.\"\r\n".into())
        });
        let ok = managesieve(addr, SHORT).await.unwrap();
        assert_eq!(ok.detail, "Dovecot Pigeonhole");
        assert_eq!(server.await.unwrap(), ["LOGOUT"]);
    }

    #[tokio::test]
    async fn managesieve_wrong_silent_refused() {
        let (listener, addr) = tcp().await;
        serve_tcp(
            listener,
            "\"IMPLEMENTATION\" \"x\"\r\nNO \"Service unavailable\"\r\n",
            |_| None,
        );
        let err = managesieve(addr, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected greeting ending with an OK line, got "NO \"Service unavailable\"""#
        );

        // Capabilities, then nothing: the OK line never comes.
        let (listener, addr) = tcp().await;
        serve_tcp(listener, "\"IMPLEMENTATION\" \"x\"\r\n", |_| None);
        let err = managesieve(addr, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the greeting"
        );

        let addr = refused_addr().await;
        let err = managesieve(addr, SHORT).await.unwrap_err();
        assert_eq!(err.to_string(), refused_message(addr));
    }

    // Milter

    /// Reads one milter frame: (command, data); `None` at the end of the stream.
    async fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).await.ok()?;
        let command = *body.first()?;
        Some((command, body[1..].to_vec()))
    }

    /// A milter that answers the negotiation with `reply`; returns the commands it read.
    fn serve_milter(listener: TcpListener, reply: Vec<u8>) -> JoinHandle<Vec<(u8, Vec<u8>)>> {
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            while let Some(frame) = read_frame(&mut stream).await {
                let negotiation = frame.0 == SMFIC_OPTNEG;
                seen.push(frame);
                if negotiation {
                    stream.write_all(&reply).await.unwrap();
                }
            }
            seen
        })
    }

    #[tokio::test]
    async fn milter_option_negotiation() {
        let (listener, addr) = tcp().await;
        let mut data = Vec::new();
        for word in [6u32, 0x01, 0x0010_0000] {
            data.extend_from_slice(&word.to_be_bytes());
        }
        let server = serve_milter(listener, protocol::frame(SMFIC_OPTNEG, &data));
        let ok = milter(addr, SHORT).await.unwrap();
        assert_eq!(
            ok.detail,
            "milter protocol version 6, actions 0x00000001, steps 0x00100000"
        );
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, b'O');
        assert_eq!(be_u32(&seen[0].1), 6);
        assert_eq!(seen[0].1.len(), 12);
        assert_eq!(seen[1], (b'Q', vec![]));
    }

    #[tokio::test]
    async fn milter_wrong_answers() {
        // A reject instead of the negotiation.
        let (listener, addr) = tcp().await;
        serve_milter(listener, protocol::frame(b'r', &[]));
        let err = milter(addr, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected SMFIC_OPTNEG reply, got command 'r'"
        );

        // Not a milter at all: an SMTP banner read as a frame length.
        let (listener, addr) = tcp().await;
        serve_tcp(listener, "220 mail ESMTP\r\n", |_| None);
        let err = milter(addr, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "expected SMFIC_OPTNEG reply, got a frame length of {}",
                u32::from_be_bytes(*b"220 ")
            )
        );

        // A negotiation too short to hold its three words.
        let (listener, addr) = tcp().await;
        serve_milter(listener, protocol::frame(SMFIC_OPTNEG, &[0, 0, 0, 6]));
        let err = milter(addr, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected SMFIC_OPTNEG reply, got an SMFIC_OPTNEG of 5 bytes"
        );
    }

    #[tokio::test]
    async fn milter_silent_and_refused() {
        let (listener, addr) = tcp().await;
        silent_tcp(listener);
        let err = milter(addr, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the SMFIC_OPTNEG reply"
        );

        let addr = refused_addr().await;
        let err = milter(addr, SHORT).await.unwrap_err();
        assert_eq!(err.to_string(), refused_message(addr));
    }

    // clamd

    fn serve_clamd(listener: UnixListener, answer: &'static [u8]) -> JoinHandle<Vec<u8>> {
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut io = BufReader::new(stream);
            let mut command = Vec::new();
            io.read_until(0, &mut command).await.unwrap();
            io.get_mut().write_all(answer).await.unwrap();
            command
        })
    }

    #[tokio::test]
    async fn clamd_ping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clamd.ctl");
        let server = serve_clamd(UnixListener::bind(&path).unwrap(), b"PONG\0");
        let ok = clamd_unix(&path, SHORT).await.unwrap();
        assert_eq!(ok.detail, "PONG");
        assert_eq!(server.await.unwrap(), b"zPING\0");
    }

    #[tokio::test]
    async fn clamd_wrong_silent_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrong");
        serve_clamd(UnixListener::bind(&path).unwrap(), b"UNKNOWN COMMAND\0");
        let err = clamd_unix(&path, SHORT).await.unwrap_err();
        assert_eq!(err.to_string(), r#"expected PONG, got "UNKNOWN COMMAND""#);

        let path = dir.path().join("silent");
        silent_unix(UnixListener::bind(&path).unwrap());
        let err = clamd_unix(&path, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the PONG"
        );

        let path = dead_socket(dir.path());
        let err = clamd_unix(&path, SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("connect {}: connection refused", path.display())
        );
    }

    // HTTPS

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

    // Database

    #[tokio::test]
    async fn database_answers() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::DatabaseUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("probe.db").display()
        ))
        .unwrap();
        let store = Store::connect(&url).await.unwrap();
        let ok = database(&store, SHORT).await.unwrap();
        assert_eq!(ok.detail, "sqlite answered");
        store.close().await;
    }

    /// A PostgreSQL store whose pool connects on first use, to `addr`.
    fn lazy_postgres(addr: SocketAddr) -> Store {
        let opts = sqlx::postgres::PgConnectOptions::new()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username("modoboa")
            .database("modoboa");
        Store::Postgres(sqlx::postgres::PgPoolOptions::new().connect_lazy_with(opts))
    }

    #[tokio::test]
    async fn database_wrong_silent_refused() {
        // Not PostgreSQL: an SMTP banner, then a hang-up.
        let (listener, addr) = tcp().await;
        hang_up(listener, "220 mail ESMTP\r\n");
        let err = database(&lazy_postgres(addr), SHORT).await.unwrap_err();
        assert!(matches!(err, ProbeError::Database(_)), "{err}");

        let (listener, addr) = tcp().await;
        silent_tcp(listener);
        let err = database(&lazy_postgres(addr), SHORT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 300 ms waiting for the database"
        );

        // sqlx's pool retries a refused connection until its deadline: a timeout here.
        let addr = refused_addr().await;
        let err = database(&lazy_postgres(addr), SHORT).await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
}
