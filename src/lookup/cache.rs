//! A small cache of definite table answers (found, not found) for a few seconds, so that the
//! keys a busy listener asks again and again do not cost a round trip each. Failures are never
//! cached: the next lookup asks the server again, as Postfix does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::table::TableReply;

/// At most this many keys per table; when full, expired entries go, then everything.
const MAX_ENTRIES: usize = 4096;

pub struct ResultCache {
    ttl: Duration,
    entries: Mutex<HashMap<Box<str>, (TableReply, Instant)>>,
}

impl ResultCache {
    /// `ttl` zero turns the cache off.
    pub fn new(ttl: Duration) -> Self {
        ResultCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str, now: Instant) -> Option<TableReply> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| now.duration_since(*at) < self.ttl)
            .map(|(reply, _)| reply.clone())
    }

    pub fn put(&self, key: &str, reply: &TableReply, now: Instant) {
        if self.ttl.is_zero() || matches!(reply, TableReply::Failed(_)) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key.into(), (reply.clone(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire_and_failures_are_not_kept() {
        let c = ResultCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        c.put("a", &TableReply::Found("OK".into()), t0);
        c.put("b", &TableReply::Failed("down".into()), t0);
        c.put("n", &TableReply::NotFound, t0);
        assert_eq!(c.get("a", t0), Some(TableReply::Found("OK".into())));
        assert_eq!(c.get("n", t0), Some(TableReply::NotFound));
        assert_eq!(c.get("b", t0), None);
        assert_eq!(c.get("a", t0 + Duration::from_secs(5)), None);
        let off = ResultCache::new(Duration::ZERO);
        off.put("a", &TableReply::NotFound, t0);
        assert_eq!(off.get("a", t0), None);
    }
}
