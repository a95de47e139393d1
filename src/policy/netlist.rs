//! Postfix host/network lists (`mynetworks`, `smtpd_sasl_exceptions_networks`, `relay_domains`,
//! `mydestination`, ...): compiled once, answered without allocation.
//!
//! Order matters in Postfix (first match wins, `!` only stops the scan), so every pattern keeps its
//! index and a lookup returns the lowest matching index: addresses through a [`PrefixIndex`],
//! names through hash maps probed once per label, tables in order (they are few). A remote
//! table entry is asked only through [`NetList::match_waiting`], which can stop at it.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::error::{Hint, PolicyError, PolicyWarning};
use super::lookup::{Answer, Stop};
use super::params::Origin;
#[cfg(test)]
use super::prefix::covers;
use super::prefix::{parse_net, PrefixIndex};
use super::table::Table;
use super::text::{AddrText, Lower};

#[derive(Debug)]
enum Pattern {
    Net(IpAddr, u8),
    /// `example.com` (also subdomains in parent style).
    Name,
    /// `.example.com`: subdomains only.
    Dotted,
    Table(Arc<Table>),
}

#[derive(Debug)]
struct Entry {
    text: Box<str>,
    negated: bool,
    pattern: Pattern,
}

/// What a list says about a client or domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMatch {
    /// Entry N matched.
    Matched(usize),
    /// Entry N, a `!` entry, matched: the list answers "no" and stops there.
    Excluded(usize),
    NoMatch,
}

impl ListMatch {
    pub fn is_match(self) -> bool {
        matches!(self, ListMatch::Matched(_))
    }
}

/// A compiled host/network list.
#[derive(Debug, Default)]
pub struct NetList {
    entries: Vec<Entry>,
    nets: PrefixIndex,
    names: FxHashMap<Box<str>, u32>,
    parents: FxHashMap<Box<str>, u32>,
    dotted: FxHashMap<Box<str>, u32>,
    tables: Vec<u32>,
    parent_style: bool,
    /// Whether remote table entries are allowed (lists the evaluation can wait for).
    allow_remote: bool,
    /// Whether one is there.
    remote: bool,
}

/// Opens tables on behalf of a list (shared with the policy's table cache).
pub(crate) type TableOpener<'a> = dyn FnMut(&str, &Origin) -> Result<Arc<Table>, PolicyError> + 'a;

