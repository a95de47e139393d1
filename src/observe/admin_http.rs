//! The admin HTTP listener (`[admin] http`, off by default): `/metrics` for Prometheus,
//! `/healthz` while the process lives, `/readyz` while it should get traffic.
//!
//! Ready means: every listener is bound, no drain has begun, and the upstream answered
//! recently. An idle proxy has no recent answer from its sessions, so `/readyz` then asks the
//! upstream itself (connect and greeting, bounded by `[upstream] connect_timeout`), one check
//! at a time however many probes arrive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::metrics::metrics;
use crate::config::SnapshotCell;

/// An upstream reply younger than this makes `/readyz` say ready without asking again (the
/// default of `[admin] ready_window`).
pub const FRESH_WINDOW: Duration = Duration::from_secs(30);

/// What OpenMetrics text is served as; Prometheus asks for it and parses it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct AdminState {
    snapshots: Arc<SnapshotCell>,
    /// One fresh upstream check at a time; the ones waiting reuse its answer.
    checking: Arc<tokio::sync::Mutex<()>>,
}

/// Binds `address` now (so a taken port fails the start) and serves on the current runtime.
pub fn serve(
    address: SocketAddr,
    snapshots: Arc<SnapshotCell>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let socket = std::net::TcpListener::bind(address)?;
    socket.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(socket)?;
    tracing::info!("admin HTTP ready on {}", listener.local_addr()?);
    let state = AdminState {
        snapshots,
        checking: Arc::default(),
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("admin HTTP stopped: {e}");
        }
    }))
}

async fn scrape() -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], metrics().encode()).into_response()
}

async fn ready(State(state): State<AdminState>) -> Response {
    match readiness(&state).await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn readiness(state: &AdminState) -> Result<(), String> {
    let m = metrics();
    if m.draining() {
        return Err("draining".into());
    }
    if !m.listeners_bound() {
        return Err("listeners not bound yet".into());
    }
    let snapshot = state.snapshots.load();
    let window = snapshot.abuse.ready_window;
    if recently_answered(window) {
        return Ok(());
    }
    let _one = state.checking.lock().await;
    // Another probe's check may have just succeeded while this one waited.
    if recently_answered(window) {
        return Ok(());
    }
    let settings = snapshot.upstream.clone();
    let limit = settings.connect_timeout;
    // The greeting read marks the answer (`UpstreamConn::read_reply`).
    match tokio::time::timeout(limit, crate::upstream::connect::prepare(&settings, None)).await {
        Ok(Ok(conn)) => {
            // Polite but not waited for long: the answer is already known.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.quit()).await;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("upstream: {e}")),
        Err(_) => Err(format!("upstream: no greeting within {limit:?}")),
    }
}

fn recently_answered(window: Duration) -> bool {
    metrics()
        .since_upstream_reply()
        .is_some_and(|ago| ago < window)
}
