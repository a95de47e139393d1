//! The `[upstream]` table compiled: where the MTA is, how it learns the client, its timeouts;
//! and the check that no listener is the upstream's own address.

use std::net::SocketAddr;
use std::time::Duration;

use super::file::{ConfigFile, UpstreamKind};
use super::load::ConfigError;
use super::source::Source;
use super::{IdentityMode, UpstreamSettings, UpstreamTarget};
use crate::policy::ParamMap;

pub(super) fn compile_upstream(
    source: &Source<'_>,
    file: &ConfigFile,
    main_params: &ParamMap,
    errors: &mut Vec<ConfigError>,
) -> Option<UpstreamSettings> {
    let u = &file.upstream;
    let connect_timeout =
        source.duration(u.connect_timeout.as_ref(), Duration::from_secs(30), errors);
    let reply_timeout = source.duration(u.reply_timeout.as_ref(), Duration::from_secs(300), errors);
    let helo_name = u
        .helo_name
        .clone()
        .or_else(|| main_params.value("myhostname").map(str::to_owned))
        .unwrap_or_else(|| "relayguard.localhost".into());
    let target = match u.kind {
        UpstreamKind::Maildir => {
            let Some(path) = &u.path else {
                errors.push(ConfigError::Invalid {
                    file: source.file.clone(),
                    line: 1,
                    why: "[upstream] kind = \"maildir\" needs path = \"...\"".into(),
                });
                return None;
            };
            UpstreamTarget::Maildir {
                path: source.dir.join(path),
            }
        }
        UpstreamKind::Smtp => {
            let Some(address) = &u.address else {
                errors.push(ConfigError::Invalid {
                    file: source.file.clone(),
                    line: 1,
                    why: "[upstream] kind = \"smtp\" needs address = \"host:port\"".into(),
                });
                return None;
            };
            let tls = if u.starttls {
                match crate::net::tls::client_config(
                    u.ca_file.as_ref().map(|p| source.dir.join(p)).as_deref(),
                    u.tls_verify,
                ) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(
                            source.invalid(address.span().start, format!("[upstream] TLS: {e}")),
                        );
                        None
                    }
                }
            } else {
                None
            };
            let host = address
                .get_ref()
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']))
                .unwrap_or("");
            UpstreamTarget::Smtp {
                address: address.get_ref().clone(),
                tls,
                server_name: u.server_name.clone().unwrap_or_else(|| host.to_owned()),
            }
        }
    };
    let identity = u.identity.unwrap_or(IdentityMode::Xclient);
    if u.warm_connections > 0 && matches!(identity, IdentityMode::ProxyV1 | IdentityMode::ProxyV2) {
        // A PROXY header names the client before the greeting: nothing can be dialled early.
        errors.push(ConfigError::Invalid {
            file: source.file.clone(),
            line: 1,
            why: "[upstream] warm_connections needs identity = \"xclient\" or \"none\": \
                  a PROXY header must name the client before the upstream's greeting"
                .into(),
        });
    }
    Some(UpstreamSettings {
        target,
        identity,
        connect_timeout,
        reply_timeout,
        helo_name,
        allow_open_relay: u.allow_open_relay,
        warm_connections: u.warm_connections,
        defer_mail: u.defer_mail,
        open_ahead: u.open_ahead,
        received_header: u.received_header.unwrap_or(identity == IdentityMode::None),
    })
}

/// A listener on the upstream's own address would relay every session to itself: relayguard
/// would greet, probe itself and retry forever. Refused at load, at the listener's line.
pub(super) fn refuse_loops(
    source: &Source<'_>,
    file: &ConfigFile,
    upstream: &UpstreamSettings,
    errors: &mut Vec<ConfigError>,
) {
    let UpstreamTarget::Smtp { address, .. } = &upstream.target else {
        return;
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return;
    };
    let host = host.trim_matches(['[', ']']);
    let upstream_ip = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip,
        Err(_) if host.eq_ignore_ascii_case("localhost") => std::net::Ipv4Addr::LOCALHOST.into(),
        Err(_) => return,
    };
    let Ok(port) = port.parse::<u16>() else {
        return;
    };
    for l in &file.listeners {
        let Ok(at) = l.address.get_ref().parse::<SocketAddr>() else {
            continue;
        };
        // A wildcard listener also owns the upstream's address when that is one of ours.
        let same_host = at.ip() == upstream_ip
            || (at.ip().is_unspecified()
                && (upstream_ip.is_loopback() || upstream_ip.is_unspecified()));
        if at.port() == port && same_host {
            errors.push(source.invalid(
                l.address.span().start,
                format!(
                    "listener `{}` on {at} is the upstream's own address ({address}): relayguard would relay to itself; give the MTA behind it a port of its own",
                    l.name
                ),
            ));
        }
    }
}
