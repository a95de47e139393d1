//! The command line: one clap variant per subcommand; running the proxy is the default.

pub mod check_config;
pub mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "relayguard",
    version,
    about = "Transparent SMTP submission proxy with Postfix-compatible policy"
)]
pub struct Cli {
    /// The config file (TOML). Running without a subcommand starts the proxy.
    #[arg(long, short, global = true, default_value = "config/relayguard.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the proxy (the default).
    Run,
    /// Load and compile the config, print every problem as file:line, and exit.
    CheckConfig,
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run::run(&cli.config),
        Command::CheckConfig => check_config::check_config(&cli.config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("relayguard: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
