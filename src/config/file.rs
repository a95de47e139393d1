//! The config file as the admin wrote it: serde types that mirror the TOML, nothing compiled.
//!
//! Every struct denies unknown fields so a typo is an error at load, not a silent default.
//! Values that carry Postfix syntax keep their byte span so errors can name the line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// A `[policy]` or `[listener.policy]` table: Postfix parameter names to values.
pub type PolicyTable = BTreeMap<String, Spanned<toml::Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub policy: PolicyTable,
    pub tls: Option<TlsFile>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerFile>,
    pub upstream: UpstreamFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub dns: DnsFile,
    #[serde(default)]
    pub tables: TablesFile,
    #[serde(default)]
    pub import: ImportFile,
    #[serde(default)]
    pub state: StateFile,
    /// Present: failures ban clients (`[bans]` alone takes fail2ban's defaults).
    pub bans: Option<BansFile>,
    #[serde(default)]
    pub admin: AdminFile,
}

/// Where the limiter's counters, the bans and postscreen's cache live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// `memory` (default) or `redis`.
    pub backend: Option<Spanned<String>>,
    /// `redis://host:port/db` or `rediss://...` (TLS).
    pub url: Option<Spanned<String>>,
    /// Several nodes: a Redis Cluster's, or the sentinels' with `sentinel_service`.
    #[serde(default)]
    pub cluster: Vec<Spanned<String>>,
    #[serde(default)]
    pub sentinels: Vec<Spanned<String>>,
    /// The master name the sentinels know.
    pub sentinel_service: Option<String>,
    /// Prefix of every key relayguard writes (default `relayguard:`).
    pub prefix: Option<String>,
    /// One round trip to Redis, connect included (default 500ms).
    pub timeout: Option<Spanned<String>>,
    /// `open` (default: limits and bans pause) or `closed` (clients get 421) while the
    /// backend does not answer.
    pub on_failure: Option<crate::state::FailMode>,
    /// IPv6 clients are counted and banned by this prefix (default 64).
    pub ipv6_prefix: Option<Spanned<u8>>,
    /// In-process bounds: clients whose counts are kept, bans, postscreen results.
    pub max_clients: Option<usize>,
    pub max_bans: Option<usize>,
    pub max_postscreen: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BansFile {
    /// Failures count within this window, from the first (default 10m).
    pub window: Option<Spanned<String>>,
    /// A first ban's length (default 10m); doubled for each repeat.
    pub ban_time: Option<Spanned<String>>,
    /// The longest ban (default 1w).
    pub max_ban_time: Option<Spanned<String>>,
    /// How long a ban counts towards a repeat offender's next (default 1w).
    pub repeat_window: Option<Spanned<String>>,
    /// `reject` (554 5.7.1, default) or `defer` (421 4.7.1).
    pub reply: Option<Spanned<String>>,
    /// Failures of each kind that ban: `auth` (default 5), `auth_gate`, `relay`,
    /// `unknown_command`, `protocol`, `limit`. 0 turns one off.
    #[serde(default)]
    pub triggers: BTreeMap<String, Spanned<u32>>,
}

/// The local admin interface of a running relayguard.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// A Unix socket `relayguard bans` talks to (relative to this file).
    pub socket: Option<PathBuf>,
    /// The admin HTTP listener (`/metrics`, `/healthz`, `/readyz`), e.g. `127.0.0.1:9025`.
    pub http: Option<Spanned<String>>,
    /// How recent the upstream's last answer must be for `/readyz` to say ready without
    /// asking it again (default 30s).
    pub ready_window: Option<Spanned<String>>,
}

/// Where `import-postfix` found each value: `[policy]` names map to their main.cf line,
/// `[listener.policy]` names (under `listener.NAME`) to their master.cf line. Errors in those
/// values are then reported at the line the admin wrote, not at the generated file's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportFile {
    pub main_cf: Option<PathBuf>,
    pub master_cf: Option<PathBuf>,
    #[serde(default)]
    pub policy: BTreeMap<String, usize>,
    #[serde(default)]
    pub listener: BTreeMap<String, BTreeMap<String, usize>>,
}

impl ImportFile {
    /// The origins for `[policy]` (`listener` None) or one listener's overrides.
    pub fn lines_for(
        &self,
        listener: Option<&str>,
    ) -> Option<(&std::path::Path, &BTreeMap<String, usize>)> {
        match listener {
            None => Some((self.main_cf.as_deref()?, &self.policy)),
            Some(name) => Some((self.master_cf.as_deref()?, self.listener.get(name)?)),
        }
    }
}

