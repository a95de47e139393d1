//! The link to Redis: made on first use rather than at open, so relayguard starts while Redis
//! is down, and every call bounded by the configured timeout, connecting included.
//!
//! One server is reached through a [`ConnectionManager`], which reconnects by itself; a
//! master found through sentinels too, but it is dropped after a failure so that the next
//! call asks the sentinels again (the master may have moved); a cluster through a
//! [`ClusterConnection`], rebuilt after a failure in the same way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::Sentinel;
use ::redis::{
    Cmd, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, RedisResult, ScriptInvocation, Value,
};

use super::{RedisSettings, RedisTopology};
use crate::state::StateError;

/// How Redis is reached, parsed at open so that a bad URL is reported then.
enum Dial {
    Single(::redis::Client),
    Cluster(ClusterClient),
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        service: String,
    },
}

#[derive(Clone)]
enum Conn {
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub(super) struct Link {
    /// Boxed: the clients are large, and the store sits in an enum beside the memory one.
    dial: Box<Dial>,
    timeout: Duration,
    conn: Mutex<Option<Arc<Conn>>>,
    /// One connection attempt at a time; the others wait for it (within their timeout).
    dialing: tokio::sync::Mutex<()>,
}

fn unavailable(e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(format!("redis: {e}"))
}

/// A reply of the wrong shape is Redis holding something we did not write; anything else is
/// Redis not answering as it should.
fn classify(e: &RedisError) -> StateError {
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            StateError::Corrupt(format!("redis: {e}"))
        }
        _ if e.code() == Some("WRONGTYPE") => StateError::Corrupt(format!("redis: {e}")),
        _ => unavailable(e),
    }
}

/// A poisoned lock means a panic elsewhere while swapping an `Arc`; the slot is still valid.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The manager's own reconnection. For one server it keeps trying in the background for a
/// while after a failure (delays capped well under a second), so a call made once Redis is
/// back finds it connected; behind sentinels it tries once, since the next call re-resolves.
fn manager_config(timeout: Duration, retries: usize) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(retries)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(timeout.clamp(Duration::from_millis(50), Duration::from_millis(500)))
}

impl Link {
    pub(super) fn new(s: &RedisSettings) -> Result<Link, StateError> {
        let dial = match &s.topology {
            RedisTopology::Single(url) => {
                Dial::Single(::redis::Client::open(url.as_str()).map_err(unavailable)?)
            }
            RedisTopology::Cluster(urls) => Dial::Cluster(
                ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(s.timeout)
                    .response_timeout(s.timeout)
                    .retries(1)
                    .build()
                    .map_err(unavailable)?,
            ),
            RedisTopology::Sentinel { sentinels, service } => Dial::Sentinel {
                sentinels: sentinels
                    .iter()
                    .map(|u| u.as_str().into_connection_info())
                    .collect::<RedisResult<_>>()
                    .map_err(unavailable)?,
                service: service.clone(),
            },
        };
        Ok(Link {
            dial: Box::new(dial),
            timeout: s.timeout,
            conn: Mutex::new(None),
            dialing: tokio::sync::Mutex::new(()),
        })
    }

    pub(super) async fn pipe<T: FromRedisValue>(&self, p: &Pipeline) -> Result<T, StateError> {
        self.call(async |c: &mut Conn| p.query_async(c).await).await
    }

    pub(super) async fn cmd<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StateError> {
        self.call(async |c: &mut Conn| cmd.query_async(c).await)
            .await
    }

    /// EVALSHA; a server that does not know the script yet (new, restarted) gets it loaded
    /// and run again, once.
    pub(super) async fn script<T: FromRedisValue>(
        &self,
        s: &ScriptInvocation<'_>,
    ) -> Result<T, StateError> {
        self.call(async |c: &mut Conn| s.invoke_async(c).await)
            .await
    }

    async fn call<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn) -> RedisResult<T>,
    ) -> Result<T, StateError> {
        let mut used = None;
        let r = tokio::time::timeout(self.timeout, async {
            let conn = self.connection().await?;
            let mut c = Conn::clone(&conn);
            used = Some(conn);
            f(&mut c).await
        })
        .await;
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let err = classify(&e);
                if matches!(err, StateError::Unavailable(_)) {
                    self.forget(used);
                }
                Err(err)
            }
            Err(_) => {
                self.forget(used);
                Err(StateError::Unavailable(format!(
                    "redis did not answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    async fn connection(&self) -> RedisResult<Arc<Conn>> {
        if let Some(c) = lock(&self.conn).clone() {
            return Ok(c);
        }
        let _one = self.dialing.lock().await;
        if let Some(c) = lock(&self.conn).clone() {
            return Ok(c);
        }
        let c = Arc::new(self.dial().await?);
        *lock(&self.conn) = Some(Arc::clone(&c));
        Ok(c)
    }

    async fn dial(&self) -> RedisResult<Conn> {
        match &*self.dial {
            // Lazy: the manager connects on the first command and reconnects by itself.
            Dial::Single(client) => Ok(Conn::Manager(ConnectionManager::new_lazy_with_config(
                client.clone(),
                manager_config(self.timeout, 30),
            )?)),
            Dial::Sentinel { sentinels, service } => {
                let mut sentinel = Sentinel::build(sentinels.clone())?;
                let master = sentinel.async_master_for(service, None).await?;
                Ok(Conn::Manager(ConnectionManager::new_lazy_with_config(
                    master,
                    manager_config(self.timeout, 0),
                )?))
            }
            Dial::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }

    /// After a failure behind sentinels or on a cluster, the next call connects afresh; one
    /// server's manager is kept, it reconnects by itself. Only the connection that failed is
    /// dropped, not one another call has made since.
    fn forget(&self, used: Option<Arc<Conn>>) {
        if matches!(*self.dial, Dial::Single(_)) {
            return;
        }
        let Some(used) = used else { return };
        let mut slot = lock(&self.conn);
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &used)) {
            *slot = None;
        }
    }
}
