//! Where the limiter's counters, the bans and postscreen's cache are kept: in this process
//! ([`memory`]) or in Redis ([`redis`]), shared by every replica that points at it.
//!
//! Each method is one event and, with Redis, one round trip (pipelined when several counters
//! move). The store decides nothing: [`crate::limits`] judges the counts it returns. A store
//! that cannot answer returns [`StateError`]; the caller applies [`StateStore::fail_mode`].

pub mod memory;
pub mod redis;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::limits::ban::FailureCount;
use crate::limits::{Ban, BanRule, ClientKey, Event, Millis, Trigger};

/// What a store that cannot answer means for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Limits and bans are not applied until the store is back.
    Open,
    /// Clients are refused with a temporary error until the store is back.
    Closed,
}

/// The store did not answer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    #[error("state backend answered nonsense: {0}")]
    Corrupt(String),
}

/// A connection, as the store is told about it at accept.
#[derive(Clone, Copy, Debug)]
pub struct ConnectQuery<'a> {
    /// The listener (anvil's service): counts are per listener.
    pub listener: &'a str,
    pub key: ClientKey,
    /// Unique across replicas, for the concurrent count.
    pub session: u64,
    pub now: Millis,
    /// The longest a session can live: a replica that died without saying goodbye stops
    /// counting against the client after this.
    pub lifetime: Duration,
    /// Count this session among the client's concurrent ones.
    pub count_concurrent: bool,
    /// Count the connection in its rate window of this length.
    pub rate_unit: Option<Duration>,
    /// Look up the client's ban.
    pub check_ban: bool,
}

/// What the store knows of a connecting client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectView {
    pub ban: Option<Ban>,
    /// Concurrent sessions, this one included (0 when not counted).
    pub concurrent: u32,
    /// Connections in the current window, this one included (0 when not counted).
    pub rate: u32,
}

/// One failure that may count towards a ban.
#[derive(Clone, Copy, Debug)]
pub struct FailureQuery<'a> {
    pub key: ClientKey,
    pub trigger: Trigger,
    /// Identifies the credentials (a short digest, never the password), or is unique for a
    /// failure without credentials, so that each counts.
    pub digest: u32,
    /// A digest of the username, 0 for none.
    pub user: u32,
    pub now: Millis,
    pub rule: &'a BanRule,
}

/// What a failure led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureOutcome {
    pub count: FailureCount,
    /// The ban this failure imposed, if it was the one that reached the threshold.
    pub banned: Option<Ban>,
}

/// postscreen's cache entry for one client address: until when each test it passed stays
/// passed (postscreen_*_ttl); `None` for a test not passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostscreenPass {
    pub pregreet: Option<Millis>,
    pub dnsbl: Option<Millis>,
    pub pipelining: Option<Millis>,
    pub non_smtp: Option<Millis>,
    pub bare_newline: Option<Millis>,
}

impl PostscreenPass {
    /// The latest expiry of any test, after which the entry is of no use.
    pub fn expires(&self) -> Option<Millis> {
        [
            self.pregreet,
            self.dnsbl,
            self.pipelining,
            self.non_smtp,
            self.bare_newline,
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// How the store is reached and bounded, from `[state]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSettings {
    pub backend: BackendSettings,
    pub fail_mode: FailMode,
    /// IPv6 clients are counted by this prefix length.
    pub ipv6_prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSettings {
    Memory(memory::MemorySettings),
    Redis(redis::RedisSettings),
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: BackendSettings::Memory(memory::MemorySettings::default()),
            fail_mode: FailMode::Open,
            ipv6_prefix: 64,
        }
    }
}

enum Backend {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

/// The process's store, shared by every session and kept across reloads that do not change
/// `[state]`.
pub struct StateStore {
    backend: Backend,
    settings: StateSettings,
    /// The last call failed: the next success is logged as the store coming back.
    down: AtomicBool,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens the store. A Redis store is opened without waiting for Redis: it connects in
    /// the background and keeps trying, so relayguard starts while Redis is down.
    pub fn open(settings: &StateSettings) -> Result<StateStore, StateError> {
        let backend = match &settings.backend {
            BackendSettings::Memory(m) => Backend::Memory(memory::MemoryStore::new(m)),
            BackendSettings::Redis(r) => Backend::Redis(redis::RedisStore::open(r)?),
        };
        Ok(StateStore {
            backend,
            settings: settings.clone(),
            down: AtomicBool::new(false),
        })
    }

