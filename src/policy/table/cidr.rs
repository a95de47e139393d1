//! cidr tables: `network value` lines, first match wins, with `!network` and `if`/`endif`.
//!
//! Plain top-level rules go into a [`PrefixIndex`] (lowest matching line in a few hash probes);
//! negated rules and `if` blocks, which need order-sensitive evaluation, are kept aside with their
//! position and only tried when they come before the indexed hit.

use std::net::IpAddr;
use std::path::Path;

use super::{entries_with_origin, file_error, logical_lines, Entry};
use crate::policy::error::PolicyError;
use crate::policy::prefix::{covers, parse_net, PrefixIndex};

#[derive(Debug)]
enum Rule {
    Plain {
        net: (IpAddr, u8),
        value: u32,
    },
    Negated {
        net: (IpAddr, u8),
        value: u32,
    },
    Block {
        net: (IpAddr, u8),
        negated: bool,
        rules: Vec<(u32, Rule)>,
    },
}

/// An `if` block being read: (network, negated, rules so far, position).
type OpenBlock = ((IpAddr, u8), bool, Vec<(u32, Rule)>, u32);

#[derive(Debug)]
pub(crate) struct CidrTable {
    index: PrefixIndex,
    /// Rules the index cannot answer, with their position in the file order.
    ordered: Vec<(u32, Rule)>,
    values: Vec<(Box<str>, usize)>,
    /// The network of each value as written, for check-config's messages.
    keys: Vec<Box<str>>,
    file: Box<Path>,
}

fn net_contains(net: (IpAddr, u8), addr: IpAddr) -> bool {
    covers(net.0, net.1, addr, if addr.is_ipv4() { 32 } else { 128 })
}

fn eval(rules: &[(u32, Rule)], addr: IpAddr, before: u32) -> Option<u32> {
    for (pos, rule) in rules {
        if *pos >= before {
            return None;
        }
        match rule {
            Rule::Plain { net, value } if net_contains(*net, addr) => return Some(*value),
            Rule::Negated { net, value } if !net_contains(*net, addr) => return Some(*value),
            Rule::Block {
                net,
                negated,
                rules,
            } if net_contains(*net, addr) != *negated => {
                if let Some(v) = eval(rules, addr, u32::MAX) {
                    return Some(v);
                }
            }
            _ => {}
        }
    }
    None
}

impl CidrTable {
    pub(crate) fn lookup(&self, addr: IpAddr) -> Option<&str> {
        self.index_of(addr)
            .and_then(|i| self.values.get(i as usize))
            .map(|(v, _)| &**v)
    }

    /// The network as written of the entry `addr` matches, for metrics (bounded by the file).
    pub(crate) fn entry(&self, addr: IpAddr) -> Option<&str> {
        self.index_of(addr)
            .and_then(|i| self.keys.get(i as usize))
            .map(|k| &**k)
    }

    fn index_of(&self, addr: IpAddr) -> Option<u32> {
        let addr = addr.to_canonical();
        let fast = self.index.first_match(addr);
        match eval(&self.ordered, addr, fast.unwrap_or(u32::MAX)) {
            Some(v) => Some(v),
            None => fast,
        }
    }

    pub(crate) fn parse(text: &str, path: &Path) -> Result<CidrTable, PolicyError> {
        let mut t = CidrTable {
            index: PrefixIndex::default(),
            ordered: Vec::new(),
            values: Vec::new(),
            keys: Vec::new(),
            file: path.into(),
        };
        // Stack of open `if` blocks: (net, negated, rules, position).
        let mut stack: Vec<OpenBlock> = Vec::new();
        for (line, content) in logical_lines(text) {
            let err = |why: String| file_error(format!("cidr:{}", path.display()), path, line, why);
            let content = content.trim();
            if content.eq_ignore_ascii_case("endif") {
                let (net, negated, rules, pos) =
                    stack.pop().ok_or_else(|| err("endif without if".into()))?;
                let rule = Rule::Block {
                    net,
                    negated,
                    rules,
                };
                match stack.last_mut() {
                    Some(outer) => outer.2.push((pos, rule)),
                    None => t.ordered.push((pos, rule)),
                }
                continue;
            }
            let (word, rest) = content
                .split_once(char::is_whitespace)
                .map(|(w, r)| (w, r.trim()))
                .unwrap_or((content, ""));
            let pos = t.values.len() as u32;
            if word.eq_ignore_ascii_case("if") {
                let (neg, pat) = match rest.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, rest),
                };
                let net = parse_cidr(pat).map_err(err)?;
                // Reserve a position so ordering against indexed rules stays right.
                t.values.push(("".into(), line));
                t.keys.push("".into());
                stack.push((net, neg, Vec::new(), pos));
                continue;
            }
            if rest.is_empty() {
                return Err(err(format!(
                    "expected format: network/mask value, got \"{content}\""
                )));
            }
            let (neg, pat) = match word.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, word),
            };
            let net = parse_cidr(pat).map_err(err)?;
            t.values.push((rest.into(), line));
            t.keys.push(word.into());
            match (stack.last_mut(), neg) {
                (Some(block), false) => block.2.push((pos, Rule::Plain { net, value: pos })),
                (Some(block), true) => block.2.push((pos, Rule::Negated { net, value: pos })),
                (None, false) => t.index.insert(net.0, net.1, pos),
                (None, true) => t.ordered.push((pos, Rule::Negated { net, value: pos })),
            }
        }
        if !stack.is_empty() {
            return Err(file_error(
                format!("cidr:{}", path.display()),
                path,
                text.lines().count(),
                "missing endif".into(),
            ));
        }
        Ok(t)
    }

    pub(crate) fn entries(&self) -> Vec<Entry<'_>> {
        let entries = self
            .keys
            .iter()
            .zip(&self.values)
            .filter(|(_, (v, _))| !v.is_empty())
            .map(|(k, (v, line))| (&**k, &**v, *line));
        entries_with_origin(Some(&self.file), entries)
    }
}

