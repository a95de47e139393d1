//! access(5) lookup orders: which keys smtpd tries, in which order, for a client, a HELO name and
//! an envelope address (and the sender-login map search).
//!
//! Pattern tables (cidr, regexp, pcre, socketmap, tcp) get only the first, full key. Each key
//! goes through the caller's `get`, which answers at once for an in-memory table and may say
//! [`Answer::Pending`] for a remote one: the order then stops there (`Err(Stop::Pending)`), and
//! the next round, with that key's answer in the cache, goes on to the next key. So keys are
//! sent one at a time, and none after a hit.

use std::borrow::Cow;

use super::address::{resolve, Address, Locality};
use super::table::Table;
use super::text::AddrText;
use super::Policy;

/// One key's answer.
pub(crate) enum Answer<'a> {
    Found(Cow<'a, str>),
    NotFound,
    /// Asked for; the evaluation waits for it.
    Pending,
    /// The table failed for now (Postfix's maps->error), and why.
    Failed(String),
}

/// Why a lookup order stopped without a hit or a miss.
#[derive(Debug)]
pub(crate) enum Stop {
    Pending,
    /// The key whose lookup failed, and why.
    Failed {
        key: String,
        why: String,
    },
}

/// The key that matched and its value, nothing, or a stop.
pub(crate) type Hit = Result<Option<(String, String)>, Stop>;

#[inline]
fn probe<'a>(get: &mut impl FnMut(&str) -> Answer<'a>, key: &str) -> Hit {
    // maps_find: "Temp. workaround, for buggy callers that pass zero-length keys".
    if key.is_empty() {
        return Ok(None);
    }
    match get(key) {
        Answer::Found(v) => Ok(Some((key.to_string(), v.into_owned()))),
        Answer::NotFound => Ok(None),
        Answer::Pending => Err(Stop::Pending),
        Answer::Failed(why) => Err(Stop::Failed {
            key: key.to_string(),
            why,
        }),
    }
}

/// check_sasl_access: the login name as one full key (check_access with DICT_FLAG_NONE).
pub(crate) fn single<'a>(key: &str, get: &mut impl FnMut(&str) -> Answer<'a>) -> Hit {
    probe(get, key)
}

/// A domain and its parents: `a.b.c`, then `b.c`, `c` (parent style) or `.b.c`, `.c`.
pub(crate) fn domain<'a>(
    p: &Policy,
    t: &Table,
    name: &str,
    get: &mut impl FnMut(&str) -> Answer<'a>,
) -> Hit {
    if let Some(hit) = probe(get, name)? {
        return Ok(Some(hit));
    }
    if t.is_pattern() {
        return Ok(None);
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
        if let Some(hit) = probe(get, key)? {
            return Ok(Some(hit));
        }
    }
    Ok(None)
}

/// check_client_access: name and parent domains (`unknown` for a client without a verified
/// name), then the address and its shorter prefixes (`10.9.8.7`, `10.9.8`, `10.9`, `10`;
/// IPv6 drops one `:group` at a time).
pub(crate) fn client<'a>(
    p: &Policy,
    t: &Table,
    name: &str,
    addr: &AddrText,
    get: &mut impl FnMut(&str) -> Answer<'a>,
) -> Hit {
    if let Some(hit) = domain(p, t, name, get)? {
        return Ok(Some(hit));
    }
    address(t, addr, get)
}

/// An address and its shorter prefixes (check_addr_access).
pub(crate) fn address<'a>(
    t: &Table,
    addr: &AddrText,
    get: &mut impl FnMut(&str) -> Answer<'a>,
) -> Hit {
    let mut key = addr.as_str();
    if let Some(hit) = probe(get, key)? {
        return Ok(Some(hit));
    }
    if t.is_pattern() {
        return Ok(None);
    }
    let delim = if key.contains(':') { ':' } else { '.' };
    while let Some(i) = key.rfind(delim) {
        key = &key[..i];
        if key.is_empty() {
            break;
        }
        if let Some(hit) = probe(get, key)? {
            return Ok(Some(hit));
        }
    }
    Ok(None)
}

