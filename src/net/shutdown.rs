//! Drain on shutdown: stop accepting, tell every session, wait for them up to a deadline.
//!
//! mini-redis's pattern: the shutdown is announced to every session, and every session holds a
//! clone of one mpsc sender; when the last clone is dropped, every session is done. The
//! announcement is a flag plus a `Notify` each session registers with once, not per read: a
//! session waits on it beside every command read. Each worker has a `Notify` of its own
//! ([`Shutdown::for_worker`]): polling a wait takes its `Notify`'s lock, and one lock shared by
//! every session of every worker bounced between the cores on each read.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::{mpsc, Notify};

#[derive(Default)]
struct Announcement {
    made: AtomicBool,
    notify: Arc<Notify>,
    /// The workers' own: each is woken too.
    workers: std::sync::Mutex<Vec<Arc<Notify>>>,
}

/// Owned by the process; hands out one [`Shutdown`] per session.
pub struct Drain {
    announcement: Arc<Announcement>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// A session's view of the shutdown. Dropping it tells the [`Drain`] this session is done.
pub struct Shutdown {
    announcement: Arc<Announcement>,
    /// The announcement's own `Notify`, or a worker's.
    notify: Arc<Notify>,
    _done: mpsc::Sender<()>,
    /// Registered on first wait and kept, so later waits cost no registration.
    wait: Option<Pin<Box<OwnedNotified>>>,
}

impl Clone for Shutdown {
    fn clone(&self) -> Self {
        Shutdown {
            announcement: self.announcement.clone(),
            notify: self.notify.clone(),
            _done: self._done.clone(),
            wait: None,
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        let (done_tx, done_rx) = mpsc::channel(1);
        Self {
            announcement: Arc::default(),
            done_tx,
            done_rx,
        }
    }

    pub fn watcher(&self) -> Shutdown {
        Shutdown {
            announcement: self.announcement.clone(),
            notify: self.announcement.notify.clone(),
            _done: self.done_tx.clone(),
            wait: None,
        }
    }

    /// Announces the shutdown and waits until every session ended or `deadline` passed.
    /// Returns true when all sessions ended in time.
    pub async fn drain(self, deadline: Duration) -> bool {
        let Drain {
            announcement,
            done_tx,
            mut done_rx,
        } = self;
        // The flag first: a session that registers after notify_waiters() sees it.
        announcement.made.store(true, Ordering::Release);
        announcement.notify.notify_waiters();
        if let Ok(workers) = announcement.workers.lock() {
            for notify in workers.iter() {
                notify.notify_waiters();
            }
        }
        drop(done_tx);
        tokio::time::timeout(deadline, done_rx.recv()).await.is_ok()
    }
}

impl Shutdown {
    /// A watcher for one worker's sessions, with a `Notify` of its own.
    pub fn for_worker(&self) -> Shutdown {
        let notify = Arc::new(Notify::new());
        if let Ok(mut workers) = self.announcement.workers.lock() {
            workers.push(notify.clone());
        }
        Shutdown {
            notify,
            ..self.clone()
        }
    }

    fn is_announced(&self) -> bool {
        self.announcement.made.load(Ordering::Acquire)
    }

    /// Resolves once the shutdown is announced (at once if it already was). Cancel-safe: a
    /// wait dropped by `select!` keeps its registration for the next one.
    pub async fn announced(&mut self) {
        if self.is_announced() {
            return;
        }
        let notify = &self.notify;
        let wait = self
            .wait
            .get_or_insert_with(|| Box::pin(notify.clone().notified_owned()));
        wait.as_mut().enable();
        if self.announcement.made.load(Ordering::Acquire) {
            return;
        }
        wait.as_mut().await;
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

    #[tokio::test]
    async fn a_worker_watcher_hears_the_announcement() {
        let drain = Drain::new();
        let mut session = drain.watcher().for_worker().clone();
        let waiter = tokio::spawn(async move { session.announced().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        drain.drain(Duration::from_millis(10)).await;
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_wait_dropped_by_select_still_hears_the_announcement() {
        let drain = Drain::new();
        let mut session = drain.watcher();
        tokio::select! {
            _ = session.announced() => panic!("not announced yet"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        let waiter = tokio::spawn(async move {
            session.announced().await;
            session
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let done = tokio::spawn(drain.drain(Duration::from_secs(5)));
        let session = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        drop(session);
        assert!(done.await.unwrap());
    }
}
