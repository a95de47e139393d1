//! Decides, for one client at one stage, whether the session goes on or which reply it gets, with
//! Postfix 3.7's restrictions, tables and replies (compatibility_level 3.6 defaults).
//!
//! Pure: no sockets, no async, no clock, no logging. The session gathers the facts (client
//! address and verified name, HELO, login, envelope) and calls [`Policy::evaluate`]; the returned
//! [`Decision`] carries the exact reply and the reason, which the caller logs. Everything is
//! compiled at load ([`Policy::compile`]); table files are read then and never again.
//! Lookups that need the network make an evaluation wait without blocking: see [`pending`].

mod access;
mod address;
mod compile;
mod compile_checks;
mod decision;
mod defaults;

/// Postfix's built-in value of `name` at the compatibility_level relayguard assumes (3.6).
pub fn builtin_default(name: &str) -> Option<&'static str> {
    defaults::default_value(name, (3, 6))
}
pub(crate) mod dnsxl;
mod error;
mod eval;
mod eval_access;
mod eval_ccert;
mod eval_dns;
mod eval_lists;
mod eval_policy;
mod eval_server;
mod eval_unlisted;
mod facts;
pub mod hostname;
mod lookup;
pub mod main_cf;
mod netlist;
mod params;
pub mod pending;
pub mod policy_service;
mod postfix_names;
mod prefix;
mod recipient_maps;
mod restriction;
mod stages;
mod table;
pub use table::exact_entries;
pub(crate) use table::names_remote_table;
mod text;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::smtp::Reply;
pub use access::VoiceKind;
pub use decision::{
    AuthRefusal, AuthRefusalKind, Decision, ListTrace, Note, Outcome, Reason, TransactionState,
};
pub(crate) use defaults::default_value;
pub use error::{Hint, PolicyError, PolicyWarning};
pub use eval_ccert::ClientCert;
pub use eval_policy::PREPEND_NOTE;
pub use facts::{Client, Facts, HostInfo, NameStatus, SessionFacts, Stage};
pub use netlist::{ListMatch, NetList};
pub use params::{expand, references, Origin, ParamMap, ParamValue};
pub use pending::{FactCache, FactRequest, Fetched, Progress};
pub use restriction::refused_restriction;
/// Postfix's readllines(), for the edge's readers of Postfix files (SQL/LDAP `.cf`).
pub(crate) use table::logical_lines;
pub use table::Table;
/// Postfix's list splitting (commas and whitespace outside `{...}`), for the importer.
pub(crate) use text::split_list;

/// Whether Postfix 3.7 knows `name` as a parameter (as opposed to one the admin made up).
pub fn is_postfix_parameter(name: &str) -> bool {
    postfix_names::POSTFIX_NAMES.binary_search(&name).is_ok()
}

use access::Codes;
use address::{literal_addr, Locality, Rewrite};
use eval::{Eval, Verdict};
use restriction::Restriction;

