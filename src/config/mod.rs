//! The running configuration: compiled once into an immutable [`Snapshot`] that sessions share.
//!
//! A session keeps the `Arc<Snapshot>` it started with until it ends; a reload builds a new one
//! and swaps it in [`SnapshotCell`] without touching live sessions.

pub mod abuse;
pub mod dialogue;
pub mod file;
pub mod load;
#[cfg(test)]
mod reference_check;
pub mod settings;
mod source;
pub mod tls_ciphers;
pub mod tls_params;
mod tls_sni;
mod upstream;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

pub use crate::upstream::identity::IdentityMode;
pub use dialogue::DialogueSettings;
pub use file::{OpenAhead, Role};
pub use load::{load, load_str, ConfigError};
pub use settings::{BareNewline, SmtpdSettings, TlsLevel};

use crate::lookup::{OpenError, RemoteTables, TableSettings};
use crate::net::proxy_header::TrustedProxies;
use crate::policy::Policy;

/// Everything a running relayguard needs, compiled and validated.
#[derive(Debug)]
pub struct Snapshot {
    pub listeners: Vec<Arc<ListenerSnapshot>>,
    pub upstream: Arc<UpstreamSettings>,
    pub session_timeout: Duration,
    /// Time allowed for a PROXY header and for a TLS handshake.
    pub handshake_timeout: Duration,
    /// On SIGTERM, how long sessions may take to finish.
    pub drain_timeout: Duration,
    /// Worker threads (at least one).
    pub workers: usize,
    pub log_format: file::LogFormat,
    pub dns: DnsSettings,
    /// How remote table lookups run; the backends live in [`crate::lookup::Lookups`].
    pub tables: TableSettings,
    /// Where limits and bans are kept, and when clients are banned.
    pub abuse: abuse::AbuseSettings,
}

/// When to look up client names, and with which resolvers.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    pub lookups: DnsLookups,
    /// Empty: the system's resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsLookups {
    /// Only where the listener's policy uses client names (hostname table keys, `unknown`).
    Auto,
    Always,
    Never,
}

impl DnsSettings {
    /// Whether a session on `listener` should learn its client's name before it starts.
    pub fn resolves_for(&self, listener: &ListenerSnapshot) -> bool {
        match self.lookups {
            DnsLookups::Always => true,
            DnsLookups::Never => false,
            DnsLookups::Auto => listener.policy.wants_client_name(),
        }
    }
}

impl Snapshot {
    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerSnapshot>> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// Every remote table any listener's policy names, each once.
    pub fn remote_tables(&self) -> BTreeSet<String> {
        self.listeners
            .iter()
            .flat_map(|l| l.policy.remote_tables())
            .map(str::to_owned)
            .collect()
    }

    /// Opens the remote tables this snapshot names, reusing `previous`'s backends for the
    /// ones it already has (on reload).
    pub fn open_tables(
        &self,
        previous: Option<&RemoteTables>,
    ) -> Result<RemoteTables, Vec<OpenError>> {
        RemoteTables::open(&self.remote_tables(), self.tables, previous)
    }
}

/// One listener's compiled settings: its policy (with its overrides applied) and dialogue.
pub struct ListenerSnapshot {
    pub name: String,
    pub address: SocketAddr,
    pub role: Role,
    pub max_connections: usize,
    pub proxy: Option<ProxyTrust>,
    pub policy: Policy,
    pub smtpd: SmtpdSettings,
    /// anvil's per-client limits (smtpd_client_*_limit).
    pub anvil: crate::limits::AnvilLimits,
    /// postscreen's front-line tests, on an smtp listener that sets postscreen_* parameters.
    pub postscreen: Option<Arc<crate::postscreen::PostscreenSettings>>,
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// smtpd_tls_ask_ccert: how to judge the certificate a client presented.
    pub client_certs: Option<Arc<crate::net::client_cert::ClientCertCheck>>,
    /// tls_server_sni_maps' names, for the log line about a client's name they do not know.
    pub sni: Option<crate::net::tls_server::SniNames>,
    /// TLS settings that are valid but not what Postfix would do, for `check-config`.
    pub tls_warnings: Vec<crate::policy::PolicyWarning>,
}

impl ListenerSnapshot {
    /// The SNI name a client sent on `conn` when this listener has tls_server_sni_maps and
    /// none of their keys matches it: the handshake used the default certificates, and
    /// Postfix logs `TLS SNI NAME from CLIENT not matched, using default chain`.
    pub fn unmatched_sni<'c>(
        &self,
        conn: &'c tokio_rustls::rustls::ServerConnection,
    ) -> Option<&'c str> {
        let names = self.sni.as_ref()?;
        conn.server_name().filter(|name| !names.knows(name))
    }
}

impl std::fmt::Debug for ListenerSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSnapshot")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("role", &self.role)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Which peers may put a PROXY header in front of the session.
#[derive(Clone, Debug)]
pub struct ProxyTrust {
    pub trusted: TrustedProxies,
    pub required: bool,
}

#[derive(Debug)]
pub struct UpstreamSettings {
    pub target: UpstreamTarget,
    pub identity: IdentityMode,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
    /// The name relayguard uses in its own EHLO to the upstream.
    pub helo_name: String,
    pub allow_open_relay: bool,
    /// Connections each worker keeps prepared ahead of need (`upstream::warm`); 0 for none.
    pub warm_connections: usize,
    /// On an upstream leg that offers PIPELINING, MAIL is answered here and sent with the
    /// first RCPT (RFC 2920), saving the upstream a round trip per message; a refusal of the
    /// MAIL then answers the RCPT, as Postfix's smtpd_delay_reject places sender refusals.
    pub defer_mail: bool,
    /// When a session opens its leg ahead of need, in a task of its own (`session::ahead`).
    pub open_ahead: OpenAhead,
    /// relayguard writes its own `Received:` header on top of each message it forwards
    /// (`smtp::received`), so an upstream that is told nothing about the client
    /// (`identity = "none"`) still has it on record; the default follows that.
    pub received_header: bool,
}

pub enum UpstreamTarget {
    /// A real MTA over TCP; `tls` set means STARTTLS to it, verified against `server_name`.
    Smtp {
        address: String,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
        server_name: String,
    },
    /// The built-in Maildir delivery agent, served in-process.
    Maildir { path: PathBuf },
}

impl std::fmt::Debug for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamTarget::Smtp {
                address,
                tls,
                server_name,
            } => f
                .debug_struct("Smtp")
                .field("address", address)
                .field("starttls", &tls.is_some())
                .field("server_name", server_name)
                .finish(),
            UpstreamTarget::Maildir { path } => {
                f.debug_struct("Maildir").field("path", path).finish()
            }
        }
    }
}

/// The current snapshot, swapped whole on reload.
pub struct SnapshotCell(ArcSwap<Snapshot>);

impl SnapshotCell {
    pub fn new(snapshot: Snapshot) -> Self {
        Self(ArcSwap::from_pointee(snapshot))
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.0.store(Arc::new(snapshot));
    }
}
