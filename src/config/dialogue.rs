//! The Postfix parameters that govern how the dialogue treats a client beyond single commands:
//! the error counter and its tarpit, junk commands, which SASL mechanisms and EHLO keywords
//! are offered, the SASL login's domain, and unauthorized pipelining.
//!
//! Compiled once per listener (main.cf values with the listener's master.cf-style overrides);
//! the session reads them, nothing here runs at session time but the address-map lookup.

use std::sync::Arc;
use std::time::Duration;

use crate::policy::{expand, Origin, ParamMap, Table};
use crate::smtp::ehlo_mask::EhloMask;
use crate::smtp::sasl_mechanisms::SaslSecurity;

use super::load::ConfigError;
use super::settings::{duration, flag, number};

/// The names this module implements (part of `settings::PARAMETERS`).
pub const PARAMETERS: &[&str] = &[
    "smtpd_error_sleep_time",
    "smtpd_soft_error_limit",
    "smtpd_hard_error_limit",
    "smtpd_junk_command_limit",
    "smtpd_sasl_security_options",
    "smtpd_sasl_tls_security_options",
    "broken_sasl_auth_clients",
    "smtpd_discard_ehlo_keywords",
    "smtpd_discard_ehlo_keyword_address_maps",
    "smtpd_sasl_local_domain",
    "smtpd_forbid_unauth_pipelining",
];

/// One listener's dialogue settings, with Postfix 3.7's defaults.
#[derive(Clone, Debug)]
pub struct DialogueSettings {
    /// smtpd_error_sleep_time: the delay before every reply once the error count has
    /// reached the soft limit.
    pub error_sleep: Duration,
    pub soft_error_limit: u32,
    /// At this many errors the session ends with `421 4.7.0 ... Error: too many errors`.
    pub hard_error_limit: u32,
    /// HELO, EHLO, NOOP, RSET and VRFY beyond this many count as errors.
    pub junk_command_limit: u32,
    pub sasl_security: SaslSecurity,
    /// Applies once the session is encrypted.
    pub sasl_tls_security: SaslSecurity,
    /// Also announce `AUTH=mech ...` for clients that only understand the pre-RFC form.
    pub broken_sasl_auth_clients: bool,
    pub discard_ehlo: EhloMask,
    /// Tables keyed by the client address whose value replaces smtpd_discard_ehlo_keywords.
    pub discard_ehlo_maps: Vec<Arc<Table>>,
    /// smtpd_sasl_local_domain: the realm appended to a login name without one.
    pub sasl_local_domain: Option<String>,
    /// smtpd_forbid_unauth_pipelining (Postfix 3.7.11: default no).
    pub forbid_unauth_pipelining: bool,
}

impl Default for DialogueSettings {
    fn default() -> Self {
        DialogueSettings {
            error_sleep: Duration::from_secs(1),
            soft_error_limit: 10,
            hard_error_limit: 20,
            junk_command_limit: 100,
            sasl_security: SaslSecurity::DEFAULT,
            sasl_tls_security: SaslSecurity::DEFAULT,
            broken_sasl_auth_clients: false,
            discard_ehlo: EhloMask::default(),
            discard_ehlo_maps: Vec::new(),
            sasl_local_domain: None,
            forbid_unauth_pipelining: false,
        }
    }
}

