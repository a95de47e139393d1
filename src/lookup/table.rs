//! What a table served by another program answers with (SQL, LDAP, socketmap, tcp), and the
//! trait each such backend implements. A backend owns its connections (a pool, reconnects),
//! its per-lookup deadline and its small result cache; it never blocks a thread.

use std::future::Future;
use std::pin::Pin;

/// One key's answer from a remote table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableReply {
    /// The value, already formatted as the table's result rules say (result_format,
    /// expansion_limit, several rows joined with commas).
    Found(String),
    NotFound,
    /// The lookup failed for now (server down, timeout, bad answer); why, without secrets.
    Failed(String),
}

/// A reply and whether it came from the backend's cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableAnswer {
    pub reply: TableReply,
    pub cached: bool,
}

pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = TableAnswer> + Send + 'a>>;

/// A table whose lookups go over the network.
pub trait RemoteTable: Send + Sync {
    /// Looks up `key` (already case-folded where the table type folds keys). Ends within the
    /// backend's own deadline, with [`TableReply::Failed`] if need be.
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a>;
}
