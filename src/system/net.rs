//! This machine's network addresses, and the accept loop of modobox's loopback services.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Accepts connections until `shutdown` completes, each served by `session` on its own task,
/// at most `max_sessions` at once: one more is closed at once (the MTA then applies its
/// default action). `name` labels the log lines.
pub async fn serve_connections<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    max_sessions: usize,
    session: F,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_sessions));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("{name}: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let work = session(stream);
                tokio::spawn(async move {
                    if let Err(e) = work.await {
                        tracing::debug!("{name} session: {e}");
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// Every address of every interface (loopback included), without duplicates.
pub fn interface_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for a in addrs {
        let Some(s) = a.address else { continue };
        let ip = if let Some(v4) = s.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = s.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}
