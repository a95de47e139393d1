//! Turns the config file into a [`Snapshot`]: parse, merge listener overrides, compile, check.
//!
//! Every mistake an admin can fix is a [`ConfigError`] naming the file and line; all of them are
//! collected, so `check-config` prints the whole list at once.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file::{ConfigFile, ListenerFile, Role};
use super::settings::{self, SmtpdSettings, TlsLevel};
use super::source::Source;
use super::tls_params;
use super::upstream::{compile_upstream, refuse_loops};
use super::{DnsLookups, DnsSettings, ListenerSnapshot, ProxyTrust, Snapshot};
use crate::lookup::TableSettings;
use crate::net::proxy_header::TrustedProxies;
use crate::policy::{self, HostInfo, Origin, ParamMap, ParamValue, Policy};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{}: unknown parameter `{name}`{hint}", origin.file.display(), origin.line)]
    UnknownParameter {
        name: String,
        origin: Origin,
        hint: String,
    },
    #[error("{}:{}: bad value for `{name}`: {why}", origin.file.display(), origin.line)]
    BadValue {
        name: String,
        origin: Origin,
        why: String,
    },
    #[error("{}:{line}: {why}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{0}")]
    Policy(#[from] policy::PolicyError),
    #[error("{0}")]
    Postscreen(#[from] crate::postscreen::PostscreenError),
}

impl ConfigError {
    pub fn bad_value(name: &str, value: &ParamValue, why: String) -> Self {
        ConfigError::BadValue {
            name: name.to_owned(),
            origin: value.origin.clone(),
            why,
        }
    }
}

/// Reads and compiles a config file. `Err` holds every problem found.
pub fn load(path: &Path) -> Result<Snapshot, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        vec![ConfigError::Read {
            file: path.to_owned(),
            source,
        }]
    })?;
    load_str(&text, path)
}

/// Compiles config text; `path` names the file in errors and anchors relative paths.
pub fn load_str(text: &str, path: &Path) -> Result<Snapshot, Vec<ConfigError>> {
    let source = Source {
        text,
        file: path.to_owned(),
        dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
    };
    let file: ConfigFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| source.line_of(s.start)).unwrap_or(1);
        vec![ConfigError::Syntax {
            file: path.to_owned(),
            line,
            message: e.message().to_owned(),
        }]
    })?;
    let mut errors = Vec::new();
    let main_params = source.params(&file.policy, file.import.lines_for(None));
    // Postfix counts a parameter as used when main.cf or any master.cf service refers to it;
    // so does relayguard, across [policy] and every listener's overrides.
    let listener_params: Vec<ParamMap> = file
        .listeners
        .iter()
        .map(|l| source.params(&l.policy, file.import.lines_for(Some(&l.name))))
        .collect();
    let user_defined =
        policy::user_defined_parameters(std::iter::once(&main_params).chain(&listener_params));

    let mut names = HashSet::new();
    let mut listeners = Vec::new();
    for l in &file.listeners {
        if !names.insert(l.name.clone()) {
            errors.push(source.invalid(
                l.address.span().start,
                format!("listener name `{}` is used twice", l.name),
            ));
        }
        if let Some(listener) =
            compile_listener(&source, &file, l, &main_params, &user_defined, &mut errors)
        {
            listeners.push(Arc::new(listener));
        }
    }
    if file.listeners.is_empty() {
        errors.push(ConfigError::Invalid {
            file: path.to_owned(),
            line: 1,
            why: "no [[listener]] is configured".into(),
        });
    }
    let upstream = compile_upstream(&source, &file, &main_params, &mut errors);
    if let Some(u) = &upstream {
        refuse_loops(&source, &file, u, &mut errors);
    }
    let session_timeout = source.duration(
        file.limits.session_timeout.as_ref(),
        Duration::from_secs(3600),
        &mut errors,
    );
    let handshake_timeout = source.duration(
        file.limits.handshake_timeout.as_ref(),
        Duration::from_secs(30),
        &mut errors,
    );
    let drain_timeout = source.duration(
        file.limits.drain_timeout.as_ref(),
        Duration::from_secs(30),
        &mut errors,
    );
    let dns = compile_dns(&source, &file, &mut errors);
    let defaults = TableSettings::default();
    let tables = TableSettings {
        timeout: source.duration(file.tables.timeout.as_ref(), defaults.timeout, &mut errors),
        cache_ttl: source.duration(
            file.tables.cache_ttl.as_ref(),
            defaults.cache_ttl,
            &mut errors,
        ),
    };
    let abuse = super::abuse::compile(&source, &file, &mut errors);
    match (errors.is_empty(), upstream) {
        (true, Some(upstream)) => Ok(Snapshot {
            listeners,
            upstream: Arc::new(upstream),
            session_timeout,
            handshake_timeout,
            drain_timeout,
            workers: file.limits.workers.filter(|w| *w > 0).unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }),
            log_format: file.log.format.unwrap_or_default(),
            dns,
            tables,
            abuse,
        }),
        _ => Err(dedup(errors)),
    }
}

