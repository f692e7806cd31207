//! A Postfix policy service (modobox's sending limits): one request of a session nobody logged
//! in to, which every policy service answers with an action.

use std::net::SocketAddr;
use std::time::Duration;

use super::{connect_tcp, quoted, unexpected, Clock, Conn, ProbeError, ProbeOk};

/// The policy service on `addr`: `request=smtpd_access_policy` at RCPT without a login →
/// `action=...` and the empty line that ends the answer.
pub async fn policy(addr: SocketAddr, timeout: Duration) -> Result<ProbeOk, ProbeError> {
    let clock = Clock::start(timeout);
    let stream = connect_tcp(&clock, addr).await?;
    let mut conn = Conn::new(stream, clock);
    conn.send(
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=127.0.0.1\nsender=probe@modobox.invalid\nrecipient=probe@modobox.invalid\n\n",
        "the policy request",
    )
    .await?;
    let expected = "action=... and an empty line";
    let action = conn.some_line(expected, "the policy answer").await?;
    if !action.starts_with("action=") {
        return Err(unexpected(expected, quoted(&action)));
    }
    let end = conn.some_line(expected, "the end of the answer").await?;
    if !end.is_empty() {
        return Err(unexpected(expected, quoted(&end)));
    }
    let latency = conn.clock.elapsed();
    conn.close().await;
    Ok(ProbeOk {
        detail: action,
        latency,
        peer_cert: None,
    })
}
