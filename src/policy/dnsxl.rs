//! DNS allow and deny lists as Postfix writes them: `zen.example`, `bl.example=127.0.0.2`,
//! `bl.example=127.0.0.[2..11]`, the query a client or domain makes, and the reply template
//! (`default_rbl_reply`, `rbl_reply_maps`) with its `$rbl_*` names.

use std::net::{IpAddr, Ipv4Addr};

/// Which restriction a list is used by, and so what it looks up and what a hit means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DnsxlKind {
    /// reject_rbl_client (and its old name reject_rbl): the client address.
    RblClient,
    /// permit_dnswl_client: the client address.
    DnswlClient,
    /// reject_rhsbl_client: the verified client name.
    RhsblClient,
    /// permit_rhswl_client: the verified client name.
    RhswlClient,
    /// reject_rhsbl_reverse_client: the unverified (PTR) client name.
    RhsblReverseClient,
    RhsblHelo,
    RhsblSender,
    RhsblRecipient,
}

impl DnsxlKind {
    pub(crate) const ALL: &'static [(&'static str, DnsxlKind)] = &[
        ("reject_rbl_client", DnsxlKind::RblClient),
        ("reject_rbl", DnsxlKind::RblClient),
        ("permit_dnswl_client", DnsxlKind::DnswlClient),
        ("reject_rhsbl_client", DnsxlKind::RhsblClient),
        ("permit_rhswl_client", DnsxlKind::RhswlClient),
        ("reject_rhsbl_reverse_client", DnsxlKind::RhsblReverseClient),
        ("reject_rhsbl_helo", DnsxlKind::RhsblHelo),
        ("reject_rhsbl_sender", DnsxlKind::RhsblSender),
        ("reject_rhsbl_recipient", DnsxlKind::RhsblRecipient),
    ];

    /// True for the allow lists: a hit is OK, not a reject.
    pub(crate) fn permits(self) -> bool {
        matches!(self, DnsxlKind::DnswlClient | DnsxlKind::RhswlClient)
    }
}

/// One list as written after the restriction: the zone and an optional result filter.
#[derive(Clone, Debug)]
pub(crate) struct Dnsxl {
    pub(crate) kind: DnsxlKind,
    /// The restriction name as written (for reasons).
    pub(crate) name: &'static str,
    /// The argument as written: `bl.example=127.0.0.[2..4]`.
    pub(crate) spec: Box<str>,
    /// The zone the query goes under: `bl.example`.
    pub(crate) zone: Box<str>,
    pub(crate) filter: Option<AddrFilter>,
}

impl Dnsxl {
    /// Parses `zone` or `zone=pattern`; `Err` says why Postfix would stop ("RBL reply error").
    pub(crate) fn parse(name: &'static str, kind: DnsxlKind, spec: &str) -> Result<Dnsxl, String> {
        let (zone, filter) = match spec.split_once('=') {
            Some((zone, pattern)) => (zone, Some(AddrFilter::parse(pattern)?)),
            None => (spec, None),
        };
        let zone = zone.trim_end_matches('.');
        if zone.is_empty() {
            return Err(format!("`{spec}`: no DNS domain"));
        }
        Ok(Dnsxl {
            kind,
            name,
            spec: spec.into(),
            zone: zone.to_ascii_lowercase().into(),
            filter,
        })
    }

    /// The name to ask for a client address: the address reversed (octets for IPv4, nibbles
    /// for IPv6) under the zone.
    pub(crate) fn address_query(&self, addr: IpAddr) -> String {
        let mut q = String::with_capacity(80);
        match addr.to_canonical() {
            IpAddr::V4(a) => {
                for octet in a.octets().iter().rev() {
                    q.push_str(&format!("{octet}."));
                }
            }
            IpAddr::V6(a) => {
                for byte in a.octets().iter().rev() {
                    q.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
                }
            }
        }
        q.push_str(&self.zone);
        q
    }

    /// True when the list's answer addresses count as a hit: any of them passes the filter (or
    /// there is no filter).
    pub(crate) fn matches(&self, answers: &[IpAddr]) -> bool {
        match &self.filter {
            None => !answers.is_empty(),
            Some(f) => answers.iter().any(|a| match a {
                IpAddr::V4(a) => f.matches(*a),
                IpAddr::V6(_) => false,
            }),
        }
    }
}

/// The domain an rhsbl/rhswl query asks about, as find_dnsxl_domain picks it: the part after
/// the last `@` (or the whole name), skipped when it is an address literal, empty, ends in a
/// numeric label or is not a valid hostname.
pub(crate) fn query_domain(what: &str) -> Option<&str> {
    let domain = match what.rsplit_once('@') {
        Some((_, d)) if d.starts_with('[') => return None,
        Some((_, d)) => d,
        None => what,
    };
    if domain.is_empty() {
        return None;
    }
    let last = domain.rsplit('.').next().unwrap_or(domain);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    super::hostname::valid_hostname(domain).then_some(domain)
}

/// Postfix's ip_match pattern for IPv4 answers: four octets, each a number or a bracketed list
/// of numbers and `a..b` ranges separated by `;` (`127.0.0.[2;4..6]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddrFilter {
    octets: [Vec<(u8, u8)>; 4],
}