/// Postfix parameter names this module implements (the loader rejects names nobody implements).
pub const PARAMETERS: &[&str] = &[
    "access_map_defer_code",
    "access_map_reject_code",
    "allow_percent_hack",
    "allow_untrusted_routing",
    "compatibility_level",
    "default_rbl_reply",
    "defer_code",
    "inet_interfaces",
    "invalid_hostname_reject_code",
    "maps_rbl_reject_code",
    "mydestination",
    "mydomain",
    // Read for `$myhostname`; the session reads it too.
    "myhostname",
    "mynetworks",
    "mynetworks_style",
    "myorigin",
    "non_fqdn_reject_code",
    "parent_domain_matches_subdomains",
    "proxy_interfaces",
    "queue_directory",
    "rbl_reply_maps",
    "recipient_delimiter",
    "reject_code",
    "reject_tempfail_action",
    "relay_clientcerts",
    "relay_domains",
    "relay_domains_reject_code",
    "smtpd_client_event_limit_exceptions",
    "smtpd_client_restrictions",
    "smtpd_data_restrictions",
    "smtpd_delay_reject",
    "smtpd_end_of_data_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_null_access_lookup_key",
    "smtpd_policy_service_default_action",
    "smtpd_policy_service_max_idle",
    "smtpd_policy_service_max_ttl",
    "smtpd_policy_service_policy_context",
    "smtpd_policy_service_request_limit",
    "smtpd_policy_service_retry_delay",
    "smtpd_policy_service_timeout",
    "smtpd_policy_service_try_limit",
    "smtpd_recipient_restrictions",
    "smtpd_relay_before_recipient_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_restriction_classes",
    "smtpd_sasl_auth_enable",
    "smtpd_sasl_exceptions_networks",
    "smtpd_sender_login_maps",
    "smtpd_sender_restrictions",
    "smtpd_tls_auth_only",
    "soft_bounce",
    "swap_bangpath",
    "unknown_address_reject_code",
    "unknown_address_tempfail_action",
    "unknown_client_reject_code",
    "unknown_helo_hostname_tempfail_action",
    "unknown_hostname_reject_code",
    "virtual_alias_domains",
    // The virtual domains' defaults ($virtual_alias_maps, $virtual_mailbox_maps: a domain is
    // one of them when the table has it as a key), and address validation tables (below).
    // Expanding the addresses in them stays the upstream's job.
    "virtual_alias_maps",
    "virtual_mailbox_domains",
    "virtual_mailbox_maps",
    // reject_unlisted_recipient / reject_unlisted_sender (recipient_maps.rs).
    "alias_maps",
    "canonical_maps",
    "double_bounce_sender",
    "local_recipient_maps",
    "recipient_canonical_maps",
    "relay_recipient_maps",
    "sender_canonical_maps",
    "show_user_unknown_table_name",
    "smtpd_reject_unlisted_recipient",
    "smtpd_reject_unlisted_sender",
    "unknown_local_recipient_reject_code",
    "unknown_relay_recipient_reject_code",
    "unknown_virtual_alias_reject_code",
    "unknown_virtual_mailbox_reject_code",
];

/// The admin's own parameter names: the ones values in `maps` (main.cf and every master.cf
/// service's overrides) refer to with `$name`, `${name}` or `$(name)`, that Postfix does not know.
pub fn user_defined_parameters<'a>(
    maps: impl IntoIterator<Item = &'a ParamMap>,
) -> BTreeSet<String> {
    compile_checks::user_defined(maps)
}

