//! Glue between the command line and the store: opens the database, reads passwords from a
//! prompt or standard input, prints tables or JSON. The rules live in `modobox::store`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use modobox::cli::{
    AdminCommand, AliasCommand, DbCommand, DomainAliasCommand, DomainCommand, DomainSettings,
    ExportWhat, Global, MailboxCommand, PasswordSource, RelayDomainCommand, RelaySettings,
    TokenCommand,
};
use modobox::config::Config;
use modobox::names::{DkimSelector, DomainName, EmailAddress};
use modobox::secrets::{Secret, Secrets};
use modobox::store::access::{self, Actor, Role};
use modobox::store::accounts::{self, AccountPatch, AccountSpec, Options, Password};
use modobox::store::aliases::{self, AliasAddress, AliasPatch, AliasSpec};
use modobox::store::domains::{self, DomainPatch, DomainSpec, Relay};
use modobox::store::{migrate, tokens, transfer, DatabaseUrl, Store, Tx};

/// The CLI runs as root on the server: it acts as the system, with no access restriction.
const ACTOR: Actor = Actor::System;

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The configuration when there is one; with only `--database-url`, the defaults.
fn options(global: &Global) -> Result<(Option<Config>, Options)> {
    let config = if global.database_url.is_some() && !global.config.exists() {
        None
    } else {
        Some(Config::load(&global.config)?)
    };
    let defaults = Config::default_paths_and_mail();
    let (paths, mail) = config
        .as_ref()
        .map_or(defaults, |c| (c.paths.clone(), c.mail.clone()));
    Ok((
        config,
        Options {
            mail_root: paths.mail_root.as_path().to_path_buf(),
            handle_mailboxes_on_filesystem: mail.handle_mailboxes_on_filesystem,
        },
    ))
}

pub async fn open(global: &Global) -> Result<(Store, Options)> {
    let (url, opts) = database_url(global)?;
    let store = Store::connect(&url).await?;
    Ok((store, opts))
}

/// The database to use (`--database-url`, or the configuration with the secrets file's
/// password), read now: the web UI and the milter read it as root, then give root up.
pub fn database_url(global: &Global) -> Result<(DatabaseUrl, Options)> {
    let (config, opts) = options(global)?;
    let url = match (&global.database_url, &config) {
        (Some(u), _) => DatabaseUrl::parse(u)?,
        (None, Some(c)) => {
            let path = c.paths.secrets.as_path();
            if c.database.engine != modobox::config::Engine::Sqlite && !path.exists() {
                bail!(
                    "{} does not exist: run `modobox install` first, or give --database-url",
                    path.display()
                );
            }
            let secrets = Secrets::load_or_generate(path)?;
            DatabaseUrl::from_config(c, &secrets)
        }
        (None, None) => bail!("no configuration and no --database-url"),
    };
    Ok((url, opts))
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without a terminal: add --yes");
    }
    if inquire::Confirm::new(question)
        .with_default(false)
        .prompt()?
    {
        Ok(())
    } else {
        bail!("cancelled")
    }
}

/// A new password: generated and printed once, typed twice at a prompt, or the first line of
/// standard input. Never an argument (it would show in `ps` and shell history).
fn read_password(source: &PasswordSource, who: &str) -> Result<Password> {
    if source.generate_password {
        let p = Secret::generate(20);
        println!("password for {who}: {}", p.expose());
        return Ok(Password::Clear(p.expose().to_string()));
    }
    if std::io::stdin().is_terminal() {
        let p = inquire::Password::new(&format!("Password for {who}:"))
            .with_display_mode(inquire::PasswordDisplayMode::Masked)
            .with_custom_confirmation_message("Again:")
            .prompt()?;
        return Ok(Password::Clear(p));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        bail!("password: nothing on standard input (or use --generate-password)");
    }
    Ok(Password::Clear(p))
}

fn parse_domain(field: &str, v: &str) -> Result<DomainName> {
    Ok(DomainName::parse(field, v)?)
}

fn parse_expiry(v: &str) -> Result<Option<DateTime<Utc>>> {
    if v.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let (n, unit) = v.split_at(v.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n < 100_000)
        .with_context(|| {
            format!(
                "expires: {v:?} is neither an RFC 3339 date-time, a duration (12h, 7d) nor `never`"
            )
        })?;
    let d = match unit {
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => bail!("expires: the unit of {v:?} must be m, h, d or w"),
    };
    Ok(Some(Utc::now() + d))
}

fn table(rows: Vec<Vec<String>>) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn quota(mb: i32) -> String {
    if mb == 0 {
        "unlimited".into()
    } else {
        format!("{mb} MB")
    }
}

async fn commit<T>(tx: Tx, value: T) -> Result<T> {
    tx.commit().await?;
    Ok(value)
}