    /// An in-process store with default bounds.
    pub fn in_memory() -> StateStore {
        StateStore {
            backend: Backend::Memory(memory::MemoryStore::new(&memory::MemorySettings::default())),
            settings: StateSettings::default(),
            down: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> &StateSettings {
        &self.settings
    }

    pub fn fail_mode(&self) -> FailMode {
        self.settings.fail_mode
    }

    /// Clients whose counts the in-process store keeps now; `None` for Redis, which bounds
    /// itself by TTLs. For the memory benchmark and tests.
    pub fn clients(&self) -> Option<usize> {
        match &self.backend {
            Backend::Memory(m) => Some(m.clients()),
            Backend::Redis(_) => None,
        }
    }

    /// The key the limiter counts `addr` by.
    pub fn key(&self, addr: IpAddr) -> ClientKey {
        ClientKey::new(addr, self.settings.ipv6_prefix)
    }

    /// Records a connection and returns what the store knows of the client.
    pub async fn connect(&self, q: ConnectQuery<'_>) -> Result<ConnectView, StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => Ok(m.connect(&q)),
            Backend::Redis(r) => r.connect(&q).await,
        };
        self.observe(r)
    }

    /// The session `session` of `key` on `listener` ended.
    pub async fn disconnect(&self, listener: &str, key: ClientKey, session: u64) {
        let r = match &self.backend {
            Backend::Memory(m) => {
                m.disconnect(listener, key, session);
                Ok(())
            }
            Backend::Redis(r) => r.disconnect(listener, key, session).await,
        };
        let _ = self.observe(r);
    }

    /// Counts one `event` of `key` on `listener` in a window of `unit` and returns the count.
    pub async fn hit(
        &self,
        listener: &str,
        event: Event,
        key: ClientKey,
        now: Millis,
        unit: Duration,
    ) -> Result<u32, StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => Ok(m.hit(listener, event, key, now, unit)),
            Backend::Redis(r) => r.hit(listener, event, key, now, unit).await,
        };
        self.observe(r)
    }

    /// Counts a failure; imposes the ban when it reaches the rule's threshold.
    pub async fn record_failure(&self, q: FailureQuery<'_>) -> Result<FailureOutcome, StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => Ok(m.record_failure(&q)),
            Backend::Redis(r) => r.record_failure(&q).await,
        };
        self.observe(r)
    }

    /// The client's ban in force at `now`.
    pub async fn ban_of(&self, key: ClientKey, now: Millis) -> Result<Option<Ban>, StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => Ok(m.ban_of(key, now)),
            Backend::Redis(r) => r.ban_of(key, now).await,
        };
        self.observe(r)
    }

    /// Bans `key` (an admin's ban, or one imported); replaces a ban it has.
    pub async fn add_ban(&self, key: ClientKey, ban: Ban) -> Result<(), StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => {
                m.add_ban(key, ban);
                Ok(())
            }
            Backend::Redis(r) => r.add_ban(key, ban).await,
        };
        self.observe(r)
    }

    /// Lifts `key`'s ban and forgets its failures; true if it was banned.
    pub async fn remove_ban(&self, key: ClientKey, now: Millis) -> Result<bool, StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => Ok(m.remove_ban(key, now)),
            Backend::Redis(r) => r.remove_ban(key, now).await,
        };
        self.observe(r)
    }

    /// Every ban in force at `now`, soonest to end first.
    pub async fn bans(&self, now: Millis) -> Result<Vec<(ClientKey, Ban)>, StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => Ok(m.bans(now)),
            Backend::Redis(r) => r.bans(now).await,
        };
        self.observe(r)
    }

    /// postscreen's cache entry for `addr`, if any test is still passed at `now`.
    pub async fn postscreen_get(
        &self,
        addr: IpAddr,
        now: Millis,
    ) -> Result<Option<PostscreenPass>, StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => Ok(m.postscreen_get(addr, now)),
            Backend::Redis(r) => r.postscreen_get(addr, now).await,
        };
        self.observe(r)
    }

    /// Stores `addr`'s postscreen results, kept until the last of them expires.
    pub async fn postscreen_put(
        &self,
        addr: IpAddr,
        pass: PostscreenPass,
        now: Millis,
    ) -> Result<(), StateError> {
        let r = match &self.backend {
            Backend::Memory(m) => {
                m.postscreen_put(addr, pass, now);
                Ok(())
            }
            Backend::Redis(r) => r.postscreen_put(addr, pass, now).await,
        };
        self.observe(r)
    }

    /// Logs the store going away and coming back, once each, whatever the call.
    fn observe<T>(&self, r: Result<T, StateError>) -> Result<T, StateError> {
        match &r {
            // A load first: the common case (up, and was up) writes nothing shared.
            Ok(_) => {
                if self.down.load(Ordering::Acquire) && self.down.swap(false, Ordering::AcqRel) {
                    tracing::warn!("state backend is answering again; limits and bans apply again");
                }
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::AcqRel) {
                    let mode = match self.fail_mode() {
                        FailMode::Open => "failing open: limits and bans are not applied",
                        FailMode::Closed => "failing closed: clients are refused with 421",
                    };
                    tracing::error!(error = %e, "warning: {e}; {mode} until it answers");
                }
            }
        }
        r
    }
}

/// Now, as the stores count it. Read here and passed down, so the pure modules never read a
/// clock.
pub fn now() -> Millis {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Millis(since.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// A short digest of `bytes`, for credentials and usernames: enough to tell attempts apart,
/// too short (32 bits) to be worth anything to someone who reads the store.
pub fn digest(parts: &[&[u8]]) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let d = ctx.finish();
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(1)
}
