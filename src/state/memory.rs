//! The in-process store: counters in sharded LRU maps with a hard cap, so a flood of distinct
//! client addresses costs a fixed amount of memory; bans and postscreen results beside them.
//!
//! Every call takes one short lock and no await. What a flood evicts is the least recently
//! seen client's counts, never a ban: bans live in their own bounded table, where expired
//! entries go first.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use rustc_hash::{FxHashMap, FxHasher};

use super::{ConnectQuery, ConnectView, FailureOutcome, FailureQuery, PostscreenPass};
use crate::limits::ban::FailureWindow;
use crate::limits::{Ban, ClientKey, Event, Millis, RateWindow, Trigger};

const SHARDS: usize = 16;

/// Bounds of the in-process store, from `[state]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemorySettings {
    /// Clients whose rate windows and failures are kept (least recently seen go first).
    pub max_clients: usize,
    /// Clients whose bans (and ban history, for escalation) are kept.
    pub max_bans: usize,
    /// Addresses whose postscreen results are kept.
    pub max_postscreen: usize,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            max_clients: 100_000,
            max_bans: 100_000,
            max_postscreen: 100_000,
        }
    }
}

/// One client's counts: rate windows per listener and failures per trigger.
#[derive(Debug, Default)]
struct ClientCounts {
    rates: Vec<(Box<str>, [RateWindow; 4])>,
    failures: Vec<(Trigger, FailureWindow)>,
}

impl ClientCounts {
    fn windows(&mut self, listener: &str) -> &mut [RateWindow; 4] {
        let i = match self.rates.iter().position(|(l, _)| &**l == listener) {
            Some(i) => i,
            None => {
                self.rates.push((listener.into(), Default::default()));
                self.rates.len() - 1
            }
        };
        &mut self.rates[i].1
    }

    fn failures(&mut self, trigger: Trigger) -> &mut FailureWindow {
        let i = match self.failures.iter().position(|(t, _)| *t == trigger) {
            Some(i) => i,
            None => {
                self.failures.push((trigger, FailureWindow::default()));
                self.failures.len() - 1
            }
        };
        &mut self.failures[i].1
    }
}

/// A client's open sessions per listener.
type OpenSessions = Vec<(Box<str>, u32)>;

/// A client's ban and how many it had lately, kept while either matters.
#[derive(Clone, Debug)]
struct BanRecord {
    ban: Option<Ban>,
    offences: u32,
    remember_until: Millis,
}

pub struct MemoryStore {
    shards: Box<[Mutex<LruCache<ClientKey, ClientCounts>>]>,
    /// Open sessions per client and listener; only clients with one are in it, so it is
    /// bounded by the listeners' connection limits.
    open: Mutex<FxHashMap<ClientKey, OpenSessions>>,
    bans: Mutex<FxHashMap<ClientKey, BanRecord>>,
    max_bans: usize,
    postscreen: Mutex<LruCache<IpAddr, PostscreenPass>>,
}

fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN)
}

