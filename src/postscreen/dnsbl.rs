//! postscreen_dnsbl_sites and the score they add up to (postscreen_dnsbl.c): one query per
//! DNSBL domain, each `domain=filter*weight` of it adding its weight when a reply address
//! passes its filter; negative weights are allow lists. Also the TTL the result is cached for.
//!
//! The query names and the `=127.0.0.[2..11]` filters are the policy's (`policy::dnsxl`), so
//! that reject_rbl_client and postscreen read a list the same way.

use std::net::IpAddr;
use std::time::Duration;

use super::{time, PostscreenError};
use crate::policy::dnsxl::{Dnsxl, DnsxlKind};
use crate::policy::hostname::valid_hostname;
use crate::policy::{ParamValue, Table};

/// The name the query parser gives in its errors.
const SITES: &str = "postscreen_dnsbl_sites";

/// One `domain[=filter][*weight]` entry.
#[derive(Debug)]
struct Site {
    /// The domain and filter, parsed as the policy parses a DNSBL argument.
    list: Dnsxl,
    weight: i32,
}

/// One DNSBL domain: asked once, judged by each of its sites.
#[derive(Debug)]
pub struct Domain {
    /// As written (the first time), for the reply and the logs.
    pub name: String,
    /// The name replies use: postscreen_dnsbl_reply_map's value for the domain, which hides a
    /// domain that carries a password, or the domain itself.
    pub shown: String,
    /// In reverse order of writing: postscreen keeps each domain's sites in a list it
    /// prepends to, and the order decides which of two equal weights names the listing.
    sites: Vec<Site>,
}

impl Domain {
    /// The name to ask the A records of for `addr`: the address reversed under the domain.
    pub fn query(&self, addr: IpAddr) -> String {
        match self.sites.first() {
            Some(site) => site.list.address_query(addr),
            None => self.name.clone(),
        }
    }
}

/// The DNSBL test's settings.
#[derive(Debug)]
pub struct DnsblTest {
    /// In the order first written; one query each.
    pub domains: Vec<Domain>,
    /// postscreen_dnsbl_threshold: a score this high fails the test.
    pub threshold: i32,
    /// postscreen_dnsbl_allowlist_threshold (old name ..._whitelist_threshold); 0 is off, a
    /// negative score this low passes the other tests too.
    pub allowlist_threshold: i32,
    pub action: super::Action,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// postscreen_dnsbl_timeout: how long one reply is waited for.
    pub timeout: Duration,
}

/// What one domain's query brought: the A record addresses (none when not listed or the
/// lookup failed) and the lowest TTL of the reply (of its SOA when negative), `None` when
/// it had none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainReply {
    pub addrs: Vec<IpAddr>,
    pub ttl: Option<u32>,
}

/// The score of one client over the replies that arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsblScore {
    pub total: i32,
    /// The site with the largest weight that matched: named in the reply.
    pub name: Option<String>,
    weight: i32,
    /// Lowest TTLs of the replies that argue for a pass and for a fail; -1: none yet.
    pass_ttl: i64,
    fail_ttl: i64,
}

