//! Decides, for one client at one stage, whether the session goes on or which reply it gets.
//!
//! Pure: no sockets, no async, no clock, no logging. The session gathers the facts (client
//! address and verified name, HELO, login, envelope) and calls [`Policy::evaluate`]; the returned
//! [`Decision`] carries the exact reply and the reason, which the caller logs.
//!
//! This file holds the interface the session relies on and a minimal built-in policy
//! ("loopback may relay, others may send to local domains"); the Postfix-compatible engine
//! replaces the internals behind the same interface.

pub mod params;

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::smtp::Reply;
pub use params::{Origin, ParamMap, ParamValue};

/// Postfix parameter names this module implements (the loader rejects names nobody implements).
pub const PARAMETERS: &[&str] = &[
    "mynetworks",
    "mydestination",
    "mydomain",
    "smtpd_sasl_auth_enable",
    "smtpd_tls_auth_only",
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
    /// The HELO/EHLO argument, once given.
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
}

/// The SMTP stage a decision is for; Postfix's reject log lines name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reason {
    /// The parameter whose list was being evaluated, e.g. `smtpd_relay_restrictions`.
    pub parameter: String,
    /// The restriction that decided, e.g. `reject_unauth_destination`.
    pub restriction: String,
    /// For table lookups: the table, the key that matched and its value.
    pub table: Option<String>,
    pub key: Option<String>,
    pub value: Option<String>,
}

/// A log-only event produced during evaluation (`warn`, `reject_warning`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Postfix's action word: `warn`, `reject_warning`, `info`.
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

/// State that lives for one mail transaction (MAIL to end of DATA or RSET), such as a pending
/// `defer_if_permit`. The session keeps one and resets it with each new MAIL.
#[derive(Clone, Debug, Default)]
pub struct TransactionState {
    _private: (),
}

/// Why AUTH is not available to this client; `reply` is what an AUTH command gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRefusal {
    pub reply: Reply,
    pub reason: Reason,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}:{}: bad value for `{name}`: {why}", origin.file.display(), origin.line)]
    BadValue {
        name: String,
        origin: Origin,
        why: String,
    },
}

/// A compiled policy for one listener. Immutable; shared by the sessions of that listener.
#[derive(Clone, Debug)]
pub struct Policy {
    mynetworks: Vec<IpNetwork>,
    local_domains: Vec<String>,
    sasl_auth_enable: bool,
    tls_auth_only: bool,
}

impl Policy {
    /// Compiles the parameters once at load. Every problem is returned, not only the first.
    pub fn compile(params: &ParamMap) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut policy = Policy::builtin_default();
        if let Some(v) = params.get("mynetworks") {
            policy.mynetworks.clear();
            for item in v
                .value
                .split([',', ' ', '\t', '\n'])
                .filter(|s| !s.is_empty())
            {
                let item = item
                    .trim_start_matches('[')
                    .replace("]/", "/")
                    .replace(']', "");
                match item.parse::<IpNetwork>() {
                    Ok(n) => policy.mynetworks.push(n),
                    Err(e) => errors.push(PolicyError::BadValue {
                        name: "mynetworks".into(),
                        origin: v.origin.clone(),
                        why: format!("{item}: {e}"),
                    }),
                }
            }
        }
        if let Some(v) = params.value("mydestination") {
            policy.local_domains = v
                .split([',', ' ', '\t', '\n'])
                .filter(|s| !s.is_empty())
                .map(|s| s.to_ascii_lowercase())
                .collect();
        }
        policy.sasl_auth_enable = params.value("smtpd_sasl_auth_enable").is_some_and(is_yes);
        policy.tls_auth_only = params.value("smtpd_tls_auth_only").is_some_and(is_yes);
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// Loopback may relay; everyone else may send only to `localhost`.
    pub fn builtin_default() -> Policy {
        Policy {
            mynetworks: vec![
                IpNetwork::V4(
                    ipnetwork::Ipv4Network::new([127, 0, 0, 0].into(), 8)
                        .unwrap_or_else(|_| unreachable!()),
                ),
                IpNetwork::V6(
                    ipnetwork::Ipv6Network::new(std::net::Ipv6Addr::LOCALHOST, 128)
                        .unwrap_or_else(|_| unreachable!()),
                ),
            ],
            local_domains: vec!["localhost".into()],
            sasl_auth_enable: false,
            tls_auth_only: false,
        }
    }

    /// True when evaluations need the client's verified name (the session then resolves it).
    pub fn wants_client_name(&self) -> bool {
        false
    }

    /// Decides one stage. Called at connect, HELO/EHLO, MAIL, each RCPT (and VRFY), DATA and end
    /// of data; with `smtpd_delay_reject = yes` the engine itself defers earlier rejects to RCPT.
    pub fn evaluate(
        &self,
        stage: Stage,
        facts: &Facts<'_>,
        _state: &mut TransactionState,
    ) -> Decision {
        if !matches!(stage, Stage::Rcpt | Stage::Vrfy) {
            return Decision::accept();
        }
        let Some(rcpt) = facts.recipient else {
            return Decision::accept();
        };
        if self
            .mynetworks
            .iter()
            .any(|n| n.contains(facts.client.addr))
        {
            return Decision::accept();
        }
        if facts.login.is_some() {
            return Decision::accept();
        }
        let domain = rcpt
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase());
        if domain
            .as_deref()
            .is_some_and(|d| self.local_domains.iter().any(|l| l == d))
        {
            return Decision::accept();
        }
        Decision::reject(
            Reply::new(454, (4, 7, 1), format!("<{rcpt}>: Relay access denied")),
            Reason {
                parameter: "smtpd_relay_restrictions".into(),
                restriction: "reject_unauth_destination".into(),
                ..Reason::default()
            },
        )
    }

    /// Whether EHLO lists AUTH for this client (before the upstream's own offer is considered).
    pub fn offers_auth(&self, facts: &Facts<'_>) -> bool {
        self.sasl_auth_enable && (facts.tls || !self.tls_auth_only)
    }

    /// The SASL gate for an AUTH command: `Err` means it is answered here and never reaches the
    /// upstream.
    pub fn check_auth(&self, facts: &Facts<'_>) -> Result<(), Box<AuthRefusal>> {
        if self.offers_auth(facts) {
            Ok(())
        } else {
            Err(Box::new(AuthRefusal {
                reply: Reply::new(503, (5, 5, 1), "Error: authentication not enabled"),
                reason: Reason {
                    parameter: "smtpd_sasl_auth_enable".into(),
                    restriction: "smtpd_sasl_auth_enable".into(),
                    ..Reason::default()
                },
            }))
        }
    }
}

fn is_yes(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("yes")
}
