//! `modobox mailbox`: mailbox accounts, their quotas, passwords and sender addresses.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::input::{account_name, confirm, parse_domain, read_password};
use super::output::{print_json, quota, table, yes_no};
use super::{commit, open, ACTOR};
use crate::cli::{Global, MailboxCommand};
use crate::names::{EmailAddress, Username};
use crate::store::access::Role;
use crate::store::accounts::{self, AccountPatch, AccountSpec, Options, Password};
use crate::store::domains::{self};
use crate::store::{Store, StoreError};

pub(super) fn print_account(a: &accounts::Account, json: bool) -> Result<()> {
    if json {
        return print_json(a);
    }
    println!("username:   {}", a.username);
    println!("name:       {} {}", a.first_name, a.last_name);
    println!("role:       {}", a.role);
    println!("enabled:    {}", yes_no(a.is_active));
    println!("password:   {{{}}}", a.password_scheme);
    println!(
        "last login: {}",
        a.last_login.map_or("never".into(), |t| t
            .format("%Y-%m-%d %H:%M UTC")
            .to_string())
    );
    if let Some(mb) = &a.mailbox {
        println!(
            "mailbox:    {} (quota {}{}, {} bytes used)",
            mb.full_address,
            quota(mb.quota),
            if mb.use_domain_quota {
                ", domain default"
            } else {
                ""
            },
            mb.quota_used_bytes
        );
        if !mb.sender_addresses.is_empty() {
            println!("may send as: {}", mb.sender_addresses.join(", "));
        }
    }
    if !a.domains.is_empty() {
        println!("administers: {}", a.domains.join(", "));
    }
    Ok(())
}

pub(super) fn print_accounts(list: &[accounts::Account], json: bool) -> Result<()> {
    if json {
        return print_json(&list);
    }
    let mut rows = vec![vec![
        "USERNAME".into(),
        "ROLE".into(),
        "ENABLED".into(),
        "QUOTA".into(),
        "DOMAINS".into(),
    ]];
    for a in list {
        rows.push(vec![
            a.username.clone(),
            a.role.to_string(),
            yes_no(a.is_active),
            a.mailbox.as_ref().map_or("-".into(), |m| quota(m.quota)),
            a.domains.join(","),
        ]);
    }
    table(rows);
    Ok(())
}

pub async fn mailbox(global: &Global, cmd: &MailboxCommand) -> Result<ExitCode> {
    let (store, opts) = open(global).await?;
    // The transaction must be gone before the pool closes.
    let result = mailbox_in(&store, &opts, cmd).await;
    store.close().await;
    result
}

async fn mailbox_in(store: &Store, opts: &Options, cmd: &MailboxCommand) -> Result<ExitCode> {
    let mut tx = store.begin().await?;
    match cmd {
        MailboxCommand::Add {
            address,
            quota,
            first_name,
            last_name,
            enabled,
            role,
            password,
        } => {
            let addr = EmailAddress::parse("address", address)?;
            let role: Role = role.parse()?;
            if !matches!(role, Role::SimpleUsers | Role::DomainAdmins) {
                bail!("role: a mailbox account is SimpleUsers or DomainAdmins (use `modobox admin add --mailbox` for others)");
            }
            let domains = if role == Role::DomainAdmins {
                vec![parse_domain("address", addr.domain())?]
            } else {
                Vec::new()
            };
            let spec = AccountSpec {
                username: Username::from(addr.clone()),
                password: Password::Clear(String::new()),
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                enabled: *enabled,
                role,
                mailbox: Some(*quota),
                mailbox_address: None,
                domains,
                profile: Default::default(),
                mailbox_settings: Default::default(),
            };
            // Validate everything a prompt cannot fix before asking for the password.
            domains::get(&mut tx, ACTOR, &addr.domain_name()).await?;
            let spec = AccountSpec {
                password: read_password(password, addr.as_str())?,
                ..spec
            };
            let policy = accounts::hash_policy(&mut tx).await?;
            let a = accounts::create(&mut tx, ACTOR, &spec, policy).await?;
            commit(tx, ()).await?;
            println!("mailbox {} created", a.username);
        }
        MailboxCommand::List {
            json,
            domain,
            search,
        } => {
            let filter = accounts::ListFilter {
                domain: domain.as_deref(),
                search: search.as_deref(),
                with_mailbox: Some(true),
                ..Default::default()
            };
            print_accounts(&accounts::list(&mut tx, ACTOR, &filter).await?, *json)?;
        }
        MailboxCommand::Show(a) => {
            print_account(
                &accounts::get(&mut tx, ACTOR, &account_name(&a.name)).await?,
                a.json,
            )?;
        }
        MailboxCommand::Passwd { address, password } => {
            let name = account_name(address);
            let a = accounts::get(&mut tx, ACTOR, &name).await?;
            let p = read_password(password, &a.username)?;
            accounts::set_password(&mut tx, ACTOR, &name, &p).await?;
            commit(tx, ()).await?;
            println!("password of {} changed", a.username);
        }
        MailboxCommand::Edit {
            address,
            quota,
            domain_quota,
            first_name,
            last_name,
            enabled,
            rename,
            add_sender,
            remove_sender,
        } => {
            let name = account_name(address);
            for s in add_sender {
                accounts::add_sender_address(
                    &mut tx,
                    ACTOR,
                    &name,
                    &accounts::SenderPattern::parse("add-sender", s)?,
                )
                .await?;
            }
            for s in remove_sender {
                accounts::remove_sender_address(
                    &mut tx,
                    ACTOR,
                    &name,
                    &accounts::SenderPattern::parse("remove-sender", s)?,
                )
                .await?;
            }
            let patch = AccountPatch {
                username: rename
                    .as_deref()
                    .map(Username::parse)
                    .transpose()
                    .map_err(StoreError::from)?,
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                enabled: *enabled,
                role: None,
                quota: if *domain_quota {
                    Some(None)
                } else {
                    quota.map(Some)
                },
                ..AccountPatch::default()
            };
            let a = accounts::update(&mut tx, ACTOR, &name, &patch, opts).await?;
            commit(tx, ()).await?;
            println!("mailbox {} modified", a.username);
        }
        MailboxCommand::Del(a) => {
            let name = account_name(&a.name);
            accounts::get(&mut tx, ACTOR, &name).await?;
            let disk = if opts.handle_mailboxes_on_filesystem {
                " Its directory will be removed from disk."
            } else {
                ""
            };
            confirm(a.yes, &format!("Delete the mailbox {name}?{disk}"))?;
            accounts::delete(&mut tx, ACTOR, &name, opts).await?;
            commit(tx, ()).await?;
            println!("mailbox {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
