//! `[state]`, `[bans]`, `[admin]` and anvil's smtpd_client_*_limit parameters, compiled into
//! the settings the limiter, the ban list and their store run with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::ConfigFile;
use super::load::ConfigError;
use super::settings::{duration, number};
use super::source::Source;
use crate::limits::{AnvilLimits, BanReply, BanRule, Trigger};
use crate::policy::ParamMap;
use crate::state::memory::MemorySettings;
use crate::state::redis::{RedisSettings, RedisTopology};
use crate::state::{BackendSettings, FailMode, StateSettings};

/// Abuse control for the whole process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbuseSettings {
    pub state: StateSettings,
    /// None: failures ban nobody.
    pub bans: Option<BanRule>,
    /// The Unix socket `relayguard bans` talks to.
    pub admin_socket: Option<PathBuf>,
    /// The admin HTTP listener's address (`[admin] http`); None: off.
    pub admin_http: Option<SocketAddr>,
    /// `/readyz` asks the upstream itself when its last answer is older than this.
    pub ready_window: Duration,
}

/// One listener's anvil limits from its effective parameters.
pub(super) fn compile_anvil(params: &ParamMap, errors: &mut Vec<ConfigError>) -> AnvilLimits {
    let d = AnvilLimits::default();
    let limit = |name: &str, default: u32, errors: &mut Vec<ConfigError>| {
        number(params, name, u64::from(default), errors).min(u64::from(u32::MAX)) as u32
    };
    let time_unit = duration(params, "anvil_rate_time_unit", d.time_unit, errors);
    if time_unit.is_zero() {
        if let Some(v) = params.get("anvil_rate_time_unit") {
            errors.push(ConfigError::bad_value(
                "anvil_rate_time_unit",
                v,
                "must be greater than 0".into(),
            ));
        }
    }
    AnvilLimits {
        connection_count: limit(
            "smtpd_client_connection_count_limit",
            d.connection_count,
            errors,
        ),
        connection_rate: limit("smtpd_client_connection_rate_limit", 0, errors),
        message_rate: limit("smtpd_client_message_rate_limit", 0, errors),
        recipient_rate: limit("smtpd_client_recipient_rate_limit", 0, errors),
        auth_rate: limit("smtpd_client_auth_rate_limit", 0, errors),
        time_unit: time_unit.max(Duration::from_secs(1)),
    }
}

pub(super) fn compile(
    source: &Source<'_>,
    file: &ConfigFile,
    errors: &mut Vec<ConfigError>,
) -> AbuseSettings {
    AbuseSettings {
        state: compile_state(source, file, errors),
        bans: file.bans.as_ref().map(|b| compile_bans(source, b, errors)),
        admin_socket: file.admin.socket.as_ref().map(|p| source.dir.join(p)),
        admin_http: file
            .admin
            .http
            .as_ref()
            .and_then(|a| source.socket_address(a, "[admin] http ", errors)),
        ready_window: source.duration(
            file.admin.ready_window.as_ref(),
            crate::observe::admin_http::FRESH_WINDOW,
            errors,
        ),
    }
}

fn compile_state(
    source: &Source<'_>,
    file: &ConfigFile,
    errors: &mut Vec<ConfigError>,
) -> StateSettings {
    let s = &file.state;
    let defaults = StateSettings::default();
    let ipv6_prefix = match &s.ipv6_prefix {
        Some(p) if *p.get_ref() > 128 => {
            errors.push(source.invalid(
                p.span().start,
                format!("ipv6_prefix {} is longer than 128 bits", p.get_ref()),
            ));
            defaults.ipv6_prefix
        }
        Some(p) => *p.get_ref(),
        None => defaults.ipv6_prefix,
    };
    let memory = MemorySettings::default();
    let memory = MemorySettings {
        max_clients: s.max_clients.unwrap_or(memory.max_clients),
        max_bans: s.max_bans.unwrap_or(memory.max_bans),
        max_postscreen: s.max_postscreen.unwrap_or(memory.max_postscreen),
    };
    let backend = match s
        .backend
        .as_ref()
        .map(|b| (b.get_ref().as_str(), b.span().start))
    {
        None | Some(("memory", _)) => BackendSettings::Memory(memory),
        Some(("redis", at)) => match redis_settings(source, file, errors) {
            Some(r) => BackendSettings::Redis(r),
            None => {
                if s.url.is_none() && s.cluster.is_empty() && s.sentinels.is_empty() {
                    errors.push(source.invalid(
                        at,
                        "backend = \"redis\" needs `url` (or `cluster` or `sentinels`)".into(),
                    ));
                }
                BackendSettings::Memory(memory)
            }
        },
        Some((other, at)) => {
            errors
                .push(source.invalid(at, format!("backend `{other}` is not `memory` or `redis`")));
            BackendSettings::Memory(memory)
        }
    };
    StateSettings {
        backend,
        fail_mode: s.on_failure.unwrap_or(FailMode::Open),
        ipv6_prefix,
    }
}

