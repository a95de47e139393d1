//! The Redis store: counters, bans and postscreen results shared by every replica, with
//! [`super::memory`]'s semantics and one round trip per call.
//!
//! Plain counting is an atomic pipeline; what decides before it writes (a failure that may
//! ban, a ban that replaces another) is a Lua script, so two replicas never both impose the
//! same ban or lose a count. Times in values are the callers' wall-clock `now`, which replicas
//! agree on; TTLs (PEXPIRE, PX) let Redis forget what no longer matters, and are the rate
//! windows themselves. Needs Redis 7 (`PEXPIRE … NX`). The key schema is in [`keys`].

mod conn;
mod decode;
mod keys;
mod scripts;

use std::net::IpAddr;
use std::time::Duration;

use ::redis::{cmd, pipe, Value};

use super::{ConnectQuery, ConnectView, FailureOutcome, FailureQuery, PostscreenPass, StateError};
use crate::limits::ban::FailureCount;
use crate::limits::{Ban, ClientKey, Event, Millis, Trigger};
use conn::Link;
use keys::Keys;
use scripts::{at, ms};

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

pub struct RedisStore {
    link: Link,
    keys: Keys,
    /// On a cluster the ban index lives in another slot than the client's keys, so it is
    /// updated by a second call after the client's script instead of inside it.
    split_index: bool,
}

const BAN_FIELDS: [&str; 4] = ["since", "till", "offence", "reason"];

impl RedisStore {
    /// Checks the URLs; connects on the first call, not here.
    pub fn open(s: &RedisSettings) -> Result<RedisStore, StateError> {
        Ok(RedisStore {
            link: Link::new(s)?,
            keys: Keys::new(&s.prefix),
            split_index: matches!(s.topology, RedisTopology::Cluster(_)),
        })
    }

    pub(super) async fn connect(&self, q: &ConnectQuery<'_>) -> Result<ConnectView, StateError> {
        if !(q.check_ban || q.count_concurrent || q.rate_unit.is_some()) {
            return Ok(ConnectView::default());
        }
        let mut p = pipe();
        p.atomic();
        if q.check_ban {
            p.cmd("HMGET").arg(self.keys.ban(q.key)).arg(&BAN_FIELDS);
        }
        if q.count_concurrent {
            // Sessions a dead replica never ended stop counting at their lifetime's end.
            let k = self.keys.concurrent(q.key, q.listener);
            p.cmd("ZREMRANGEBYSCORE")
                .arg(&k)
                .arg("-inf")
                .arg(at(q.now))
                .ignore();
            p.cmd("ZADD")
                .arg(&k)
                .arg(at(q.now.after(q.lifetime)))
                .arg(q.session)
                .ignore();
            p.cmd("ZCARD").arg(&k);
            p.cmd("PEXPIRE").arg(&k).arg(ms(q.lifetime).max(1)).ignore();
        }
        if let Some(unit) = q.rate_unit {
            self.count(&mut p, q.listener, Event::Connect, q.key, unit);
        }
        let replies: Vec<Value> = self.link.pipe(&p).await?;
        let mut replies = replies.into_iter();
        let mut view = ConnectView::default();
        if q.check_ban {
            view.ban = decode::ban(decode::next(&mut replies)?, q.now)?;
        }
        if q.count_concurrent {
            view.concurrent = decode::count(decode::next(&mut replies)?)?;
        }
        if q.rate_unit.is_some() {
            view.rate = decode::count(decode::next(&mut replies)?)?;
        }
        Ok(view)
    }

    /// INCR, and a TTL of one unit set by the first event only (NX): anvil's window, which
    /// runs from the first event.
    fn count(&self, p: &mut ::redis::Pipeline, l: &str, e: Event, k: ClientKey, unit: Duration) {
        let key = self.keys.rate(k, e, l);
        p.cmd("INCR").arg(&key);
        p.cmd("PEXPIRE").arg(&key).arg(ms(unit)).arg("NX").ignore();
    }

    pub(super) async fn disconnect(
        &self,
        listener: &str,
        key: ClientKey,
        session: u64,
    ) -> Result<(), StateError> {
        let k = self.keys.concurrent(key, listener);
        self.link
            .cmd::<Value>(cmd("ZREM").arg(k).arg(session))
            .await?;
        Ok(())
    }

    pub(super) async fn hit(
        &self,
        listener: &str,
        event: Event,
        key: ClientKey,
        // The window is the key's TTL on Redis's clock: comparing `now` would take a script
        // per event, and replicas' clocks agree with Redis's far more closely than a unit.
        _now: Millis,
        unit: Duration,
    ) -> Result<u32, StateError> {
        let mut p = pipe();
        p.atomic();
        self.count(&mut p, listener, event, key, unit);
        let (n,): (Value,) = self.link.pipe(&p).await?;
        decode::count(n)
    }

