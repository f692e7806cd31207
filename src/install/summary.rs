//! What the admin needs after an install: where to log in, and the DNS records to publish
//! (also `modobox dns records`).

use std::net::IpAddr;

use crate::config::Config;
use crate::dns::records::{self, DomainDns};
use crate::names::{DkimSelector, DomainName};
use crate::store::access::Actor;
use crate::store::{domains, Store, StoreError};

/// The addresses other servers reach this one at: every interface address except loopback,
/// link-local and (for IPv6) unique-local ones.
pub fn public_addresses() -> Vec<IpAddr> {
    crate::system::net::interface_addresses()
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                let first = v6.segments()[0];
                !v6.is_loopback()
                    && !v6.is_unspecified()
                    && first & 0xffc0 != 0xfe80
                    && first & 0xfe00 != 0xfc00
            }
        })
        .collect()
}

/// The zone-file text for one hosted domain, with its real DKIM key when it has one.
pub async fn domain_records(
    store: &Store,
    config: &Config,
    domain: &str,
    addresses: &[IpAddr],
    mta_sts: bool,
) -> Result<String, StoreError> {
    let mut tx = store.begin().await?;
    let d = domains::get(&mut tx, Actor::System, domain).await?;
    tx.commit().await?;
    let dkim = if d.enable_dkim && !d.dkim_public_key.is_empty() {
        Some((
            DkimSelector::parse("dkim_key_selector", &d.dkim_key_selector)?,
            d.dkim_public_key.clone(),
        ))
    } else {
        None
    };
    let input = DomainDns {
        domain: DomainName::parse("domain", &d.name)?,
        hostname: config.hostname.clone(),
        ipv4: addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect(),
        ipv6: addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(v6) => Some(*v6),
                IpAddr::V4(_) => None,
            })
            .collect(),
        dkim,
        mta_sts,
        admin_address: config
            .admin_address()
            .map(|a| a.to_string())
            .unwrap_or_default(),
    };
    let mut text = records::zone_text(&records::records(&input));
    if d.enable_dkim && d.dkim_public_key.is_empty() {
        text.push_str(&format!(
            "; DKIM is on for {} but its key is not generated yet: run this again in a minute\n",
            d.name
        ));
    }
    Ok(text)
}
