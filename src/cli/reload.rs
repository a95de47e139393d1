//! Reload: read the config, its tables and certificates again and swap them in at once, on
//! SIGHUP or at `relayguard reload` (which asks the running process through its admin socket).
//!
//! Sessions hold the snapshot they started with (an `Arc`), so a swap never changes a session
//! under way; a file that fails to load, or a change only a restart can make, keeps the running
//! snapshot and is answered with every reason.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use tokio::sync::{mpsc, oneshot};

use crate::config::{self, SnapshotCell};
use crate::lookup::Lookups;
use crate::net::admin::{AdminReply, ReloadRequest};
use crate::state::StateStore;

/// What the main loop needs to reload: the file and the three cells sessions read.
pub struct Reloader {
    pub path: PathBuf,
    pub snapshots: Arc<SnapshotCell>,
    pub lookups: Arc<Lookups>,
    pub state: Arc<arc_swap::ArcSwap<StateStore>>,
}

impl Reloader {
    /// Loads and swaps in; `Err` carries one line per problem (file:line: why) and leaves the
    /// running config in place. Reloads run one at a time on the main loop, so two never race.
    pub fn reload(&self) -> Result<(), Vec<String>> {
        let shown = self.path.display();
        let snapshot = config::load(&self.path)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        if let Some(why) = needs_restart(&self.snapshots.load(), &snapshot) {
            return Err(vec![format!("{shown}: {why} needs a restart")]);
        }
        // Tables first: a session of the new snapshot must find its tables.
        let tables = snapshot
            .open_tables(Some(&self.lookups.tables()))
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|e| format!("{shown}: {e}"))
                    .collect::<Vec<_>>()
            })?;
        self.lookups.set_tables(tables);
        reopen_state(&self.state, &snapshot);
        self.snapshots.store(snapshot);
        Ok(())
    }

    /// Reloads and logs the outcome, as SIGHUP and the admin socket both want it.
    pub fn reload_logged(&self) -> Result<(), Vec<String>> {
        let outcome = self.reload();
        crate::observe::metrics::metrics().reload(outcome.is_ok());
        match &outcome {
            Ok(()) => tracing::info!("reloaded {}", self.path.display()),
            Err(errors) => {
                for e in errors {
                    tracing::error!("reload failed, keeping the running config: {e}");
                }
            }
        }
        outcome
    }

    /// Answers every `relayguard reload` that arrives on `requests` until the sender is gone.
    pub async fn answer(&self, requests: &mut mpsc::Receiver<ReloadRequest>) -> Option<()> {
        let reply: oneshot::Sender<Result<(), Vec<String>>> = requests.recv().await?;
        let _ = reply.send(self.reload_logged());
        Some(())
    }
}

/// A reload that changes `[state]` opens the new store; one that does not keeps the running
/// store and with it every count and ban.
fn reopen_state(state: &arc_swap::ArcSwap<StateStore>, snapshot: &config::Snapshot) {
    if state.load().settings() == &snapshot.abuse.state {
        return;
    }
    match StateStore::open(&snapshot.abuse.state) {
        Ok(store) => {
            state.store(Arc::new(store));
            tracing::info!("[state] changed: limits and bans now kept in the new backend");
        }
        Err(e) => {
            tracing::error!("[state] changed but cannot be opened ({e}); keeping the running store")
        }
    }
}

/// What a reload cannot change under running sockets: the listeners (bound at start), the worker
/// threads (each with its own accept socket per listener, made at start) and the upstream
/// (probed and checked at start). `Some` names the change. A listener's `max_connections` is
/// not here: each accept reads it from the snapshot current then (`net::limit`).
fn needs_restart(running: &config::Snapshot, new: &config::Snapshot) -> Option<String> {
    let shape = |s: &config::Snapshot| -> Vec<String> {
        s.listeners
            .iter()
            .map(|l| format!("{} {} {:?}", l.name, l.address, l.role))
            .collect()
    };
    if shape(running) != shape(new) {
        return Some("a change to the [[listener]] names, addresses or roles".into());
    }
    if running.workers != new.workers {
        return Some(format!(
            "a change to [limits] workers ({} to {})",
            running.workers, new.workers
        ));
    }
    if running.abuse.admin_socket != new.abuse.admin_socket
        || running.abuse.admin_http != new.abuse.admin_http
    {
        return Some("a change to [admin] socket or http".into());
    }
    // Where the upstream is and how it learns the client were checked at start (the open-relay
    // probe); timeouts and the EHLO name may change.
    let (a, b) = (&running.upstream, &new.upstream);
    if format!("{:?}", a.target) != format!("{:?}", b.target)
        || a.identity != b.identity
        || a.allow_open_relay != b.allow_open_relay
        || a.warm_connections != b.warm_connections
    {
        return Some(
            "a change to [upstream] kind, address, TLS, identity or warm_connections".into(),
        );
    }
    None
}

/// `relayguard reload`: asks the running process (through `[admin] socket`) to reload, and
/// prints what it answered; exit 1 with every reason when the running config was kept.
pub fn reload_command(config_path: &Path) -> anyhow::Result<ExitCode> {
    let snapshot = super::load_config(config_path)
        .map_err(|e| e.context("the running relayguard was not asked to reload"))?;
    let Some(socket) = &snapshot.abuse.admin_socket else {
        bail!(
            "{} has no [admin] socket: set one, or send SIGHUP to the running relayguard",
            config_path.display()
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = runtime.block_on(super::ask_admin(socket, "reload"))?;
    match reply {
        AdminReply::Reloaded(path) => {
            println!("reloaded {path}");
            Ok(ExitCode::SUCCESS)
        }
        AdminReply::ReloadFailed(errors) => {
            for e in errors {
                eprintln!("relayguard: {e}");
            }
            eprintln!("relayguard: reload failed, the running config was kept");
            Ok(ExitCode::from(1))
        }
        AdminReply::Error(e) => bail!("{e}"),
        other => bail!("unexpected answer from the admin socket: {other:?}"),
    }
}
