//! Protocol-level probes: each one speaks enough of its daemon's protocol to know the daemon
//! answers as it should (a banner and a reply to a command, not just an accepted connection),
//! then says goodbye politely. Every probe runs under one deadline (`timeout` from its start,
//! connection included); the error says what was expected and what came instead.
//!
//! One file per protocol (`smtp` for SMTP and LMTP, `imap`, `managesieve`, `milter`, `policy`, `clamd`,
//! `http` for HTTP and HTTPS, `database`), `tls` for the TLS client two of them use; this file
//! holds what they share: the result and error types, the deadline (`Clock`), connecting, and
//! the line-oriented conversation (`Conn`).

mod clamd;
mod database;
mod http;
mod imap;
mod managesieve;
mod milter;
mod policy;
mod smtp;
#[cfg(test)]
mod test_support;
pub(super) mod tls;

pub use clamd::clamd_unix;
pub use database::database;
pub use http::{http, https};
pub use imap::imap;
pub use managesieve::managesieve;
pub use milter::milter;
pub use policy::policy;
pub use smtp::{lmtp_unix, smtp};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use crate::store::StoreError;

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

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(&Duration::from_secs(5)), "5 s");
        assert_eq!(human(&Duration::from_millis(300)), "300 ms");
        assert_eq!(human(&Duration::from_millis(1500)), "1500 ms");
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(io_reason(&e), "connection refused");
    }
}
