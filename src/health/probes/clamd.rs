//! clamd's PING on its unix socket.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use super::{
    connect_unix, io_reason, quoted, unexpected, Clock, Conn, ProbeError, ProbeOk, CLOSED,
};

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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::health::probes::test_support::*;

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
}
