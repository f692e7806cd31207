//! `modobox domain`, `modobox domainalias` and `modobox relaydomain`.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::input::{confirm, parse_domain};
use super::output::{print_json, quota, table, yes_no};
use super::{commit, open, ACTOR};
use crate::cli::{
    DomainAliasCommand, DomainCommand, DomainSettings, Global, RelayDomainCommand, RelaySettings,
};
use crate::names::{DkimSelector, DomainKind};
use crate::store::accounts::Options;
use crate::store::domains::{self, name_to_find, DomainPatch, DomainSpec, Relay};
use crate::store::{Store, Tx};

fn domain_spec(s: &DomainSettings) -> Result<DomainSpec> {
    let mut spec = DomainSpec::default();
    if let Some(q) = s.quota {
        spec.quota = q;
    }
    // Modoboa's form fills the default mailbox quota from the domain quota.
    spec.default_mailbox_quota = s.default_mailbox_quota.unwrap_or(spec.quota);
    spec.enabled = s.enabled.unwrap_or(true);
    spec.enable_dns_checks = s.dns_checks.unwrap_or(true);
    spec.enable_dkim = s.dkim.unwrap_or(false);
    if let Some(sel) = &s.dkim_selector {
        spec.dkim_key_selector = DkimSelector::parse("dkim-selector", sel)?;
    }
    spec.dkim_key_length = s.dkim_key_length;
    Ok(spec)
}

fn domain_patch(s: &DomainSettings) -> Result<DomainPatch> {
    Ok(DomainPatch {
        quota: s.quota,
        default_mailbox_quota: s.default_mailbox_quota,
        enabled: s.enabled,
        enable_dns_checks: s.dns_checks,
        enable_dkim: s.dkim,
        dkim_key_selector: s
            .dkim_selector
            .as_deref()
            .map(|v| DkimSelector::parse("dkim-selector", v))
            .transpose()?,
        dkim_key_length: s.dkim_key_length.map(Some),
        ..DomainPatch::default()
    })
}

fn print_domain(d: &domains::Domain, json: bool) -> Result<()> {
    if json {
        return print_json(d);
    }
    println!("name:                  {}", d.name);
    println!("type:                  {}", d.kind);
    println!("enabled:               {}", yes_no(d.enabled));
    println!("quota:                 {}", quota(d.quota));
    println!("default mailbox quota: {}", quota(d.default_mailbox_quota));
    println!(
        "mailboxes:             {} ({} MB allocated)",
        d.mailboxes, d.allocated_quota
    );
    println!("DNS checks:            {}", yes_no(d.enable_dns_checks));
    println!(
        "DKIM:                  {}{}",
        yes_no(d.enable_dkim),
        if d.enable_dkim {
            format!(
                " (selector {}, key {})",
                d.dkim_key_selector,
                if d.dkim_public_key.is_empty() {
                    "not generated yet"
                } else {
                    "ready"
                }
            )
        } else {
            String::new()
        }
    );
    if let Some(r) = &d.relay {
        println!(
            "relay to:              [{}]:{} via {}",
            r.target_host, r.target_port, r.service
        );
        println!("verify recipients:     {}", yes_no(r.verify_recipients));
    }
    println!(
        "created:               {}",
        d.creation.format("%Y-%m-%d %H:%M UTC")
    );
    Ok(())
}

fn print_domains(list: &[domains::Domain], json: bool) -> Result<()> {
    if json {
        return print_json(&list);
    }
    let mut rows = vec![vec![
        "NAME".into(),
        "ENABLED".into(),
        "QUOTA".into(),
        "MAILBOXES".into(),
        "DKIM".into(),
    ]];
    for d in list {
        rows.push(vec![
            d.name.to_string(),
            yes_no(d.enabled),
            quota(d.quota),
            d.mailboxes.to_string(),
            yes_no(d.enable_dkim),
        ]);
    }
    table(rows);
    Ok(())
}

pub async fn domain(global: &Global, cmd: &DomainCommand) -> Result<ExitCode> {
    let (store, opts) = open(global).await?;
    // The transaction must be gone before the pool closes.
    let result = domain_in(&store, &opts, cmd).await;
    store.close().await;
    result
}

