//! Drain on shutdown: stop accepting, tell every session, wait for them up to a deadline.
//!
//! mini-redis's pattern: a watch channel announces the shutdown, and every session holds a
//! clone of one mpsc sender; when the last clone is dropped, every session is done.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Owned by the process; hands out one [`Shutdown`] per session.
pub struct Drain {
    announce: watch::Sender<bool>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// A session's view of the shutdown. Dropping it tells the [`Drain`] this session is done.
#[derive(Clone)]
pub struct Shutdown {
    announced: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        let (announce, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        Self {
            announce,
            done_tx,
            done_rx,
        }
    }

    pub fn watcher(&self) -> Shutdown {
        Shutdown {
            announced: self.announce.subscribe(),
            _done: self.done_tx.clone(),
        }
    }

    /// Announces the shutdown and waits until every session ended or `deadline` passed.
    /// Returns true when all sessions ended in time.
    pub async fn drain(self, deadline: Duration) -> bool {
        let Drain {
            announce,
            done_tx,
            mut done_rx,
        } = self;
        let _ = announce.send(true);
        drop(done_tx);
        tokio::time::timeout(deadline, done_rx.recv()).await.is_ok()
    }
}

impl Shutdown {
    /// A shutdown that never comes, for sessions run outside a server (tests, tools).
    pub fn never() -> Self {
        Drain::new().watcher()
    }

    /// Resolves once the shutdown is announced (at once if it already was).
    pub async fn announced(&mut self) {
        if *self.announced.borrow() {
            return;
        }
        while self.announced.changed().await.is_ok() {
            if *self.announced.borrow() {
                return;
            }
        }
        // The Drain is gone without announcing: wait forever, as if never announced.
        std::future::pending::<()>().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_sessions_then_gives_up_at_the_deadline() {
        let drain = Drain::new();
        let mut session = drain.watcher();
        let handle = tokio::spawn(async move {
            session.announced().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(session);
        });
        assert!(drain.drain(Duration::from_secs(5)).await);
        handle.await.unwrap();

        let drain = Drain::new();
        let stuck = drain.watcher();
        assert!(!drain.drain(Duration::from_millis(50)).await);
        drop(stuck);
    }
}