/// A poisoned lock means a panic elsewhere while counting; the counts are still counts.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    pub fn new(settings: &MemorySettings) -> MemoryStore {
        let per_shard = settings.max_clients.div_ceil(SHARDS);
        MemoryStore {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(capacity(per_shard))))
                .collect(),
            open: Mutex::default(),
            bans: Mutex::default(),
            max_bans: settings.max_bans.max(1),
            postscreen: Mutex::new(LruCache::new(capacity(settings.max_postscreen))),
        }
    }

    fn shard(&self, key: &ClientKey) -> &Mutex<LruCache<ClientKey, ClientCounts>> {
        let mut h = FxHasher::default();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Clients whose counts are kept now (for the memory benchmark and tests).
    pub fn clients(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub(super) fn connect(&self, q: &ConnectQuery<'_>) -> ConnectView {
        let ban = if q.check_ban {
            self.ban_of(q.key, q.now)
        } else {
            None
        };
        let concurrent = if q.count_concurrent {
            let mut open = lock(&self.open);
            let per = open.entry(q.key).or_default();
            let i = match per.iter().position(|(l, _)| &**l == q.listener) {
                Some(i) => i,
                None => {
                    per.push((q.listener.into(), 0));
                    per.len() - 1
                }
            };
            per[i].1 = per[i].1.saturating_add(1);
            per[i].1
        } else {
            0
        };
        let rate = match q.rate_unit {
            Some(unit) => self.hit(q.listener, Event::Connect, q.key, q.now, unit),
            None => 0,
        };
        ConnectView {
            ban,
            concurrent,
            rate,
        }
    }

    pub(super) fn disconnect(&self, listener: &str, key: ClientKey, _session: u64) {
        let mut open = lock(&self.open);
        let Some(per) = open.get_mut(&key) else {
            return;
        };
        if let Some(i) = per.iter().position(|(l, _)| &**l == listener) {
            per[i].1 = per[i].1.saturating_sub(1);
            if per[i].1 == 0 {
                per.swap_remove(i);
            }
        }
        if per.is_empty() {
            open.remove(&key);
        }
    }

    pub(super) fn hit(
        &self,
        listener: &str,
        event: Event,
        key: ClientKey,
        now: Millis,
        unit: Duration,
    ) -> u32 {
        let mut shard = lock(self.shard(&key));
        let counts = shard.get_or_insert_mut(key, ClientCounts::default);
        counts.windows(listener)[event.index()].hit(now, unit)
    }

    pub(super) fn record_failure(&self, q: &FailureQuery<'_>) -> FailureOutcome {
        let cap = q.rule.threshold(q.trigger);
        let count = {
            let mut shard = lock(self.shard(&q.key));
            let counts = shard.get_or_insert_mut(q.key, ClientCounts::default);
            let window = counts.failures(q.trigger);
            let count = window.record(q.now, q.rule.window, q.digest, q.user, cap);
            if q.rule.bans(q.trigger, count.client) {
                window.clear();
            }
            count
        };
        let mut banned = None;
        if q.rule.bans(q.trigger, count.client) {
            let mut bans = lock(&self.bans);
            let previous = bans.get(&q.key).filter(|r| r.remember_until > q.now);
            if !previous.is_some_and(|r| r.ban.as_ref().is_some_and(|b| b.is_active(q.now))) {
                let offence = previous.map_or(0, |r| r.offences) + 1;
                let ban = q.rule.ban(q.now, offence, q.trigger.describe(count.client));
                let record = BanRecord {
                    ban: Some(ban.clone()),
                    offences: offence,
                    remember_until: ban.until.max(q.now.after(q.rule.repeat_window)),
                };
                self.insert_ban(&mut bans, q.key, record, q.now);
                banned = Some(ban);
            }
        }
        FailureOutcome { count, banned }
    }

    fn insert_ban(
        &self,
        bans: &mut FxHashMap<ClientKey, BanRecord>,
        key: ClientKey,
        record: BanRecord,
        now: Millis,
    ) {
        if bans.len() >= self.max_bans && !bans.contains_key(&key) {
            bans.retain(|_, r| r.remember_until > now);
            if bans.len() >= self.max_bans {
                // Full of live records: the one that would be forgotten soonest goes.
                if let Some(k) = bans
                    .iter()
                    .min_by_key(|(_, r)| r.remember_until)
                    .map(|(k, _)| *k)
                {
                    bans.remove(&k);
                }
            }
        }
        bans.insert(key, record);
    }

    pub(super) fn ban_of(&self, key: ClientKey, now: Millis) -> Option<Ban> {
        let bans = lock(&self.bans);
        bans.get(&key)?.ban.clone().filter(|b| b.is_active(now))
    }

    pub(super) fn add_ban(&self, key: ClientKey, ban: Ban) {
        let mut bans = lock(&self.bans);
        let now = ban.since;
        let offences = bans
            .get(&key)
            .filter(|r| r.remember_until > now)
            .map_or(0, |r| r.offences)
            .max(ban.offence);
        let record = BanRecord {
            remember_until: ban.until,
            ban: Some(ban),
            offences,
        };
        self.insert_ban(&mut bans, key, record, now);
    }

    pub(super) fn remove_ban(&self, key: ClientKey, now: Millis) -> bool {
        let was = {
            let mut bans = lock(&self.bans);
            match bans.get_mut(&key) {
                // The history stays for escalation; only the ban is lifted.
                Some(r) => r.ban.take().is_some_and(|b| b.is_active(now)),
                None => false,
            }
        };
        let mut shard = lock(self.shard(&key));
        if let Some(counts) = shard.get_mut(&key) {
            counts.failures.clear();
        }
        was
    }

    pub(super) fn bans(&self, now: Millis) -> Vec<(ClientKey, Ban)> {
        let bans = lock(&self.bans);
        let mut out: Vec<_> = bans
            .iter()
            .filter_map(|(k, r)| Some((*k, r.ban.clone().filter(|b| b.is_active(now))?)))
            .collect();
        out.sort_by_key(|(k, b)| (b.until, *k));
        out
    }

    pub(super) fn postscreen_get(&self, addr: IpAddr, now: Millis) -> Option<PostscreenPass> {
        let mut cache = lock(&self.postscreen);
        let pass = *cache.get(&addr)?;
        if pass.expires().is_some_and(|t| t > now) {
            Some(pass)
        } else {
            cache.pop(&addr);
            None
        }
    }

    pub(super) fn postscreen_put(&self, addr: IpAddr, pass: PostscreenPass, now: Millis) {
        let mut cache = lock(&self.postscreen);
        if pass.expires().is_some_and(|t| t > now) {
            cache.put(addr, pass);
        } else {
            cache.pop(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::BanRule;

    fn key(s: &str) -> ClientKey {
        ClientKey::parse(s, 64).unwrap()
    }

    #[test]
    fn counts_are_per_listener_and_concurrency_comes_back() {
        let store = MemoryStore::new(&MemorySettings::default());
        let q = |listener| ConnectQuery {
            listener,
            key: key("192.0.2.1"),
            session: 1,
            now: Millis(0),
            lifetime: Duration::from_secs(3600),
            count_concurrent: true,
            rate_unit: Some(Duration::from_secs(60)),
            check_ban: true,
        };
        assert_eq!(store.connect(&q("smtp")).concurrent, 1);
        assert_eq!(store.connect(&q("smtp")).concurrent, 2);
        let other = store.connect(&q("submission"));
        assert_eq!((other.concurrent, other.rate), (1, 1));
        store.disconnect("smtp", key("192.0.2.1"), 1);
        let again = store.connect(&q("smtp"));
        assert_eq!((again.concurrent, again.rate), (2, 3));
        for l in ["smtp", "smtp", "submission"] {
            store.disconnect(l, key("192.0.2.1"), 1);
        }
        assert!(
            lock(&store.open).is_empty(),
            "no entry for a client with no session"
        );
    }

    #[test]
    fn five_distinct_failures_ban_and_the_next_ban_is_longer() {
        let store = MemoryStore::new(&MemorySettings::default());
        let rule = BanRule::default();
        let attacker = key("198.51.100.66");
        let fail = |digest, now| {
            store.record_failure(&FailureQuery {
                key: attacker,
                trigger: Trigger::Auth,
                digest,
                user: 7,
                now: Millis(now),
                rule: &rule,
            })
        };
        for d in 1..=4 {
            assert_eq!(fail(d, 0).banned, None);
        }
        assert!(fail(4, 1).count.repeated, "the same credentials again");
        let ban = fail(5, 2).banned.expect("the fifth distinct failure bans");
        assert_eq!(ban.offence, 1);
        assert_eq!(ban.until, Millis(2 + 600_000));
        assert_eq!(store.ban_of(attacker, Millis(3)), Some(ban.clone()));
        assert_eq!(store.ban_of(key("198.51.100.67"), Millis(3)), None);
        assert_eq!(store.bans(Millis(3)), vec![(attacker, ban)]);
        assert_eq!(store.ban_of(attacker, Millis(600_002)), None, "expired");
        for d in 10..15 {
            fail(d, 700_000);
        }
        let second = store.ban_of(attacker, Millis(700_001)).unwrap();
        assert_eq!(
            (second.offence, second.until),
            (2, Millis(700_000 + 1_200_000))
        );
        assert!(store.remove_ban(attacker, Millis(700_002)));
        assert_eq!(store.ban_of(attacker, Millis(700_003)), None);
        assert!(!store.remove_ban(attacker, Millis(700_004)));
    }

    #[test]
    fn a_flood_of_distinct_clients_stays_within_the_cap() {
        let store = MemoryStore::new(&MemorySettings {
            max_clients: 1600,
            ..MemorySettings::default()
        });
        for i in 0..100_000u32 {
            let k = ClientKey::V4(std::net::Ipv4Addr::from(i));
            store.hit(
                "smtp",
                Event::Message,
                k,
                Millis(0),
                Duration::from_secs(60),
            );
        }
        assert!(store.clients() <= 1600, "{}", store.clients());
        // The most recent are still counted.
        let last = ClientKey::V4(std::net::Ipv4Addr::from(99_999u32));
        assert_eq!(
            store.hit(
                "smtp",
                Event::Message,
                last,
                Millis(1),
                Duration::from_secs(60)
            ),
            2
        );
    }

    #[test]
    fn postscreen_results_live_until_their_last_ttl() {
        let store = MemoryStore::new(&MemorySettings::default());
        let addr: IpAddr = "192.0.2.5".parse().unwrap();
        let pass = PostscreenPass {
            pregreet: Some(Millis(1000)),
            dnsbl: Some(Millis(500)),
            ..PostscreenPass::default()
        };
        store.postscreen_put(addr, pass, Millis(0));
        assert_eq!(store.postscreen_get(addr, Millis(999)), Some(pass));
        assert_eq!(store.postscreen_get(addr, Millis(1000)), None);
    }
}
