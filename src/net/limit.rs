//! A listener's connection limit (`max_connections`), shared by all its workers, that follows
//! the running config: each accept is checked against the limit of the snapshot current then.
//!
//! Counts sessions; does not accept, refuse or log (the listener does).
//!
//! A count and a compare rather than a semaphore: slots are only ever tried, never waited for,
//! so a semaphore's queue buys nothing, while a reload that lowers the limit below the sessions
//! already open would need permits forgotten as they come back. Here a lower limit simply
//! admits no one until enough of those sessions have ended, and none of them is cut.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The sessions a listener runs now, across its workers.
#[derive(Debug, Default)]
pub struct ConnectionLimit {
    open: AtomicUsize,
}

/// One session's place under the limit, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limit: Arc<ConnectionLimit>,
}

impl ConnectionLimit {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A slot if fewer than `max` sessions are open, else `None`.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot {
                limit: self.clone(),
            })
    }

    /// How many slots are taken.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_of_each_attempt_applies_and_open_sessions_stay() {
        let limit = ConnectionLimit::new();
        let a = limit.try_acquire(1).unwrap();
        assert!(limit.try_acquire(1).is_none());
        // Raised: room at once.
        let b = limit.try_acquire(3).unwrap();
        let c = limit.try_acquire(3).unwrap();
        assert!(limit.try_acquire(3).is_none());
        // Lowered below what is open: nobody new until enough have left.
        assert!(limit.try_acquire(2).is_none());
        drop(a);
        assert!(limit.try_acquire(2).is_none());
        drop(b);
        assert_eq!(limit.open(), 1);
        let d = limit.try_acquire(2).unwrap();
        assert!(limit.try_acquire(2).is_none());
        drop((c, d));
        assert_eq!(limit.open(), 0);
        assert!(limit.try_acquire(0).is_none(), "a limit of 0 admits nobody");
    }
}
