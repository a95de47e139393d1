//! Envelope addresses as smtpd and trivial-rewrite see them: source routes, quoting, percent
//! hack, bang paths and address literals (host name syntax is in `hostname`).
//!
//! Only string work; which domains are local is asked of the caller through [`Locality`].

use std::net::IpAddr;

/// An envelope address in Postfix's internal form: source route stripped, quotes removed.
/// `reply` keeps the client's case (it is what replies show); `key` is lower-cased with one
/// trailing dot removed from the domain (what lookups and destination checks use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) reply: String,
    pub(crate) key: String,
}

impl Address {
    pub(crate) fn new(raw: &str) -> Address {
        let stripped = strip_source_route(raw);
        let reply = unquote(stripped);
        let mut key = reply.to_ascii_lowercase();
        if let Some(at) = key.rfind('@') {
            if key.ends_with('.') && key.len() > at + 2 {
                key.pop();
            }
        }
        Address { reply, key }
    }

    /// (local part, domain) of the lookup form; domain is None without `@`.
    pub(crate) fn split(&self) -> (&str, Option<&str>) {
        match self.key.rsplit_once('@') {
            Some((l, d)) => (l, Some(d)),
            None => (&self.key, None),
        }
    }
}

/// `@a,@b:user@domain` -> `user@domain` (RFC 821 source routes are ignored, as Postfix does).
pub(crate) fn strip_source_route(addr: &str) -> &str {
    if addr.starts_with('@') {
        if let Some((_, rest)) = addr.split_once(':') {
            return rest;
        }
    }
    addr
}

/// Removes RFC 5321 quoting: `"user@elsewhere"@local.test` -> `user@elsewhere@local.test`.
pub(crate) fn unquote(addr: &str) -> String {
    if !addr.contains('"') {
        return addr.to_string();
    }
    let mut out = String::with_capacity(addr.len());
    let mut in_quotes = false;
    let mut chars = addr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => in_quotes = !in_quotes,
            '\\' if in_quotes => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The address of a literal `[1.2.3.4]` or `[IPv6:::1]` domain, if it is one and valid.
pub(crate) fn literal_addr(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    if inner.len() > 5 && inner[..5].eq_ignore_ascii_case("ipv6:") {
        return inner[5..]
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6);
    }
    inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// What a domain is to this host.
pub(crate) trait Locality {
    /// mydestination, or an `[address]` of inet_interfaces/proxy_interfaces: trivial-rewrite's
    /// "local" that it strips when the local part routes further.
    fn is_local(&self, domain: &str) -> bool;
    /// Final destination: local, virtual_alias_domains or virtual_mailbox_domains.
    fn is_final(&self, domain: &str) -> bool;
    /// relay_domains.
    fn is_relay(&self, domain: &str) -> bool;
    /// True when a list could not answer (a remote table entry is pending or failed): the
    /// answers given since are `false` and the caller must not use the result.
    fn stopped(&self) -> bool {
        false
    }
}

/// How a recipient resolves, for permit_auth_destination / reject_unauth_destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    Final,
    Relay,
    /// The local part still routes elsewhere (`@`, `%`, `!`): not trusted.
    Routed,
    Foreign,
}

/// Options that change how trivial-rewrite rewrites the local part.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rewrite {
    pub(crate) allow_percent_hack: bool,
    pub(crate) swap_bangpath: bool,
}

/// Resolves `key` (lower-case internal form) as trivial-rewrite would and classifies it.
/// `myorigin` is appended to an address without domain.
pub(crate) fn classify(key: &str, rw: Rewrite, myorigin: &str, loc: &dyn Locality) -> Destination {
    resolve(key, rw, myorigin, loc).0
}