/// How lookups in remote tables (socketmap, tcp) run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesFile {
    /// One lookup, connect and retries included (default 10s).
    pub timeout: Option<Spanned<String>>,
    /// How long a found or not-found answer is reused (default 10s; `0s` for never).
    pub cache_ttl: Option<Spanned<String>>,
    /// Tables, as the policy names them, whose HOLD, FILTER, REDIRECT, BCC and PREPEND entries
    /// the MTA behind relayguard applies (it keeps the same restriction): relayguard answers
    /// DUNNO for them, Postfix's own verdict, instead of refusing the table.
    #[serde(default)]
    pub mta_actions: Vec<String>,
}

/// How the client's name is found (Postfix: reverse lookup, then forward confirmation).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    /// `auto` (when the policy uses client names), `always`, or `never`.
    pub lookups: Option<String>,
    /// Resolvers as `IP:port`; the system's resolv.conf when absent.
    #[serde(default)]
    pub nameservers: Vec<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// MX on port 25: STARTTLS offered when a certificate is configured.
    Smtp,
    /// Port 587: STARTTLS required, AUTH only after TLS.
    Submission,
    /// Port 465: implicit TLS.
    Submissions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub name: String,
    pub address: Spanned<String>,
    pub role: Role,
    pub max_connections: Option<usize>,
    pub proxy_protocol: Option<ProxyProtocolFile>,
    pub tls: Option<TlsFile>,
    #[serde(default)]
    pub policy: PolicyTable,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolFile {
    /// Peers allowed to send a PROXY v1/v2 header (load balancers).
    pub trusted: Vec<Spanned<String>>,
    /// With `true` (the default) every connection must come from a trusted peer with a header.
    /// With `false`, other peers may connect directly but a header from them is refused.
    #[serde(default = "yes")]
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    Smtp,
    Maildir,
}

/// When a session opens its upstream leg ahead of need (`[upstream] open_ahead`), so that
/// connecting and naming the client overlap with the client's own round trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenAhead {
    /// At an accepted MAIL, answered at once (`defer_mail`), while the client writes its
    /// first RCPT: only a client whose MAIL passed costs the MTA a connection, as without.
    #[default]
    Mail,
    /// As soon as the client's EHLO or HELO has passed the connect and HELO stages, with no
    /// STARTTLS still to come: the MTA also pays for clients turned away at MAIL or RCPT
    /// (with `smtpd_delay_reject = yes`, every client restriction is judged at RCPT).
    Ehlo,
    /// Never: the MAIL that needs the leg waits for it to open.
    No,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub kind: UpstreamKind,
    pub address: Option<Spanned<String>>,
    pub identity: Option<crate::upstream::identity::IdentityMode>,
    #[serde(default)]
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default = "yes")]
    pub tls_verify: bool,
    pub connect_timeout: Option<Spanned<String>>,
    pub reply_timeout: Option<Spanned<String>>,
    /// The name relayguard gives in its own EHLO to the upstream (defaults to myhostname).
    pub helo_name: Option<String>,
    #[serde(default)]
    pub allow_open_relay: bool,
    /// Upstream connections each worker keeps dialled and greeted ahead of need (0: none).
    #[serde(default)]
    pub warm_connections: usize,
    /// Answer MAIL here and send it to the upstream with the first RCPT, when the session's
    /// upstream connection offers PIPELINING (see `UpstreamSettings::defer_mail`).
    #[serde(default = "yes")]
    pub defer_mail: bool,
    /// When a session opens its upstream connection ahead of need.
    #[serde(default)]
    pub open_ahead: OpenAhead,
    /// Prepend relayguard's own `Received:` header to each message (default: on with
    /// `identity = "none"`, where the upstream learns the client no other way; off otherwise).
    pub received_header: Option<bool>,
    /// Maildir root for `kind = "maildir"`.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Whole-session limit, however busy the client keeps it.
    pub session_timeout: Option<Spanned<String>>,
    /// Time allowed for the PROXY header and the TLS handshake.
    pub handshake_timeout: Option<Spanned<String>>,
    /// On SIGTERM, how long sessions may take to finish before the process exits.
    pub drain_timeout: Option<Spanned<String>>,
    /// Worker threads, each with its own accept socket per listener (default: one per core).
    pub workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// `postfix` (the default: syslog-shaped lines fail2ban's postfix filter matches), `text`
    /// (tracing's own lines with every field) or `json` (one object per line).
    pub format: Option<LogFormat>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Postfix,
    Text,
    Json,
}

fn yes() -> bool {
    true
}
