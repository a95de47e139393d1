//! A small, bounded cache of remote-table answers, so that one session's repeated lookups of
//! the same key (MAIL FROM, then each RCPT) do not each cost a round trip.
//!
//! Only definite answers are kept (found, not found); a failure is asked again next time.
//! Time is an argument, so tests need no clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::future::Future;

use super::table::{TableAnswer, TableReply};

/// How many keys a table's cache holds unless its configuration says otherwise.
pub const CACHE_KEYS: usize = 4096;

/// Answers kept for `ttl`, at most `capacity` keys.
#[derive(Debug)]
pub struct ReplyCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (TableReply, Instant)>>,
}

impl ReplyCache {
    /// A cache that keeps nothing when `ttl` or `capacity` is zero.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        ReplyCache {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer stored for `key` less than `ttl` before `now`.
    pub fn get(&self, key: &str, now: Instant) -> Option<TableReply> {
        let entries = self.entries.lock().ok()?;
        let (reply, stored) = entries.get(key)?;
        (now.saturating_duration_since(*stored) < self.ttl).then(|| reply.clone())
    }

    /// The answer for `key` from the cache, or else `ask`'s, kept for next time: the one path
    /// every remote backend's lookups take.
    pub async fn answer(&self, key: &str, ask: impl Future<Output = TableReply>) -> TableAnswer {
        if let Some(reply) = self.get(key, Instant::now()) {
            return TableAnswer {
                reply,
                cached: true,
            };
        }
        let reply = ask.await;
        self.put(key, &reply, Instant::now());
        TableAnswer {
            reply,
            cached: false,
        }
    }

    /// Keeps `reply` for `key` unless it is a failure. When full, expired entries go first;
    /// if none had expired, everything goes: simpler than LRU, and bounded all the same.
    pub fn put(&self, key: &str, reply: &TableReply, now: Instant) {
        if self.ttl.is_zero() || self.capacity == 0 || matches!(reply, TableReply::Failed(_)) {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key.to_string(), (reply.clone(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_definite_answers_for_the_ttl() {
        let c = ReplyCache::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        c.put("a", &TableReply::Found("x".into()), t0);
        c.put("b", &TableReply::NotFound, t0);
        c.put("f", &TableReply::Failed("down".into()), t0);
        assert_eq!(c.get("a", t0), Some(TableReply::Found("x".into())));
        assert_eq!(c.get("b", t0), Some(TableReply::NotFound));
        assert_eq!(c.get("f", t0), None);
        assert_eq!(c.get("a", t0 + Duration::from_secs(10)), None);
        // Full: the third key evicts (nothing expired yet, so everything).
        c.put("c", &TableReply::NotFound, t0);
        assert_eq!(c.get("a", t0), None);
        assert_eq!(c.get("c", t0), Some(TableReply::NotFound));
    }
}
