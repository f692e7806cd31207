//! modobox: entry point. Parses the command line, sets up logging and dispatches; `anyhow`
//! lives only here and in the command glue below.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

mod commands;
mod install_cmd;
mod stats_cmd;
mod status_cmd;
mod task_cmd;

use modobox::cli::{self, Cli, Command, ConfigCommand, RenderArgs};
use modobox::config::{self, Config};
use modobox::distro::Distro;
use modobox::render;
use modobox::render::write::{self as render_write, State};
use modobox::secrets::Secrets;
use modobox::system::Root;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. }) && modobox::supervisor::init::needed() {
        return modobox::supervisor::init::run();
    }
    modobox::supervisor::init::unblock_inherited_signals();
    init_logging(cli.global.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MODOBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::DEFAULT_TEXT);
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
        Command::Render(args) => render_command(&cli.global, &args),
        Command::Install(args) => install_cmd::install(&cli.global, &args, false),
        Command::Plan(args) => install_cmd::install(&cli.global, &args, true),
        Command::Run { manager } => {
            commands::runtime()?.block_on(status_cmd::run(&cli.global, manager))
        }
        Command::Web {
            listen,
            public,
            insecure_cookies,
            user,
            status_file,
        } => commands::runtime()?.block_on(status_cmd::web(
            &cli.global,
            listen,
            public,
            !insecure_cookies,
            user.as_deref(),
            status_file,
        )),
        Command::Milter { listen, user } => {
            commands::runtime()?.block_on(status_cmd::milter(&cli.global, listen, user.as_deref()))
        }
        Command::Status { json } => {
            commands::runtime()?.block_on(status_cmd::status(&cli.global, json))
        }
        Command::Dns(c) => commands::runtime()?.block_on(install_cmd::dns(&cli.global, &c)),
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
        Command::Db(c) => commands::runtime()?.block_on(commands::db(&cli.global, &c)),
        Command::Domain(c) => commands::runtime()?.block_on(commands::domain(&cli.global, &c)),
        Command::DomainAlias(c) => {
            commands::runtime()?.block_on(commands::domain_alias(&cli.global, &c))
        }
        Command::RelayDomain(c) => {
            commands::runtime()?.block_on(commands::relay_domain(&cli.global, &c))
        }
        Command::Mailbox(c) => commands::runtime()?.block_on(commands::mailbox(&cli.global, &c)),
        Command::Alias(c) => commands::runtime()?.block_on(commands::alias(&cli.global, &c)),
        Command::Admin(c) => commands::runtime()?.block_on(commands::admin(&cli.global, &c)),
        Command::Token(c) => commands::runtime()?.block_on(commands::token(&cli.global, &c)),
        Command::Import { file, json } => {
            commands::runtime()?.block_on(commands::import(&cli.global, &file, json))
        }
        Command::Export { what, output } => {
            commands::runtime()?.block_on(commands::export(&cli.global, what, output.as_deref()))
        }
        Command::Task(c) => commands::runtime()?.block_on(task_cmd::task(&cli.global, &c)),
        Command::Stats(c) => stats_cmd::stats(&cli.global, &c),
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

fn render_command(global: &cli::Global, args: &RenderArgs) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    let root = args.root.as_ref().map_or_else(Root::host, Root::new);
    let secrets_path = root.path(config.paths.secrets.as_path());
    let secrets = if args.diff {
        Secrets::load_or_generate(&secrets_path)?
    } else {
        Secrets::load_or_create(&secrets_path)?
    };
    let renderer = render::Renderer::new(args.templates.as_deref())?;
    let ctx = render::context::build(&config, &distro, &secrets);
    let files = renderer.render_all(&ctx)?;
    let manifest_path = config
        .paths
        .data
        .as_path()
        .join(render::manifest::FILE_NAME);
    let mut out = std::io::stdout().lock();
    if args.diff {
        let manifest = render::manifest::Manifest::load(&root.path(&manifest_path))
            .with_context(|| format!("reading the manifest under {}", root.dir().display()))?;
        let changes = render_write::compare(&root, &files, &manifest)?;
        let mut changed = 0;
        for c in &changes {
            if !c.changes_anything() {
                continue;
            }
            changed += 1;
            let what = match c.state {
                State::Missing => "new file".to_string(),
                State::Same => "symlink missing".to_string(),
                State::Mode { current } => format!("mode {current:o} will change"),
                State::Outdated => "will change".to_string(),
                State::HandEdited => "edited by hand: kept (use --force to replace)".to_string(),
                State::Foreign => {
                    "not written by modobox: will be backed up and replaced".to_string()
                }
            };
            writeln!(out, "== {}: {what}", c.path.display())?;
            write!(out, "{}", c.diff)?;
        }
        writeln!(out, "{changed} of {} files would change", changes.len())?;
        return Ok(ExitCode::SUCCESS);
    }
    let report = render_write::apply(&root, &files, &manifest_path, args.force)?;
    for p in &report.backed_up {
        writeln!(
            out,
            "backed up {} to {}.modobox-orig",
            p.display(),
            p.display()
        )?;
    }
    for p in &report.kept {
        writeln!(
            out,
            "kept {} (edited by hand; --force replaces it)",
            p.display()
        )?;
    }
    writeln!(
        out,
        "rendered {} files under {}: {} written, {} unchanged, {} kept",
        files.len(),
        root.dir().display(),
        report.written.len(),
        report.unchanged.len(),
        report.kept.len()
    )?;
    Ok(ExitCode::SUCCESS)
}
