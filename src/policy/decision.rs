//! What the engine answers: a decision with its reply, the reason, log-only notes, and the state
//! a session carries between stages.

use std::borrow::Cow;

use crate::smtp::Reply;

use super::eval::{Armed, Verdict};

/// Which rule decided, for logs and for `relayguard check`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reason {
    /// The parameter whose list was being evaluated, e.g. `smtpd_relay_restrictions`.
    /// Borrowed where the name is a constant, as most are: a reason is built for every
    /// decision, accepted ones included, and these would otherwise cost two allocations each.
    pub parameter: Cow<'static, str>,
    /// The restriction that decided, e.g. `reject_unauth_destination`.
    pub restriction: Cow<'static, str>,
    /// For table lookups: the table, the key that matched and its value. For lists such as
    /// mynetworks: the list name, the client address and the entry that matched.
    pub table: Option<String>,
    pub key: Option<String>,
    pub value: Option<String>,
    /// For an access table's match: the table entry's key as written (a cidr network, a
    /// regexp), for metrics; `key` may be the client's own value. Not serialized: `relayguard
    /// check` prints what it always printed.
    #[serde(skip)]
    pub entry: Option<Box<str>>,
    /// When a table value or a class decided through inner restrictions: those, outermost first
    /// (e.g. `["local_only", "reject"]`).
    pub via: Vec<String>,
}

impl Reason {
    /// One-line form: `restriction table key=value`.
    pub fn describe(&self) -> String {
        let mut s = self.restriction.to_string();
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

    /// The answer when facts the policy needs could not be fetched at all (no resolver, too
    /// many rounds): Postfix's temporary lookup failure, never a permit.
    pub fn unfetched(needs: &[super::FactRequest]) -> Self {
        let what = needs
            .iter()
            .map(super::FactRequest::describe)
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            outcome: Outcome::Reject(Reply::new(451, (4, 3, 0), "Temporary lookup failure")),
            reason: Some(Reason {
                restriction: "lookup".into(),
                key: Some(what.clone()),
                value: Some("not fetched".into()),
                ..Reason::default()
            }),
            notes: vec![Note {
                action: "warning",
                text: format!("cannot fetch {what}"),
            }],
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
            Verdict::Pending => ("pending", None, None),
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
    pub(crate) client_rejected: Option<String>,
    pub(crate) after_client: Option<Armed>,
    pub(crate) after_helo: Option<Armed>,
    pub(crate) after_sender: Option<Armed>,
}

impl TransactionState {
    /// Nothing carried over: the state a new session starts with. Lets a caller keep the
    /// state only while it holds something.
    pub fn is_clear(&self) -> bool {
        self.client_rejected.is_none()
            && self.after_client.is_none()
            && self.after_helo.is_none()
            && self.after_sender.is_none()
    }

    /// STARTTLS made the session forget its HELO and transaction (RFC 3207 4.2): what their
    /// stages armed goes with them, while what the client's own stage left stays, since TLS
    /// does not change the client.
    pub fn forget_helo(&mut self) {
        self.after_helo = self.after_client.clone();
        self.after_sender = self.after_client.clone();
    }

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