/// A mistake in `[policy]` is found once per listener; report it once.
fn dedup(errors: Vec<ConfigError>) -> Vec<ConfigError> {
    let mut seen = HashSet::new();
    errors
        .into_iter()
        .filter(|e| seen.insert(e.to_string()))
        .collect()
}

fn compile_listener(
    source: &Source<'_>,
    file: &ConfigFile,
    l: &ListenerFile,
    main_params: &ParamMap,
    user_defined: &BTreeSet<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<ListenerSnapshot> {
    let address = source.socket_address(&l.address, "", errors);
    let overrides = source.params(&l.policy, file.import.lines_for(Some(&l.name)));
    let params = main_params
        .overlaid(&role_defaults(l.role, source, l.address.span().start))
        .overlaid(&overrides);

    let tls_files = l.tls.as_ref().or(file.tls.as_ref());
    let has_keys = tls_files.is_some() || tls_params::has_keys(&params);
    let default_tls = match (l.role, has_keys) {
        (Role::Submissions, _) => TlsLevel::Wrapper,
        (Role::Submission, _) => TlsLevel::Encrypt,
        (Role::Smtp, true) => TlsLevel::May,
        (Role::Smtp, false) => TlsLevel::None,
    };
    let mut smtpd = SmtpdSettings::compile(&params, default_tls, errors);
    if l.role == Role::Submissions {
        smtpd.tls_level = TlsLevel::Wrapper;
    }
    if smtpd.tls_level != TlsLevel::None && !has_keys {
        errors.push(source.invalid(
            l.address.span().start,
            format!("listener `{}` needs TLS (role or smtpd_tls_security_level) but no [tls] cert/key or smtpd_tls_cert_file is configured", l.name),
        ));
    }
    let mut tls_warnings = Vec::new();
    let at_listener = |why: String| {
        source.invalid(
            l.address.span().start,
            format!("listener `{}`: {why}", l.name),
        )
    };
    let tls = if has_keys {
        tls_params::compile(
            &params,
            smtpd.tls_level,
            tls_files,
            &source.dir,
            &at_listener,
            errors,
            &mut tls_warnings,
        )
    } else {
        None
    };
    let anvil = super::abuse::compile_anvil(&params, errors);
    // postscreen runs only where Postfix runs it: on the smtp service, not on submission.
    let postscreen = match l.role {
        Role::Smtp => crate::postscreen::PostscreenSettings::compile(&params, &smtpd.banner)
            .unwrap_or_else(|es| {
                errors.extend(es.into_iter().map(ConfigError::from));
                None
            }),
        Role::Submission | Role::Submissions => None,
    };
    let others: Vec<&str> = settings::PARAMETERS
        .iter()
        .chain(tls_params::PARAMETERS)
        .chain(crate::limits::anvil::PARAMETERS)
        .chain(crate::postscreen::PARAMETERS)
        .copied()
        .collect();
    let policy = match Policy::compile_in_config(
        &params,
        &host_info(),
        &others,
        user_defined,
        &file.tables.mta_actions,
    ) {
        Ok(p) => Some(p),
        Err(es) => {
            errors.extend(es.into_iter().map(ConfigError::Policy));
            None
        }
    };
    let proxy = l.proxy_protocol.as_ref().map(|p| ProxyTrust {
        trusted: TrustedProxies::new(
            p.trusted
                .iter()
                .filter_map(|n| source.network(n, errors))
                .collect(),
        ),
        required: p.required,
    });
    Some(ListenerSnapshot {
        name: l.name.clone(),
        address: address?,
        role: l.role,
        max_connections: l.max_connections.unwrap_or(1000),
        proxy,
        policy: policy?,
        smtpd,
        anvil,
        postscreen: postscreen.map(Arc::new),
        client_certs: tls.as_ref().and_then(|t| t.client_certs.clone()),
        sni: tls.as_ref().and_then(|t| t.sni.clone()),
        tls: tls.map(|t| t.config),
        tls_warnings,
    })
}

/// What a master.cf service of this kind usually carries as `-o` overrides (Debian's
/// submission/submissions templates), applied under the listener's own overrides.
fn role_defaults(role: Role, source: &Source<'_>, at: usize) -> ParamMap {
    let origin = Origin {
        file: source.file.clone(),
        line: source.line_of(at),
    };
    let mut map = ParamMap::new();
    let mut set = |k: &str, v: &str| {
        map.insert(
            k,
            ParamValue {
                value: v.into(),
                origin: origin.clone(),
            },
        )
    };
    match role {
        Role::Smtp => {}
        Role::Submission => {
            set("smtpd_sasl_auth_enable", "yes");
            set("smtpd_tls_auth_only", "yes");
            set("syslog_name", "postfix/submission");
        }
        Role::Submissions => {
            set("smtpd_sasl_auth_enable", "yes");
            set("syslog_name", "postfix/submissions");
        }
    }
    map
}

fn compile_dns(
    source: &Source<'_>,
    file: &ConfigFile,
    errors: &mut Vec<ConfigError>,
) -> DnsSettings {
    let lookups = match file.dns.lookups.as_deref() {
        None | Some("auto") => DnsLookups::Auto,
        Some("always") => DnsLookups::Always,
        Some("never") => DnsLookups::Never,
        Some(other) => {
            errors.push(ConfigError::Invalid {
                file: source.file.clone(),
                line: 1,
                why: format!("[dns] lookups = \"{other}\": use auto, always or never"),
            });
            DnsLookups::Auto
        }
    };
    let nameservers = file
        .dns
        .nameservers
        .iter()
        .filter_map(|n| source.socket_address(n, "[dns] nameservers ", errors))
        .collect();
    let timeout = source.duration(file.dns.timeout.as_ref(), Duration::from_secs(5), errors);
    DnsSettings {
        lookups,
        nameservers,
        timeout,
    }
}

/// This host's interfaces and name, for `mynetworks_style` and address literals, read once per
/// load (Postfix reads them at start too).
fn host_info() -> HostInfo {
    let interfaces = if_addrs::get_if_addrs()
        .map(|all| {
            all.into_iter()
                .map(|i| match i.addr {
                    if_addrs::IfAddr::V4(a) => (std::net::IpAddr::V4(a.ip), a.prefixlen),
                    if_addrs::IfAddr::V6(a) => (std::net::IpAddr::V6(a.ip), a.prefixlen),
                })
                .collect()
        })
        .unwrap_or_else(|_| HostInfo::loopback().interfaces);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    HostInfo {
        interfaces,
        hostname,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_upstream(upstream: &str) -> Result<Snapshot, Vec<ConfigError>> {
        let text = format!(
            "[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:0\"\nrole = \"smtp\"\n\n\
             [upstream]\nkind = \"smtp\"\naddress = \"127.0.0.1:10025\"\n{upstream}\n"
        );
        load_str(&text, Path::new("/nonexistent/relayguard.toml"))
    }

    #[test]
    fn warm_connections_need_an_identity_sent_after_the_greeting() {
        for identity in ["proxy-v1", "proxy-v2"] {
            let errors = with_upstream(&format!("identity = \"{identity}\"\nwarm_connections = 2"))
                .err()
                .unwrap_or_else(|| panic!("{identity} with warm connections was accepted"));
            assert!(
                errors
                    .iter()
                    .any(|e| e.to_string().contains("warm_connections")),
                "{errors:?}"
            );
        }
        for identity in ["xclient", "none"] {
            let snapshot =
                with_upstream(&format!("identity = \"{identity}\"\nwarm_connections = 2"));
            assert_eq!(snapshot.map(|s| s.upstream.warm_connections).ok(), Some(2));
        }
        assert_eq!(
            with_upstream("").map(|s| s.upstream.warm_connections).ok(),
            Some(0),
            "off unless asked for"
        );
    }

    #[test]
    fn received_header_defaults_on_only_where_the_upstream_learns_nothing() {
        let on = |upstream: &str| with_upstream(upstream).map(|s| s.upstream.received_header);
        assert_eq!(on("identity = \"none\"").ok(), Some(true));
        for identity in ["xclient", "proxy-v1", "proxy-v2"] {
            assert_eq!(on(&format!("identity = \"{identity}\"")).ok(), Some(false));
        }
        assert_eq!(on("").ok(), Some(false), "xclient is the default identity");
        assert_eq!(
            on("identity = \"none\"\nreceived_header = false").ok(),
            Some(false)
        );
        assert_eq!(
            on("identity = \"xclient\"\nreceived_header = true").ok(),
            Some(true)
        );
    }

    /// Debian's master.cf pattern: `mua_sender_restrictions` set in `[policy]`, used only by
    /// the submission listener's overrides. The smtp listener must not call it unknown.
    #[test]
    fn user_defined_parameter_used_by_another_listener() {
        let text = "[policy]\nmydestination = \"local.test\"\nmua_sender_restrictions = \"reject_non_fqdn_sender, permit\"\n\n\
             [[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:0\"\nrole = \"smtp\"\n\n\
             [[listener]]\nname = \"sub\"\naddress = \"127.0.0.1:0\"\nrole = \"smtp\"\n\
             [listener.policy]\nsmtpd_sender_restrictions = \"$mua_sender_restrictions\"\n\n\
             [upstream]\nkind = \"smtp\"\naddress = \"127.0.0.1:10025\"\n";
        if let Err(errors) = load_str(text, Path::new("/nonexistent/relayguard.toml")) {
            panic!("{errors:?}");
        }
        let undefined = text.replace("mua_sender_restrictions = ", "mua_sender_restriction = ");
        let errors = load_str(&undefined, Path::new("/nonexistent/relayguard.toml"))
            .err()
            .unwrap_or_default();
        assert!(
            errors.iter().any(|e| e.to_string() == "/nonexistent/relayguard.toml:15: `smtpd_sender_restrictions` refers to `$mua_sender_restrictions`, which is defined nowhere (did you mean `mua_sender_restriction`?)"),
            "{errors:?}"
        );
    }
}
