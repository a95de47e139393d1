//! Facts the engine cannot compute itself (DNS records, remote table keys, policy-service
//! answers): how an evaluation asks for them and how the caller hands them back.
//!
//! The shape is *resumable evaluation*: the engine never awaits. When a restriction needs a fact
//! that is not in the [`FactCache`], evaluation ends with [`Progress::Needs`] naming the facts;
//! the caller fetches them (each under its own timeout, concurrently), stores the answers in the
//! cache, which lives as long as the command, and evaluates again. Restrictions that already ran
//! are pure, so running them again gives the same answers; only the missing fact is new. State
//! the stage would have changed is left as it was until the evaluation decides.
//!
//! Cheap, side-effect-free requests (DNS) are gathered speculatively: evaluation goes on past a
//! missing DNS answer as if the restriction had said DUNNO, so the lookups of one command that do
//! not depend on each other (several DNSBLs, say) are asked for at once. Requests with effects or
//! cost on the other side (a key in a socketmap, tcp or SQL table, a policy service that
//! greylists) are ordered: one is asked for only when nothing before it is still open, so the
//! keys of one table go out one round at a time, in the order Postfix tries them, and a key
//! Postfix would not have asked (after an earlier key's hit) is never sent.
//!
//! A policy whose restrictions are all in memory never produces a request: its callers take the
//! synchronous path and pay nothing for this.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::policy_service::PolicyService;
use super::Decision;

/// At most this many requests are gathered in one round.
pub const MAX_REQUESTS_PER_ROUND: usize = 16;

/// At most this many rounds per command; an evaluation that still needs facts after them is
/// answered as a temporary failure (a chain that long is a loop or an attack).
pub const MAX_ROUNDS: usize = 32;

/// DNS record types the restrictions ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum RecordType {
    A,
    Aaaa,
    Mx,
    Ns,
    Txt,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Mx => "MX",
            RecordType::Ns => "NS",
            RecordType::Txt => "TXT",
        }
    }
}

/// A fact the engine cannot compute itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum FactRequest {
    /// The records of one type for one absolute name (no search list; no trailing dot).
    Dns { name: Box<str>, rtype: RecordType },
    /// One `check_policy_service` query: the request's `name=value` lines (without the blank
    /// line that ends it) for this service. Never speculative: a policy server may keep state
    /// (greylisting, rate counters), so it is asked only when Postfix would ask it.
    Policy {
        service: Box<PolicyService>,
        request: Box<str>,
        /// How many identical requests this command made before it: Postfix asks again each
        /// time the restriction is reached (a rate counter counts each), so a repeat is a new
        /// fact, not the cached answer.
        repeat: u32,
    },
    /// One key in a table served by another program, named by its spec as written
    /// (`socketmap:inet:127.0.0.1:9000:access`); the key is sent exactly as given.
    Table { table: Box<str>, key: Box<str> },
}

impl FactRequest {
    pub(crate) fn dns(name: impl Into<Box<str>>, rtype: RecordType) -> Self {
        FactRequest::Dns {
            name: name.into(),
            rtype,
        }
    }

    /// True when asking has no effect on the other side and costs little, so that it may be
    /// asked for ahead of need.
    pub fn is_speculative(&self) -> bool {
        matches!(self, FactRequest::Dns { .. })
    }

    pub(crate) fn table(table: &str, key: &str) -> Self {
        FactRequest::Table {
            table: table.into(),
            key: key.into(),
        }
    }

    /// What was asked, for logs and `relayguard check`: `DNS A 2.0.0.127.zen.test`,
    /// `table tcp:127.0.0.1:9001 key "u@local.test"`.
    pub fn describe(&self) -> String {
        match self {
            FactRequest::Dns { name, rtype } => format!("DNS {} {name}", rtype.as_str()),
            FactRequest::Policy {
                service, request, ..
            } => {
                let state = request
                    .lines()
                    .find_map(|l| l.strip_prefix("protocol_state="))
                    .unwrap_or("");
                format!("policy {} {state}", service.endpoint)
            }
            FactRequest::Table { table, key } => format!("table {table} key \"{key}\""),
        }
    }
}

/// One DNS record as the restrictions use it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DnsRecord {
    /// An A or AAAA record.
    Addr(IpAddr),
    /// An MX (with its preference) or NS (preference 0) host name, without the trailing dot.
    Host { preference: u16, name: Box<str> },
    /// One TXT record, its strings joined.
    Text(Box<str>),
}

/// What the DNS said, in the categories Postfix's dns_lookup() returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DnsAnswer {
    /// DNS_OK: at least one record.
    Records(Vec<DnsRecord>),
    /// DNS_NULLMX: an MX record with the root as its host (RFC 7505).
    NullMx,
    /// DNS_NOTFOUND: the name exists but has no record of this type.
    NoData,
    /// The name does not exist (NXDOMAIN); Postfix counts it as DNS_NOTFOUND, like NoData.
    NxDomain,
    /// DNS_FAIL: the server refused or could not parse the question (REFUSED, FORMERR,
    /// NOTIMP, or a name that is not one), and why.
    Refused(Box<str>),
    /// DNS_RETRY: no answer for now (timeout, SERVFAIL, network error), and why.
    TryAgain(Box<str>),
}