pub async fn db(global: &Global, cmd: &DbCommand) -> Result<ExitCode> {
    let (store, _) = open(global).await?;
    match cmd {
        DbCommand::Migrate => {
            let applied = migrate::migrate(&store).await?;
            if applied.is_empty() {
                println!("the database is up to date");
            } else {
                println!("applied migrations {applied:?}");
            }
        }
        DbCommand::Adopt => {
            let applied = migrate::adopt(&store).await?;
            println!("adopted the Modoboa database; applied migrations {applied:?}");
        }
        DbCommand::Status { json } => {
            let status = migrate::status(&store).await?;
            if *json {
                print_json(&status)?;
            } else {
                println!("database engine: {}", status.backend);
                if status.unadopted_modoboa {
                    println!("this is a Modoboa database not yet adopted: run `modobox db adopt`");
                }
                for m in &status.migrations {
                    let state = match (m.applied, m.baseline) {
                        (true, true) => "present (adopted)",
                        (true, false) => "applied",
                        _ => "pending",
                    };
                    println!("{:>4}  {:<28} {state}", m.version, m.name);
                }
            }
            store.close().await;
            return Ok(if status.pending() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

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
        relay: None,
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
            d.name.clone(),
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
            let list = domains::list(&mut tx, ACTOR, Some("domain"), a.search.as_deref()).await?;
            print_domains(&list, a.json)?;
        }
        DomainCommand::Show(a) => {
            let d = domains::get(&mut tx, ACTOR, &a.name.to_lowercase()).await?;
            print_domain(&d, a.json)?;
        }
        DomainCommand::Edit { name, settings } => {
            let d = domains::update(
                &mut tx,
                ACTOR,
                &name.to_lowercase(),
                &domain_patch(settings)?,
            )
            .await?;
            commit(tx, ()).await?;
            println!("domain {} modified", d.name);
        }
        DomainCommand::Del(a) => {
            let d = domains::get(&mut tx, ACTOR, &a.name.to_lowercase()).await?;
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
            let list = domains::list_aliases(&mut tx, ACTOR, domain.as_deref()).await?;
            if *json {
                print_json(&list)?;
            } else {
                let mut rows = vec![vec!["NAME".into(), "TARGET".into(), "ENABLED".into()]];
                rows.extend(
                    list.iter()
                        .map(|a| vec![a.name.clone(), a.target.clone(), yes_no(a.enabled)]),
                );
                table(rows);
            }
        }
        DomainAliasCommand::Show(a) => {
            let d = domains::get_alias(&mut tx, ACTOR, &a.name.to_lowercase()).await?;
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
            let a =
                domains::set_alias_enabled(&mut tx, ACTOR, &name.to_lowercase(), *enabled).await?;
            commit(tx, ()).await?;
            println!("domain alias {} modified", a.name);
        }
        DomainAliasCommand::Del(a) => {
            confirm(a.yes, &format!("Delete the domain alias {}?", a.name))?;
            domains::delete_alias(&mut tx, ACTOR, &a.name.to_lowercase()).await?;
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
            let list =
                domains::list(&mut tx, ACTOR, Some("relaydomain"), a.search.as_deref()).await?;
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
                        d.name.clone(),
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
    let d = domains::get(tx, ACTOR, &name.to_lowercase()).await?;
    if d.kind != "relaydomain" {
        bail!(
            "{} is a hosted domain, not a relay domain (see `modobox domain`)",
            d.name
        );
    }
    Ok(d)
}

fn print_account(a: &accounts::Account, json: bool) -> Result<()> {
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

fn print_accounts(list: &[accounts::Account], json: bool) -> Result<()> {
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
                username: addr.to_string(),
                password: Password::Clear(String::new()),
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                enabled: *enabled,
                role,
                mailbox: Some(*quota),
                domains,
            };
            // Validate everything a prompt cannot fix before asking for the password.
            accounts::parse_username(&spec.username)?;
            domains::get(&mut tx, ACTOR, addr.domain()).await?;
            let spec = AccountSpec {
                password: read_password(password, addr.as_str())?,
                ..spec
            };
            let rounds = accounts::password_rounds(&mut tx).await?;
            let a = accounts::create(&mut tx, ACTOR, &spec, rounds).await?;
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
                &accounts::get(&mut tx, ACTOR, &a.name.to_lowercase()).await?,
                a.json,
            )?;
        }
        MailboxCommand::Passwd { address, password } => {
            let a = accounts::get(&mut tx, ACTOR, &address.to_lowercase()).await?;
            let p = read_password(password, &a.username)?;
            accounts::set_password(&mut tx, ACTOR, &a.username, &p).await?;
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
            let name = address.to_lowercase();
            for s in add_sender {
                accounts::add_sender_address(
                    &mut tx,
                    ACTOR,
                    &name,
                    &EmailAddress::parse("add-sender", s)?,
                )
                .await?;
            }
            for s in remove_sender {
                accounts::remove_sender_address(
                    &mut tx,
                    ACTOR,
                    &name,
                    &EmailAddress::parse("remove-sender", s)?,
                )
                .await?;
            }
            let patch = AccountPatch {
                username: rename.clone(),
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                enabled: *enabled,
                role: None,
                quota: if *domain_quota {
                    Some(None)
                } else {
                    quota.map(Some)
                },
            };
            let a = accounts::update(&mut tx, ACTOR, &name, &patch, opts).await?;
            commit(tx, ()).await?;
            println!("mailbox {} modified", a.username);
        }
        MailboxCommand::Del(a) => {
            let name = a.name.to_lowercase();
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
            let al = aliases::get(&mut tx, ACTOR, &a.name.to_lowercase()).await?;
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
            let a = aliases::update(&mut tx, ACTOR, &address.to_lowercase(), &patch).await?;
            commit(tx, ()).await?;
            println!("alias {} modified", a.address);
        }
        AliasCommand::Del(a) => {
            confirm(a.yes, &format!("Delete the alias {}?", a.name))?;
            aliases::delete(&mut tx, ACTOR, &a.name.to_lowercase()).await?;
            commit(tx, ()).await?;
            println!("alias {} deleted", a.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

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
            let username = accounts::parse_username(username)?;
            let domains = doms
                .iter()
                .map(|d| parse_domain("domain", d))
                .collect::<Result<Vec<_>>>()?;
            let spec = AccountSpec {
                username: username.clone(),
                password: read_password(password, &username)?,
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                enabled: true,
                role,
                mailbox: mailbox.then_some(None),
                domains,
            };
            let rounds = accounts::password_rounds(&mut tx).await?;
            let a = accounts::create(&mut tx, ACTOR, &spec, rounds).await?;
            commit(tx, ()).await?;
            println!("administrator {} ({}) created", a.username, a.role);
        }
        AdminCommand::List { json } => {
            let mut list = accounts::list(&mut tx, ACTOR, &accounts::ListFilter::default()).await?;
            list.retain(|a| a.role.is_admin());
            print_accounts(&list, *json)?;
        }
        AdminCommand::Show(a) => {
            let acc = accounts::get(&mut tx, ACTOR, &a.name.to_lowercase()).await?;
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
            accounts::grant_domain(&mut tx, ACTOR, &username.to_lowercase(), &d).await?;
            commit(tx, ()).await?;
            println!("{username} now administers {d}");
        }
        AdminCommand::Revoke { username, domain } => {
            let d = parse_domain("domain", domain)?;
            accounts::revoke_domain(&mut tx, ACTOR, &username.to_lowercase(), &d).await?;
            commit(tx, ()).await?;
            println!("{username} no longer administers {d}");
        }
        AdminCommand::Limit {
            username,
            name,
            value,
        } => {
            let a = accounts::get(&mut tx, ACTOR, &username.to_lowercase()).await?;
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
            let a =
                accounts::update(&mut tx, ACTOR, &username.to_lowercase(), &patch, opts).await?;
            commit(tx, ()).await?;
            println!("{} is now {}", a.username, a.role);
        }
        AdminCommand::Passwd { username, password } => {
            let a = accounts::get(&mut tx, ACTOR, &username.to_lowercase()).await?;
            let p = read_password(password, &a.username)?;
            accounts::set_password(&mut tx, ACTOR, &a.username, &p).await?;
            commit(tx, ()).await?;
            println!("password of {} changed", a.username);
        }
        AdminCommand::Del(a) => {
            confirm(a.yes, &format!("Delete the account {}?", a.name))?;
            accounts::delete(&mut tx, ACTOR, &a.name.to_lowercase(), opts).await?;
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
            let a = accounts::get(&mut tx, ACTOR, &username.to_lowercase()).await?;
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
            let a = accounts::get(&mut tx, ACTOR, &username.to_lowercase()).await?;
            if !tokens::revoke_token(&mut tx, a.id).await? {
                bail!("{} has no API token", a.username);
            }
            commit(tx, ()).await?;
            println!("API token of {} removed", a.username);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn import(global: &Global, file: &Path, json: bool) -> Result<ExitCode> {
    let (store, _) = open(global).await?;
    let report = if file == Path::new("-") {
        transfer::import(&store, ACTOR, std::io::stdin().lock()).await
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        transfer::import(&store, ACTOR, std::io::BufReader::new(f)).await
    }
    .with_context(|| format!("{}: nothing was imported", file.display()))?;
    store.close().await;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "imported {} domain(s), {} domain alias(es), {} relay domain(s), {} account(s), {} alias(es)",
            report.domains, report.domain_aliases, report.relay_domains, report.accounts, report.aliases
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(global: &Global, what: ExportWhat, output: Option<&Path>) -> Result<ExitCode> {
    let (store, _) = open(global).await?;
    let kind = match what {
        ExportWhat::Domains => transfer::ExportKind::Domains,
        ExportWhat::Identities => transfer::ExportKind::Identities,
    };
    let mut buf = Vec::new();
    let n = transfer::export(&store, ACTOR, kind, &mut buf).await?;
    store.close().await;
    match output {
        Some(path) => {
            modobox::system::fs::write_atomic(path, &buf, 0o600, None)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("exported {n} line(s) to {}", path.display());
        }
        None => std::io::stdout().lock().write_all(&buf)?,
    }
    Ok(ExitCode::SUCCESS)
}
