//! The argument of `check_policy_service`: the server's endpoint and its client settings,
//! parsed once at load from `inet:host:port`, `unix:/path` or the per-service override form
//! `{ inet:host:port, timeout=10s, default_action=DUNNO }` (smtpd_check.c policy_client_register).
//!
//! Plain data: the engine puts it into the requests it makes, and the edge that talks to the
//! server (`lookup::policy_client`) keys its connection pool by it, so a reload that changes a
//! setting gets a fresh pool and one that changes nothing keeps the old connections.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::text::split_list;

/// Where a policy server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Endpoint {
    /// `inet:host:port`; `host` may be a name, or `[v6]`.
    Inet { host: Box<str>, port: u16 },
    /// `unix:/path`.
    Unix(Box<str>),
}

impl fmt::Display for Endpoint {
    /// The name Postfix's auto_clnt logs it by: `127.0.0.1:9998`, or the socket path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Inet { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => f.write_str(path),
        }
    }
}

/// The `smtpd_policy_service_*` settings of one service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct PolicySettings {
    /// Connect, send the request, read the reply: each under this.
    pub timeout: Duration,
    pub max_idle: Duration,
    pub max_ttl: Duration,
    /// Attempts per request (at least 1).
    pub try_limit: u32,
    pub retry_delay: Duration,
    /// Requests per connection; 0 is no limit.
    pub request_limit: u32,
    /// An access(5) action applied when every attempt failed.
    pub default_action: Box<str>,
    pub policy_context: Box<str>,
    /// Where a relative `unix:` path is, as Postfix has it (main.cf's queue_directory).
    pub queue_directory: Box<str>,
}

impl Default for PolicySettings {
    /// Postfix 3.7's defaults (mail_params.h DEF_SMTPD_POLICY_*).
    fn default() -> Self {
        PolicySettings {
            timeout: Duration::from_secs(100),
            max_idle: Duration::from_secs(300),
            max_ttl: Duration::from_secs(1000),
            try_limit: 2,
            retry_delay: Duration::from_secs(1),
            request_limit: 0,
            default_action: DEFAULT_ACTION.into(),
            queue_directory: "/var/spool/postfix".into(),
            policy_context: "".into(),
        }
    }
}

/// smtpd_policy_service_default_action's built-in value, also what a default action that
/// itself needs a policy answer falls back to.
pub(crate) const DEFAULT_ACTION: &str = "451 4.3.5 Server configuration problem";

/// One `check_policy_service` argument, compiled.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct PolicyService {
    /// As the admin wrote it: the table name Postfix's warnings use (`access table
    /// inet:127.0.0.1:9998 entry  has empty value`).
    pub spec: Box<str>,
    pub endpoint: Endpoint,
    pub settings: PolicySettings,
}

impl PolicySettings {
    /// Sets one setting by its short name (`timeout`, `default_action`, ...), as main.cf or
    /// an override gives it; `Err` says why the value or the name is refused.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let time = |v: &str| {
            parse_time(v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{key}: bad time value or unit: {v}"))
        };
        let int = |v: &str, min: u32| match v.parse::<u32>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(format!("bad numerical configuration: {key} = {v}")),
        };
        match key {
            "timeout" => self.timeout = time(value)?,
            "max_idle" => self.max_idle = time(value)?,
            "max_ttl" => self.max_ttl = time(value)?,
            "retry_delay" => self.retry_delay = time(value)?,
            "try_limit" => self.try_limit = int(value, 1)?,
            "request_limit" => self.request_limit = int(value, 0)?,
            "default_action" if !value.is_empty() => self.default_action = value.into(),
            "policy_context" => self.policy_context = value.into(),
            "default_action" => return Err("default_action: empty value".into()),
            _ => return Err(format!("unknown option: \"{key} = {value}\"")),
        }
        Ok(())
    }
}

impl PolicyService {
    /// Parses `inet:host:port`, `unix:/path` or `{ endpoint, name=value, {name = value with
    /// spaces}, ... }` on top of the main.cf settings `defaults`.
    pub(crate) fn parse(spec: &str, defaults: &PolicySettings) -> Result<Self, String> {
        let mut settings = defaults.clone();
        let endpoint = match spec.strip_prefix('{') {
            None => endpoint(spec, &settings.queue_directory)?,
            Some(rest) => {
                let inner = rest.strip_suffix('}').ok_or_else(|| {
                    format!("policy service syntax error: missing '}}' in {spec}")
                })?;
                let mut words = split_list(inner).into_iter();
                let first = words
                    .next()
                    .ok_or_else(|| format!("empty policy service: \"{spec}\""))?;
                for word in words {
                    let nameval = match word.strip_prefix('{') {
                        Some(w) => w.strip_suffix('}').ok_or_else(|| {
                            format!("policy service syntax error: missing '}}' in {word}")
                        })?,
                        None => word,
                    };
                    let (key, value) = nameval.split_once('=').ok_or_else(|| {
                        format!("malformed option: missing '=' after attribute name: \"...{nameval}...\"")
                    })?;
                    settings.set(key.trim(), value.trim())?;
                }
                endpoint(first, &settings.queue_directory)?
            }
        };
        Ok(PolicyService {
            spec: spec.into(),
            endpoint,
            settings,
        })
    }
}

fn endpoint(text: &str, queue_directory: &str) -> Result<Endpoint, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        // A relative path is under Postfix's queue directory (`unix:private/quota-status`
        // is Dovecot's socket there): relayguard must run where that directory is.
        if !path.starts_with('/') {
            let dir = queue_directory.trim_end_matches('/');
            return Ok(Endpoint::Unix(format!("{dir}/{path}").into()));
        }
        return Ok(Endpoint::Unix(path.into()));
    }
    let Some(hostport) = text.strip_prefix("inet:") else {
        return Err(format!("\"{text}\" is not inet:host:port or unix:/path"));
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("{text}: missing port"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            format!("{text}: bad port \"{port}\" (relayguard takes numeric ports only)")
        })?;
    if host.is_empty() {
        return Err(format!("{text}: missing host"));
    }
    Ok(Endpoint::Inet {
        host: host.into(),
        port,
    })
}

/// A Postfix time value: digits and an optional unit s, m, h, d or w (seconds when bare).
pub(crate) fn parse_time(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(factor)?))
}
