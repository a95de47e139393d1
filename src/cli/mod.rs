//! The command line: one clap variant per subcommand; running the proxy is the default.

pub mod bans;
pub mod check;
pub mod check_config;
mod import_classes;
mod import_master;
pub mod import_postfix;
mod import_render;
mod import_rewrite;
mod import_tables;
pub mod reload;
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
    /// Explain, stage by stage, what a client would be answered and why (offline).
    Check(check::CheckArgs),
    /// Print the relayguard config equivalent to a Postfix main.cf (and master.cf).
    ImportPostfix {
        main_cf: PathBuf,
        master_cf: Option<PathBuf>,
        /// Print a JSON account of every line (name, value, file, line, class) instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// List, add or lift bans of a running relayguard.
    #[command(subcommand)]
    Bans(bans::BansCommand),
    /// Ask a running relayguard (through `[admin] socket`) to read its config, tables and
    /// certificates again; prints why when it keeps the running config.
    Reload,
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run::run(&cli.config),
        Command::CheckConfig => check_config::check_config(&cli.config),
        Command::Check(args) => check::check(&cli.config, &args),
        Command::ImportPostfix {
            main_cf,
            master_cf,
            json,
        } => import_postfix::import(&main_cf, master_cf.as_deref(), json),
        Command::Bans(command) => bans::bans(&cli.config, &command),
        Command::Reload => reload::reload_command(&cli.config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("relayguard: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The config as a subcommand that talks to a running relayguard reads it: every load error,
/// one per line, as the error.
fn load_config(path: &std::path::Path) -> anyhow::Result<crate::config::Snapshot> {
    crate::config::load(path).map_err(|errors| {
        anyhow::anyhow!(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"))
    })
}

/// One request to the admin socket of the running relayguard.
async fn ask_admin(
    socket: &std::path::Path,
    request: &str,
) -> anyhow::Result<crate::net::admin::AdminReply> {
    use anyhow::Context;
    crate::net::admin::request(socket, request)
        .await
        .with_context(|| {
            format!(
                "the admin socket {} (is relayguard running?)",
                socket.display()
            )
        })
}
