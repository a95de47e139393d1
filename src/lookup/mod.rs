//! Fetches the facts a waiting policy asks for ([`crate::policy::pending`]): DNS records,
//! policy-service answers and keys in remote tables (socketmap, tcp, SQL, LDAP). Every request
//! runs under its own deadline and ends with an answer, failures included; the requests of
//! one round run concurrently on the session's own task.

pub mod cache;
pub mod cf;
pub mod domain;
pub mod endpoint;
pub mod ldap;
pub mod policy_client;
pub mod registry;
pub mod socketmap;
pub mod sql;
pub mod table;
pub mod tcp_table;
pub mod template;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// The A records of `name` with the TTL the DNS gave them ([`NameResolver::records_with_ttl`]),
    /// for postscreen's DNSBL queries, whose results are cached as long as the DNS says.
    pub async fn addresses_with_ttl(&self, name: &str) -> (DnsAnswer, Option<u32>) {
        match &self.resolver {
            Some(resolver) => {
                resolver
                    .records_with_ttl(name, crate::policy::pending::RecordType::A)
                    .await
            }
            None => (DnsAnswer::TryAgain("no DNS resolver".into()), None),
        }
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

/// How a remote table behaves beyond what its Postfix config file says.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// The whole lookup, every host tried included, ends by then (Failed). LDAP tables use
    /// their own `timeout` parameter instead.
    pub timeout: Duration,
    /// How long a host that failed is left alone (Postfix's RETRY_CONN_INTV, 60 s).
    pub retry_interval: Duration,
    /// Connections per SQL table: at most this many queries in flight, and idle
    /// connections kept per host.
    pub pool_size: usize,
    /// How long a found or not-found answer is reused; zero keeps none. Postfix does not
    /// cache these tables, so a row changed in the database may be answered from here for
    /// up to this long.
    pub cache_ttl: Duration,
    /// How many keys the cache holds at most.
    pub cache_size: usize,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            timeout: Duration::from_secs(10),
            retry_interval: Duration::from_secs(60),
            pool_size: 4,
            cache_ttl: Duration::from_secs(30),
            cache_size: 1000,
        }
    }
}

/// Opens `kind:name` when `kind` is a remote table type (`mysql`, `pgsql`, `sqlite`,
/// `ldap`); `None` for any other type. A relative `name` is taken relative to the directory
/// of `relative_to`, the file that names the table. The error names the config file and,
/// where one setting is at fault, its line; it never holds a password.
pub fn open_remote(
    kind: &str,
    name: &str,
    relative_to: &Path,
) -> Option<Result<Arc<dyn table::RemoteTable>, String>> {
    open_remote_with(kind, name, relative_to, RemoteOptions::default())
}

/// [`open_remote`] with explicit deadline, pool and cache settings.
pub fn open_remote_with(
    kind: &str,
    name: &str,
    relative_to: &Path,
    options: RemoteOptions,
) -> Option<Result<Arc<dyn table::RemoteTable>, String>> {
    let path = match Path::new(name) {
        p if p.is_absolute() => p.to_path_buf(),
        p => relative_to
            .parent()
            .map(|d| d.join(p))
            .unwrap_or(p.to_path_buf()),
    };
    Some(match kind.to_ascii_lowercase().as_str() {
        "mysql" => sql::mysql::open_with(&path, options),
        "pgsql" => sql::pgsql::open_with(&path, options),
        "sqlite" => sql::sqlite::open_with(&path, options),
        "ldap" => ldap::open_with(&path, options),
        _ => return None,
    })
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[test]
    fn open_remote_knows_its_types_and_resolves_relative_names() {
        let dir = tempfile::tempdir().unwrap();
        let main_cf = dir.path().join("main.cf");
        assert!(open_remote("hash", "x", &main_cf).is_none());
        std::fs::write(
            dir.path().join("t.cf"),
            "dbpath = /x.db\nquery = SELECT '%s'\n",
        )
        .unwrap();
        assert!(open_remote("SQLite", "t.cf", &main_cf).unwrap().is_ok());
        let e = open_remote("pgsql", "missing.cf", &main_cf)
            .unwrap()
            .err()
            .unwrap();
        assert!(
            e.starts_with(&format!("open {}", dir.path().join("missing.cf").display())),
            "{e}"
        );
    }
}
