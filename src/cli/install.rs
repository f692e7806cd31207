//! `modobox install`, `modobox plan` and `modobox dns records`: settings from the configuration
//! file, options or prompts; preflight; the step plan; the summary.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::{EngineArg, Global, InstallArgs, TlsArg};
use crate::config::{Config, Engine, TlsMode};
use crate::distro::Distro;
use crate::install::{self, preflight, summary, Ctx};
use crate::names::{DomainName, EmailAddress, Hostname, SafePath};
use crate::secrets::Secrets;

const COMPONENTS: &[&str] = &[
    "amavis",
    "spamassassin",
    "clamav",
    "opendkim",
    "pop3",
    "managesieve",
];

fn interactive(args: &InstallArgs) -> bool {
    !args.yes && std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// `--database ENGINE` and `--without COMPONENT,...` (install and image build).
pub(super) fn set_stack(
    config: &mut Config,
    database: Option<EngineArg>,
    without: &[String],
) -> Result<()> {
    if let Some(e) = database {
        config.database.engine = match e {
            EngineArg::Postgres => Engine::Postgres,
            EngineArg::Mysql => Engine::Mysql,
            EngineArg::Sqlite => Engine::Sqlite,
        };
    }
    for w in without {
        set_component(config, w, false)?;
        if w == "amavis" {
            // SpamAssassin and ClamAV run inside Amavis.
            config.components.spamassassin = false;
            config.components.clamav = false;
        }
    }
    Ok(())
}

fn set_component(config: &mut Config, name: &str, on: bool) -> Result<()> {
    let c = &mut config.components;
    match name {
        "amavis" => c.amavis = on,
        "spamassassin" => c.spamassassin = on,
        "clamav" => c.clamav = on,
        "opendkim" => c.opendkim = on,
        "pop3" => c.pop3 = on,
        "managesieve" => c.managesieve = on,
        other => bail!(
            "--without: unknown component {other:?} (one of {})",
            COMPONENTS.join(", ")
        ),
    }
    Ok(())
}

/// The configuration the install works towards: the configuration file when it exists, then
/// the options, then (on a terminal) the prompts.
fn settings(global: &Global, args: &InstallArgs) -> Result<Config> {
    let from_file = global.config.exists();
    let mut config = if from_file {
        Config::load(&global.config)?
    } else {
        let host = match (&args.hostname, interactive(args)) {
            (Some(h), _) => h.clone(),
            (None, true) => inquire::Text::new("Hostname of this mail server (FQDN):")
                .with_help_message("e.g. mail.example.com; it becomes the MX target")
                .prompt()?,
            (None, false) => bail!(
                "hostname: required (`modobox install mail.example.com`), or a configuration \
                 file at {}",
                global.config.display()
            ),
        };
        Config::new(Hostname::parse("hostname", &host)?)
    };
    if let Some(h) = &args.hostname {
        config.hostname = Hostname::parse("hostname", h)?;
    }
    if let Some(d) = &args.domain {
        config.primary_domain = Some(DomainName::parse("--domain", d)?);
    }
    if let Some(a) = &args.admin_address {
        config.admin_address = Some(EmailAddress::parse("--admin-address", a)?);
    }
    set_stack(&mut config, args.database, &args.without)?;
    if let Some(t) = args.tls {
        config.tls.mode = match t {
            TlsArg::SelfSigned => TlsMode::SelfSigned,
            TlsArg::Manual => TlsMode::Manual,
            TlsArg::Acme => TlsMode::Acme,
        };
    }
    if let Some(p) = &args.tls_cert {
        config.tls.cert = Some(SafePath::parse("--tls-cert", &p.to_string_lossy())?);
    }
    if let Some(p) = &args.tls_key {
        config.tls.key = Some(SafePath::parse("--tls-key", &p.to_string_lossy())?);
    }
    if let Some(e) = &args.acme_email {
        config.tls.acme_email = Some(EmailAddress::parse("--acme-email", e)?);
    }
    if let Some(u) = &args.acme_directory {
        config.tls.acme_directory = crate::names::HttpUrl::parse("--acme-directory", u)?;
    }
    if interactive(args) && !from_file {
        prompt(&mut config)?;
    }
    config.validate()?;
    Ok(config)
}

fn prompt(config: &mut Config) -> Result<()> {
    let domain = inquire::Text::new("Primary mail domain:")
        .with_default(
            &config
                .primary_domain()
                .map(|d| d.to_string())
                .unwrap_or_default(),
        )
        .prompt()?;
    config.primary_domain = Some(DomainName::parse("primary domain", &domain)?);
    let admin = inquire::Text::new("Admin address (alerts):")
        .with_default(&format!("postmaster@{domain}"))
        .prompt()?;
    config.admin_address = Some(EmailAddress::parse("admin address", &admin)?);
    let engines = vec!["postgres", "mysql", "sqlite"];
    let engine = inquire::Select::new("Database:", engines)
        .with_help_message("PostgreSQL is the default; SQLite suits small boxes")
        .prompt()?;
    config.database.engine = match engine {
        "mysql" => Engine::Mysql,
        "sqlite" => Engine::Sqlite,
        _ => Engine::Postgres,
    };
    let on: Vec<usize> = (0..COMPONENTS.len()).collect();
    let chosen = inquire::MultiSelect::new("Components:", COMPONENTS.to_vec())
        .with_default(&on)
        .prompt()?;
    for name in COMPONENTS {
        set_component(config, name, chosen.contains(name))?;
    }
    let modes = vec![
        "acme (Let's Encrypt: the hostname's DNS must point here, port 80 open)",
        "self-signed",
        "manual (certificate and key files you provide)",
    ];
    let mode = inquire::Select::new("TLS certificate:", modes).prompt()?;
    config.tls.mode = match mode.split(' ').next().unwrap_or_default() {
        "manual" => TlsMode::Manual,
        "acme" => TlsMode::Acme,
        _ => TlsMode::SelfSigned,
    };
    match config.tls.mode {
        TlsMode::Manual => {
            let cert = inquire::Text::new("Certificate chain (PEM) path:").prompt()?;
            let key = inquire::Text::new("Private key (PEM) path:").prompt()?;
            config.tls.cert = Some(SafePath::parse("certificate", &cert)?);
            config.tls.key = Some(SafePath::parse("key", &key)?);
        }
        TlsMode::Acme => {
            let email = inquire::Text::new("Email address for the certificate authority:")
                .with_help_message("expiry notices; empty for none")
                .with_default(&admin)
                .prompt()?;
            config.tls.acme_email = match email.trim() {
                "" => None,
                e => Some(EmailAddress::parse("tls.acme_email", e)?),
            };
        }
        TlsMode::SelfSigned => {}
    }
    Ok(())
}

fn ask(args: &InstallArgs, question: &str, default: bool) -> Result<bool> {
    if !interactive(args) {
        return Ok(default);
    }
    Ok(inquire::Confirm::new(question)
        .with_default(default)
        .prompt()?)
}

pub fn install(global: &Global, args: &InstallArgs, plan_only: bool) -> Result<ExitCode> {
    let _upgrade_lock = if plan_only || args.dry_run {
        None
    } else {
        let distro = Distro::resolve(global.distro.as_ref())?;
        crate::upgrade::apply::guard_install(&global.config, &distro)?
    };
    match &args.restore {
        Some(source) => rebuild(global, args, source, plan_only || args.dry_run),
        None => install_with(global, args, plan_only, None),
    }
}

/// The install, towards the configuration `settings` finds; with `restore`, the backup's
/// restore steps run in their places.
fn install_with(
    global: &Global,
    args: &InstallArgs,
    plan_only: bool,
    restore: Option<install::restore::Rebuild>,
) -> Result<ExitCode> {
    let dry_run = plan_only || args.dry_run;
    let mut config = settings(global, args)?;
    let distro = Distro::resolve(global.distro.as_ref())?;

    let findings = preflight::check(&config);
    for w in &findings.warnings {
        println!("warning: {w}");
    }
    if !findings.errors.is_empty() && !dry_run {
        for e in &findings.errors {
            eprintln!("error: {e}");
        }
        bail!("preflight failed: nothing was changed");
    }
    if let Some(line) = &findings.hosts_line {
        if dry_run {
            println!("would add to /etc/hosts: {line}");
        } else if ask(args, &format!("Add \"{line}\" to /etc/hosts?"), true)? {
            preflight::fix_hosts(line).context("writing /etc/hosts")?;
            println!("added to /etc/hosts: {line}");
        }
    }
    if findings.clamav_too_big && ask(args, "Leave ClamAV out (not enough memory)?", true)? {
        println!("ClamAV left out (components.clamav = false)");
        config.components.clamav = false;
    }

    let secrets = Secrets::load_or_generate(config.paths.secrets.as_path())?;
    let mut ctx = Ctx::new(config, global.config.clone(), distro, secrets)?;
    ctx.dry_run = dry_run;
    ctx.restore = restore;
    ctx.accept_conflicts = args.accept_conflicts;
    ctx.credentials_file = args.credentials_file.clone();
    let steps = install::steps(&ctx);

    if !dry_run && interactive(args) {
        // Show the plan, then ask.
        ctx.dry_run = true;
        let existing = preflight::existing_configuration(
            &install::files::rendered(&ctx)?,
            &install::files::manifest_path(&ctx.config),
        );
        if !existing.is_empty() {
            println!(
                "These files exist and will be replaced (the originals are kept as \
                 FILE.modobox-orig):\n  {}",
                existing.join("\n  ")
            );
        }
        let plan = install::run(&mut ctx, &steps, true)?;
        let pending = plan.iter().filter(|r| r.outcome != "ok").count();
        if pending == 0 {
            println!("Nothing to do: the mail server is installed and configured.");
            ctx.close();
            return Ok(ExitCode::SUCCESS);
        }
        ctx.dry_run = false;
        if !ask(args, &format!("Apply these {pending} steps?"), true)? {
            bail!("cancelled: nothing was changed");
        }
    }

    let started = std::time::Instant::now();
    let reports = install::run(&mut ctx, &steps, dry_run)?;
    let changed = reports.iter().filter(|r| r.outcome != "ok").count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    if dry_run {
        println!("{changed} of {} steps would change", reports.len());
        ctx.close();
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{changed} of {} steps changed ({:.0} s)",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    print_summary(&mut ctx, args.credentials_file.as_deref())?;
    ctx.close();
    Ok(ExitCode::SUCCESS)
}

fn print_summary(ctx: &mut Ctx, credentials_file: Option<&std::path::Path>) -> Result<()> {
    println!();
    println!("Admin: https://{}/", ctx.config.hostname);
    match &ctx.new_admin_password {
        _ if ctx.restore.is_some() => {
            println!("Login: the accounts and passwords of the backup (nothing was reset)")
        }
        Some(_) if credentials_file.is_some() => println!(
            "Login: {} / the password in {}",
            install::database::FIRST_ADMIN,
            credentials_file
                .unwrap_or(std::path::Path::new(""))
                .display()
        ),
        Some(p) => println!(
            "Login: {} / {p}  (shown once: change it after logging in)",
            install::database::FIRST_ADMIN
        ),
        None => println!(
            "Login: the superadmin created by the first install (`modobox admin passwd {}` \
             sets a new password)",
            install::database::FIRST_ADMIN
        ),
    }
    match &ctx.config.backup.repository {
        Some(repo) => println!(
            "Backups: into {repo} (schedule.backup {}; restore tests schedule.backup_verify {}); \
             keep a copy of backup_password from {} off this machine",
            ctx.config.schedule.backup, ctx.config.schedule.backup_verify, ctx.config.paths.secrets
        ),
        None => println!(
            "Backups: off. Set a repository (another disk, or sftp:/s3:/rest:...) as \
             backup.repository in {}, then `modobox backup create`",
            ctx.config_path.display()
        ),
    }
    if let Some(domain) = ctx.config.primary_domain() {
        let store = ctx.store()?;
        let text = ctx.rt.block_on(summary::domain_records(
            &store,
            &ctx.config,
            domain.as_str(),
            &crate::dns::records::public_addresses(),
            false,
        ))?;
        println!(
            "\nDNS records to publish for {domain} (`modobox dns records` prints them again):\n"
        );
        print!("{text}");
    }
    Ok(())
}

/// `install --restore REPO[:ID]`: a server rebuilt from its backup on a fresh machine — the
/// backup's configuration and secrets put in place, then the install with the restore steps
/// (keys, database, mail). An interrupted rebuild runs again from where it stopped.
fn rebuild(global: &Global, args: &InstallArgs, source: &str, dry_run: bool) -> Result<ExitCode> {
    use crate::backup::rebuild::{self, RebuildState};
    let (location, id) = rebuild::parse_source("--restore", source)?;
    let hostname = args
        .hostname
        .as_deref()
        .map(|h| Hostname::parse("hostname", h))
        .transpose()?;
    if global.config != std::path::Path::new(crate::config::DEFAULT_PATH) {
        bail!(
            "--restore: the backup's configuration comes back as {}; --config cannot name \
             another file",
            crate::config::DEFAULT_PATH
        );
    }
    let distro = Distro::resolve(global.distro.as_ref())?;
    let state_path = RebuildState::path();
    let state = RebuildState::load(&state_path)?;
    if global.config.exists() && state.is_none() {
        bail!(
            "--restore: {} exists: this machine is already a mail server. Restore a backup onto \
             it with `modobox backup restore ID --from REPO`; --restore rebuilds a server on a \
             fresh machine",
            global.config.display()
        );
    }
    if !crate::system::cmd::exists("restic") {
        if dry_run {
            bail!("--restore: restic is not installed (the install would add it first)");
        }
        println!("installing restic to read the backup...");
        for cmd in install::packages::install_commands(&distro, &["restic".to_string()]) {
            cmd.run().context("installing restic")?;
        }
    }
    let password = repository_password()?;
    let work = std::path::Path::new(crate::config::DEFAULT_DATA_DIR).join("backup");
    let repository =
        crate::backup::restic::Repository::new(&location, password, work.join("restic-cache"));
    let prepared = rebuild::prepare(&work, &repository, &id, hostname.as_ref())?;
    let snapshot = prepared.fetched.snapshot.id.clone();
    if let Some(s) = &state {
        if s.snapshot != snapshot {
            bail!(
                "--restore: an interrupted rebuild from backup {} is recorded in {}: run it \
                 again with that backup, or remove the file to start over",
                s.snapshot.chars().take(8).collect::<String>(),
                state_path.display()
            );
        }
    }
    println!(
        "backup {} of {} taken {}:",
        prepared.fetched.snapshot.short_id,
        prepared.fetched.manifest.hostname,
        prepared.fetched.manifest.created
    );
    for line in rebuild::describe(&prepared, &distro) {
        println!("  {line}");
    }
    if dry_run {
        println!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    super::input::confirm(args.yes, "Rebuild this server from the backup?")?;
    // Recorded before anything is written: a rebuild killed from here on may run again.
    let recorded = state.unwrap_or(RebuildState {
        snapshot: snapshot.clone(),
        ..RebuildState::default()
    });
    recorded.save(&state_path)?;
    if !recorded.files {
        rebuild::put_configuration(&prepared)?;
    }
    let manifest = prepared.fetched.manifest.clone();
    let install_args = InstallArgs {
        yes: true,
        json: args.json,
        ..InstallArgs::default()
    };
    let restore = install::restore::Rebuild {
        repository,
        snapshot,
        state_path: state_path.clone(),
        files: prepared.fetched,
    };
    let code = install_with(global, &install_args, false, Some(restore))?;
    RebuildState::remove(&state_path)?;
    // Mail held while the services were being set up goes out now.
    if crate::system::cmd::exists("postqueue") {
        let _ = crate::system::cmd::Cmd::new("postqueue").arg("-f").run();
    }
    println!(
        "\nRebuilt {} from its backup of {}: {} domains, {} mailboxes, {} messages.",
        manifest.hostname,
        manifest.created,
        manifest.domains.len(),
        manifest.mailboxes.len(),
        manifest.total_messages()
    );
    Ok(code)
}

/// The repository password of a rebuild: a prompt on a terminal, else the first line of
/// standard input (never an argument).
fn repository_password() -> Result<crate::secrets::Secret> {
    use std::io::BufRead;
    let text = if std::io::stdin().is_terminal() {
        inquire::Password::new("Backup repository password (backup_password of the old server):")
            .with_display_mode(inquire::PasswordDisplayMode::Masked)
            .without_confirmation()
            .prompt()?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if text.is_empty() {
        bail!("--restore: no repository password (prompt or first line of standard input)");
    }
    Ok(crate::secrets::Secret::typed(text))
}

/// Runs the installer unattended on the existing configuration (after a restore brought back
/// the configuration, secrets, keys or database: it re-renders, migrates, re-grants and
/// restarts what changed).
pub fn reapply(global: &Global) -> Result<ExitCode> {
    let args = InstallArgs {
        yes: true,
        ..InstallArgs::default()
    };
    install(global, &args, false)
}

/// Only the database steps of the installer (schema migrations, the daemons' roles and
/// grants), unattended: after a restored database replaced the live one.
pub fn reapply_database(global: &Global) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    let secrets = Secrets::load_or_create(config.paths.secrets.as_path())?;
    let mut ctx = Ctx::new(config, global.config.clone(), distro, secrets)?;
    let steps = install::database_steps();
    let reports = install::run(&mut ctx, &steps, false)?;
    let changed = reports.iter().filter(|r| r.outcome != "ok").count();
    println!("{changed} of {} database steps changed", reports.len());
    ctx.close();
    Ok(ExitCode::SUCCESS)
}
