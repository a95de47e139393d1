//! First-match lookup of an address among many CIDR networks, keeping the list's order.
//!
//! A network list or cidr table answers with its *first* matching entry, so a plain
//! longest-prefix trie is not enough. One hash map per prefix length maps the masked network to
//! the lowest entry index with that network; a lookup masks the address once per length present
//! and keeps the smallest index. No allocation per lookup; at most 33 (IPv4) or 129 (IPv6) probes,
//! in practice a handful because real lists use few distinct lengths.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

/// Networks with the index of the entry that holds them.
#[derive(Clone, Debug, Default)]
pub(crate) struct PrefixIndex {
    v4: Vec<(u8, FxHashMap<u32, u32>)>,
    v6: Vec<(u8, FxHashMap<u128, u32>)>,
}

fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl PrefixIndex {
    /// Adds `addr/len` as entry `index`. Host bits are ignored here (the parser refuses them).
    /// A later entry for the same network never replaces an earlier one: first match wins.
    pub(crate) fn insert(&mut self, addr: IpAddr, len: u8, index: u32) {
        match addr {
            IpAddr::V4(a) => {
                let key = u32::from(a) & mask4(len);
                let slot = match self.v4.iter().position(|(l, _)| *l == len) {
                    Some(p) => p,
                    None => {
                        self.v4.push((len, FxHashMap::default()));
                        self.v4.len() - 1
                    }
                };
                self.v4[slot].1.entry(key).or_insert(index);
            }
            IpAddr::V6(a) => {
                let key = u128::from(a) & mask6(len);
                let slot = match self.v6.iter().position(|(l, _)| *l == len) {
                    Some(p) => p,
                    None => {
                        self.v6.push((len, FxHashMap::default()));
                        self.v6.len() - 1
                    }
                };
                self.v6[slot].1.entry(key).or_insert(index);
            }
        }
    }

    /// The lowest entry index whose network contains all of `addr/len` (prefixes no longer
    /// than `len`).
    pub(crate) fn first_covering(&self, addr: IpAddr, len: u8) -> Option<u32> {
        let mut best: Option<u32> = None;
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                for (l, map) in self.v4.iter().filter(|(l, _)| *l <= len) {
                    if let Some(&i) = map.get(&(a & mask4(*l))) {
                        best = Some(best.map_or(i, |b| b.min(i)));
                    }
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                for (l, map) in self.v6.iter().filter(|(l, _)| *l <= len) {
                    if let Some(&i) = map.get(&(a & mask6(*l))) {
                        best = Some(best.map_or(i, |b| b.min(i)));
                    }
                }
            }
        }
        best
    }

    /// The lowest entry index whose network contains `addr`. IPv4 entries never match an IPv6
    /// address and vice versa, as in Postfix's match_ops.c.
    pub(crate) fn first_match(&self, addr: IpAddr) -> Option<u32> {
        let mut best: Option<u32> = None;
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                for (len, map) in &self.v4 {
                    if let Some(&i) = map.get(&(a & mask4(*len))) {
                        best = Some(best.map_or(i, |b| b.min(i)));
                    }
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                for (len, map) in &self.v6 {
                    if let Some(&i) = map.get(&(a & mask6(*len))) {
                        best = Some(best.map_or(i, |b| b.min(i)));
                    }
                }
            }
        }
        best
    }
}

/// True when `addr/len` has bits set past the prefix (Postfix: "non-null host address bits").
pub(crate) fn has_host_bits(addr: IpAddr, len: u8) -> bool {
    match addr {
        IpAddr::V4(a) => u32::from(a) & !mask4(len) != 0,
        IpAddr::V6(a) => u128::from(a) & !mask6(len) != 0,
    }
}

/// `addr` with the host bits cleared, for the "perhaps you should use" hint.
pub(crate) fn network_of(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask4(len)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask6(len)).into()),
    }
}

/// Whether network `outer/olen` contains `inner/ilen` (same family).
pub(crate) fn covers(outer: IpAddr, olen: u8, inner: IpAddr, ilen: u8) -> bool {
    if olen > ilen {
        return false;
    }
    match (outer, inner) {
        (IpAddr::V4(o), IpAddr::V4(i)) => u32::from(i) & mask4(olen) == u32::from(o) & mask4(olen),
        (IpAddr::V6(o), IpAddr::V6(i)) => {
            u128::from(i) & mask6(olen) == u128::from(o) & mask6(olen)
        }
        _ => false,
    }
}

