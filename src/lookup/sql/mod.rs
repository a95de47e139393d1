//! What Postfix's three SQL tables share (dict_mysql.c, dict_pgsql.c, dict_sqlite.c): the
//! config names, the key checks before any query, trying hosts in turn, the result rows
//! turned into one value, and the cache. Each database module supplies only its client.
//!
//! A lookup never blocks a thread and always ends within its deadline. Error text names the
//! table and host, never a password.

mod config;
pub mod mysql;
pub mod pgsql;
pub mod sqlite;

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::cache::ReplyCache;
use super::domain::DomainList;
use super::table::{LookupFuture, TableAnswer, TableReply};
use super::template::Quote;
use super::RemoteOptions;
pub use config::{HostAddr, SqlConfig};

/// The rows of one result set: each row's columns, `None` for SQL NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// One database client: how to connect to a host and run a query on a connection.
pub trait SqlClient: Send + Sync + 'static {
    type Conn: Send + 'static;

    /// Escapes a key piece for inclusion between single quotes, as the dict_*_quote()
    /// function of the same database does.
    const QUOTE: Quote;

    fn connect(&self, host: &HostAddr) -> impl Future<Output = Result<Self::Conn, String>> + Send;

    /// Runs `query` as a plain text query (no prepared statements: Postfix sends the expanded
    /// text, and so do we) and returns the first result set.
    fn rows<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        query: &'a str,
    ) -> impl Future<Output = Result<Rows, String>> + Send + 'a;

    /// Whether every column of a row is a value (MySQL, PostgreSQL) or only the first
    /// (SQLite's dict_sqlite_lookup() reads column 0 only).
    fn all_columns(&self) -> bool {
        true
    }
}

/// A host and what we know of it: idle connections and, after a failure, until when it is
/// skipped (Postfix's RETRY_CONN_INTV stay-away timer).
struct HostSlot<C> {
    addr: HostAddr,
    idle: Mutex<Vec<C>>,
    down_until: Mutex<Option<Instant>>,
}

/// An SQL table: its config, its client, a small pool per host and the reply cache.
pub struct SqlTable<B: SqlClient> {
    /// `mysql:/etc/postfix/x.cf`, for messages.
    name: String,
    config: SqlConfig,
    client: B,
    hosts: Vec<HostSlot<B::Conn>>,
    /// At most `pool_size` queries in flight: a burst of sessions waits (within the
    /// deadline) for a connection instead of opening one each.
    in_flight: Semaphore,
    cache: ReplyCache,
    options: RemoteOptions,
}

impl<B: SqlClient> SqlTable<B> {
    pub(crate) fn new(name: String, config: SqlConfig, client: B, options: RemoteOptions) -> Self {
        let hosts = config
            .hosts
            .iter()
            .map(|addr| HostSlot {
                addr: addr.clone(),
                idle: Mutex::new(Vec::new()),
                down_until: Mutex::new(None),
            })
            .collect();
        SqlTable {
            name,
            cache: ReplyCache::new(options.cache_ttl, options.cache_size),
            in_flight: Semaphore::new(options.pool_size.max(1)),
            config,
            client,
            hosts,
            options,
        }
    }

    async fn answer(&self, key: &str) -> TableAnswer {
        let query = DomainList::asks(self.config.domain.as_ref(), key)
            .then(|| self.config.templates.query(key, B::QUOTE))
            .flatten();
        let Some(query) = query else {
            return TableAnswer {
                reply: TableReply::NotFound,
                cached: false,
            };
        };
        let work = async {
            let _permit = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| "table closed".to_string())?;
            self.ask(&query).await
        };
        let ask = async {
            match timeout(self.options.timeout, work).await {
                Ok(Ok(rows)) => self.format(key, &rows),
                Ok(Err(why)) => TableReply::Failed(format!("{}: {why}", self.name)),
                Err(_) => TableReply::Failed(format!(
                    "{}: no answer within {:?}",
                    self.name, self.options.timeout
                )),
            }
        };
        self.cache.answer(key, ask).await
    }

    /// Asks the hosts in turn, as plmysql_query() and plpgsql_query() do: those already
    /// connected first, then the rest that did not fail within the retry interval, UNIX
    /// sockets before TCP. A host that failed, by connection or by query, is left alone for
    /// the retry interval, as Postfix's "stay away" timer does. Postfix picks at random among
    /// equals to spread load; we keep the written order, so the first host listed is the
    /// primary.
    async fn ask(&self, query: &str) -> Result<Rows, String> {
        let now = Instant::now();
        let mut order: Vec<(u8, usize)> = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let down = lock(&h.down_until).is_some_and(|until| until > now);
            if down {
                continue;
            }
            let active = !lock(&h.idle).is_empty();
            let rank = u8::from(!active) * 2 + u8::from(!h.addr.is_unix());
            order.push((rank, i));
        }
        order.sort();
        if order.is_empty() {
            return Err("no database host is available (all failed recently)".into());
        }
        let mut last = String::new();
        for (_, i) in order {
            let Some(host) = self.hosts.get(i) else {
                continue;
            };
            match self.ask_host(host, query).await {
                Ok(rows) => return Ok(rows),
                Err(why) => {
                    *lock(&host.down_until) = Some(Instant::now() + self.options.retry_interval);
                    last = format!("{}: {why}", host.addr);
                }
            }
        }
        Err(last)
    }

    /// One host: an idle connection if there is one, else a new one. A failure on a reused
    /// connection is tried once more on a fresh one: the server may have restarted since,
    /// which only says the old connection is gone, not the host.
    async fn ask_host(&self, host: &HostSlot<B::Conn>, query: &str) -> Result<Rows, String> {
        let reused = lock(&host.idle).pop();
        if let Some(mut conn) = reused {
            if let Ok(rows) = self.client.rows(&mut conn, query).await {
                self.keep(host, conn);
                return Ok(rows);
            }
        }
        let connect = timeout(
            self.options.connect_timeout(),
            self.client.connect(&host.addr),
        );
        let mut conn = match connect.await {
            Ok(conn) => conn?,
            Err(_) => return Err("connect timed out".into()),
        };
        let rows = self.client.rows(&mut conn, query).await?;
        self.keep(host, conn);
        Ok(rows)
    }

    fn keep(&self, host: &HostSlot<B::Conn>, conn: B::Conn) {
        *lock(&host.down_until) = None;
        let mut idle = lock(&host.idle);
        if idle.len() < self.options.pool_size {
            idle.push(conn);
        }
    }

    /// The rows as one value: each non-NULL column through result_format, joined with
    /// commas; more than expansion_limit values is a failure (DICT_ERR_RETRY in Postfix).
    fn format(&self, key: &str, rows: &Rows) -> TableReply {
        let columns = if self.client.all_columns() {
            usize::MAX
        } else {
            1
        };
        let mut results =
            self.config
                .templates
                .results(key, self.config.expansion_limit, &self.name);
        for row in rows {
            for value in row.iter().take(columns).flatten() {
                if let Err(failed) = results.push(value) {
                    return failed;
                }
            }
        }
        results.finish()
    }
}

impl<B: SqlClient> super::table::RemoteTable for SqlTable<B> {
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a> {
        Box::pin(self.answer(key))
    }
}

impl<B: SqlClient> std::fmt::Debug for SqlTable<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTable")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means another lookup panicked mid-update of plain data; the data is
/// still usable, so take it rather than fail every later lookup.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The per-host connect deadline: half the lookup's, so that a second host still gets a turn
/// when the first does not answer at all.
impl RemoteOptions {
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.timeout / 2
    }
}
