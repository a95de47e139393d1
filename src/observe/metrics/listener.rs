//! One listener's hot-path handle and the label sets of every family: what a session
//! increments, resolved once per session so a command costs one atomic add.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::metrics;

/// The Postfix counter names `session::dispatch` gives a command line, plus `unknown`.
pub(super) const VERBS: [&str; 14] = [
    "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy",
    "quit", "etrn", "unknown",
];

/// A listener's name as a label value: an `Arc`, so cloning a label set copies no text.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Name(pub(super) Arc<str>);

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ListenerLabel {
    pub(super) listener: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CommandLabels {
    pub(super) listener: Name,
    pub(super) verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RejectionLabels {
    pub(super) listener: Name,
    pub(super) stage: String,
    pub(super) parameter: String,
    pub(super) restriction: String,
    /// The table as written (`cidr:/etc/relayguard/clients`), empty when none decided.
    pub(super) table: String,
    pub(super) table_key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AuthLabels {
    pub(super) listener: Name,
    pub(super) result: &'static str,
    /// The parameter that refused AUTH before any credential was read; empty otherwise.
    pub(super) gate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LimitLabels {
    pub(super) listener: Name,
    pub(super) limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BanLabels {
    pub(super) listener: Name,
    pub(super) event: &'static str,
    pub(super) trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub(super) result: &'static str,
}

/// How an AUTH ended, as the `result` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// The upstream said 235.
    Success,
    /// The upstream (or the mechanism filter) refused the credentials.
    Failure,
    /// The upstream could not decide now (a 4xx: its auth service is down).
    TemporaryFailure,
    /// The policy's network gate refused AUTH before any credential was read.
    Refused,
}

/// What happened with a ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanEvent {
    Imposed,
    /// A banned client's connection refused before the greeting.
    RefusedAtConnect,
    /// A command refused because a ban was imposed earlier in the session.
    RefusedCommand,
}

impl BanEvent {
    fn label(self) -> &'static str {
        match self {
            BanEvent::Imposed => "imposed",
            BanEvent::RefusedAtConnect => "refused_at_connect",
            BanEvent::RefusedCommand => "refused_command",
        }
    }
}

/// One listener's hot-path counters, resolved once per session.
#[derive(Debug)]
pub struct ListenerMetrics {
    pub(super) name: Name,
    pub(super) sessions_opened: Counter,
    pub(super) sessions_current: Gauge,
    pub(super) commands: [Counter; VERBS.len()],
    pub(super) messages: Counter,
    pub(super) bytes: Counter,
}

/// Takes a session off the listener's current gauge when dropped.
#[derive(Debug)]
pub struct OpenSession(Arc<ListenerMetrics>);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.sessions_current.dec();
    }
}

impl ListenerMetrics {
    /// Counts a session opened; the guard counts it closed.
    pub fn session_opened(self: &Arc<Self>) -> OpenSession {
        self.sessions_opened.inc();
        self.sessions_current.inc();
        OpenSession(self.clone())
    }

    /// Counts one command line by its Postfix counter name (`session::dispatch`'s verbs).
    pub fn command(&self, verb: &str) {
        let i = VERBS
            .iter()
            .position(|v| *v == verb)
            .unwrap_or(VERBS.len() - 1);
        if let Some(c) = self.commands.get(i) {
            c.inc();
        }
    }

    /// A message the upstream accepted with 250, and its body size as sent.
    pub fn message_forwarded(&self, bytes: u64) {
        self.messages.inc();
        self.bytes.inc_by(bytes);
    }

    /// A refusal the policy decided at `stage`, by the rule that decided it.
    pub fn rejection(&self, stage: &str, reason: Option<&crate::policy::Reason>) {
        let labels = RejectionLabels {
            listener: self.name.clone(),
            stage: stage.to_owned(),
            parameter: reason.map(|r| r.parameter.to_string()).unwrap_or_default(),
            // Its name only: a restriction with arguments (`check_client_access cidr:...`)
            // names its table, which has its own label.
            restriction: reason
                .and_then(|r| r.restriction.split_whitespace().next())
                .unwrap_or_default()
                .to_owned(),
            table: reason
                .and_then(|r| r.table.as_deref())
                .unwrap_or_default()
                .to_owned(),
            table_key: reason
                .and_then(|r| r.entry.as_deref())
                .unwrap_or_default()
                .to_owned(),
        };
        metrics().rejections.get_or_create(&labels).inc();
    }

    pub fn auth(&self, result: AuthResult, gate: &str) {
        let result = match result {
            AuthResult::Success => "success",
            AuthResult::Failure => "failure",
            AuthResult::TemporaryFailure => "temporary_failure",
            AuthResult::Refused => "refused",
        };
        let labels = AuthLabels {
            listener: self.name.clone(),
            result,
            gate: gate.to_owned(),
        };
        metrics().auth.get_or_create(&labels).inc();
    }

    /// An anvil limit exceeded, by its parameter name.
    pub fn limit_exceeded(&self, limit: &'static str) {
        let labels = LimitLabels {
            listener: self.name.clone(),
            limit,
        };
        metrics().limits.get_or_create(&labels).inc();
    }

    /// A ban event; `trigger` is the failure kind that imposed it (empty for refusals).
    pub fn ban(&self, event: BanEvent, trigger: &'static str) {
        let labels = BanLabels {
            listener: self.name.clone(),
            event: event.label(),
            trigger,
        };
        metrics().bans.get_or_create(&labels).inc();
    }
}
