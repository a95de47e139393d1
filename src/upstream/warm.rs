//! Upstream connections opened before a session needs one (`[upstream] warm_connections`), so a
//! session's first AUTH or MAIL does not wait for a TCP connect, a greeting and a TLS handshake.
//!
//! A warm connection is prepared (dialled, greeted, STARTTLS done). With XCLIENT it has named no
//! client: the session that takes it sends XCLIENT and its EHLO, exactly as on a fresh
//! connection. With identity `none` the upstream sees only relayguard anyway, so the warm
//! connection has also said EHLO as relayguard (`helo_name`) and the session's MAIL is its first
//! command. Each is handed to one session and never reused, and the pool refills only after a
//! take, so a client turned away before AUTH or MAIL still costs the upstream nothing. Each
//! worker thread keeps its own pool: a connection stays on the runtime that polls it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::{UpstreamConn, UpstreamError};
use super::connect;
use crate::config::{IdentityMode, UpstreamSettings};
use crate::net::shutdown::Shutdown;

/// A warm connection is retired after this long unused: well inside the 300 s that Postfix
/// (`smtpd_timeout`) and RFC 5321 servers wait for a command, so the upstream never times it out.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// How often the keeper looks for connections to retire when nothing was taken.
const SWEEP: Duration = Duration::from_secs(5);
/// A refill starts this long after a take: the taker is waiting for the upstream's first reply
/// on this thread, and should have it before a connect and a greeting compete for the thread.
const REFILL_DELAY: Duration = Duration::from_millis(1);
/// After a failed open, the keeper waits this long before trying again.
const RETRY: Duration = Duration::from_secs(5);

struct Warm {
    conn: UpstreamConn,
    opened: Instant,
    /// The settings it was opened with; a reload retires it.
    settings: Arc<UpstreamSettings>,
}

impl Warm {
    fn usable(&self, settings: &Arc<UpstreamSettings>) -> bool {
        Arc::ptr_eq(&self.settings, settings) && self.opened.elapsed() < MAX_IDLE
    }
}

/// One worker's warm connections.
pub struct WarmPool {
    idle: Mutex<Vec<Warm>>,
    want: usize,
    taken: Notify,
}

impl WarmPool {
    /// A pool that keeps `want` connections ready; the caller runs [`WarmPool::keep`].
    pub fn new(want: usize) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(Vec::with_capacity(want)),
            want,
            taken: Notify::new(),
        })
    }

    /// Whether a taken connection still needs the session's XCLIENT and EHLO.
    pub fn needs_introduction(settings: &UpstreamSettings) -> bool {
        settings.identity != IdentityMode::None
    }

    /// A ready connection opened with `settings`, if there is one. Connections opened with
    /// other settings, unused for too long, or on which the upstream spoke or hung up while
    /// idle (a 421, a close) are closed instead.
    pub fn take(&self, settings: &Arc<UpstreamSettings>) -> Option<UpstreamConn> {
        let mut found = None;
        let mut stale = Vec::new();
        {
            let mut idle = self.lock();
            while let Some(mut w) = idle.pop() {
                if w.usable(settings) && !w.conn.has_input() {
                    found = Some(w.conn);
                    break;
                }
                stale.push(w);
            }
        }
        // Only a pool that lost connections needs refilling: an empty one (the upstream is
        // down) keeps to the keeper's retry interval instead of a dial per session.
        if found.is_some() || !stale.is_empty() {
            self.taken.notify_one();
        }
        for w in stale {
            tokio::spawn(w.conn.quit());
        }
        found
    }

    /// Keeps the pool full until shutdown: opens connections with the settings `current`
    /// returns, retires old ones, and says QUIT to what is left when the shutdown is announced.
    pub async fn keep(
        self: Arc<Self>,
        current: impl Fn() -> Arc<UpstreamSettings>,
        mut shutdown: Shutdown,
    ) {
        // One warning per outage, not one per retry.
        let mut failing = false;
        loop {
            let settings = current();
            self.retire_old(&settings);
            let mut wait = SWEEP;
            while self.lock().len() < self.want {
                let opened = tokio::select! {
                    r = open(&settings) => r,
                    () = shutdown.announced() => break,
                };
                match opened {
                    Ok(conn) => {
                        failing = false;
                        self.lock().push(Warm {
                            conn,
                            opened: Instant::now(),
                            settings: settings.clone(),
                        });
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(upstream = %e, "cannot open a warm upstream connection; retrying every {RETRY:?}");
                        }
                        failing = true;
                        wait = RETRY;
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.announced() => break,
                () = self.taken.notified() => tokio::time::sleep(REFILL_DELAY).await,
                () = tokio::time::sleep(wait) => {}
            }
        }
        let left: Vec<Warm> = std::mem::take(&mut *self.lock());
        for w in left {
            w.conn.quit().await;
        }
    }

    fn retire_old(&self, settings: &Arc<UpstreamSettings>) {
        let old: Vec<Warm> = {
            let mut idle = self.lock();
            let (keep, old) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|w| w.usable(settings));
            *idle = keep;
            old
        };
        for w in old {
            tokio::spawn(w.conn.quit());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Warm>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection ready for a session: prepared, and for identity `none` greeted with EHLO too.
async fn open(settings: &UpstreamSettings) -> Result<UpstreamConn, UpstreamError> {
    let mut conn = connect::prepare(settings, None).await?;
    if !WarmPool::needs_introduction(settings) {
        connect::ehlo(&mut conn, &settings.helo_name).await?;
    }
    Ok(conn)
}
