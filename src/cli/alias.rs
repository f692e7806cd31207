//! `modobox alias`: aliases and forwards.

use std::process::ExitCode;

use anyhow::Result;

use super::input::{confirm, parse_domain, parse_expiry};
use super::output::{print_json, table, yes_no};
use super::{commit, open, ACTOR};
use crate::cli::{AliasCommand, Global};
use crate::store::accounts::Options;
use crate::store::aliases::{self, address_to_find, AliasAddress, AliasPatch, AliasSpec};
use crate::store::Store;

fn print_alias(a: &aliases::Alias) {
    println!("address:     {}", a.address);
    println!("enabled:     {}", yes_no(a.enabled));
    println!("recipients:  {}", a.recipients.join(", "));
    if !a.description.is_empty() {
        println!("description: {}", a.description);
    }
    if let Some(e) = a.expire_at {
        println!("expires:     {}", e.format("%Y-%m-%d %H:%M UTC"));
    }
}

pub async fn alias(global: &Global, cmd: &AliasCommand) -> Result<ExitCode> {
    let (store, opts) = open(global).await?;
    // The transaction must be gone before the pool closes.
    let result = alias_in(&store, &opts, cmd).await;
    store.close().await;
    result
}

async fn alias_in(store: &Store, _opts: &Options, cmd: &AliasCommand) -> Result<ExitCode> {
    let mut tx = store.begin().await?;
    match cmd {
        AliasCommand::Add {
            address,
            recipients,
            enabled,
            description,
            expires,
        } => {
            let address = AliasAddress::parse("address", address)?;
            let spec = AliasSpec {
                enabled: *enabled,
                description: description.clone(),
                expire_at: expires.as_deref().map(parse_expiry).transpose()?.flatten(),
                recipients: recipients.clone(),
            };
            let a = aliases::create(&mut tx, ACTOR, &address, &spec).await?;
            commit(tx, ()).await?;
            println!("alias {} created", a.address);
        }
        AliasCommand::List { json, domain } => {
            let d = domain
                .as_deref()
                .map(|d| parse_domain("domain", d))
                .transpose()?;
            let list = aliases::list(&mut tx, ACTOR, d.as_ref()).await?;
            if *json {
                print_json(&list)?;
            } else {
                let mut rows = vec![vec![
                    "ADDRESS".into(),
                    "ENABLED".into(),
                    "RECIPIENTS".into(),
                ]];
                rows.extend(
                    list.iter().map(|a| {
                        vec![a.address.clone(), yes_no(a.enabled), a.recipients.join(",")]
                    }),
                );
                table(rows);
            }
        }
        AliasCommand::Show(a) => {
            let al =
                aliases::get(&mut tx, ACTOR, &address_to_find(&a.name.to_lowercase())?).await?;
            if a.json {
                print_json(&al)?;
            } else {
                print_alias(&al);
            }
        }
        AliasCommand::Edit {
            address,
            recipients,
            enabled,
            description,
            expires,
        } => {
            let patch = AliasPatch {
                enabled: *enabled,
                description: description.clone(),
                expire_at: expires.as_deref().map(parse_expiry).transpose()?,
                recipients: recipients.clone(),
            };
            let a = aliases::update(
                &mut tx,
                ACTOR,
                &address_to_find(&address.to_lowercase())?,
                &patch,
            )
            .await?;
            commit(tx, ()).await?;
            println!("alias {} modified", a.address);
        }
        AliasCommand::Del(a) => {
            confirm(a.yes, &format!("Delete the alias {}?", a.name))?;
            aliases::delete(&mut tx, ACTOR, &address_to_find(&a.name.to_lowercase())?).await?;
            commit(tx, ()).await?;
            println!("alias {} deleted", a.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