fn redis_settings(
    source: &Source<'_>,
    file: &ConfigFile,
    errors: &mut Vec<ConfigError>,
) -> Option<RedisSettings> {
    let s = &file.state;
    let check = |u: &toml::Spanned<String>, errors: &mut Vec<ConfigError>| {
        let text = u.get_ref();
        if !(text.starts_with("redis://") || text.starts_with("rediss://")) {
            errors.push(source.invalid(
                u.span().start,
                format!("`{text}` is not a redis:// or rediss:// URL"),
            ));
        }
        text.clone()
    };
    let topology = match (&s.url, s.cluster.is_empty(), s.sentinels.is_empty()) {
        (Some(u), true, true) => RedisTopology::Single(check(u, errors)),
        (None, false, true) => {
            RedisTopology::Cluster(s.cluster.iter().map(|u| check(u, errors)).collect())
        }
        (None, true, false) => {
            let Some(service) = s.sentinel_service.clone() else {
                errors.push(source.invalid(
                    s.sentinels[0].span().start,
                    "`sentinels` needs `sentinel_service`, the master's name".into(),
                ));
                return None;
            };
            RedisTopology::Sentinel {
                sentinels: s.sentinels.iter().map(|u| check(u, errors)).collect(),
                service,
            }
        }
        (None, true, true) => return None,
        _ => {
            let at = s
                .url
                .as_ref()
                .map(|u| u.span().start)
                .or_else(|| s.cluster.first().map(|u| u.span().start))
                .unwrap_or(0);
            errors.push(source.invalid(at, "give one of `url`, `cluster` or `sentinels`".into()));
            return None;
        }
    };
    Some(RedisSettings {
        topology,
        prefix: s.prefix.clone().unwrap_or_else(|| "relayguard:".into()),
        timeout: millis_or_duration(source, s.timeout.as_ref(), errors),
    })
}

/// A Redis round trip is counted in milliseconds (`300ms`), or in Postfix's units (`2s`).
fn millis_or_duration(
    source: &Source<'_>,
    value: Option<&toml::Spanned<String>>,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    const DEFAULT: Duration = Duration::from_millis(500);
    match value {
        Some(v) => match v.get_ref().trim().strip_suffix("ms").map(str::parse::<u64>) {
            Some(Ok(ms)) => Duration::from_millis(ms),
            Some(Err(_)) => {
                errors.push(source.invalid(
                    v.span().start,
                    format!("`{}` is not a time like 500ms or 2s", v.get_ref()),
                ));
                DEFAULT
            }
            None => source.duration(Some(v), DEFAULT, errors),
        },
        None => DEFAULT,
    }
}

fn compile_bans(
    source: &Source<'_>,
    b: &super::file::BansFile,
    errors: &mut Vec<ConfigError>,
) -> BanRule {
    let d = BanRule::default();
    let mut thresholds = d.thresholds;
    for (name, n) in &b.triggers {
        match Trigger::from_name(name) {
            Some(t) => thresholds[t.index()] = *n.get_ref(),
            None => errors.push(source.invalid(
                n.span().start,
                format!(
                    "`{name}` is not a ban trigger ({})",
                    Trigger::ALL.map(Trigger::name).join(", ")
                ),
            )),
        }
    }
    let reply = match b
        .reply
        .as_ref()
        .map(|r| (r.get_ref().as_str(), r.span().start))
    {
        None | Some(("reject" | "554", _)) => BanReply::Reject,
        Some(("defer" | "421", _)) => BanReply::Defer,
        Some((other, at)) => {
            errors.push(source.invalid(
                at,
                format!("reply `{other}` is not `reject` (554) or `defer` (421)"),
            ));
            BanReply::Reject
        }
    };
    let rule = BanRule {
        thresholds,
        window: source.duration(b.window.as_ref(), d.window, errors),
        ban_time: source.duration(b.ban_time.as_ref(), d.ban_time, errors),
        max_ban_time: source.duration(b.max_ban_time.as_ref(), d.max_ban_time, errors),
        repeat_window: source.duration(b.repeat_window.as_ref(), d.repeat_window, errors),
        reply,
    };
    if rule.window.is_zero() || rule.ban_time.is_zero() {
        let at = b
            .window
            .as_ref()
            .or(b.ban_time.as_ref())
            .map_or(0, |v| v.span().start);
        errors.push(source.invalid(at, "window and ban_time must be longer than 0s".into()));
    }
    rule
}