    pub(super) async fn record_failure(
        &self,
        q: &FailureQuery<'_>,
    ) -> Result<FailureOutcome, StateError> {
        let threshold = q.rule.threshold(q.trigger);
        // The window keeps at most `threshold` failures, so the count that bans is that.
        let reason = q.trigger.describe(threshold);
        let client = q.key.to_string();
        let mut s = scripts::RECORD_FAILURE.prepare_invoke();
        s.key(self.keys.failures(q.key, q.trigger))
            .key(self.keys.ban(q.key))
            .key(self.keys.offences(q.key));
        self.index_keys(&mut s);
        s.arg(at(q.now))
            .arg(ms(q.rule.window))
            .arg(q.digest)
            .arg(q.user)
            .arg(threshold)
            .arg(ms(q.rule.ban_time))
            .arg(ms(q.rule.max_ban_time))
            .arg(ms(q.rule.repeat_window))
            .arg(&client)
            .arg(&reason);
        let r: [i64; 7] = self.link.script(&s).await?;
        let [count, user, repeated, banned, since, till, offence] = r;
        let banned = (banned == 1).then(|| Ban {
            since: Millis(since.max(0) as u64),
            until: Millis(till.max(0) as u64),
            offence: u32::try_from(offence).unwrap_or(u32::MAX),
            reason,
        });
        if let Some(ban) = &banned {
            self.index_after(q.key, Some(ban), q.now).await;
        }
        Ok(FailureOutcome {
            count: FailureCount {
                client: u32::try_from(count).unwrap_or(0),
                user: u32::try_from(user).unwrap_or(0),
                repeated: repeated == 1,
            },
            banned,
        })
    }

    /// The ban index's keys, for a script that updates it in the same call.
    fn index_keys(&self, s: &mut ::redis::ScriptInvocation<'_>) {
        if !self.split_index {
            s.key(self.keys.ban_ends()).key(self.keys.ban_list());
        }
    }

    /// On a cluster, the index follows the client's change in a call of its own. It only
    /// serves the listing: the ban is in force whether or not this succeeds.
    async fn index_after(&self, key: ClientKey, ban: Option<&Ban>, now: Millis) {
        if !self.split_index {
            return;
        }
        let mut s = scripts::BAN_INDEX.prepare_invoke();
        s.key(self.keys.ban_ends()).key(self.keys.ban_list());
        match ban {
            Some(b) => s
                .arg("put")
                .arg(at(now))
                .arg(key.to_string())
                .arg(at(b.since))
                .arg(at(b.until))
                .arg(b.offence)
                .arg(&b.reason),
            None => s.arg("del").arg(at(now)).arg(key.to_string()),
        };
        if let Err(e) = self.link.script::<Value>(&s).await {
            tracing::warn!(client = %key, error = %e, "ban list not updated; the ban itself is");
        }
    }

    pub(super) async fn ban_of(
        &self,
        key: ClientKey,
        now: Millis,
    ) -> Result<Option<Ban>, StateError> {
        let v: Value = self
            .link
            .cmd(cmd("HMGET").arg(self.keys.ban(key)).arg(&BAN_FIELDS))
            .await?;
        decode::ban(v, now)
    }

    pub(super) async fn add_ban(&self, key: ClientKey, ban: Ban) -> Result<(), StateError> {
        let mut s = scripts::ADD_BAN.prepare_invoke();
        s.key(self.keys.ban(key)).key(self.keys.offences(key));
        self.index_keys(&mut s);
        s.arg(at(ban.since))
            .arg(at(ban.until))
            .arg(ban.offence)
            .arg(&ban.reason)
            .arg(key.to_string());
        self.link.script::<Value>(&s).await?;
        self.index_after(key, Some(&ban), ban.since).await;
        Ok(())
    }

    pub(super) async fn remove_ban(&self, key: ClientKey, now: Millis) -> Result<bool, StateError> {
        let mut s = scripts::REMOVE_BAN.prepare_invoke();
        s.key(self.keys.ban(key));
        for t in Trigger::ALL {
            s.key(self.keys.failures(key, t));
        }
        self.index_keys(&mut s);
        s.arg(at(now)).arg(key.to_string()).arg(Trigger::ALL.len());
        let was: i64 = self.link.script(&s).await?;
        self.index_after(key, None, now).await;
        Ok(was == 1)
    }

    pub(super) async fn bans(&self, now: Millis) -> Result<Vec<(ClientKey, Ban)>, StateError> {
        let mut s = scripts::BAN_INDEX.prepare_invoke();
        s.key(self.keys.ban_ends())
            .key(self.keys.ban_list())
            .arg("list")
            .arg(at(now));
        let flat: Vec<String> = self.link.script(&s).await?;
        decode::ban_list(flat, now)
    }

    pub(super) async fn postscreen_get(
        &self,
        addr: IpAddr,
        now: Millis,
    ) -> Result<Option<PostscreenPass>, StateError> {
        let v: Option<String> = self
            .link
            .cmd(cmd("GET").arg(self.keys.postscreen(addr)))
            .await?;
        let Some(text) = v else { return Ok(None) };
        let pass: PostscreenPass = serde_json::from_str(&text)
            .map_err(|e| StateError::Corrupt(format!("postscreen entry for {addr}: {e}")))?;
        Ok(pass.expires().is_some_and(|t| t > now).then_some(pass))
    }

    pub(super) async fn postscreen_put(
        &self,
        addr: IpAddr,
        pass: PostscreenPass,
        now: Millis,
    ) -> Result<(), StateError> {
        let key = self.keys.postscreen(addr);
        let c = match pass.expires().filter(|t| *t > now) {
            Some(t) => {
                let json = serde_json::to_string(&pass)
                    .map_err(|e| StateError::Corrupt(format!("postscreen entry: {e}")))?;
                let mut c = cmd("SET");
                c.arg(key).arg(json).arg("PX").arg(ms(t.left_from(now)));
                c
            }
            None => {
                let mut c = cmd("DEL");
                c.arg(key);
                c
            }
        };
        self.link.cmd::<Value>(&c).await?;
        Ok(())
    }
}