fn parse_cidr(pat: &str) -> Result<(IpAddr, u8), String> {
    match parse_net(pat, true) {
        Some(Ok(n)) => Ok(n),
        // Postfix skips such a rule with a warning; a rule that silently never applies is a bug
        // in the admin's file, so relayguard refuses it.
        Some(Err(e)) => Err(format!("{e} (Postfix would skip this rule)")),
        None => Err(format!("bad address pattern \"{pat}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "192.0.2.0/28       REJECT first block
192.0.2.0/24       OK
[2001:db8::]/32    REJECT v6 block
2001:db9::/32      REJECT v6 no brackets
if 172.16.0.0/12
!172.16.1.0/24     REJECT in 172.16/12 but not 172.16.1/24
endif
10.1.2.3           REJECT bare address
";

    /// The reference's cidr example, with `postmap -q` results [live].
    #[test]
    fn reference_example() {
        let t = CidrTable::parse(EXAMPLE, Path::new("/t/c")).unwrap();
        let q = |a: &str| t.lookup(a.parse().unwrap());
        assert_eq!(q("192.0.2.5"), Some("REJECT first block"));
        assert_eq!(q("192.0.2.20"), Some("OK"));
        assert_eq!(q("2001:db8::1"), Some("REJECT v6 block"));
        assert_eq!(q("2001:db9::1"), Some("REJECT v6 no brackets"));
        assert_eq!(
            q("172.16.9.9"),
            Some("REJECT in 172.16/12 but not 172.16.1/24")
        );
        assert_eq!(
            q("172.20.0.1"),
            Some("REJECT in 172.16/12 but not 172.16.1/24")
        );
        assert_eq!(q("172.16.1.5"), None);
        assert_eq!(q("10.1.2.3"), Some("REJECT bare address"));
        assert_eq!(q("10.1.2.4"), None);
    }

    #[test]
    fn the_entry_matched_is_the_network_as_written() {
        let t = CidrTable::parse(EXAMPLE, Path::new("/t/c")).unwrap();
        let e = |a: &str| t.entry(a.parse().unwrap());
        // The looked-up address never comes back: only what the file says.
        assert_eq!(e("192.0.2.5"), Some("192.0.2.0/28"), "{EXAMPLE}");
        assert_eq!(e("10.1.2.3"), Some("10.1.2.3"));
        assert_eq!(e("10.1.2.4"), None);
    }

    #[test]
    fn host_bits_are_refused_with_line() {
        let e =
            CidrTable::parse("10.0.0.0/8 OK\n10.1.2.3/8 REJECT\n", Path::new("/t/c")).unwrap_err();
        match e {
            PolicyError::Table { origin, why, .. } => {
                assert_eq!(origin.line, 2);
                assert!(why.starts_with("non-null host address bits in \"10.1.2.3/8\", perhaps you should use \"10.0.0.0/8\" instead"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn negation_before_index_hit_wins() {
        let t = CidrTable::parse("!10.0.0.0/8 NOT10\n0.0.0.0/0 ALL\n", Path::new("/t/c")).unwrap();
        assert_eq!(t.lookup("192.0.2.1".parse().unwrap()), Some("NOT10"));
        assert_eq!(t.lookup("10.0.0.1".parse().unwrap()), Some("ALL"));
    }
}
