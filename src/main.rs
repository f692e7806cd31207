//! modobox: entry point. Parses the command line, sets up logging and dispatches
//! (`modobox::cli`).

use std::process::ExitCode;

use clap::Parser;

use modobox::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. }) && modobox::supervisor::init::needed() {
        return modobox::supervisor::init::run();
    }
    modobox::supervisor::init::unblock_inherited_signals();
    init_logging(cli.global.verbose);
    match modobox::cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", modobox::cli::error_message(&e));
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
