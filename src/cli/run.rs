//! `run`: load the snapshot, check the upstream, bind the listeners, serve until a signal.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use tokio::sync::mpsc;

use super::reload::Reloader;
use crate::config::{self, IdentityMode, SnapshotCell};
use crate::lookup::{Lookups, RemoteTables};
use crate::net::admin::ReloadRequest;
use crate::net::listener::{BoundListener, Listener, Services};
use crate::net::resolve::NameResolver;
use crate::net::shutdown::Drain;
use crate::state::StateStore;
use crate::upstream::probe::{probe, ProbeReport, TrustBoundary, PROBE_RECIPIENT};
use crate::upstream::{Upstream, WarmPool};

/// How many times in all the open-relay check runs when it decides nothing.
const PROBE_ATTEMPTS: u32 = 3;
/// The pause between two probes.
const PROBE_PAUSE: Duration = Duration::from_millis(500);

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let snapshot = match config::load(path) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("relayguard: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let host = snapshot
        .listeners
        .first()
        .map(|l| l.smtpd.myhostname.clone())
        .unwrap_or_default();
    let tables = match snapshot.open_tables(None) {
        Ok(t) => t,
        Err(errors) => {
            for e in &errors {
                eprintln!("relayguard: {}: {e}", path.display());
            }
            return Ok(ExitCode::from(2));
        }
    };
    crate::observe::log::init(snapshot.log_format, &host);
    // The main thread probes, binds and handles signals; the sessions run on the workers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(path, snapshot, tables))
}

async fn serve(
    path: &Path,
    snapshot: config::Snapshot,
    tables: RemoteTables,
) -> anyhow::Result<ExitCode> {
    let settings = snapshot.upstream.clone();
    let (report, attempts) = probe_with_retry(&settings).await?;
    match &report.trust {
        TrustBoundary::OpenRelay(reply) if !settings.allow_open_relay => {
            tracing::error!(
                "the upstream accepted RCPT TO:<{PROBE_RECIPIENT}> from relayguard's own address without the client's identity ({reply}): \
                 anyone who reaches it through relayguard without identity forwarding, or directly, can relay. \
                 Remove relayguard's address from the upstream's mynetworks (keep it in smtpd_authorized_xclient_hosts), \
                 or set [upstream] allow_open_relay = true to start anyway"
            );
            return Ok(ExitCode::from(3));
        }
        TrustBoundary::OpenRelay(reply) => {
            tracing::warn!("the upstream relays for relayguard's own address ({reply}); starting because allow_open_relay = true")
        }
        TrustBoundary::Inconclusive { command, reply } if !settings.allow_open_relay => {
            tracing::error!(
                "the open-relay check did not pass: after {attempts} attempts the upstream still answered {command} with \"{reply}\", \
                 which is no refusal of RCPT TO:<{PROBE_RECIPIENT}> from relayguard's own address. \
                 Make the upstream accept MAIL FROM:<> and refuse that recipient, \
                 or set [upstream] allow_open_relay = true to start without the check"
            );
            return Ok(ExitCode::from(3));
        }
        TrustBoundary::Inconclusive { command, reply } => {
            tracing::warn!("the open-relay check did not pass ({command}: \"{reply}\"); starting because allow_open_relay = true")
        }
        TrustBoundary::Closed(reply) => tracing::info!(
            "open-relay check passed: the upstream refused RCPT TO:<{PROBE_RECIPIENT}> from relayguard's own address: \"{reply}\""
        ),
        TrustBoundary::NotChecked => {}
    }
    if settings.identity == IdentityMode::None {
        tracing::warn!(
            "[upstream] identity = \"none\": the upstream sees every client as relayguard itself"
        );
    }
    let upstream = Arc::new(Upstream::new(report.capabilities));
    let workers = snapshot.workers;
    let mut bound = Vec::new();
    for l in &snapshot.listeners {
        let b = BoundListener::bind(l, workers)
            .with_context(|| format!("listener `{}` on {}", l.name, l.address))?;
        tracing::info!("listener {} ({:?}) ready on {}", l.name, l.role, b.address);
        bound.push(b);
    }
    let drain = Drain::new();
    let drain_timeout = snapshot.drain_timeout;
    let resolver = name_resolver(&snapshot.dns);
    let state = Arc::new(arc_swap::ArcSwap::from_pointee(
        StateStore::open(&snapshot.abuse.state).context("opening the [state] backend")?,
    ));
    let services = Services {
        lookups: Arc::new(Lookups::with_tables(resolver.clone(), tables)),
        resolver,
        snapshots: Arc::new(SnapshotCell::new(snapshot)),
        upstream,
        shutdown: drain.watcher(),
        warm: None,
        state,
    };
    let reloader = Reloader {
        path: path.to_owned(),
        snapshots: services.snapshots.clone(),
        lookups: services.lookups.clone(),
        state: services.state.clone(),
    };
    let (reload_requests, reload_rx) = mpsc::channel(4);
    let admin = match &reloader.snapshots.load().abuse.admin_socket {
        Some(socket) => Some(
            crate::net::admin::serve(socket, reloader.state.clone(), reload_requests, path)
                .with_context(|| format!("[admin] socket {}", socket.display()))?,
        ),
        None => None,
    };
    let admin_http = match reloader.snapshots.load().abuse.admin_http {
        Some(address) => Some(
            crate::observe::admin_http::serve(address, reloader.snapshots.clone())
                .with_context(|| format!("[admin] http {address}"))?,
        ),
        None => None,
    };
    let mut shards: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
    for b in bound {
        for (i, shard) in b.into_shards().into_iter().enumerate() {
            if let Some(w) = shards.get_mut(i) {
                w.push(shard);
            }
        }
    }
    let (exit, exit_rx) = tokio::sync::watch::channel(false);
    let mut threads = Vec::new();
    for (i, listeners) in shards.into_iter().enumerate() {
        let services = services.clone();
        let exit_rx = exit_rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("relayguard-{i}"))
            .spawn(move || worker(listeners, services, exit_rx))
            .context("starting a worker thread")?;
        threads.push(thread);
    }
    drop(services);
    crate::observe::metrics::metrics().set_listeners_bound();
    wait_for_shutdown(&reloader, reload_rx).await;
    crate::observe::metrics::metrics().set_draining();
    // Stop accepting, tell idle sessions 421, let messages in flight finish.
    tracing::info!("stopping: draining sessions for up to {drain_timeout:?}");
    if !drain.drain(drain_timeout).await {
        tracing::warn!("sessions still open after {drain_timeout:?}; closing them");
    }
    if let Some(admin) = admin {
        admin.abort();
    }
    if let Some(http) = admin_http {
        http.abort();
    }
    let _ = exit.send(true);
    for t in threads {
        let _ = t.join();
    }
    Ok(ExitCode::SUCCESS)
}

