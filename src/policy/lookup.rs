//! access(5) lookup orders: which keys smtpd tries, in which order, for a client, a HELO name and
//! an envelope address (and the sender-login map search).
//!
//! Pattern tables (cidr, regexp, pcre) get only the first, full key. Keys are lower-case.

use super::address::{resolve, Address};
use super::table::Table;
use super::text::AddrText;
use super::Policy;

type Hit = Option<(String, String)>;

fn probe(t: &Table, key: &str) -> Hit {
    t.lookup(key).map(|v| (key.to_string(), v.into_owned()))
}

/// A domain and its parents: `a.b.c`, then `b.c`, `c` (parent style) or `.b.c`, `.c`.
pub(crate) fn domain(p: &Policy, t: &Table, name: &str) -> Hit {
    if let Some(hit) = probe(t, name) {
        return Some(hit);
    }
    if t.is_pattern() {
        return None;
    }
    for (i, _) in name.match_indices('.') {
        let key = if p.access_parent_style {
            &name[i + 1..]
        } else {
            &name[i..]
        };
        if key.is_empty() || key == "." {
            continue;
        }
        if let Some(hit) = probe(t, key) {
            return Some(hit);
        }
    }
    None
}

/// check_client_access: name and parent domains (`unknown` for a client without a verified
/// name), then the address and its shorter prefixes (`10.9.8.7`, `10.9.8`, `10.9`, `10`;
/// IPv6 drops one `:group` at a time).
pub(crate) fn client(p: &Policy, t: &Table, name: &str, addr: &AddrText) -> Hit {
    if let Some(hit) = domain(p, t, name) {
        return Some(hit);
    }
    address(t, addr)
}

/// An address and its shorter prefixes (check_addr_access).
pub(crate) fn address(t: &Table, addr: &AddrText) -> Hit {
    let mut key = addr.as_str();
    if let Some(hit) = probe(t, key) {
        return Some(hit);
    }
    if t.is_pattern() {
        return None;
    }
    let delim = if key.contains(':') { ':' } else { '.' };
    while let Some(i) = key.rfind(delim) {
        key = &key[..i];
        if key.is_empty() {
            break;
        }
        if let Some(hit) = probe(t, key) {
            return Some(hit);
        }
    }
    None
}

/// check_helo_access: the HELO argument as sent (trailing dot kept), then parent domains unless
/// it is an address literal or a naked address.
pub(crate) fn helo(p: &Policy, t: &Table, helo: &str) -> Hit {
    if helo.starts_with('[') || helo.parse::<std::net::IpAddr>().is_ok() {
        return probe(t, helo);
    }
    domain(p, t, helo)
}

/// Splits `local` at the first recipient_delimiter character: (base, has extension).
fn strip_extension<'a>(p: &Policy, local: &'a str) -> Option<&'a str> {
    if p.recipient_delimiter.is_empty() {
        return None;
    }
    local
        .find(|c| p.recipient_delimiter.contains(c))
        .map(|i| &local[..i])
}

/// check_sender_access / check_recipient_access: `user+ext@domain`, `user@domain`, `domain` and
/// parents, `user+ext@`, `user@`. The null sender is looked up once as
/// `smtpd_null_access_lookup_key`.
pub(crate) fn mail(p: &Policy, t: &Table, a: &Address, is_sender: bool) -> Hit {
    if a.key.is_empty() {
        return if is_sender {
            probe(t, &p.null_key)
        } else {
            None
        };
    }
    // smtpd looks up the address trivial-rewrite resolved: source routes and own domains
    // stripped, percent hack and bang paths applied, $myorigin appended [live].
    let (_, full) = resolve(&a.key, p.rewrite, &p.myorigin, p);
    if let Some(hit) = probe(t, &full) {
        return Some(hit);
    }
    if t.is_pattern() {
        return None;
    }
    let (local, dom) = full.rsplit_once('@')?;
    let base = strip_extension(p, local);
    if let Some(base) = base {
        if let Some(hit) = probe(t, &format!("{base}@{dom}")) {
            return Some(hit);
        }
    }
    if let Some(hit) = domain(p, t, dom) {
        return Some(hit);
    }
    if let Some(hit) = probe(t, &full[..=local.len()]) {
        return Some(hit);
    }
    if let Some(base) = base {
        if let Some(hit) = probe(t, &format!("{base}@")) {
            return Some(hit);
        }
    }
    None
}

/// smtpd_sender_login_maps, searched like mail_addr_find: the address, the address without
/// extension, `user` when the domain is local, `@domain`. A bare `domain` key is not used.
pub(crate) fn login_owners(p: &Policy, t: &Table, sender: &Address) -> Option<String> {
    let key = sender.key.as_str();
    if let Some(v) = t.lookup(key) {
        return Some(v.into_owned());
    }
    if t.is_pattern() {
        return None;
    }
    let (local, dom) = sender.split();
    let base = strip_extension(p, local);
    if let (Some(base), Some(dom)) = (base, dom) {
        if let Some(v) = t.lookup(&format!("{base}@{dom}")) {
            return Some(v.into_owned());
        }
    }
    if let Some(dom) = dom {
        if super::address::Locality::is_local(p, dom) {
            if let Some(v) = t.lookup(base.unwrap_or(local)) {
                return Some(v.into_owned());
            }
        }
        if let Some(v) = t.lookup(&format!("@{dom}")) {
            return Some(v.into_owned());
        }
    }
    None
}