/// Parses an address pattern as Postfix network lists and cidr tables write it: `1.2.3.4`,
/// `1.2.3.0/24`, `[1.2.3.4]`, `[2001:db8::]/32`, `[2001:db8::/32]`, and (cidr tables only,
/// `bare_v6 = true`) `2001:db8::/32`. Returns `None` when the text is not address-shaped at all.
pub(crate) fn parse_net(text: &str, bare_v6: bool) -> Option<Result<(IpAddr, u8), String>> {
    let (body, bracketed) = if let Some(rest) = text.strip_prefix('[') {
        // `[addr]/len` or `[addr/len]`
        if let Some((inside, after)) = rest.split_once(']') {
            if after.is_empty() {
                (inside.to_string(), true)
            } else if let Some(len) = after.strip_prefix('/') {
                (format!("{inside}/{len}"), true)
            } else {
                return Some(Err(format!("garbage after `]` in \"{text}\"")));
            }
        } else {
            return Some(Err(format!("missing `]` in \"{text}\"")));
        }
    } else {
        (text.to_string(), false)
    };
    let (addr_text, len_text) = match body.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (body.as_str(), None),
    };
    let addr: IpAddr = match addr_text.parse() {
        Ok(a) => a,
        Err(_) => {
            if bracketed {
                return Some(Err(format!("bad address in \"{text}\"")));
            }
            return None;
        }
    };
    if addr.is_ipv6() && !bracketed && !bare_v6 {
        return Some(Err(format!(
            "IPv6 network \"{text}\" without brackets: Postfix reads it as a lookup table of type \"{}\" and fails every lookup",
            text.split(':').next().unwrap_or("")
        )));
    }
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(l) if l <= max => l,
            _ => {
                if !bracketed && addr.is_ipv4() && !l.bytes().all(|b| b.is_ascii_digit()) {
                    // `10.0.0.0/8x`: Postfix takes it as a host name pattern that never matches.
                    return None;
                }
                return Some(Err(format!("bad mask length in \"{text}\"")));
            }
        },
    };
    if has_host_bits(addr, len) {
        let net = network_of(addr, len);
        let shown = if addr.is_ipv6() {
            format!("[{net}]/{len}")
        } else {
            format!("{net}/{len}")
        };
        return Some(Err(format!(
            "non-null host address bits in \"{text}\", perhaps you should use \"{shown}\" instead"
        )));
    }
    Some(Ok((addr, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_is_lowest_index_not_longest_prefix() {
        let mut ix = PrefixIndex::default();
        ix.insert("10.0.0.0".parse().unwrap(), 8, 0);
        ix.insert("10.1.0.0".parse().unwrap(), 16, 1);
        assert_eq!(ix.first_match("10.1.2.3".parse().unwrap()), Some(0));
        let mut ix = PrefixIndex::default();
        ix.insert("10.1.0.0".parse().unwrap(), 16, 0);
        ix.insert("10.0.0.0".parse().unwrap(), 8, 1);
        assert_eq!(ix.first_match("10.1.2.3".parse().unwrap()), Some(0));
        assert_eq!(ix.first_match("10.2.2.3".parse().unwrap()), Some(1));
        assert_eq!(ix.first_match("11.2.2.3".parse().unwrap()), None);
        assert_eq!(ix.first_match("::1".parse().unwrap()), None);
    }

    #[test]
    fn parses_postfix_network_forms() {
        let ok = |t: &str| parse_net(t, false).unwrap().unwrap();
        assert_eq!(ok("10.0.0.0/8"), ("10.0.0.0".parse().unwrap(), 8));
        assert_eq!(ok("[10.1.2.3]"), ("10.1.2.3".parse().unwrap(), 32));
        assert_eq!(ok("[2001:db8::]/32"), ("2001:db8::".parse().unwrap(), 32));
        assert_eq!(ok("[2001:db8::/32]"), ("2001:db8::".parse().unwrap(), 32));
        assert_eq!(ok("[::1]"), ("::1".parse().unwrap(), 128));
        assert!(parse_net("example.com", false).is_none());
        assert!(parse_net("10.0.0.0/8x", false).is_none());
        let err = |t: &str| parse_net(t, false).unwrap().unwrap_err();
        assert_eq!(
            err("10.1.2.3/8"),
            "non-null host address bits in \"10.1.2.3/8\", perhaps you should use \"10.0.0.0/8\" instead"
        );
        assert_eq!(err("10.0.0.0/33"), "bad mask length in \"10.0.0.0/33\"");
        assert!(err("2001:db8::/32").contains("without brackets"));
        assert!(parse_net("2001:db8::/32", true).unwrap().is_ok());
    }
}