impl DialogueSettings {
    pub fn compile(params: &ParamMap, errors: &mut Vec<ConfigError>) -> DialogueSettings {
        let d = DialogueSettings::default();
        // Postfix reads the limits with a minimum of 1 (0 for the limits it allows to be 0):
        // smtpd_hard_error_limit and smtpd_junk_command_limit "must be greater than zero".
        let limit = |name: &str, default: u32, min: u64, errors: &mut Vec<ConfigError>| {
            let n = number(params, name, u64::from(default), errors);
            match (u32::try_from(n), params.get(name)) {
                (Ok(n), _) if u64::from(n) >= min => n,
                (_, Some(v)) => {
                    errors.push(ConfigError::bad_value(
                        name,
                        v,
                        format!("`{}` must be between {min} and {}", v.value, u32::MAX),
                    ));
                    default
                }
                (_, None) => default,
            }
        };
        let sasl_options = expanded(params, "smtpd_sasl_security_options", "noanonymous");
        let sasl_tls_options = expanded(
            params,
            "smtpd_sasl_tls_security_options",
            "$smtpd_sasl_security_options",
        );
        DialogueSettings {
            error_sleep: duration(params, "smtpd_error_sleep_time", d.error_sleep, errors),
            soft_error_limit: limit("smtpd_soft_error_limit", d.soft_error_limit, 0, errors),
            hard_error_limit: limit("smtpd_hard_error_limit", d.hard_error_limit, 1, errors),
            junk_command_limit: limit("smtpd_junk_command_limit", d.junk_command_limit, 1, errors),
            sasl_security: security(params, "smtpd_sasl_security_options", &sasl_options, errors),
            sasl_tls_security: security(
                params,
                "smtpd_sasl_tls_security_options",
                &sasl_tls_options,
                errors,
            ),
            broken_sasl_auth_clients: flag(params, "broken_sasl_auth_clients", false, errors),
            discard_ehlo: EhloMask::parse(&expanded(params, "smtpd_discard_ehlo_keywords", "")),
            discard_ehlo_maps: discard_maps(params, errors),
            sasl_local_domain: Some(expanded(params, "smtpd_sasl_local_domain", ""))
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            forbid_unauth_pipelining: flag(
                params,
                "smtpd_forbid_unauth_pipelining",
                d.forbid_unauth_pipelining,
                errors,
            ),
        }
    }

    /// The EHLO keywords discarded for a client at `addr`, as smtpd.c decides at connect:
    /// the first table of smtpd_discard_ehlo_keyword_address_maps that has the address gives
    /// the list, otherwise smtpd_discard_ehlo_keywords.
    pub fn discard_ehlo_for(&self, addr: std::net::IpAddr) -> EhloMask {
        // The address is written out only for maps to look it up in: most configs have none.
        if self.discard_ehlo_maps.is_empty() {
            return self.discard_ehlo;
        }
        let addr = addr.to_string();
        self.discard_ehlo_maps
            .iter()
            .find_map(|t| t.lookup(&addr))
            .map_or(self.discard_ehlo, |words| EhloMask::parse(&words))
    }

    /// The SASL security options in force: the TLS ones once the session is encrypted.
    pub fn sasl_security(&self, tls: bool) -> SaslSecurity {
        if tls {
            self.sasl_tls_security
        } else {
            self.sasl_security
        }
    }

    /// The login name as Postfix's SASL server reports it: with smtpd_sasl_local_domain set,
    /// a name without a domain is taken in that realm (Cyrus SASL's user_realm).
    pub fn login_name(&self, name: String) -> String {
        match &self.sasl_local_domain {
            Some(domain) if !name.contains('@') && name != "unknown" => {
                format!("{name}@{domain}")
            }
            _ => name,
        }
    }
}

/// A parameter's value with `$name` references expanded (the defaults of the names this
/// module reads, then the admin's values).
fn expanded(params: &ParamMap, name: &str, default: &str) -> String {
    let raw = params.value(name).unwrap_or(default);
    let lookup = |n: &str| -> Option<String> {
        params.value(n).map(str::to_owned).or_else(|| match n {
            "smtpd_sasl_security_options" => Some("noanonymous".into()),
            _ => None,
        })
    };
    expand(raw, &lookup)
}

fn security(
    params: &ParamMap,
    name: &str,
    value: &str,
    errors: &mut Vec<ConfigError>,
) -> SaslSecurity {
    SaslSecurity::parse(value).unwrap_or_else(|why| {
        // A TLS value left at `$smtpd_sasl_security_options` shares that one's error,
        // reported under its own name.
        if let Some(v) = params.get(name) {
            errors.push(ConfigError::bad_value(name, v, why));
        }
        SaslSecurity::DEFAULT
    })
}

