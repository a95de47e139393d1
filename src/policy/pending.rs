//! How lookups that need the network (the client's DNS name today; SQL/LDAP tables and policy
//! services later) fit an engine that never blocks and never does I/O.
//!
//! The shape is *resumable evaluation*: the engine never awaits. When a restriction needs a fact
//! it does not have, evaluation stops with [`Step::Need`] naming the fact; the session fetches it
//! (with its own timeout, through `net/resolve.rs` or a `state/` backend), stores it in a
//! [`FactCache`] that lives as long as the command, and calls the engine again. Restrictions that
//! already ran are pure, so re-running them is cheap and gives the same answers; only the missing
//! fact is new. In-memory tables never return `Need`, so the common path stays synchronous and
//! free of allocation.
//!
//! Today the only such fact is the client name, and the session resolves it up front whenever
//! [`super::Policy::wants_client_name`] says so. A network table type will implement its lookup
//! as "answer from the cache, or ask": `TableAnswer::Pending(FactRequest::Lookup { .. })`.

use serde::Serialize;

/// A fact the engine cannot compute itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum FactRequest {
    /// The client's forward-confirmed host name.
    ClientName,
    /// One key in a network-backed table (`mysql:/etc/postfix/x.cf`), as the lookup order asked it.
    Lookup { table: String, key: String },
}

/// An answer the session fetched; `None` means "not found", an error is a temporary failure
/// (the engine then answers `451 4.3.0 ... Temporary lookup failure` as Postfix does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum FactAnswer {
    Found(Option<String>),
    TemporaryFailure,
}

/// Facts fetched for the current command.
#[derive(Clone, Debug, Default)]
pub struct FactCache {
    answers: Vec<(FactRequest, FactAnswer)>,
}

impl FactCache {
    pub fn insert(&mut self, request: FactRequest, answer: FactAnswer) {
        self.answers.retain(|(r, _)| *r != request);
        self.answers.push((request, answer));
    }

    pub fn get(&self, request: &FactRequest) -> Option<&FactAnswer> {
        self.answers
            .iter()
            .find(|(r, _)| r == request)
            .map(|(_, a)| a)
    }
}

/// One evaluation step: done, or waiting for a fact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Decided(super::Decision),
    Need(FactRequest),
}
