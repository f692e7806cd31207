//! The command tree (clap derive). Only commands that work are listed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::distro::DistroId;

#[derive(Debug, Parser)]
#[command(
    name = "modobox",
    version,
    about = "Installs, configures and keeps healthy a Modoboa-compatible mail server",
    long_about = "modobox turns a Debian, Ubuntu or RHEL-family server into a complete mail server \
                  (Postfix, Dovecot, Amavis, SpamAssassin, ClamAV, OpenDKIM, nginx and a database) \
                  and keeps it healthy.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file.
    #[arg(long, global = true, env = "MODOBOX_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Use the facts of this distribution instead of detecting it (e.g. debian:12, rocky:9).
    #[arg(long, global = true, value_name = "ID:VERSION")]
    pub distro: Option<DistroId>,
    /// More output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the default configuration or validate a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Render every configuration file of the stack (under --root), or show what would change.
    Render(RenderArgs),
    /// Show the detected distribution and its facts.
    Distro {
        /// Print the facts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate shell completions on standard output.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Generate the man page (roff) on standard output.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented default configuration.
    Default,
    /// Validate a configuration file (default: the --config file).
    Check { file: Option<PathBuf> },
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Write under this directory instead of `/`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Show the differences with the files on disk and write nothing.
    #[arg(long)]
    pub diff: bool,
    /// Replace files an admin edited by hand too.
    #[arg(long)]
    pub force: bool,
    /// A directory of templates that replace the embedded ones of the same name.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}