/// check_helo_access: the HELO argument as sent (trailing dot kept), then parent domains unless
/// it is an address literal or a naked address.
pub(crate) fn helo<'a>(
    p: &Policy,
    t: &Table,
    helo: &str,
    get: &mut impl FnMut(&str) -> Answer<'a>,
) -> Hit {
    if helo.starts_with('[') || helo.parse::<std::net::IpAddr>().is_ok() {
        return probe(get, helo);
    }
    domain(p, t, helo, get)
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
pub(crate) fn mail<'a>(
    p: &Policy,
    loc: &dyn Locality,
    t: &Table,
    a: &Address,
    is_sender: bool,
    get: &mut impl FnMut(&str) -> Answer<'a>,
) -> Hit {
    if a.key.is_empty() {
        return if is_sender {
            probe(get, &p.null_key)
        } else {
            Ok(None)
        };
    }
    // smtpd looks up the address trivial-rewrite resolved: source routes and own domains
    // stripped, percent hack and bang paths applied, $myorigin appended [live].
    let (_, full) = resolve(&a.key, p.rewrite, &p.myorigin, loc);
    if loc.stopped() {
        // A domain list is still to answer (the caller has its stop): no key yet.
        return Err(Stop::Pending);
    }
    if let Some(hit) = probe(get, &full)? {
        return Ok(Some(hit));
    }
    if t.is_pattern() {
        return Ok(None);
    }
    let Some((local, dom)) = full.rsplit_once('@') else {
        return Ok(None);
    };
    let base = strip_extension(p, local);
    if let Some(base) = base {
        if let Some(hit) = probe(get, &format!("{base}@{dom}"))? {
            return Ok(Some(hit));
        }
    }
    if let Some(hit) = domain(p, t, dom, get)? {
        return Ok(Some(hit));
    }
    if let Some(hit) = probe(get, &full[..=local.len()])? {
        return Ok(Some(hit));
    }
    if let Some(base) = base {
        if let Some(hit) = probe(get, &format!("{base}@"))? {
            return Ok(Some(hit));
        }
    }
    Ok(None)
}

/// smtpd_sender_login_maps: the sender as [`addr_find`] searches it.
pub(crate) fn login_owners<'a>(
    p: &Policy,
    loc: &dyn Locality,
    t: &Table,
    sender: &Address,
    get: &mut impl FnMut(&str) -> Answer<'a>,
) -> Hit {
    addr_find(
        p,
        loc,
        std::slice::from_ref(&t),
        &sender.key,
        &mut |_, k| get(k),
    )
}

/// mail_addr_find with its default strategy: `user+ext@domain`, `user@domain`, then, when the
/// domain is $myorigin or local, `user+ext` and `user`, then `@domain`; each key in each table
/// in turn (maps_find). A pattern table gets only the full address: maps_find skips it for
/// the partial keys (DICT_FLAG_FIXED).
pub(crate) fn addr_find<'a, 't, T: std::ops::Deref<Target = Table>>(
    p: &Policy,
    loc: &dyn Locality,
    tables: &'t [T],
    key: &str,
    get: &mut impl FnMut(&'t Table, &str) -> Answer<'a>,
) -> Hit {
    let mut find = |k: &str, partial: bool| -> Hit {
        for t in tables {
            if partial && t.is_pattern() {
                continue;
            }
            if let Some(hit) = probe(&mut |k| get(t, k), k)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    };
    if let Some(hit) = find(key, false)? {
        return Ok(Some(hit));
    }
    let Some((local, dom)) = key.rsplit_once('@') else {
        return Ok(None);
    };
    let base = strip_extension(p, local);
    if let Some(base) = base {
        if let Some(hit) = find(&format!("{base}@{dom}"), true)? {
            return Ok(Some(hit));
        }
    }
    let local_domain = dom.eq_ignore_ascii_case(&p.myorigin) || loc.is_local(dom);
    if loc.stopped() {
        return Err(Stop::Pending);
    }
    if local_domain {
        if let Some(hit) = find(local, true)? {
            return Ok(Some(hit));
        }
        if let Some(base) = base {
            if let Some(hit) = find(base, true)? {
                return Ok(Some(hit));
            }
        }
    }
    find(&format!("@{dom}"), true)
}