impl NetList {
    /// Compiles `value` of parameter `param`. `parent_style` is whether `param` is listed in
    /// `parent_domain_matches_subdomains`. Errors are pushed, not returned, so that one run
    /// reports every bad entry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compile(
        param: &str,
        value: &str,
        origin: &Origin,
        parent_style: bool,
        allow_remote: bool,
        open: &mut TableOpener<'_>,
        errors: &mut Vec<PolicyError>,
        warnings: &mut Vec<PolicyWarning>,
    ) -> NetList {
        let mut list = NetList {
            parent_style,
            allow_remote,
            ..NetList::default()
        };
        list.add_text(param, value, origin, false, open, errors, warnings, 0);
        list.warn_about_order(param, origin, warnings);
        list
    }

    #[allow(clippy::too_many_arguments)]
    fn add_text(
        &mut self,
        param: &str,
        value: &str,
        origin: &Origin,
        negate: bool,
        open: &mut TableOpener<'_>,
        errors: &mut Vec<PolicyError>,
        warnings: &mut Vec<PolicyWarning>,
        depth: usize,
    ) {
        for item in super::text::split_list(value) {
            let (neg, pat) = match item.strip_prefix('!') {
                Some(p) => (!negate, p),
                None => (negate, item),
            };
            let bad = |why: String, hint: Hint| PolicyError::BadValue {
                name: param.to_string(),
                origin: origin.clone(),
                why,
                hint,
            };
            if pat.starts_with('/') {
                if depth > 10 {
                    errors.push(bad(
                        format!("{pat}: files include each other too deeply"),
                        Hint::none(),
                    ));
                    continue;
                }
                match std::fs::read_to_string(pat) {
                    Ok(text) => {
                        for (i, line) in text.lines().enumerate() {
                            let line = line.trim();
                            if line.is_empty() || line.starts_with('#') {
                                continue;
                            }
                            let o = Origin {
                                file: Path::new(pat).to_path_buf(),
                                line: i + 1,
                            };
                            self.add_text(param, line, &o, neg, open, errors, warnings, depth + 1);
                        }
                    }
                    Err(e) => errors.push(bad(format!("cannot read {pat}: {e}"), Hint::none())),
                }
                continue;
            }
            let index = self.entries.len() as u32;
            let pattern = match parse_net(pat, false) {
                Some(Ok((addr, len))) => {
                    self.nets.insert(addr, len, index);
                    Pattern::Net(addr, len)
                }
                Some(Err(why)) => {
                    let hint = if why.contains("without brackets") {
                        Hint::text(format!(
                            "write [{}]{}",
                            pat.split('/').next().unwrap_or(pat),
                            pat.find('/').map(|i| &pat[i..]).unwrap_or("")
                        ))
                    } else {
                        Hint::text("Postfix accepts this but answers 451 4.3.0 Temporary lookup failure to every client that reaches it")
                    };
                    errors.push(bad(why, hint));
                    continue;
                }
                None if pat.contains(':') => {
                    match open(pat, origin) {
                        // Only lists the evaluation asks through `match_waiting` may wait;
                        // the others (AUTH gate, client limits) answer at once.
                        Ok(t) if t.is_remote() && !self.allow_remote => {
                            errors.push(bad(
                            format!("`{pat}`: a remote table in {param} is not supported: it is matched where no lookup can wait"),
                            Hint::text("list the networks or domains here, or in a cidr:/texthash: table"),
                        ));
                            continue;
                        }
                        Ok(t) => {
                            self.remote |= t.is_remote();
                            self.tables.push(index);
                            Pattern::Table(t)
                        }
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    }
                }
                None => {
                    let lower = pat.to_ascii_lowercase();
                    if lower.bytes().next().is_some_and(|b| b.is_ascii_digit())
                        && lower.contains('/')
                    {
                        warnings.push(PolicyWarning::new(
                            param,
                            origin,
                            format!("\"{pat}\" is not a network; Postfix takes it as a host name that never matches"),
                            "write the network as ADDRESS/LENGTH".into(),
                        ));
                    }
                    if let Some(rest) = lower.strip_prefix('.') {
                        if rest.is_empty() {
                            errors.push(bad("empty domain pattern \".\"".into(), Hint::none()));
                            continue;
                        }
                        if self.parent_style {
                            // Postfix's match_hostname compares only parent names in this style,
                            // so `.example.com` never matches anything here [live].
                            warnings.push(PolicyWarning::new(
                                param,
                                origin,
                                format!("`{pat}` never matches: in {param} a domain already matches its subdomains and a leading dot is not understood"),
                                format!("write `{rest}`"),
                            ));
                        } else {
                            self.dotted.entry(lower.clone().into()).or_insert(index);
                        }
                        Pattern::Dotted
                    } else {
                        self.names.entry(lower.clone().into()).or_insert(index);
                        if self.parent_style {
                            self.parents.entry(lower.into()).or_insert(index);
                        }
                        Pattern::Name
                    }
                }
            };
            self.entries.push(Entry {
                text: item.into(),
                negated: neg,
                pattern,
            });
        }
    }

    fn warn_about_order(&self, param: &str, origin: &Origin, warnings: &mut Vec<PolicyWarning>) {
        if !self.entries.is_empty() && self.entries.iter().all(|e| e.negated) {
            warnings.push(PolicyWarning::new(
                param,
                origin,
                "every entry is a `!` exclusion, so the list matches nobody (a negation only stops the scan, it never matches)".into(),
                format!("add the networks the exclusions are cut from after them, e.g. `{param} = {} 0.0.0.0/0 [::]/0`", self.entries.iter().map(|e| &*e.text).collect::<Vec<_>>().join(" ")),
            ));
        }
        // A `!net` is dead when an earlier positive entry already covers it. Index the positive
        // networks once so this stays fast for lists of 100,000 entries.
        let mut positives = PrefixIndex::default();
        for (i, e) in self.entries.iter().enumerate() {
            if let (Pattern::Net(a, l), false) = (&e.pattern, e.negated) {
                positives.insert(*a, *l, i as u32);
            }
        }
        for (i, e) in self.entries.iter().enumerate() {
            let (Pattern::Net(addr, len), true) = (&e.pattern, e.negated) else {
                continue;
            };
            let earlier = positives
                .first_covering(*addr, *len)
                .filter(|j| (*j as usize) < i)
                .and_then(|j| self.entries.get(j as usize));
            if let Some(p) = earlier {
                warnings.push(PolicyWarning::new(
                    param,
                    origin,
                    format!("`{}` comes after `{}`, which already matches it; the first match wins, so the exclusion never applies", e.text, p.text),
                    format!("move `{}` before `{}`", e.text, p.text),
                ));
            }
        }
    }

    /// Whether matching needs the client's name (name patterns or tables).
    pub fn uses_names(&self) -> bool {
        !self.names.is_empty() || !self.dotted.is_empty() || !self.tables.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry as the admin wrote it, for reasons.
    pub fn entry_text(&self, index: usize) -> &str {
        self.entries.get(index).map(|e| &*e.text).unwrap_or("")
    }

    /// Matches a client: its name (verified name or `unknown`) and address. A remote table
    /// entry (see [`NetList::has_remote`]) never matches here: use [`NetList::match_waiting`].
    pub fn match_client(&self, name: &str, addr: IpAddr) -> ListMatch {
        let addr = addr.to_canonical();
        let lower = Lower::new(name);
        let best = self.best(Some(lower.as_str()), Some(addr), &mut in_memory);
        self.finish(best.unwrap_or(None))
    }

    /// Matches a domain (for `mydestination`, `relay_domains`, ...). `domain` must be lower-case.
    pub fn match_domain(&self, domain: &str) -> ListMatch {
        self.finish(
            self.best(Some(domain), None, &mut in_memory)
                .unwrap_or(None),
        )
    }

    /// Like [`NetList::match_client`] (with `addr`) or [`NetList::match_domain`] (without),
    /// asking table entries through `get`, which may say a remote key is pending or failed:
    /// the scan stops there, as Postfix's match_list stops at a table lookup problem.
    /// `name` must be lower-case.
    pub(crate) fn match_waiting<'a>(
        &'a self,
        name: &str,
        addr: Option<IpAddr>,
        get: &mut impl FnMut(&'a Table, &str) -> Answer<'a>,
    ) -> Result<ListMatch, Stop> {
        let addr = addr.map(|a| a.to_canonical());
        Ok(self.finish(self.best(Some(name), addr, get)?))
    }

    /// Whether an entry is a remote table, whose keys only [`NetList::match_waiting`] asks.
    pub(crate) fn has_remote(&self) -> bool {
        self.remote
    }

    /// The specs of its remote table entries.
    pub(crate) fn remote_specs(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| match &e.pattern {
            Pattern::Table(t) if t.is_remote() => Some(t.spec()),
            _ => None,
        })
    }

    fn finish(&self, best: Option<u32>) -> ListMatch {
        match best {
            None => ListMatch::NoMatch,
            Some(i) => {
                let i = i as usize;
                match self.entries.get(i) {
                    Some(e) if e.negated => ListMatch::Excluded(i),
                    Some(_) => ListMatch::Matched(i),
                    None => ListMatch::NoMatch,
                }
            }
        }
    }

    fn best<'a>(
        &'a self,
        name: Option<&str>,
        addr: Option<IpAddr>,
        get: &mut impl FnMut(&'a Table, &str) -> Answer<'a>,
    ) -> Result<Option<u32>, Stop> {
        let mut best = addr.and_then(|a| self.nets.first_match(a));
        let mut take = |i: Option<&u32>| {
            if let Some(&i) = i {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            take(self.names.get(name));
            for (i, _) in name.match_indices('.') {
                take(self.dotted.get(&name[i..]));
                if self.parent_style {
                    take(self.parents.get(&name[i + 1..]));
                }
            }
        }
        // Tables in list order, and only those before the first other match: Postfix scans
        // left to right and never asks a table it does not reach.
        for &ti in &self.tables {
            if best.is_some_and(|b| b < ti) {
                break;
            }
            if let Some(Entry {
                pattern: Pattern::Table(t),
                ..
            }) = self.entries.get(ti as usize)
            {
                if self.table_hit(t, name, addr, get)? {
                    best = Some(ti);
                    break;
                }
            }
        }
        Ok(best)
    }

    /// match_hostname, then match_hostaddr: the name (and its parents, for a fixed-key table),
    /// then the address. Any value counts, even `REJECT`.
    fn table_hit<'a>(
        &self,
        t: &'a Table,
        name: Option<&str>,
        addr: Option<IpAddr>,
        get: &mut impl FnMut(&'a Table, &str) -> Answer<'a>,
    ) -> Result<bool, Stop> {
        let mut hit = |key: &str| match get(t, key) {
            Answer::Found(_) => Ok(true),
            Answer::NotFound => Ok(false),
            Answer::Pending => Err(Stop::Pending),
            Answer::Failed(why) => Err(Stop::Failed {
                key: key.to_string(),
                why,
            }),
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            if hit(name)? {
                return Ok(true);
            }
            if !t.is_pattern() {
                for (i, _) in name.match_indices('.') {
                    let key = if self.parent_style {
                        &name[i + 1..]
                    } else {
                        &name[i..]
                    };
                    if hit(key)? {
                        return Ok(true);
                    }
                }
            }
        }
        match addr {
            Some(a) => hit(AddrText::new(a).as_str()),
            None => Ok(false),
        }
    }
}