impl DnsAnswer {
    /// The records, or none.
    pub fn records(&self) -> &[DnsRecord] {
        match self {
            DnsAnswer::Records(r) => r,
            _ => &[],
        }
    }

    /// The addresses among the records (A and AAAA answers), in answer order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.records().iter().filter_map(|r| match r {
            DnsRecord::Addr(a) => Some(*a),
            _ => None,
        })
    }
}

/// What a policy service said to one request, after all the attempts it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyAnswer {
    /// The `action=` value, possibly empty; `None` when every attempt failed (the engine then
    /// applies the service's default_action).
    pub action: Option<Box<str>>,
    /// Warnings on the way, worded as Postfix logs them (`connect to 127.0.0.1:9998:
    /// Connection refused`, `problem talking to server 127.0.0.1:9998: ...`), for the caller
    /// to log; the engine does not repeat them.
    pub warnings: Vec<Box<str>>,
}

/// What a remote table said about one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum TableResult {
    Found(String),
    NotFound,
    /// No answer for now (server down, timeout, a reply outside the protocol), and why:
    /// Postfix's DICT_ERR_RETRY.
    Failed(String),
}

/// An answer the caller fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum FactAnswer {
    Dns(DnsAnswer),
    Policy(PolicyAnswer),
    Table(TableResult),
}

impl FactAnswer {
    /// True when the lookup did not get an answer (as opposed to a negative one).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            FactAnswer::Dns(DnsAnswer::TryAgain(_) | DnsAnswer::Refused(_))
                | FactAnswer::Policy(PolicyAnswer { action: None, .. })
        )
    }

    /// The answer in one line, for logs and `relayguard check`.
    pub fn describe(&self) -> String {
        match self {
            FactAnswer::Dns(DnsAnswer::Records(records)) => records
                .iter()
                .map(|r| match r {
                    DnsRecord::Addr(a) => a.to_string(),
                    DnsRecord::Host { preference, name } => format!("{preference} {name}"),
                    DnsRecord::Text(t) => format!("\"{t}\""),
                })
                .collect::<Vec<_>>()
                .join(", "),
            FactAnswer::Dns(DnsAnswer::NullMx) => "null MX".into(),
            FactAnswer::Dns(DnsAnswer::NoData) => "no records".into(),
            FactAnswer::Dns(DnsAnswer::NxDomain) => "NXDOMAIN".into(),
            FactAnswer::Dns(DnsAnswer::Refused(why)) => format!("failed: {why}"),
            FactAnswer::Dns(DnsAnswer::TryAgain(why)) => format!("temporary failure: {why}"),
            FactAnswer::Policy(PolicyAnswer {
                action: Some(action),
                ..
            }) => format!("action={action}"),
            FactAnswer::Policy(PolicyAnswer { warnings, .. }) => {
                format!("failed: {}", warnings.last().map_or("no answer", |w| &**w))
            }
            FactAnswer::Table(TableResult::Found(v)) => format!("found \"{v}\""),
            FactAnswer::Table(TableResult::NotFound) => "not found".into(),
            FactAnswer::Table(TableResult::Failed(why)) => format!("temporary failure: {why}"),
        }
    }
}

/// One fetched fact, with what it cost: `elapsed` is measured by the caller, `cached` says the
/// answer came from a cache (the resolver's or a table's) rather than from the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fetched {
    pub request: FactRequest,
    pub answer: FactAnswer,
    pub elapsed: Duration,
    pub cached: bool,
}

/// Facts fetched for the current command, in the order they were fetched.
#[derive(Clone, Debug, Default)]
pub struct FactCache {
    fetched: Vec<Fetched>,
}

impl FactCache {
    pub fn insert(&mut self, fetched: Fetched) {
        self.fetched.retain(|f| f.request != fetched.request);
        self.fetched.push(fetched);
    }

    pub fn get(&self, request: &FactRequest) -> Option<&FactAnswer> {
        self.fetched
            .iter()
            .find(|f| f.request == *request)
            .map(|f| &f.answer)
    }

    pub fn is_empty(&self) -> bool {
        self.fetched.is_empty()
    }

    /// Everything fetched, oldest first.
    pub fn fetched(&self) -> &[Fetched] {
        &self.fetched
    }
}

/// Where an evaluation stands: decided, or waiting for facts.
// Decided is the answer nearly every evaluation gives, returned once by value: boxing it
// would cost an allocation per decision to save a copy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Decided(Decision),
    /// Fetch these (all of them, concurrently), add them to the cache and evaluate again.
    Needs(Vec<FactRequest>),
}