/// One worker: a single-threaded runtime serving its share of every listener until the main
/// thread says the drain is over.
fn worker(
    listeners: Vec<Listener>,
    services: Services,
    mut exit: tokio::sync::watch::Receiver<bool>,
) {
    let _batch = crate::observe::log_batch::batch_this_thread();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start a worker runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        tokio::spawn(crate::observe::log_batch::write_batches());
        let mut services = services;
        services.shutdown = services.shutdown.for_worker();
        let want = services.snapshots.load().upstream.warm_connections;
        if want > 0 {
            let pool = WarmPool::new(want);
            let snapshots = services.snapshots.clone();
            tokio::spawn(pool.clone().keep(
                move || snapshots.load().upstream.clone(),
                services.shutdown.clone(),
            ));
            services.warm = Some(pool);
        }
        for l in listeners {
            tokio::spawn(l.serve(services.clone()));
        }
        drop(services);
        while !*exit.borrow() {
            if exit.changed().await.is_err() {
                break;
            }
        }
    });
}

/// The resolver for client names (when `[dns] lookups` asks for them) and for the policy's
/// DNS restrictions, built even when the policy has none today, since a reload may add some.
/// Without one every client is `unknown`, as Postfix's clients are when DNS fails, and every
/// DNS restriction meets a temporary failure.
fn name_resolver(dns: &config::DnsSettings) -> Option<NameResolver> {
    let built = NameResolver::from_settings(dns);
    match built {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("no DNS resolver, client names will be unknown: {e}");
            None
        }
    }
}

/// The upstream may start after relayguard (a sidecar, a service manager): keep asking for up to
/// the connect timeout before giving up. An open-relay check that decided nothing (a 4xx, a
/// refused MAIL) is asked again [`PROBE_ATTEMPTS`] times in all; the report and the attempts
/// made are returned, and the caller judges the last verdict.
async fn probe_with_retry(
    settings: &config::UpstreamSettings,
) -> anyhow::Result<(ProbeReport, u32)> {
    let give_up = tokio::time::Instant::now() + settings.connect_timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match probe(settings).await {
            Ok(ProbeReport {
                trust: TrustBoundary::Inconclusive { command, reply },
                ..
            }) if attempts < PROBE_ATTEMPTS => {
                tracing::warn!("open-relay check inconclusive, retrying: {command}: \"{reply}\"");
            }
            Ok(report) => return Ok((report, attempts)),
            // A refusal (a bad certificate, a 5xx) will not go away by waiting; only an
            // upstream that is not there yet is worth another try.
            Err(e) if e.is_transient() && tokio::time::Instant::now() < give_up => {
                tracing::warn!("upstream probe failed, retrying: {e}");
            }
            Err(e) => return Err(e).context("probing the upstream at start-up"),
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
}

/// Returns on SIGINT or SIGTERM; SIGHUP and `relayguard reload` reload the config (listeners
/// keep their sockets).
async fn wait_for_shutdown(reloader: &Reloader, mut requests: mpsc::Receiver<ReloadRequest>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                let _ = reloader.reload_logged();
            }
            Some(()) = reloader.answer(&mut requests) => {}
        }
    }
}
