//! A milter's option negotiation (milter protocol version 6, as Postfix offers it).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    connect_tcp, io_reason, unexpected, write_all, Clock, ProbeError, ProbeOk, CLOSED, GOODBYE_WAIT,
};
use crate::milter::protocol;

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

#[cfg(test)]
mod tests {
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::health::probes::test_support::*;

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
}
