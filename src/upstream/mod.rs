//! The leg to the MTA: connected lazily per session, told who the client is, spoken to in
//! canonical commands. The built-in Maildir agent sits behind the same interface.

pub mod conn;
pub mod connect;
pub mod identity;
pub mod maildir;
pub mod probe;
pub mod warm;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use conn::{UpstreamConn, UpstreamError};
pub use identity::ClientIdentity;
pub use warm::WarmPool;

use crate::config::UpstreamSettings;
use crate::smtp::ehlo::Capabilities;

/// The upstream as the running process knows it: the extensions it offered most recently
/// (probed at start-up, refreshed by every new connection). Its settings are the snapshot's.
pub struct Upstream {
    capabilities: ArcSwap<Capabilities>,
}

impl Upstream {
    pub fn new(capabilities: Capabilities) -> Self {
        Self {
            capabilities: ArcSwap::from_pointee(capabilities),
        }
    }

    /// What the upstream offered last; the session filters it into its own EHLO reply.
    pub fn capabilities(&self) -> Arc<Capabilities> {
        self.capabilities.load_full()
    }

    /// A connection that speaks for `client` with the session's `settings` (a reload may have
    /// changed timeouts or the EHLO name): a warm one from `warm` when it has one, else a new
    /// one. Remembers the extensions it offered.
    pub async fn connect(
        &self,
        settings: &Arc<UpstreamSettings>,
        client: &ClientIdentity,
        warm: Option<&WarmPool>,
    ) -> Result<UpstreamConn, UpstreamError> {
        let warmed = match warm.and_then(|w| w.take(settings)) {
            Some(conn) if !WarmPool::needs_introduction(settings) => Some(conn),
            Some(mut conn) => match connect::introduce(&mut conn, settings, client).await {
                Ok(()) => Some(conn),
                // The upstream dropped it unseen (restart, idle limit): a new one may work.
                Err(e) if e.closed_while_idle() => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let conn = match warmed {
            Some(conn) => conn,
            None => connect::open(settings, Some(client))
                .await
                .inspect_err(|e| crate::observe::metrics::metrics().upstream_error(e.kind()))?,
        };
        // A leg that never said EHLO knows no extensions; it must not make every later
        // client's EHLO reply empty.
        if conn.ehlo_answered() && **self.capabilities.load() != *conn.capabilities() {
            self.capabilities
                .store(Arc::new(conn.capabilities().clone()));
        }
        Ok(conn)
    }
}
