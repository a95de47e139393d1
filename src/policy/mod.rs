//! Decides, for one client at one stage, whether the session goes on or which reply it gets, with
//! Postfix 3.7's restrictions, tables and replies (compatibility_level 3.6 defaults).
//!
//! Pure: no sockets, no async, no clock, no logging. The session gathers the facts (client
//! address and verified name, HELO, login, envelope) and calls [`Policy::evaluate`]; the returned
//! [`Decision`] carries the exact reply and the reason, which the caller logs. Everything is
//! compiled at load ([`Policy::compile`]); table files are read then and never again.
//! How lookups that need the network will fit is described in [`pending`].

mod access;
mod address;
mod compile;
mod compile_checks;
mod error;
mod eval;
mod lookup;
pub mod main_cf;
mod netlist;
mod params;
pub mod pending;
mod postfix_names;
mod prefix;
mod restriction;
mod table;
mod text;
pub mod trace;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::smtp::Reply;
pub use access::VoiceKind;
pub use error::{Hint, PolicyError, PolicyWarning};
pub use netlist::{ListMatch, NetList};
pub use params::{expand, Origin, ParamMap, ParamValue};
pub use table::Table;

use access::Codes;
use address::{literal_addr, Locality, Rewrite};
use eval::{Armed, Eval, Verdict};
use restriction::Restriction;

/// Postfix parameter names this module implements (the loader rejects names nobody implements).
pub const PARAMETERS: &[&str] = &[
    "access_map_defer_code",
    "access_map_reject_code",
    "allow_percent_hack",
    "allow_untrusted_routing",
    "compatibility_level",
    "defer_code",
    "inet_interfaces",
    "invalid_hostname_reject_code",
    "mydestination",
    "mydomain",
    "mynetworks",
    "mynetworks_style",
    "myorigin",
    "non_fqdn_reject_code",
    "parent_domain_matches_subdomains",
    "proxy_interfaces",
    "recipient_delimiter",
    "reject_code",
    "relay_domains",
    "relay_domains_reject_code",
    "smtpd_client_event_limit_exceptions",
    "smtpd_client_restrictions",
    "smtpd_data_restrictions",
    "smtpd_delay_reject",
    "smtpd_end_of_data_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_null_access_lookup_key",
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
    "virtual_alias_domains",
    "virtual_mailbox_domains",
];

/// Names the session (not this module) implements; `compile` accepts them and may read some
/// (`myhostname` for `$myhostname`).
pub const SESSION_PARAMETERS: &[&str] = &[
    "myhostname",
    "smtpd_banner",
    "mail_name",
    "message_size_limit",
    "smtpd_timeout",
    "smtpd_recipient_limit",
    "smtpd_helo_required",
    "disable_vrfy_command",
    "smtpd_tls_security_level",
    "line_length_limit",
    "smtpd_forbid_bare_newline",
];

/// The client as the policy sees it. `name` is the forward-confirmed name or `unknown`;
/// `reverse_name` the PTR name or `unknown` (Postfix's client_name / reverse_client_name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    pub port: u16,
    pub name: String,
    pub reverse_name: String,
}

impl Client {
    /// A client whose name is not (yet) known: `unknown[ADDR]` in replies and logs.
    pub fn unnamed(addr: IpAddr, port: u16) -> Self {
        Self {
            addr,
            port,
            name: "unknown".into(),
            reverse_name: "unknown".into(),
        }
    }
}

/// What is known about the session when a decision is asked for.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub client: &'a Client,
    /// The HELO/EHLO argument, once given (and not rejected).
    pub helo: Option<&'a str>,
    /// True after EHLO (Postfix's `proto=ESMTP`).
    pub esmtp: bool,
    /// The SASL login after the upstream answered 235.
    pub login: Option<&'a str>,
    pub tls: bool,
    /// MAIL FROM address without brackets; `Some("")` for the null sender.
    pub sender: Option<&'a str>,
    /// The RCPT TO (or VRFY) address being decided, without brackets.
    pub recipient: Option<&'a str>,
    /// The listener's name, for logs and reasons.
    pub listener: &'a str,
    /// The session saw the client send commands ahead of replies where that is not allowed
    /// (smtpd_flag_ill_pipelining); sticky for the session. Used by reject_unauth_pipelining.
    pub improper_pipelining: bool,
}

/// The SMTP stage a decision is for; Postfix's reject log lines name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Vrfy,
    Data,
    EndOfData,
}

