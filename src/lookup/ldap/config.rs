//! The ldap_table(5) parameters relayguard implements, read with Postfix's defaults, and the
//! two quotings of dict_ldap.c: RFC 2253 for the search base, RFC 2254 for the filter.
//!
//! Nothing here connects. Parameters for features left out (TLS, SASL, DN recursion) are
//! refused at open rather than silently ignored, so no table answers differently from Postfix.

use std::time::Duration;

use ldap3::Scope;

use crate::lookup::cf::{CfFile, Password};
use crate::lookup::domain::DomainList;
use crate::lookup::template::Templates;

/// One LDAP table's configuration.
#[derive(Debug)]
pub struct LdapConfig {
    /// `ldap://host:port` URLs, tried in order as libldap tries a URL list.
    pub urls: Vec<String>,
    pub scope: Scope,
    pub templates: Templates,
    pub result_attributes: Vec<String>,
    pub bind: bool,
    pub bind_dn: String,
    pub bind_pw: Password,
    pub timeout: Duration,
    pub domain: Option<DomainList>,
    pub expansion_limit: usize,
    pub size_limit: usize,
}

/// Names whose features relayguard does not have: a table using them is refused.
const UNSUPPORTED: &[&str] = &[
    "special_result_attribute",
    "terminal_result_attribute",
    "leaf_result_attribute",
    "start_tls",
    "sasl_mechs",
    "tls_ca_cert_file",
    "tls_cert",
    "chase_referrals",
    "dereference",
];

impl LdapConfig {
    pub(crate) fn read(cf: &CfFile, fallback_timeout: Duration) -> Result<LdapConfig, String> {
        for name in UNSUPPORTED {
            // "no" and 0 are the defaults (no referrals, never dereference aliases).
            let set = cf
                .opt_str(name)
                .is_some_and(|v| !v.is_empty() && v != "no" && v != "0");
            if set {
                return Err(format!(
                    "{}: {name} is not supported by relayguard",
                    cf.at(name)
                ));
            }
        }
        let port = cf.int("server_port", 389, 0)?;
        let mut urls = Vec::new();
        for h in split(&cf.str("server_host", "localhost", 1)?) {
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("ldaps:") {
                return Err(format!(
                    "{}: ldaps is not supported by relayguard",
                    cf.at("server_host")
                ));
            }
            if lower.starts_with("ldap:") || lower.starts_with("ldapi:") {
                urls.push(h.to_string());
            } else if h.contains(':') {
                urls.push(format!("ldap://{h}"));
            } else {
                urls.push(format!("ldap://{h}:{port}"));
            }
        }
        // LDAPv2 and v3 simple binds and searches look the same on the wire for what a
        // table does; ldap3 speaks v3 only, which every current server accepts.
        let version = cf.int("version", 2, 2)?;
        if version > 3 {
            return Err(format!(
                "{}: unknown LDAP version {version}",
                cf.at("version")
            ));
        }
        let scope = match cf.str("scope", "sub", 1)?.to_ascii_lowercase().as_str() {
            "one" => Scope::OneLevel,
            "base" => Scope::Base,
            // Postfix warns and uses sub for anything else.
            _ => Scope::Subtree,
        };
        let base = cf.str("search_base", "", 0)?;
        let filter = cf.str("query_filter", "(mailacceptinggeneralid=%s)", 0)?;
        let result_format = match cf.opt_str("result_format") {
            Some(f) => f,
            None => cf.str("result_filter", "%s", 1)?,
        };
        let templates = Templates::with_base(&base, &filter, &result_format)
            .map_err(|why| format!("{}: {why}", cf.path().display()))?;
        let bind = match cf.str("bind", "yes", 1)?.to_ascii_lowercase().as_str() {
            "yes" => true,
            "no" => false,
            other => {
                return Err(format!(
                    "{}: unsupported parameter value: bind = {other}",
                    cf.at("bind")
                ))
            }
        };
        let timeout = match cf.int("timeout", 10, 0)? {
            0 => fallback_timeout,
            secs => Duration::from_secs(secs.unsigned_abs()),
        };
        let domain = match cf.opt_str("domain").filter(|d| !d.trim().is_empty()) {
            Some(list) => Some(DomainList::parse(&list, cf.path(), &cf.at("domain"))?),
            None => None,
        };
        let expansion_limit = cf.int("expansion_limit", 0, 0)?;
        let size_limit = cf.int("size_limit", expansion_limit, 0)?;
        Ok(LdapConfig {
            urls,
            scope,
            templates,
            result_attributes: split(&cf.str("result_attribute", "maildrop", 0)?)
                .map(str::to_string)
                .collect(),
            bind,
            bind_dn: cf.str("bind_dn", "", 0)?,
            bind_pw: cf.password("bind_pw"),
            timeout,
            domain,
            expansion_limit: usize::try_from(expansion_limit).unwrap_or(0),
            size_limit: usize::try_from(size_limit).unwrap_or(0),
        })
    }
}

fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
}

/// rfc2253_quote(): `\XX` for whitespace, `"#+,;<>\` in a DN (everywhere, as Postfix does).
pub fn quote_dn(value: &str, out: &mut String) {
    quote_bytes(value, out, b" \t\"#+,;<>\\");
}

/// rfc2254_quote(): `\XX` for `*()\` in a filter, so a key cannot widen or close it.
pub fn quote_filter(value: &str, out: &mut String) {
    quote_bytes(value, out, b"*()\\");
}

fn quote_bytes(value: &str, out: &mut String, special: &[u8]) {
    for c in value.chars() {
        if c.is_ascii() && special.contains(&(c as u8)) {
            out.push_str(&format!("\\{:02X}", c as u8));
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn quoting() {
        let mut f = String::new();
        quote_filter("*)(uid=*", &mut f);
        assert_eq!(f, "\\2A\\29\\28uid=\\2A");
        let mut d = String::new();
        quote_dn("a b,c#", &mut d);
        assert_eq!(d, "a\\20b\\2Cc\\23");
    }

    #[test]
    fn hosts_and_refusals() {
        let cf = |t: &str| CfFile::parse(t, Path::new("/l.cf")).unwrap();
        let c = LdapConfig::read(
            &cf("server_host = a, b:1389 ldap://c:2\nserver_port = 3389\nbind_pw = s3cret\n"),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(c.urls, ["ldap://a:3389", "ldap://b:1389", "ldap://c:2"]);
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = LdapConfig::read(
            &cf("x=1\nspecial_result_attribute = member\n"),
            Duration::ZERO,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "/l.cf:2: special_result_attribute is not supported by relayguard"
        );
    }
}
