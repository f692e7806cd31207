//! The binary's edge: the clap tree (`args`), one file per command group, what they print
//! (`output`) and read (`input`), and `dispatch`. `anyhow` is used here and nowhere else; the
//! rules live below (`store`, `install`, `supervisor`, ...).

mod admin;
mod alias;
pub mod args;
mod backup;
mod db;
mod dns;
mod domain;
mod image;
mod input;
mod install;
mod mailbox;
mod output;
mod render;
mod run;
mod stats;
mod status;
mod task;
mod tls;
mod upgrade;
mod web;

pub use args::*;
pub use output::error_message;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

use crate::config::Config;
use crate::distro::Distro;
use crate::secrets::Secrets;
use crate::store::access::Actor;
use crate::store::accounts::Options;
use crate::store::{DatabaseUrl, Store, Tx};

/// The CLI runs as root on the server: it acts as the system, with no access restriction.
const ACTOR: Actor = Actor::System;

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The configuration when there is one; with only `--database-url`, the defaults.
pub(crate) fn options(global: &Global) -> Result<(Option<Config>, Options)> {
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
            if c.database.engine != crate::config::Engine::Sqlite && !path.exists() {
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

async fn commit<T>(tx: Tx, value: T) -> Result<T> {
    tx.commit().await?;
    Ok(value)
}

/// Runs one parsed command.
pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Default) => {
            print!("{}", crate::config::DEFAULT_TEXT);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let path = file.unwrap_or(cli.global.config);
            let config = Config::load(&path)?;
            println!(
                "{}: valid (hostname {}, database {}, primary domain {})",
                path.display(),
                config.hostname,
                config.database.engine.as_str(),
                config
                    .primary_domain()
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Render(args) => render::render_command(&cli.global, &args),
        Command::Install(args) => install::install(&cli.global, &args, false),
        Command::Plan(args) => install::install(&cli.global, &args, true),
        Command::Upgrade(args) => upgrade::upgrade(&cli.global, &args),
        Command::Run { manager } => runtime()?.block_on(run::run(&cli.global, manager)),
        Command::Web {
            listen,
            public,
            insecure_cookies,
            user,
            status_file,
        } => runtime()?.block_on(web::web(
            &cli.global,
            listen,
            public,
            !insecure_cookies,
            user.as_deref(),
            status_file,
        )),
        Command::Milter {
            listen,
            policy_listen,
            inbound_listen,
            user,
        } => runtime()?.block_on(web::milter(
            &cli.global,
            [listen, policy_listen, inbound_listen],
            user.as_deref(),
        )),
        Command::Status { json } => runtime()?.block_on(status::status(&cli.global, json)),
        Command::Dns(c) => runtime()?.block_on(dns::dns(&cli.global, &c)),
        Command::Tls(c) => runtime()?.block_on(tls::tls(&cli.global, &c)),
        Command::Distro { json } => {
            let d = Distro::resolve(cli.global.distro.as_ref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d.facts)?);
            } else {
                println!(
                    "{} ({} {} {}): Postfix {}, Dovecot {} (config dialect {}), packages by {:?}",
                    d.id,
                    d.facts.name,
                    d.id.version,
                    d.facts.codename,
                    d.facts.postfix.version,
                    d.facts.dovecot.version,
                    d.facts.dovecot.dialect,
                    d.facts.package_manager
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Db(c) => runtime()?.block_on(db::db(&cli.global, &c)),
        Command::Domain(c) => runtime()?.block_on(domain::domain(&cli.global, &c)),
        Command::DomainAlias(c) => runtime()?.block_on(domain::domain_alias(&cli.global, &c)),
        Command::RelayDomain(c) => runtime()?.block_on(domain::relay_domain(&cli.global, &c)),
        Command::Mailbox(c) => runtime()?.block_on(mailbox::mailbox(&cli.global, &c)),
        Command::Alias(c) => runtime()?.block_on(alias::alias(&cli.global, &c)),
        Command::Admin(c) => runtime()?.block_on(admin::admin(&cli.global, &c)),
        Command::Token(c) => runtime()?.block_on(admin::token(&cli.global, &c)),
        Command::Import {
            file,
            json,
            sepchar,
            continue_if_exists,
            crypt_passwords,
        } => {
            let opts = crate::store::transfer::ImportOptions {
                sepchar,
                continue_if_exists,
                crypt_passwords,
            };
            runtime()?.block_on(db::import(&cli.global, &file, json, &opts))
        }
        Command::Export {
            what,
            output,
            sepchar,
        } => runtime()?.block_on(db::export(&cli.global, what, output.as_deref(), sepchar)),
        Command::Task(c) => runtime()?.block_on(task::task(&cli.global, &c)),
        Command::Stats(c) => stats::stats(&cli.global, &c),
        Command::Backup(c) => backup::backup(&cli.global, &c),
        Command::Image(c) => image::image(&cli.global, &c),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "modobox", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