async fn domain_in(store: &Store, opts: &Options, cmd: &DomainCommand) -> Result<ExitCode> {
    let mut tx = store.begin().await?;
    match cmd {
        DomainCommand::Add { name, settings } => {
            let name = parse_domain("name", name)?;
            let d = domains::create(&mut tx, ACTOR, &name, &domain_spec(settings)?, None).await?;
            commit(tx, ()).await?;
            println!("domain {} created", d.name);
        }
        DomainCommand::List(a) => {
            let list = domains::list(
                &mut tx,
                ACTOR,
                Some(DomainKind::Domain),
                a.search.as_deref(),
            )
            .await?;
            print_domains(&list, a.json)?;
        }
        DomainCommand::Show(a) => {
            let d = domains::get(&mut tx, ACTOR, &name_to_find("domain", &a.name)?).await?;
            print_domain(&d, a.json)?;
        }
        DomainCommand::Edit { name, settings } => {
            let d = domains::update(
                &mut tx,
                ACTOR,
                &name_to_find("domain", name)?,
                &domain_patch(settings)?,
            )
            .await?;
            commit(tx, ()).await?;
            println!("domain {} modified", d.name);
        }
        DomainCommand::Del(a) => {
            let d = domains::get(&mut tx, ACTOR, &name_to_find("domain", &a.name)?).await?;
            confirm(
                a.yes,
                &format!(
                    "Delete {} with its {} mailbox(es) and all its aliases?",
                    d.name, d.mailboxes
                ),
            )?;
            domains::delete(&mut tx, ACTOR, &d.name, opts).await?;
            commit(tx, ()).await?;
            println!("domain {} deleted", d.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn domain_alias(global: &Global, cmd: &DomainAliasCommand) -> Result<ExitCode> {
    let (store, opts) = open(global).await?;
    // The transaction must be gone before the pool closes.
    let result = domain_alias_in(&store, &opts, cmd).await;
    store.close().await;
    result
}

async fn domain_alias_in(
    store: &Store,
    _opts: &Options,
    cmd: &DomainAliasCommand,
) -> Result<ExitCode> {
    let mut tx = store.begin().await?;
    match cmd {
        DomainAliasCommand::Add {
            name,
            target,
            enabled,
        } => {
            let name = parse_domain("name", name)?;
            let target = parse_domain("target", target)?;
            let a = domains::create_alias(&mut tx, ACTOR, &name, &target, *enabled).await?;
            commit(tx, ()).await?;
            println!("domain alias {} -> {} created", a.name, a.target);
        }
        DomainAliasCommand::List { json, domain } => {
            // Text that is no domain name is the target of no alias.
            let list = match domain
                .as_deref()
                .map(|d| name_to_find("domain", d))
                .transpose()
            {
                Ok(target) => domains::list_aliases(&mut tx, ACTOR, target.as_ref()).await?,
                Err(_) => Vec::new(),
            };
            if *json {
                print_json(&list)?;
            } else {
                let mut rows = vec![vec!["NAME".into(), "TARGET".into(), "ENABLED".into()]];
                rows.extend(
                    list.iter()
                        .map(|a| vec![a.name.to_string(), a.target.to_string(), yes_no(a.enabled)]),
                );
                table(rows);
            }
        }
        DomainAliasCommand::Show(a) => {
            let d =
                domains::get_alias(&mut tx, ACTOR, &name_to_find("domain alias", &a.name)?).await?;
            if a.json {
                print_json(&d)?;
            } else {
                println!(
                    "{} -> {} (enabled: {})",
                    d.name,
                    d.target,
                    yes_no(d.enabled)
                );
            }
        }
        DomainAliasCommand::Edit { name, enabled } => {
            let a = domains::set_alias_enabled(
                &mut tx,
                ACTOR,
                &name_to_find("domain alias", name)?,
                *enabled,
            )
            .await?;
            commit(tx, ()).await?;
            println!("domain alias {} modified", a.name);
        }
        DomainAliasCommand::Del(a) => {
            confirm(a.yes, &format!("Delete the domain alias {}?", a.name))?;
            domains::delete_alias(&mut tx, ACTOR, &name_to_find("domain alias", &a.name)?).await?;
            commit(tx, ()).await?;
            println!("domain alias {} deleted", a.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn relay_from(s: &RelaySettings, current: Option<&Relay>) -> Result<Relay> {
    let host = s
        .target_host
        .clone()
        .or_else(|| current.map(|c| c.target_host.clone()))
        .context("--target-host is required")?;
    Ok(Relay {
        target_host: host,
        target_port: s
            .target_port
            .or(current.map(|c| c.target_port))
            .unwrap_or(25),
        service: s
            .service
            .clone()
            .or_else(|| current.map(|c| c.service.clone()))
            .unwrap_or_else(|| "relay".into()),
        verify_recipients: s
            .verify_recipients
            .or(current.map(|c| c.verify_recipients))
            .unwrap_or(false),
    })
}

pub async fn relay_domain(global: &Global, cmd: &RelayDomainCommand) -> Result<ExitCode> {
    let (store, opts) = open(global).await?;
    // The transaction must be gone before the pool closes.
    let result = relay_domain_in(&store, &opts, cmd).await;
    store.close().await;
    result
}

async fn relay_domain_in(
    store: &Store,
    opts: &Options,
    cmd: &RelayDomainCommand,
) -> Result<ExitCode> {
    let mut tx = store.begin().await?;
    match cmd {
        RelayDomainCommand::Add { name, settings } => {
            let name = parse_domain("name", name)?;
            let spec = DomainSpec {
                enabled: settings.enabled.unwrap_or(true),
                ..DomainSpec::default()
            };
            let relay = relay_from(settings, None)?;
            let d = domains::create(&mut tx, ACTOR, &name, &spec, Some(&relay)).await?;
            commit(tx, ()).await?;
            println!("relay domain {} created", d.name);
        }
        RelayDomainCommand::List(a) => {
            let list = domains::list(
                &mut tx,
                ACTOR,
                Some(DomainKind::RelayDomain),
                a.search.as_deref(),
            )
            .await?;
            if a.json {
                print_json(&list)?;
            } else {
                let mut rows = vec![vec![
                    "NAME".into(),
                    "ENABLED".into(),
                    "TARGET".into(),
                    "VERIFY".into(),
                ]];
                for d in &list {
                    let (target, verify) = d.relay.as_ref().map_or((String::new(), false), |r| {
                        (
                            format!("[{}]:{} ({})", r.target_host, r.target_port, r.service),
                            r.verify_recipients,
                        )
                    });
                    rows.push(vec![
                        d.name.to_string(),
                        yes_no(d.enabled),
                        target,
                        yes_no(verify),
                    ]);
                }
                table(rows);
            }
        }
        RelayDomainCommand::Show(a) => {
            let d = relay_get(&mut tx, &a.name).await?;
            print_domain(&d, a.json)?;
        }
        RelayDomainCommand::Edit { name, settings } => {
            let d = relay_get(&mut tx, name).await?;
            let patch = DomainPatch {
                enabled: settings.enabled,
                relay: Some(relay_from(settings, d.relay.as_ref())?),
                ..DomainPatch::default()
            };
            domains::update(&mut tx, ACTOR, &d.name, &patch).await?;
            commit(tx, ()).await?;
            println!("relay domain {} modified", d.name);
        }
        RelayDomainCommand::Del(a) => {
            let d = relay_get(&mut tx, &a.name).await?;
            confirm(a.yes, &format!("Delete the relay domain {}?", d.name))?;
            domains::delete(&mut tx, ACTOR, &d.name, opts).await?;
            commit(tx, ()).await?;
            println!("relay domain {} deleted", d.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn relay_get(tx: &mut Tx, name: &str) -> Result<domains::Domain> {
    let d = domains::get(tx, ACTOR, &name_to_find("domain", name)?).await?;
    if d.kind != DomainKind::RelayDomain {
        bail!(
            "{} is a hosted domain, not a relay domain (see `modobox domain`)",
            d.name
        );
    }
    Ok(d)
}