/// The synchronous lookups: in-memory tables answer, a remote one is never found.
#[inline]
fn in_memory<'t>(t: &'t Table, key: &str) -> Answer<'t> {
    t.lookup(key).map_or(Answer::NotFound, Answer::Found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn compile(entries: &[(u32, u8, bool)]) -> (NetList, Vec<String>) {
        let texts: Vec<String> = entries
            .iter()
            .map(|(a, l, neg)| {
                let net = crate::policy::prefix::network_of(IpAddr::V4((*a).into()), *l);
                format!("{}{net}/{l}", if *neg { "!" } else { "" })
            })
            .collect();
        let mut open = |_: &str, _: &Origin| -> Result<Arc<Table>, PolicyError> {
            unreachable!("no tables here")
        };
        let (mut e, mut w) = (Vec::new(), Vec::new());
        let list = NetList::compile(
            "mynetworks",
            &texts.join(" "),
            &Origin::default(),
            true,
            false,
            &mut open,
            &mut e,
            &mut w,
        );
        assert!(e.is_empty(), "{e:?}");
        (list, texts)
    }

    proptest! {
        /// The index answers exactly what a left-to-right scan answers.
        #[test]
        fn index_equals_linear_first_match(
            entries in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<bool>()), 1..60),
            probes in proptest::collection::vec(any::<u32>(), 1..20),
        ) {
            let (list, _) = compile(&entries);
            // Probe both random addresses and addresses inside the entries.
            let inside = entries.iter().map(|(a, _, _)| *a);
            for q in probes.into_iter().chain(inside) {
                let addr = IpAddr::V4(q.into());
                let linear = entries.iter().enumerate().find(|(_, (a, l, _))| {
                    covers(IpAddr::V4((*a).into()), *l, addr, 32)
                });
                let want = match linear {
                    None => ListMatch::NoMatch,
                    Some((i, (_, _, true))) => ListMatch::Excluded(i),
                    Some((i, _)) => ListMatch::Matched(i),
                };
                prop_assert_eq!(list.match_client("unknown", addr), want);
            }
        }
    }
}