impl DnsblTest {
    /// Compiles the DNSBL test from `value(name, default)`, the expanded parameters; `None`
    /// when postscreen_dnsbl_sites is empty.
    pub(super) fn compile(
        value: &dyn Fn(&str, &str) -> ParamValue,
    ) -> Result<Option<DnsblTest>, PostscreenError> {
        let sites = value(SITES, "");
        let reply_map = value("postscreen_dnsbl_reply_map", "");
        let map = match reply_map.value.trim() {
            "" => None,
            spec => Some(Table::load(spec, &reply_map.origin)?.0),
        };
        let mut domains: Vec<Domain> = Vec::new();
        for spec in sites
            .value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let (site, name) = parse_site(spec, &sites)?;
            match domains
                .iter_mut()
                .find(|d| d.name.eq_ignore_ascii_case(&name))
            {
                Some(d) => d.sites.insert(0, site),
                None => {
                    let shown = map
                        .as_ref()
                        .and_then(|m| m.lookup(&name.to_ascii_lowercase()))
                        .map(|v| v.trim().to_owned())
                        .unwrap_or_else(|| name.clone());
                    domains.push(Domain {
                        name,
                        shown,
                        sites: vec![site],
                    });
                }
            }
        }
        if domains.is_empty() {
            return Ok(None);
        }
        let threshold = integer(
            "postscreen_dnsbl_threshold",
            &value("postscreen_dnsbl_threshold", "1"),
        )?;
        let allowlist = match value("postscreen_dnsbl_allowlist_threshold", "") {
            v if v.value.trim().is_empty() => value("postscreen_dnsbl_whitelist_threshold", "0"),
            v => v,
        };
        let allowlist_threshold = integer("postscreen_dnsbl_allowlist_threshold", &allowlist)?;
        let action = super::Action::parse(
            "postscreen_dnsbl_action",
            &value("postscreen_dnsbl_action", "ignore"),
        )?;
        // postscreen_dnsbl_max_ttl = ${postscreen_dnsbl_ttl?{$postscreen_dnsbl_ttl}:{1}}h
        // (so `postscreen_dnsbl_ttl = 5m` reads `5mh`, which is 5 minutes, as in Postfix).
        let max_ttl = match value("postscreen_dnsbl_max_ttl", "") {
            v if v.value.trim().is_empty() => match value("postscreen_dnsbl_ttl", "") {
                old if old.value.trim().is_empty() => ParamValue {
                    value: "1h".into(),
                    ..old
                },
                old => ParamValue {
                    value: format!("{}h", old.value.trim()),
                    ..old
                },
            },
            v => v,
        };
        Ok(Some(DnsblTest {
            domains,
            threshold,
            allowlist_threshold,
            action,
            min_ttl: time(
                "postscreen_dnsbl_min_ttl",
                &value("postscreen_dnsbl_min_ttl", "60s"),
            )?,
            max_ttl: time("postscreen_dnsbl_max_ttl", &max_ttl)?,
            timeout: time(
                "postscreen_dnsbl_timeout",
                &value("postscreen_dnsbl_timeout", "10s"),
            )?,
        }))
    }

    /// Adds the replies, in the order they arrived, to a score (psc_dnsbl_receive). A reply
    /// is `(index into domains, reply)`; a domain whose reply is missing adds nothing.
    pub fn score<'a>(
        &self,
        replies: impl IntoIterator<Item = &'a (usize, DomainReply)>,
    ) -> DnsblScore {
        let mut score = DnsblScore {
            pass_ttl: -1,
            fail_ttl: -1,
            ..DnsblScore::default()
        };
        for (index, reply) in replies {
            let Some(domain) = self.domains.get(*index) else {
                continue;
            };
            let ttl = reply.ttl.map_or(-1, i64::from);
            // As with dnsblog(8), a TTL < 0 means none; it still replaces the one kept.
            let lower = |kept: &mut i64| {
                if *kept < 0 || *kept > ttl {
                    *kept = ttl;
                }
            };
            let listed = !reply.addrs.is_empty();
            for site in &domain.sites {
                if listed && site.list.matches(&reply.addrs) {
                    if score.name.is_none() || score.weight < site.weight {
                        score.name = Some(domain.shown.clone());
                        score.weight = site.weight;
                    }
                    score.total = score.total.saturating_add(site.weight);
                }
                // A reply for a deny list found, or for an allow list not found, argues for
                // a fail: its TTL bounds how long a fail would be kept, and vice versa.
                if (site.weight > 0) == listed {
                    lower(&mut score.fail_ttl);
                } else {
                    lower(&mut score.pass_ttl);
                }
            }
        }
        score
    }

    /// Whether the score fails the test.
    pub fn fails(&self, score: &DnsblScore) -> bool {
        score.total >= self.threshold
    }

    /// Whether the score is low enough to pass every other test too
    /// (psc_allowlist_non_dnsbl); `failed` says a test failed already, which this cannot undo.
    pub fn allowlists(&self, score: &DnsblScore, failed: bool) -> bool {
        !failed
            && score.total < self.threshold
            && self.allowlist_threshold < 0
            && score.total <= self.allowlist_threshold
    }

    /// How long the result is cached: the TTL of the replies that decided it, within
    /// postscreen_dnsbl_min_ttl and postscreen_dnsbl_max_ttl (psc_dnsbl_retrieve).
    pub fn ttl(&self, score: &DnsblScore) -> Duration {
        let ttl = if score.total > 0 {
            score.fail_ttl
        } else {
            score.pass_ttl
        };
        let ttl = u64::try_from(ttl).map_or(self.min_ttl, Duration::from_secs);
        ttl.max(self.min_ttl).min(self.max_ttl.max(self.min_ttl))
    }
}

/// `domain=filter*weight`: the weight after the first `*`, then the filter after `=`.
fn parse_site(spec: &str, at: &ParamValue) -> Result<(Site, String), PostscreenError> {
    let bad = |why: String| PostscreenError::bad(SITES, at, why);
    let (rest, weight) = match spec.split_once('*') {
        Some((rest, w)) => {
            let weight = w
                .parse::<i32>()
                .map_err(|_| bad(format!("bad DNSBL weight factor \"{w}\" in \"{spec}\"")))?;
            (rest, weight)
        }
        None => (spec, 1),
    };
    let domain = rest.split_once('=').map_or(rest, |(d, _)| d);
    if !valid_hostname(domain) {
        return Err(bad(format!(
            "bad DNSBL domain name \"{domain}\" in \"{spec}\""
        )));
    }
    let list = Dnsxl::parse(SITES, DnsxlKind::RblClient, rest)
        .map_err(|why| bad(format!("bad DNSBL filter syntax: {why}")))?;
    Ok((Site { list, weight }, domain.to_owned()))
}

fn integer(name: &str, value: &ParamValue) -> Result<i32, PostscreenError> {
    value.value.trim().parse().map_err(|_| {
        PostscreenError::bad(
            name,
            value,
            format!("`{}` is not a whole number", value.value),
        )
    })
}
