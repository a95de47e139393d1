//! The leg to the MTA: connected lazily per session, told who the client is, spoken to in
//! canonical commands. The built-in Maildir agent sits behind the same interface.

pub mod conn;
pub mod connect;
pub mod identity;
pub mod maildir;
pub mod probe;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use conn::{UpstreamConn, UpstreamError};
pub use identity::ClientIdentity;

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

    /// Opens a connection that speaks for `client` with the session's `settings` (a reload may
    /// have changed timeouts or the EHLO name), and remembers the extensions it offered.
    pub async fn connect(
        &self,
        settings: &UpstreamSettings,
        client: &ClientIdentity,
    ) -> Result<UpstreamConn, UpstreamError> {
        let conn = connect::open(settings, Some(client)).await?;
        if **self.capabilities.load() != *conn.capabilities() {
            self.capabilities
                .store(Arc::new(conn.capabilities().clone()));
        }
        Ok(conn)
    }
}
