//! Keeps a listener's sessions spread evenly over the workers.
//!
//! Each worker accepts on its own SO_REUSEPORT socket, and the kernel picks the socket by a hash
//! of the connection's addresses, blind to how busy each worker is. With many short sessions
//! that evens out; with a few long ones (two clients sending large messages, twenty sessions
//! sending many) one worker often holds most of them while the other idles. A worker that
//! accepts a connection while another runs fewer of the listener's sessions hands it over,
//! before anything has been read from it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::limit::Slot;

/// A connection on its way to another worker, with its place under the listener's limit.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub slot: Slot,
}

/// One listener's view of its workers: how many sessions each runs, and where to send one.
pub struct Balance {
    loads: Vec<AtomicUsize>,
    /// Unbounded, yet never holds more than the listener's connection limit: every hand-off
    /// carries one of its slots.
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
}

/// Counts a session on its worker while it lives.
pub struct Load {
    balance: Arc<Balance>,
    worker: usize,
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(load) = self.balance.loads.get(self.worker) {
            load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Balance {
    /// A balance over `workers`, with each worker's inbox of handed-over connections.
    pub fn new(workers: usize) -> (Arc<Balance>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (inboxes, receivers) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let balance = Balance {
            loads: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            inboxes,
        };
        (Arc::new(balance), receivers)
    }

    /// The worker that should run a connection `me` accepted: `me`, unless another one runs
    /// fewer sessions (the first such, so two idle workers do not trade connections).
    pub fn pick(&self, me: usize) -> usize {
        let load = |w: usize| {
            self.loads
                .get(w)
                .map_or(usize::MAX, |l| l.load(Ordering::Relaxed))
        };
        let mine = load(me);
        (0..self.loads.len())
            .filter(|&w| w != me)
            .min_by_key(|&w| load(w))
            .filter(|&w| load(w) < mine)
            .unwrap_or(me)
    }

    /// Sends a connection to `worker`; gives it back when that worker has stopped.
    pub fn hand_over(&self, worker: usize, handoff: Handoff) -> Result<(), Handoff> {
        match self.inboxes.get(worker) {
            Some(inbox) => inbox.send(handoff).map_err(|e| e.0),
            None => Err(handoff),
        }
    }

    /// Counts a session on `worker` until the returned guard drops.
    pub fn enter(self: &Arc<Self>, worker: usize) -> Load {
        if let Some(load) = self.loads.get(worker) {
            load.fetch_add(1, Ordering::Relaxed);
        }
        Load {
            balance: self.clone(),
            worker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_least_busy_worker_only_when_it_is_less_busy() {
        let (balance, _inboxes) = Balance::new(3);
        assert_eq!(balance.pick(1), 1, "all idle: keep it");
        let a = balance.enter(1);
        assert_eq!(balance.pick(1), 0);
        let b = balance.enter(0);
        let c = balance.enter(2);
        assert_eq!(balance.pick(1), 1, "all equal: keep it");
        let d = balance.enter(1);
        assert_eq!(balance.pick(1), 0);
        drop((a, d));
        assert_eq!(balance.pick(0), 1);
        assert_eq!(balance.pick(1), 1);
        drop((b, c));
    }
}
