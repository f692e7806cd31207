//! This machine's network addresses.

use std::net::IpAddr;

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
