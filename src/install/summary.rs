//! What the admin needs after an install: where to log in, and the DNS records to publish
//! (also `modobox dns records`).

use std::net::IpAddr;

use crate::config::Config;
use crate::dns::records;
use crate::names::DomainName;
use crate::store::access::Actor;
use crate::store::{domains, Store, StoreError};

/// The zone-file text for one hosted domain, with its real DKIM key when it has one.
pub async fn domain_records(
    store: &Store,
    config: &Config,
    domain: &str,
    addresses: &[IpAddr],
    mta_sts: bool,
) -> Result<String, StoreError> {
    let mut tx = store.begin().await?;
    let d = domains::get(
        &mut tx,
        Actor::System,
        &DomainName::parse("domain", domain)?,
    )
    .await?;
    tx.commit().await?;
    let mut text = records::zone_text(&records::for_domain(&d, config, addresses, mta_sts)?);
    if d.enable_dkim && d.dkim_public_key.is_empty() {
        text.push_str(&format!(
            "; DKIM is on for {} but its key is not generated yet: run this again in a minute\n",
            d.name
        ));
    }
    Ok(text)
}