/// Opens smtpd_discard_ehlo_keyword_address_maps. The EHLO reply cannot wait for a server,
/// so only in-memory tables are allowed.
fn discard_maps(params: &ParamMap, errors: &mut Vec<ConfigError>) -> Vec<Arc<Table>> {
    const NAME: &str = "smtpd_discard_ehlo_keyword_address_maps";
    let Some(v) = params.get(NAME) else {
        return Vec::new();
    };
    let origin: &Origin = &v.origin;
    let mut tables = Vec::new();
    for spec in crate::policy::split_list(&expanded(params, NAME, "")) {
        match Table::load(spec, origin) {
            Ok((t, _)) if t.is_remote() => errors.push(ConfigError::bad_value(
                NAME,
                v,
                format!("`{spec}` is a remote table; the EHLO reply cannot wait for a lookup (use cidr:, texthash:, inline: or another in-memory table)"),
            )),
            Ok((t, _)) => tables.push(Arc::new(t)),
            Err(e) => errors.push(ConfigError::bad_value(NAME, v, e.to_string())),
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ParamValue;

    fn params(pairs: &[(&str, &str)]) -> ParamMap {
        let mut m = ParamMap::new();
        for (k, v) in pairs {
            m.insert(
                *k,
                ParamValue {
                    value: (*v).into(),
                    origin: Origin::default(),
                },
            );
        }
        m
    }

    fn compile(pairs: &[(&str, &str)]) -> Result<DialogueSettings, Vec<String>> {
        let mut errors = Vec::new();
        let d = DialogueSettings::compile(&params(pairs), &mut errors);
        if errors.is_empty() {
            Ok(d)
        } else {
            Err(errors.iter().map(ToString::to_string).collect())
        }
    }

    #[test]
    fn defaults_are_postfix_3_7() {
        let d = compile(&[]).unwrap();
        assert_eq!(d.error_sleep, Duration::from_secs(1));
        assert_eq!(
            (d.soft_error_limit, d.hard_error_limit, d.junk_command_limit),
            (10, 20, 100)
        );
        assert!(!d.forbid_unauth_pipelining && !d.broken_sasl_auth_clients);
        assert!(!d.sasl_security(false).allows("ANONYMOUS"));
        assert!(d.sasl_security(true).allows("PLAIN"));
        assert_eq!(d.login_name("alice".into()), "alice");
    }

    #[test]
    fn tls_options_follow_the_plain_ones_unless_set() {
        let d = compile(&[("smtpd_sasl_security_options", "noplaintext")]).unwrap();
        assert!(!d.sasl_security(false).allows("PLAIN"));
        assert!(
            !d.sasl_security(true).allows("PLAIN"),
            "$smtpd_sasl_security_options"
        );
        let d = compile(&[
            ("smtpd_sasl_security_options", "noplaintext, noanonymous"),
            ("smtpd_sasl_tls_security_options", "noanonymous"),
        ])
        .unwrap();
        assert!(!d.sasl_security(false).allows("LOGIN"));
        assert!(d.sasl_security(true).allows("LOGIN"));
    }

    #[test]
    fn bad_values_are_refused_at_load() {
        let errs = compile(&[
            ("smtpd_hard_error_limit", "0"),
            ("smtpd_soft_error_limit", "x"),
            ("smtpd_sasl_security_options", "noplain"),
            ("smtpd_error_sleep_time", "1q"),
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs
            .iter()
            .any(|e| e.contains("unknown SASL security option `noplain`")));
    }

    #[test]
    fn the_address_map_overrides_the_keyword_list() {
        let d = compile(&[
            ("smtpd_discard_ehlo_keywords", "dsn"),
            (
                "smtpd_discard_ehlo_keyword_address_maps",
                "cidr:{{192.0.2.0/24 chunking, silent-discard}}",
            ),
            ("smtpd_sasl_local_domain", "example.com"),
        ])
        .unwrap();
        assert!(d
            .discard_ehlo_for([192, 0, 2, 7].into())
            .discards(EhloMask::CHUNKING));
        assert!(!d
            .discard_ehlo_for([192, 0, 2, 7].into())
            .discards(EhloMask::DSN));
        assert!(d
            .discard_ehlo_for([198, 51, 100, 1].into())
            .discards(EhloMask::DSN));
        assert_eq!(d.login_name("bob".into()), "bob@example.com");
        assert_eq!(
            d.login_name("bob@other.example".into()),
            "bob@other.example"
        );
    }
}