impl Stage {
    /// The stage word in Postfix log lines (`reject: RCPT from ...`).
    pub fn log_word(self) -> &'static str {
        match self {
            Stage::Connect => "CONNECT",
            Stage::Helo => "HELO",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Vrfy => "VRFY",
            Stage::Data => "DATA",
            Stage::EndOfData => "END-OF-MESSAGE",
        }
    }
}

/// Which rule decided, for logs and for `relayguard check`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reason {
    /// The parameter whose list was being evaluated, e.g. `smtpd_relay_restrictions`.
    pub parameter: String,
    /// The restriction that decided, e.g. `reject_unauth_destination`.
    pub restriction: String,
    /// For table lookups: the table, the key that matched and its value. For lists such as
    /// mynetworks: the list name, the client address and the entry that matched.
    pub table: Option<String>,
    pub key: Option<String>,
    pub value: Option<String>,
    /// When a table value or a class decided through inner restrictions: those, outermost first
    /// (e.g. `["local_only", "reject"]`).
    pub via: Vec<String>,
}

impl Reason {
    /// One-line form: `restriction table key=value`.
    pub fn describe(&self) -> String {
        let mut s = self.restriction.clone();
        if let (Some(k), Some(v)) = (&self.key, &self.value) {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }
}

/// A log-only event produced during evaluation (`warn`, `reject_warning`, `info`, `warning`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// Postfix's action word: `warn`, `reject_warning`, `info`; `warning` for a configuration
    /// problem found at run time.
    pub action: &'static str,
    /// The text Postfix logs after `STAGE from NAME[ADDR]: `.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go on: the command proceeds (to the upstream, or to the next stage).
    Accept,
    /// Answer with this reply instead. A 421/521 reply also closes the session.
    Reject(Reply),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub notes: Vec<Note>,
}

impl Decision {
    pub fn accept() -> Self {
        Self {
            outcome: Outcome::Accept,
            reason: None,
            notes: Vec::new(),
        }
    }

    pub fn reject(reply: Reply, reason: Reason) -> Self {
        Self {
            outcome: Outcome::Reject(reply),
            reason: Some(reason),
            notes: Vec::new(),
        }
    }
}

/// What one restriction list said, for explanations.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListTrace {
    pub parameter: String,
    /// `permit`, `reject` or `dunno` (no decision: the list passes).
    pub verdict: &'static str,
    pub reply: Option<String>,
    pub reason: Option<Reason>,
}

impl ListTrace {
    pub(crate) fn new(param: &str, v: &Verdict) -> Self {
        let (verdict, reply, reason) = match v {
            Verdict::Ok(r) => ("permit", None, Some(r.clone())),
            Verdict::Dunno => ("dunno", None, None),
            Verdict::Reject(reply, r) => ("reject", Some(reply.to_string()), Some(r.clone())),
        };
        ListTrace {
            parameter: param.to_string(),
            verdict,
            reply,
            reason,
        }
    }
}

/// Per-session policy state: what earlier stages left behind with `smtpd_delay_reject = no`
/// (a client reject, armed `defer_if_permit`s). Keep **one per session**, from connect to end;
/// the engine itself replaces the parts each stage owns, so nothing needs resetting at MAIL/RSET.
#[derive(Clone, Debug, Default)]
pub struct TransactionState {
    /// `NAME[ADDR]` when the client was rejected at connect: every later command gets
    /// `503 5.7.0 Error: access denied for NAME[ADDR]` (except QUIT).
    client_rejected: Option<String>,
    after_client: Option<Armed>,
    after_helo: Option<Armed>,
    after_sender: Option<Armed>,
}

impl TransactionState {
    /// The reply for any command after a connect-stage reject with `smtpd_delay_reject = no`.
    pub fn access_denied(&self) -> Option<Reply> {
        self.client_rejected
            .as_ref()
            .map(|n| Reply::new(503, (5, 7, 0), format!("Error: access denied for {n}")))
    }
}

/// Why AUTH is not available to this client; `reply` is what an AUTH command gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRefusal {
    pub reply: Reply,
    pub reason: Reason,
    pub kind: AuthRefusalKind,
}