/// Like [`classify`], also returning the resolved address (what trivial-rewrite hands back and
/// what smtpd looks up in access tables: `user@elsewhere@local.test` -> `user@elsewhere`,
/// `u%x@local.test` -> `u@x`, `user` -> `user@$myorigin` [live]).
pub(crate) fn resolve(
    key: &str,
    rw: Rewrite,
    myorigin: &str,
    loc: &dyn Locality,
) -> (Destination, String) {
    let mut addr = key.to_string();
    let mut appended = false;
    // Each turn removes at least one character or routing operator, so this ends; the bound is
    // a second guard against a pathological address.
    for _ in 0..64 {
        match addr.rsplit_once('@') {
            Some((local, domain)) => {
                if loc.is_local(domain) && local.contains(['@', '%', '!']) {
                    addr = local.to_string();
                    continue;
                }
                if local.contains(['@', '%', '!']) {
                    return (Destination::Routed, addr);
                }
                if loc.is_final(domain) {
                    return (Destination::Final, addr);
                }
                if loc.is_relay(domain) {
                    return (Destination::Relay, addr);
                }
                return (Destination::Foreign, addr);
            }
            None => {
                if rw.allow_percent_hack {
                    if let Some(p) = addr.rfind('%') {
                        addr.replace_range(p..=p, "@");
                        continue;
                    }
                }
                if rw.swap_bangpath {
                    if let Some((site, user)) = addr.split_once('!') {
                        addr = format!("{user}@{site}");
                        continue;
                    }
                }
                if appended {
                    return (Destination::Foreign, addr);
                }
                appended = true;
                addr = format!("{addr}@{myorigin}");
            }
        }
    }
    (Destination::Foreign, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Test;
    impl Locality for Test {
        fn is_local(&self, d: &str) -> bool {
            d == "local.test" || literal_addr(d).is_some_and(|a| a.is_loopback())
        }
        fn is_final(&self, d: &str) -> bool {
            self.is_local(d) || d == "valias.test" || d == "vmbox.test"
        }
        fn is_relay(&self, d: &str) -> bool {
            d == "relay.test" || d.ends_with(".relay.test")
        }
    }

    fn class(raw: &str, on: bool) -> Destination {
        let a = Address::new(raw);
        classify(
            &a.key,
            Rewrite {
                allow_percent_hack: on,
                swap_bangpath: on,
            },
            "mx.relayguard.test",
            &Test,
        )
    }

    /// The reference's table 6.2 [live], both rewrite settings.
    #[test]
    fn every_address_form() {
        use Destination::*;
        let rows: &[(&str, Destination, Destination)] = &[
            ("user@local.test", Final, Final),
            ("USER@LOCAL.TEST", Final, Final),
            ("user@local.test.", Final, Final),
            ("user@sub.local.test", Foreign, Foreign),
            ("user@elsewhere@local.test", Foreign, Foreign),
            ("\"user@elsewhere\"@local.test", Foreign, Foreign),
            ("\"user\"@local.test", Final, Final),
            ("user%elsewhere@local.test", Foreign, Routed),
            ("user%local.test@local.test", Final, Routed),
            ("elsewhere!user@local.test", Foreign, Routed),
            ("local.test!user@local.test", Final, Routed),
            ("@local.test:user@elsewhere", Foreign, Foreign),
            ("@elsewhere:user@local.test", Final, Final),
            ("@a,@b:user@local.test", Final, Final),
            ("user@[127.0.0.1]", Final, Final),
            ("user@[IPv6:::1]", Final, Final),
            ("user@[192.0.2.2]", Foreign, Foreign),
            ("user", Foreign, Foreign),
            ("postmaster@elsewhere", Foreign, Foreign),
            ("user@relay.test", Relay, Relay),
            ("user@sub.relay.test", Relay, Relay),
            ("user@RELAY.TEST.", Relay, Relay),
            ("user@valias.test", Final, Final),
            ("user@sub.valias.test", Foreign, Foreign),
            ("user%elsewhere@relay.test", Routed, Routed),
            ("elsewhere!user@relay.test", Routed, Routed),
            ("user@elsewhere@relay.test", Routed, Routed),
            ("\"user@elsewhere\"@relay.test", Routed, Routed),
            ("@local.test", Final, Final),
        ];
        for (addr, on, off) in rows {
            assert_eq!(class(addr, true), *on, "{addr} with rewriting");
            assert_eq!(class(addr, false), *off, "{addr} without rewriting");
        }
    }

    #[test]
    fn reply_form_is_unquoted_and_route_stripped() {
        assert_eq!(
            Address::new("\"user@elsewhere\"@Local.Test").reply,
            "user@elsewhere@Local.Test"
        );
        assert_eq!(
            Address::new("@local.test:user@elsewhere").reply,
            "user@elsewhere"
        );
        assert_eq!(Address::new("ok@T.TEST.").key, "ok@t.test");
    }
}