impl AddrFilter {
    pub(crate) fn parse(pattern: &str) -> Result<AddrFilter, String> {
        let bad = |why: &str| Err(format!("`{pattern}`: {why}"));
        let mut octets: [Vec<(u8, u8)>; 4] = Default::default();
        let mut rest = pattern;
        for (i, slot) in octets.iter_mut().enumerate() {
            let (field, tail) = if let Some(inner) = rest.strip_prefix('[') {
                let Some(end) = inner.find(']') else {
                    return bad("missing `]`");
                };
                (&inner[..end], &inner[end + 1..])
            } else {
                let end = rest.find('.').unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            for item in field.split(';') {
                let (lo, hi) = item.split_once("..").unwrap_or((item, item));
                match (lo.parse::<u8>(), hi.parse::<u8>()) {
                    (Ok(lo), Ok(hi)) if lo <= hi => slot.push((lo, hi)),
                    _ => return bad("not an address pattern such as 127.0.0.[2..11]"),
                }
            }
            rest = match (i, tail.strip_prefix('.')) {
                (3, _) if tail.is_empty() => "",
                (0..=2, Some(t)) => t,
                _ => return bad("an address pattern has four parts"),
            };
        }
        Ok(AddrFilter { octets })
    }

    pub(crate) fn matches(&self, addr: Ipv4Addr) -> bool {
        addr.octets()
            .iter()
            .zip(&self.octets)
            .all(|(o, ranges)| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(o)))
    }
}

/// What `$rbl_*` names expand to in a reply template.
pub(crate) struct RblExpansion<'a> {
    pub(crate) code: u16,
    /// The zone, without the `=filter`.
    pub(crate) domain: &'a str,
    /// TXT text of the listing (`$rbl_reason`, `$rbl_txt`), empty when there is none.
    pub(crate) reason: &'a str,
    /// What was looked up: the client address, or the domain or address.
    pub(crate) what: &'a str,
    /// `Client host`, `Sender address`, ...
    pub(crate) class: &'a str,
}

impl RblExpansion<'_> {
    pub(crate) fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "rbl_code" => self.code.to_string(),
            "rbl_domain" => self.domain.to_string(),
            "rbl_reason" | "rbl_txt" => self.reason.to_string(),
            "rbl_what" => self.what.to_string(),
            "rbl_class" => self.class.to_string(),
            _ => return None,
        })
    }
}

/// The TXT records of a listing joined as rbl_pagein does: ` / ` between records, at most 500
/// characters.
pub(crate) fn join_txt<'a>(records: impl Iterator<Item = &'a str>) -> String {
    const LIMIT: usize = 500;
    let mut out = String::new();
    for (i, text) in records.enumerate() {
        if i > 0 {
            if LIMIT.saturating_sub(out.len()) <= 3 {
                break;
            }
            out.push_str(" / ");
        }
        let room = LIMIT.saturating_sub(out.len());
        let take = text
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .take_while(|&end| end <= room)
            .last()
            .unwrap_or(0);
        out.push_str(&text[..take]);
        if out.len() >= LIMIT {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_reverse_the_address() {
        let l = Dnsxl::parse("reject_rbl_client", DnsxlKind::RblClient, "zen.test").unwrap();
        assert_eq!(
            l.address_query("198.51.100.9".parse().unwrap()),
            "9.100.51.198.zen.test"
        );
        assert_eq!(
            l.address_query("::ffff:198.51.100.9".parse().unwrap()),
            "9.100.51.198.zen.test"
        );
        let v6 = l.address_query("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0"), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.zen.test"), "{v6}");
    }

    #[test]
    fn filters_as_ip_match() {
        let f = AddrFilter::parse("127.0.0.[2..4;9]").unwrap();
        let hit = |a: &str| f.matches(a.parse().unwrap());
        assert!(hit("127.0.0.2") && hit("127.0.0.4") && hit("127.0.0.9"));
        assert!(!hit("127.0.0.5") && !hit("127.0.1.2"));
        assert!(AddrFilter::parse("127.0.0").is_err());
        assert!(AddrFilter::parse("127.0.0.[4..2]").is_err());
        assert!(AddrFilter::parse("127.0.0.[2").is_err());
        let l = Dnsxl::parse("x", DnsxlKind::RblClient, "bl.test=127.0.0.2").unwrap();
        assert_eq!(&*l.zone, "bl.test");
        assert!(l.matches(&["127.0.0.3".parse().unwrap(), "127.0.0.2".parse().unwrap()]));
        assert!(!l.matches(&["127.0.0.3".parse().unwrap()]));
    }

    #[test]
    fn domains_as_find_dnsxl_domain_picks_them() {
        assert_eq!(query_domain("u@bad.example"), Some("bad.example"));
        assert_eq!(query_domain("bad.example"), Some("bad.example"));
        assert_eq!(query_domain("u@[192.0.2.1]"), None);
        assert_eq!(query_domain("u@"), None);
        assert_eq!(query_domain("host.123"), None);
        assert_eq!(query_domain("bad_name!"), None);
    }

    #[test]
    fn txt_records_join_with_a_limit() {
        assert_eq!(join_txt(["a", "b"].into_iter()), "a / b");
        let long = "x".repeat(600);
        assert_eq!(join_txt([long.as_str()].into_iter()).len(), 500);
    }
}