/// The distinct reasons an AUTH command is refused before it reaches the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AuthRefusalKind {
    /// `smtpd_sasl_auth_enable = no`.
    NotEnabled,
    /// `smtpd_tls_auth_only = yes` and no TLS yet.
    TlsRequired,
    /// The client matches `smtpd_sasl_exceptions_networks`. Postfix only hides AUTH from such
    /// clients; relayguard also refuses the command, so the upstream never sees it. Log this
    /// apart from a failed password.
    ExceptedNetwork,
}

/// The host relayguard runs on, as the engine needs it for `mynetworks_style`, `inet_interfaces`
/// and `$myhostname`; supplied by the caller so the engine stays pure.
#[derive(Clone, Debug, Default)]
pub struct HostInfo {
    /// Interface addresses with their prefix lengths (e.g. `127.0.0.1/8`, `192.0.2.2/24`).
    pub interfaces: Vec<(IpAddr, u8)>,
    /// The system host name, used when `myhostname` is not set.
    pub hostname: Option<String>,
}

impl HostInfo {
    /// Loopback only: `127.0.0.1/8` and `::1/128`, host name `localhost`.
    pub fn loopback() -> Self {
        HostInfo {
            interfaces: vec![
                (IpAddr::V4([127, 0, 0, 1].into()), 8),
                (IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 128),
            ],
            hostname: Some("localhost".into()),
        }
    }
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
    pub(crate) local_literals: Vec<IpAddr>,
    pub(crate) stages: StageLists,
    pub(crate) classes: Vec<(Box<str>, Vec<Restriction>)>,
    pub(crate) value_lists: FxHashMap<Box<str>, Vec<Restriction>>,
    pub(crate) codes: Codes,
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
    pub(crate) warnings: Vec<PolicyWarning>,
    pub(crate) wants_name: bool,
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
        compile::compile(params, &HostInfo::loopback(), &[])
    }

    /// Compiles with the real host's interfaces and name (for `mynetworks_style`,
    /// `inet_interfaces` address literals and `$myhostname`).
    pub fn compile_for_host(
        params: &ParamMap,
        host: &HostInfo,
    ) -> Result<Policy, Vec<PolicyError>> {
        compile::compile(params, host, &[])
    }

    /// Like [`Policy::compile_for_host`]; `other_parameters` are names implemented elsewhere in
    /// relayguard (e.g. the limiter's), accepted here without being read.
    pub fn compile_with(
        params: &ParamMap,
        host: &HostInfo,
        other_parameters: &[&str],
    ) -> Result<Policy, Vec<PolicyError>> {
        compile::compile(params, host, other_parameters)
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
    pub fn evaluate(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        state: &mut TransactionState,
    ) -> Decision {
        self.run(stage, facts, state, false).0
    }

    /// Like [`Policy::evaluate`], and also returns what each restriction list said.
    pub fn explain(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        state: &mut TransactionState,
    ) -> (Decision, Vec<ListTrace>) {
        self.run(stage, facts, state, true)
    }

    fn run(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        state: &mut TransactionState,
        explain: bool,
    ) -> (Decision, Vec<ListTrace>) {
        let mut ev = Eval::new(self, facts, explain);
        let verdict = self.stage(stage, &mut ev, state);
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
            Verdict::Dunno => Decision {
                outcome: Outcome::Accept,
                reason: None,
                notes: ev.notes,
            },
        };
        (decision, ev.trace.unwrap_or_default())
    }

    fn stage(&self, stage: Stage, ev: &mut Eval<'_, '_>, state: &mut TransactionState) -> Verdict {
        if let (Some(reply), false) = (state.access_denied(), stage == Stage::Connect) {
            return Verdict::Reject(
                reply,
                Reason {
                    parameter: "smtpd_client_restrictions".into(),
                    restriction: "smtpd_delay_reject=no".into(),
                    ..Reason::default()
                },
            );
        }
        let l = &self.stages;
        match stage {
            Stage::Connect => {
                if self.delay_reject {
                    return Verdict::Dunno;
                }
                ev.dip = None;
                let v = ev.run_list("smtpd_client_restrictions", &l.client, VoiceKind::Client);
                state.after_client = ev.dip.clone();
                state.after_helo = ev.dip.clone();
                state.after_sender = ev.dip.clone();
                if let Verdict::Reject(..) = v {
                    state.client_rejected = Some(format!("{}[{}]", ev.facts.client.name, ev.addr));
                }
                v
            }
            Stage::Helo => {
                if self.delay_reject || ev.facts.helo.is_none() {
                    return Verdict::Dunno;
                }
                ev.dip = state.after_client.clone();
                let v = ev.run_list("smtpd_helo_restrictions", &l.helo, VoiceKind::Helo);
                if !matches!(v, Verdict::Reject(..)) {
                    state.after_helo = ev.dip.clone();
                    state.after_sender = ev.dip.clone();
                }
                v
            }
            Stage::Mail => {
                if self.delay_reject {
                    return Verdict::Dunno;
                }
                ev.dip = state.after_helo.clone();
                let v = ev.run_list("smtpd_sender_restrictions", &l.sender, VoiceKind::Sender);
                if !matches!(v, Verdict::Reject(..)) {
                    state.after_sender = ev.dip.clone();
                }
                v
            }
            Stage::Rcpt | Stage::Vrfy => self.rcpt_stage(ev, state),
            Stage::Data => {
                ev.dip = None;
                let v = ev.run_list("smtpd_data_restrictions", &l.data, VoiceKind::Data);
                self.finish_with_dip(ev, v)
            }
            Stage::EndOfData => {
                ev.dip = None;
                let v = ev.run_list(
                    "smtpd_end_of_data_restrictions",
                    &l.end_of_data,
                    VoiceKind::EndOfData,
                );
                self.finish_with_dip(ev, v)
            }
        }
    }

    fn rcpt_stage(&self, ev: &mut Eval<'_, '_>, state: &TransactionState) -> Verdict {
        let l = &self.stages;
        // `RCPT TO:<postmaster>` (bare, any case) is never checked (smtpd_check_rcpt).
        if ev
            .facts
            .recipient
            .is_some_and(|r| r.eq_ignore_ascii_case("postmaster"))
        {
            return Verdict::Ok(Reason {
                parameter: "smtpd_recipient_restrictions".into(),
                restriction: "postmaster".into(),
                key: Some("postmaster".into()),
                ..Reason::default()
            });
        }
        if self.delay_reject {
            ev.dip = None;
            let v = ev.run_list("smtpd_client_restrictions", &l.client, VoiceKind::Client);
            if let Verdict::Reject(..) = v {
                return v;
            }
            if ev.facts.helo.is_some() {
                let v = ev.run_list("smtpd_helo_restrictions", &l.helo, VoiceKind::Helo);
                if let Verdict::Reject(..) = v {
                    return v;
                }
            }
            if ev.facts.sender.is_some() {
                let v = ev.run_list("smtpd_sender_restrictions", &l.sender, VoiceKind::Sender);
                if let Verdict::Reject(..) = v {
                    return v;
                }
            }
        } else {
            ev.dip = state.after_sender.clone();
        }
        let relay: (&'static str, &[Restriction]) = ("smtpd_relay_restrictions", &l.relay);
        let rcpt: (&'static str, &[Restriction]) = ("smtpd_recipient_restrictions", &l.recipient);
        let order = if self.relay_before_recipient {
            [relay, rcpt]
        } else {
            [rcpt, relay]
        };
        let mut permit: Option<Reason> = None;
        for (param, list) in order {
            match ev.run_list(param, list, VoiceKind::Recipient) {
                v @ Verdict::Reject(..) => return v,
                Verdict::Ok(r) => {
                    permit.get_or_insert(r);
                }
                Verdict::Dunno => {}
            }
        }
        let v = permit.map(Verdict::Ok).unwrap_or(Verdict::Dunno);
        self.finish_with_dip(ev, v)
    }

    /// An armed defer_if_permit turns a final permit (or no decision) into its deferral.
    fn finish_with_dip(&self, ev: &mut Eval<'_, '_>, v: Verdict) -> Verdict {
        match (v, ev.dip.take()) {
            (v @ Verdict::Reject(..), _) => v,
            (_, Some(armed)) => Verdict::Reject(self.soften(armed.reply), armed.reason),
            (v, None) => v,
        }
    }

    /// Whether EHLO lists AUTH for this client (before the upstream's own offer is considered).
    pub fn offers_auth(&self, facts: &Facts<'_>) -> bool {
        self.check_auth(facts).is_ok()
    }

    /// The SASL gate for an AUTH command: `Err` means it is answered here and never reaches the
    /// upstream.
    pub fn check_auth(&self, facts: &Facts<'_>) -> Result<(), Box<AuthRefusal>> {
        let refuse =
            |kind: AuthRefusalKind, parameter: &str, key: Option<String>, value: Option<String>| {
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