/// The class names `smtpd_restriction_classes` declares (`$`-expanded, lower-cased); each is
/// also a parameter name.
pub fn restriction_class_names(params: &ParamMap) -> Vec<String> {
    let raw = params
        .value("smtpd_restriction_classes")
        .unwrap_or_default();
    let expanded = expand(raw, &|n| params.value(n).map(str::to_owned));
    text::split_list(&expanded)
        .into_iter()
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The restriction lists of the stages.
#[derive(Debug, Default)]
pub(crate) struct StageLists {
    pub(crate) client: Vec<Restriction>,
    pub(crate) helo: Vec<Restriction>,
    pub(crate) sender: Vec<Restriction>,
    pub(crate) relay: Vec<Restriction>,
    pub(crate) recipient: Vec<Restriction>,
    pub(crate) data: Vec<Restriction>,
    pub(crate) end_of_data: Vec<Restriction>,
}

/// A compiled policy for one listener. Immutable; shared by the sessions of that listener.
#[derive(Debug)]
pub struct Policy {
    pub(crate) mynetworks: NetList,
    pub(crate) sasl_exceptions: NetList,
    pub(crate) event_limit_exceptions: NetList,
    pub(crate) mydestination: NetList,
    pub(crate) relay_domains: NetList,
    pub(crate) virtual_alias_domains: NetList,
    pub(crate) virtual_mailbox_domains: NetList,
    /// The addresses of inet_interfaces, then those of proxy_interfaces.
    pub(crate) local_literals: Vec<IpAddr>,
    /// How many of `local_literals` are inet_interfaces' own (permit_inet_interfaces).
    pub(crate) inet_count: usize,
    pub(crate) stages: StageLists,
    pub(crate) classes: Vec<(Box<str>, Vec<Restriction>)>,
    pub(crate) value_lists: FxHashMap<Box<str>, Vec<Restriction>>,
    /// Tables whose HOLD/FILTER/REDIRECT/BCC/PREPEND entries the MTA applies: DUNNO here.
    pub(crate) mta_action_tables: Vec<Box<str>>,
    pub(crate) codes: Codes,
    pub(crate) dns: eval_dns::DnsRules,
    pub(crate) delay_reject: bool,
    pub(crate) relay_before_recipient: bool,
    pub(crate) sasl_auth_enable: bool,
    pub(crate) tls_auth_only: bool,
    pub(crate) soft_bounce: bool,
    pub(crate) allow_untrusted_routing: bool,
    pub(crate) rewrite: Rewrite,
    pub(crate) null_key: Box<str>,
    pub(crate) recipient_delimiter: Box<str>,
    pub(crate) myorigin: Box<str>,
    pub(crate) myhostname: Box<str>,
    pub(crate) access_parent_style: bool,
    pub(crate) sender_login_maps: Option<Arc<Table>>,
    pub(crate) recipient_maps: recipient_maps::RecipientMaps,
    /// smtpd_policy_service_* from main.cf, for restriction lists parsed after load (a policy
    /// server's `action=`).
    pub(crate) policy_defaults: policy_service::PolicySettings,
    pub(crate) warnings: Vec<PolicyWarning>,
    pub(crate) wants_name: bool,
    /// Some restriction may need a fact from the network.
    pub(crate) waits: bool,
    /// The specs of the remote tables any restriction consults, sorted, each once.
    pub(crate) remote_tables: Vec<Box<str>>,
}

impl Locality for Policy {
    fn is_local(&self, domain: &str) -> bool {
        if domain.starts_with('[') {
            return literal_addr(domain).is_some_and(|a| self.local_literals.contains(&a));
        }
        self.mydestination.match_domain(domain).is_match()
    }

    fn is_final(&self, domain: &str) -> bool {
        self.is_local(domain)
            || self.virtual_alias_domains.match_domain(domain).is_match()
            || self.virtual_mailbox_domains.match_domain(domain).is_match()
    }

    fn is_relay(&self, domain: &str) -> bool {
        self.relay_domains.match_domain(domain).is_match()
    }
}

impl Policy {
    /// Compiles the parameters once at load, for a loopback-only host ([`HostInfo::loopback`]).
    /// Every problem is returned, not only the first.
    pub fn compile(params: &ParamMap) -> Result<Policy, Vec<PolicyError>> {
        compile::compile(params, &HostInfo::loopback(), &[], &BTreeSet::new(), &[])
    }

    /// Compiles with the real host's interfaces and name (for `mynetworks_style`,
    /// `inet_interfaces` address literals and `$myhostname`).
    pub fn compile_for_host(
        params: &ParamMap,
        host: &HostInfo,
    ) -> Result<Policy, Vec<PolicyError>> {
        compile::compile(params, host, &[], &BTreeSet::new(), &[])
    }

    /// Like [`Policy::compile_for_host`]; `other_parameters` are names implemented elsewhere in
    /// relayguard (e.g. the limiter's), accepted here without being read.
    pub fn compile_with(
        params: &ParamMap,
        host: &HostInfo,
        other_parameters: &[&str],
    ) -> Result<Policy, Vec<PolicyError>> {
        compile::compile(params, host, other_parameters, &BTreeSet::new(), &[])
    }

    /// Like [`Policy::compile_with`], for one listener of a configuration with several:
    /// `user_defined` are the admin's own parameter names that any part of the configuration
    /// refers to ([`user_defined_parameters`]), so that a name set in `[policy]` and used only
    /// by another listener's overrides is not taken for a typo here. `mta_action_tables` are
    /// the tables (as written) whose HOLD, FILTER, REDIRECT, BCC and PREPEND entries the MTA
    /// behind relayguard applies: they are read as DUNNO, Postfix's own verdict for them,
    /// instead of being refused.
    pub fn compile_in_config(
        params: &ParamMap,
        host: &HostInfo,
        other_parameters: &[&str],
        user_defined: &BTreeSet<String>,
        mta_action_tables: &[String],
    ) -> Result<Policy, Vec<PolicyError>> {
        compile::compile(
            params,
            host,
            other_parameters,
            user_defined,
            mta_action_tables,
        )
    }

    /// Settings that are valid but surely not what the admin meant, for `check-config`.
    pub fn warnings(&self) -> &[PolicyWarning] {
        &self.warnings
    }

    /// True when evaluations need the client's verified name (the session then resolves it).
    pub fn wants_client_name(&self) -> bool {
        self.wants_name
    }

    /// `smtpd_client_event_limit_exceptions` (default `$mynetworks`), for the limiter.
    pub fn event_limit_exceptions(&self) -> &NetList {
        &self.event_limit_exceptions
    }

    /// `mynetworks`, compiled.
    pub fn mynetworks(&self) -> &NetList {
        &self.mynetworks
    }

    pub(crate) fn soften(&self, reply: Reply) -> Reply {
        if !self.soft_bounce || reply.code < 500 {
            return reply;
        }
        Reply {
            code: reply.code - 100,
            enhanced: reply.enhanced.map(|mut e| {
                e.class = 4;
                e
            }),
            lines: reply.lines,
        }
    }

    /// Decides one stage. Called at connect, HELO/EHLO, MAIL, each RCPT (and VRFY), DATA and end
    /// of data; with `smtpd_delay_reject = yes` the engine itself defers earlier rejects to RCPT.
    ///
    /// What the session does with the answer, as smtpd does:
    /// - Keep one [`TransactionState`] for the whole session.
    /// - A rejected HELO/EHLO is not recorded: later facts carry `helo: None`.
    /// - A rejected MAIL opens no transaction (RCPT then gets `503 5.5.1 Error: need MAIL command`).
    /// - After a rejected connect (`smtpd_delay_reject = no`), every command but QUIT gets
    ///   [`TransactionState::access_denied`]; the engine also answers it for the stages it sees.
    /// - A 421/521 reply closes the connection ([`Reply::closes_connection`]).
    /// - `Decision::notes` are logged as `ACTION: STAGE from NAME[ADDR]: TEXT; from=<..> to=<..> ...`.
    /// - `Outcome::Accept` at RCPT still needs the upstream's own 250.
    ///
    /// `answers` holds the facts fetched so far for this command (empty at first); when the
    /// evaluation needs more, the state is left untouched and [`Progress::Needs`] says what to
    /// fetch (see [`pending`]). A policy that [`Policy::can_wait`] false never needs any.
    pub fn decide(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        state: &mut TransactionState,
        answers: &FactCache,
    ) -> Progress {
        self.run(stage, facts, state, answers, false).0
    }

    /// [`Policy::decide`] for callers that cannot fetch anything: a fact the policy needs is
    /// answered as a temporary failure (`451 4.3.0`), never as a permit.
    pub fn evaluate(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        state: &mut TransactionState,
    ) -> Decision {
        match self.decide(stage, facts, state, &FactCache::default()) {
            Progress::Decided(d) => d,
            Progress::Needs(needs) => Decision::unfetched(&needs),
        }
    }

    /// Like [`Policy::decide`], and also returns what each restriction list said.
    pub fn explain(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        state: &mut TransactionState,
        answers: &FactCache,
    ) -> (Progress, Vec<ListTrace>) {
        self.run(stage, facts, state, answers, true)
    }

    /// [`Policy::explain`] to the end, fetching what it needs with `fetch` (which answers every
    /// request it is given, failures included), for callers without an event loop such as
    /// `relayguard check`. Returns the facts fetched too.
    pub fn explain_fetching(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        state: &mut TransactionState,
        fetch: &mut dyn FnMut(&[FactRequest]) -> Vec<Fetched>,
    ) -> (Decision, Vec<ListTrace>, FactCache) {
        let mut answers = FactCache::default();
        let mut needs = Vec::new();
        for _ in 0..pending::MAX_ROUNDS {
            match self.explain(stage, facts, state, &answers) {
                (Progress::Decided(d), lists) => return (d, lists, answers),
                (Progress::Needs(more), _) => needs = more,
            }
            for fetched in fetch(&needs) {
                answers.insert(fetched);
            }
            if needs.iter().any(|n| answers.get(n).is_none()) {
                break;
            }
        }
        (Decision::unfetched(&needs), Vec::new(), answers)
    }

    /// True when some restriction may need a fact from the network ([`pending`]).
    pub fn can_wait(&self) -> bool {
        self.waits
    }

    /// The remote tables (socketmap, tcp) this policy asks keys of, by the spec its
    /// [`FactRequest::Table`] requests name: the edge opens one backend for each.
    pub fn remote_tables(&self) -> Vec<&str> {
        self.remote_tables.iter().map(|s| &**s).collect()
    }

    fn run(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        state: &mut TransactionState,
        answers: &FactCache,
        explain: bool,
    ) -> (Progress, Vec<ListTrace>) {
        // Only a policy that can wait pays for keeping the state to put back.
        let before = self.waits.then(|| state.clone());
        let mut ev = Eval::new(self, stage, facts, answers, explain);
        let verdict = self.stage(stage, &mut ev, state);
        let trace = ev.trace.take().unwrap_or_default();
        let needs = ev.needs.take();
        if !needs.is_empty() {
            if let Some(before) = before {
                *state = before;
            }
            return (Progress::Needs(needs), trace);
        }
        let decision = match verdict {
            Verdict::Reject(reply, reason) => Decision {
                outcome: Outcome::Reject(reply),
                reason: Some(reason),
                notes: ev.notes,
            },
            Verdict::Ok(reason) => Decision {
                outcome: Outcome::Accept,
                reason: Some(reason),
                notes: ev.notes,
            },
            Verdict::Dunno | Verdict::Pending => Decision {
                outcome: Outcome::Accept,
                reason: None,
                notes: ev.notes,
            },
        };
        (Progress::Decided(decision), trace)
    }

    /// Whether EHLO lists AUTH for this client (before the upstream's own offer is considered).
    pub fn offers_auth(&self, facts: &Facts<'_>) -> bool {
        self.check_auth(facts).is_ok()
    }

    /// The SASL gate for an AUTH command: `Err` means it is answered here and never reaches the
    /// upstream.
    pub fn check_auth(&self, facts: &Facts<'_>) -> Result<(), Box<AuthRefusal>> {
        let refuse = |kind: AuthRefusalKind,
                      parameter: &'static str,
                      key: Option<String>,
                      value: Option<String>| {
            Err(Box::new(AuthRefusal {
                reply: Reply::new(503, (5, 5, 1), "Error: authentication not enabled"),
                reason: Reason {
                    parameter: parameter.into(),
                    restriction: parameter.into(),
                    key,
                    value,
                    ..Reason::default()
                },
                kind,
            }))
        };
        if !self.sasl_auth_enable {
            return refuse(
                AuthRefusalKind::NotEnabled,
                "smtpd_sasl_auth_enable",
                None,
                Some("no".into()),
            );
        }
        if self.tls_auth_only && !facts.tls {
            return refuse(
                AuthRefusalKind::TlsRequired,
                "smtpd_tls_auth_only",
                None,
                Some("yes".into()),
            );
        }
        if let ListMatch::Matched(i) = self
            .sasl_exceptions
            .match_client(&facts.client.name, facts.client.addr)
        {
            return refuse(
                AuthRefusalKind::ExceptedNetwork,
                "smtpd_sasl_exceptions_networks",
                Some(facts.client.addr.to_canonical().to_string()),
                Some(self.sasl_exceptions.entry_text(i).to_string()),
            );
        }
        Ok(())
    }
}
