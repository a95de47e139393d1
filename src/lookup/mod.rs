//! Fetches the facts a waiting policy asks for ([`crate::policy::pending`]): DNS records and
//! policy-service answers and keys in remote tables. Every request runs under its own
//! deadline and ends with an answer, failures included; the requests of one round run
//! concurrently on the session's own task.

mod cache;
pub mod endpoint;
pub mod policy_client;
pub mod registry;
pub mod socketmap;
pub mod table;
pub mod tcp_table;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use futures_util::future::join_all;

use crate::net::resolve::NameResolver;
use crate::policy::pending::{DnsAnswer, FactAnswer, TableResult};
use crate::policy::{FactRequest, Fetched};
use policy_client::PolicyClients;
pub use registry::{OpenError, RemoteTables, TableSettings};
use table::TableReply;

/// What sessions fetch facts with. Cheap to share; built once per process, so that the
/// policy-service connections it pools outlive a reload (pools are keyed by the service and
/// its settings, so a reload that changes them starts fresh ones).
pub struct Lookups {
    resolver: Option<NameResolver>,
    policy: PolicyClients,
    /// The backends of the current configuration's remote tables, swapped whole on reload.
    tables: ArcSwap<RemoteTables>,
}

impl Lookups {
    /// `resolver` answers DNS requests; without one they fail for now, as with a dead
    /// nameserver. No remote tables: see [`Lookups::with_tables`].
    pub fn new(resolver: Option<NameResolver>) -> Self {
        Self::with_tables(resolver, RemoteTables::default())
    }

    pub fn with_tables(resolver: Option<NameResolver>, tables: RemoteTables) -> Self {
        Lookups {
            resolver,
            policy: PolicyClients::default(),
            tables: ArcSwap::from_pointee(tables),
        }
    }

    /// The remote tables now open, to reopen from on reload.
    pub fn tables(&self) -> Arc<RemoteTables> {
        self.tables.load_full()
    }

    /// Replaces the remote tables (on reload, before the new snapshot goes live). A session
    /// of the old snapshot that asks a table the new one dropped gets a temporary failure.
    pub fn set_tables(&self, tables: RemoteTables) {
        self.tables.store(Arc::new(tables));
    }

    /// One answer per request, in the same order.
    pub async fn fetch(&self, requests: &[FactRequest]) -> Vec<Fetched> {
        join_all(requests.iter().map(|r| self.fetch_one(r))).await
    }

    async fn fetch_one(&self, request: &FactRequest) -> Fetched {
        let started = Instant::now();
        let (answer, cached) = match request {
            FactRequest::Dns { name, rtype } => {
                let answer = match &self.resolver {
                    Some(resolver) => resolver.records(name, *rtype).await,
                    None => DnsAnswer::TryAgain("no DNS resolver".into()),
                };
                // The resolver keeps its own TTL-honouring cache and does not say what it served.
                (FactAnswer::Dns(answer), false)
            }
            FactRequest::Table { table, key } => {
                let tables = self.tables.load_full();
                match tables.get(table) {
                    Some(backend) => {
                        let a = backend.lookup(key).await;
                        (FactAnswer::Table(result(a.reply)), a.cached)
                    }
                    None => (
                        FactAnswer::Table(TableResult::Failed(format!(
                            "table {table} is not open (removed by a reload?)"
                        ))),
                        false,
                    ),
                }
            }
            FactRequest::Policy {
                service, request, ..
            } => (
                FactAnswer::Policy(self.policy.ask(service, request).await),
                false,
            ),
        };
        Fetched {
            request: request.clone(),
            answer,
            elapsed: started.elapsed(),
            cached,
        }
    }
}

fn result(reply: TableReply) -> TableResult {
    match reply {
        TableReply::Found(v) => TableResult::Found(v),
        TableReply::NotFound => TableResult::NotFound,
        TableReply::Failed(why) => TableResult::Failed(why),
    }
}
