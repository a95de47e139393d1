//! The Redis store: counters, bans and postscreen results shared by every replica.
//!
//! SKELETON: the helper building the Redis backend replaces this file.

use std::net::IpAddr;
use std::time::Duration;

use super::{ConnectQuery, ConnectView, FailureOutcome, FailureQuery, PostscreenPass, StateError};
use crate::limits::{Ban, ClientKey, Event, Millis};

/// How Redis is reached, from `[state]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    pub topology: RedisTopology,
    /// Key prefix, so several relayguard deployments can share one Redis.
    pub prefix: String,
    /// One round trip, connect included.
    pub timeout: Duration,
}

/// One server, a cluster, or a master found through sentinels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTopology {
    /// `redis://host:port/db` or `rediss://host:port/db`.
    Single(String),
    /// The cluster's seed nodes.
    Cluster(Vec<String>),
    Sentinel {
        sentinels: Vec<String>,
        /// The master's name as the sentinels know it.
        service: String,
    },
}

pub struct RedisStore {}

fn todo_err<T>() -> Result<T, StateError> {
    Err(StateError::Unavailable(
        "redis backend not built yet".into(),
    ))
}

impl RedisStore {
    pub fn open(_s: &RedisSettings) -> Result<RedisStore, StateError> {
        todo_err()
    }
    pub(super) async fn connect(&self, _q: &ConnectQuery<'_>) -> Result<ConnectView, StateError> {
        todo_err()
    }
    pub(super) async fn disconnect(
        &self,
        _l: &str,
        _k: ClientKey,
        _s: u64,
    ) -> Result<(), StateError> {
        todo_err()
    }
    pub(super) async fn hit(
        &self,
        _l: &str,
        _e: Event,
        _k: ClientKey,
        _n: Millis,
        _u: Duration,
    ) -> Result<u32, StateError> {
        todo_err()
    }
    pub(super) async fn record_failure(
        &self,
        _q: &FailureQuery<'_>,
    ) -> Result<FailureOutcome, StateError> {
        todo_err()
    }
    pub(super) async fn ban_of(
        &self,
        _k: ClientKey,
        _n: Millis,
    ) -> Result<Option<Ban>, StateError> {
        todo_err()
    }
    pub(super) async fn add_ban(&self, _k: ClientKey, _b: Ban) -> Result<(), StateError> {
        todo_err()
    }
    pub(super) async fn remove_ban(&self, _k: ClientKey, _n: Millis) -> Result<bool, StateError> {
        todo_err()
    }
    pub(super) async fn bans(&self, _n: Millis) -> Result<Vec<(ClientKey, Ban)>, StateError> {
        todo_err()
    }
    pub(super) async fn postscreen_get(
        &self,
        _a: IpAddr,
        _n: Millis,
    ) -> Result<Option<PostscreenPass>, StateError> {
        todo_err()
    }
    pub(super) async fn postscreen_put(
        &self,
        _a: IpAddr,
        _p: PostscreenPass,
        _n: Millis,
    ) -> Result<(), StateError> {
        todo_err()
    }
}
