//! `modobox dns records`: the DNS records of the hosted domains, to publish.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{DnsCommand, Global};
use crate::config::Config;
use crate::install::summary;
use crate::names::{DomainKind, DomainName};

pub async fn dns(global: &Global, cmd: &DnsCommand) -> Result<ExitCode> {
    let DnsCommand::Records {
        domain,
        address,
        mta_sts,
    } = cmd;
    let config = Config::load(&global.config)?;
    let (store, _) = super::open(global).await?;
    let names: Vec<String> = match domain {
        Some(d) => vec![DomainName::parse("domain", d)?.to_string()],
        None => {
            let mut tx = store.begin().await?;
            let all = crate::store::domains::list(
                &mut tx,
                crate::store::access::Actor::System,
                Some(DomainKind::Domain),
                None,
            )
            .await?;
            tx.commit().await?;
            all.into_iter().map(|d| d.name.to_string()).collect()
        }
    };
    let addresses = if address.is_empty() {
        crate::dns::records::public_addresses()
    } else {
        address.clone()
    };
    for name in names {
        print!(
            "{}",
            summary::domain_records(&store, &config, &name, &addresses, *mta_sts).await?
        );
        println!();
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
