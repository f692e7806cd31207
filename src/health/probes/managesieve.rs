//! ManageSieve: the capability greeting ending with OK, LOGOUT.

use std::net::SocketAddr;
use std::time::Duration;

use super::{
    connect_tcp, quoted, starts_with_ignore_case, unexpected, Clock, Conn, ProbeError, ProbeOk,
    GOODBYE_WAIT, MAX_LINES,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::probes::test_support::*;

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
}
