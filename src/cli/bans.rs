//! `relayguard bans list|add|remove`: the ban list of a running relayguard, through its admin
//! socket, or straight from the shared store when `[state]` is Redis and no socket is set.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use crate::net::admin::{self, AdminReply};
use crate::state::{BackendSettings, StateStore};

#[derive(Debug, Subcommand)]
pub enum BansCommand {
    /// Every ban in force, soonest to end first.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ban a client (an address, or an IPv6 prefix like 2001:db8:1:2::/64) for DURATION
    /// (300s, 10m, 1h, 1d).
    Add {
        client: String,
        duration: String,
        reason: Vec<String>,
    },
    /// Lift a client's ban and forget its failures.
    Remove { client: String },
}

pub fn bans(config_path: &Path, command: &BansCommand) -> anyhow::Result<ExitCode> {
    let snapshot = super::load_config(config_path)?;
    let request = match command {
        BansCommand::List { .. } => "bans list".to_owned(),
        BansCommand::Add {
            client,
            duration,
            reason,
        } => format!("bans add {client} {duration} {}", reason.join(" ")),
        BansCommand::Remove { client } => format!("bans remove {client}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let abuse = &snapshot.abuse;
    let reply = runtime.block_on(async {
        if let Some(socket) = &abuse.admin_socket {
            return super::ask_admin(socket, &request).await;
        }
        if let BackendSettings::Redis(_) = abuse.state.backend {
            let store = StateStore::open(&abuse.state)?;
            return Ok(admin::answer(&store, &request).await);
        }
        bail!(
            "set [admin] socket (or keep state in Redis) to reach the bans of a running relayguard"
        )
    })?;
    match reply {
        AdminReply::Error(e) => bail!("{e}"),
        AdminReply::Bans(list) => {
            if matches!(command, BansCommand::List { json: true }) {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no bans");
            } else {
                println!("{:<40} {:>10} {:>7}  reason", "client", "left", "offence");
                for b in list {
                    println!(
                        "{:<40} {:>9}s {:>7}  {}",
                        b.client, b.left_s, b.offence, b.reason
                    );
                }
            }
        }
        AdminReply::Added(b) => println!("banned {} for {}s: {}", b.client, b.left_s, b.reason),
        AdminReply::Removed(true) => println!("ban lifted"),
        AdminReply::Removed(false) => {
            println!("not banned");
            return Ok(ExitCode::from(2));
        }
        other => bail!("unexpected answer from the admin socket: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}
