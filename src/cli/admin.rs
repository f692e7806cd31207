//! `modobox admin` and `modobox token`: administrators, their domains, and API tokens.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde::Serialize;

use super::input::{account_name, confirm, parse_domain, read_password};
use super::mailbox::{print_account, print_accounts};
use super::output::print_json;
use super::{commit, open, ACTOR};
use crate::cli::{AdminCommand, Global, TokenCommand};
use crate::names::Username;
use crate::store::access::{self, Role};
use crate::store::accounts::{self, AccountPatch, AccountSpec, Options};
use crate::store::{tokens, Store};

pub async fn admin(global: &Global, cmd: &AdminCommand) -> Result<ExitCode> {
    let (store, opts) = open(global).await?;
    // The transaction must be gone before the pool closes.
    let result = admin_in(&store, &opts, cmd).await;
    store.close().await;
    result
}

async fn admin_in(store: &Store, opts: &Options, cmd: &AdminCommand) -> Result<ExitCode> {
    let mut tx = store.begin().await?;
    match cmd {
        AdminCommand::Add {
            username,
            role,
            domains: doms,
            mailbox,
            first_name,
            last_name,
            password,
        } => {
            let role: Role = role.parse()?;
            if role == Role::SimpleUsers {
                bail!("role: an administrator is SuperAdmins, Resellers or DomainAdmins (use `modobox mailbox add` for users)");
            }
            let username = Username::parse(username)?;
            let domains = doms
                .iter()
                .map(|d| parse_domain("domain", d))
                .collect::<Result<Vec<_>>>()?;
            let spec = AccountSpec {
                username: username.clone(),
                password: read_password(password, username.as_str())?,
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                enabled: true,
                role,
                mailbox: mailbox.then_some(None),
                mailbox_address: None,
                domains,
                profile: Default::default(),
                mailbox_settings: Default::default(),
            };
            let policy = accounts::hash_policy(&mut tx).await?;
            let a = accounts::create(&mut tx, ACTOR, &spec, policy).await?;
            commit(tx, ()).await?;
            println!("administrator {} ({}) created", a.username, a.role);
        }
        AdminCommand::List { json } => {
            let mut list = accounts::list(&mut tx, ACTOR, &accounts::ListFilter::default()).await?;
            list.retain(|a| a.role.is_admin());
            print_accounts(&list, *json)?;
        }
        AdminCommand::Show(a) => {
            let acc = accounts::get(&mut tx, ACTOR, &account_name(&a.name)).await?;
            if a.json {
                let limits = access::user_limits(&mut tx, acc.id).await?;
                #[derive(Serialize)]
                struct Shown<'a> {
                    #[serde(flatten)]
                    account: &'a accounts::Account,
                    limits: std::collections::BTreeMap<String, i32>,
                }
                print_json(&Shown {
                    account: &acc,
                    limits: limits.into_iter().collect(),
                })?;
            } else {
                print_account(&acc, false)?;
                for (name, max) in access::user_limits(&mut tx, acc.id).await? {
                    println!(
                        "limit {name}: {}",
                        if max < 0 {
                            "unlimited".to_string()
                        } else {
                            max.to_string()
                        }
                    );
                }
            }
        }
        AdminCommand::Grant { username, domain } => {
            let d = parse_domain("domain", domain)?;
            accounts::grant_domain(&mut tx, ACTOR, &account_name(username), &d).await?;
            commit(tx, ()).await?;
            println!("{username} now administers {d}");
        }
        AdminCommand::Revoke { username, domain } => {
            let d = parse_domain("domain", domain)?;
            accounts::revoke_domain(&mut tx, ACTOR, &account_name(username), &d).await?;
            commit(tx, ()).await?;
            println!("{username} no longer administers {d}");
        }
        AdminCommand::Limit {
            username,
            name,
            value,
        } => {
            let a = accounts::get(&mut tx, ACTOR, &account_name(username)).await?;
            if !matches!(a.role, Role::Resellers | Role::DomainAdmins) {
                bail!(
                    "{}: limits apply to resellers and domain admins, not {}",
                    a.username,
                    a.role
                );
            }
            access::set_user_limit(&mut tx, a.id, name, *value).await?;
            commit(tx, ()).await?;
            println!("limit {name} of {} set to {value}", a.username);
        }
        AdminCommand::Role { username, role } => {
            let patch = AccountPatch {
                role: Some(role.parse()?),
                ..AccountPatch::default()
            };
            let a = accounts::update(&mut tx, ACTOR, &account_name(username), &patch, opts).await?;
            commit(tx, ()).await?;
            println!("{} is now {}", a.username, a.role);
        }
        AdminCommand::Passwd { username, password } => {
            let name = account_name(username);
            let a = accounts::get(&mut tx, ACTOR, &name).await?;
            let p = read_password(password, &a.username)?;
            accounts::set_password(&mut tx, ACTOR, &name, &p).await?;
            commit(tx, ()).await?;
            println!("password of {} changed", a.username);
        }
        AdminCommand::Del(a) => {
            confirm(a.yes, &format!("Delete the account {}?", a.name))?;
            accounts::delete(&mut tx, ACTOR, &account_name(&a.name), opts).await?;
            commit(tx, ()).await?;
            println!("account {} deleted", a.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(global: &Global, cmd: &TokenCommand) -> Result<ExitCode> {
    let (store, _) = open(global).await?;
    // The transaction must be gone before the pool closes.
    let result = token_in(&store, cmd).await;
    store.close().await;
    result
}

async fn token_in(store: &Store, cmd: &TokenCommand) -> Result<ExitCode> {
    let mut tx = store.begin().await?;
    match cmd {
        TokenCommand::Create { username } => {
            let a = accounts::get(&mut tx, ACTOR, &account_name(username)).await?;
            if !a.is_active {
                bail!(
                    "{}: the account is disabled, its token would not work",
                    a.username
                );
            }
            let key = tokens::create_token(&mut tx, a.id).await?;
            commit(tx, ()).await?;
            // The key alone on stdout (scripts read it); what it is on stderr.
            eprintln!(
                "API token of {} ({}); shown once, keep it secret:",
                a.username, a.role
            );
            println!("{key}");
        }
        TokenCommand::Revoke { username } => {
            let a = accounts::get(&mut tx, ACTOR, &account_name(username)).await?;
            if !tokens::revoke_token(&mut tx, a.id).await? {
                bail!("{} has no API token", a.username);
            }
            commit(tx, ()).await?;
            println!("API token of {} removed", a.username);
        }
        TokenCommand::List { json } => {
            let list = tokens::list(&mut tx).await?;
            drop(tx);
            if *json {
                super::output::print_json(&list)?;
            } else if list.is_empty() {
                println!("no API token");
            } else {
                for t in &list {
                    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                        t.map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
                    };
                    println!(
                        "{:<40} {:<8} created {}  last used {}",
                        t.username,
                        t.kind,
                        when(t.created_at),
                        when(t.last_used_at)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
