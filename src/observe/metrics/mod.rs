//! The process's Prometheus metrics: one registry of typed families, the per-listener handles
//! the session's hot path increments, and the facts `/readyz` judges (listeners bound, the
//! upstream's last answer, draining).
//!
//! One process-wide value behind a `OnceLock` ([`metrics`]) rather than an `Arc` threaded
//! through `Services`: the counters are touched from the session, the upstream leg and the
//! abuse code, none of which should grow a parameter for them, and a process exposes exactly
//! one `/metrics`. Unit tests share it; they assert on their own listener names only.
//!
//! Hot path: a session resolves its listener's [`ListenerMetrics`] once (a map lookup under a
//! mutex at session start); every command, message and byte after that is one atomic add on a
//! counter that handle owns, with no label hashing and no allocation. Rejections, AUTH results,
//! limit and ban events build their label set (a few short strings) when they happen, which is
//! rare next to commands. Label values are bounded by the config: listener names, command
//! verbs, stage words, restriction names, parameter names and table ENTRY keys, never a
//! client's address or name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

mod listener;

use listener::{
    AuthLabels, BanLabels, CommandLabels, KindLabel, LimitLabels, ListenerLabel, RejectionLabels,
    ResultLabel, VERBS,
};
pub use listener::{AuthResult, BanEvent, ListenerMetrics, Name, OpenSession};

/// Upstream reply latency buckets, in seconds: a local MTA answers a command in well under a
/// millisecond, a content filter at end of data in seconds, a stuck one at the reply timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Every family, the registry that encodes them, and the readiness facts.
pub struct Metrics {
    registry: Registry,
    listeners: Mutex<HashMap<Box<str>, Arc<ListenerMetrics>>>,
    sessions_opened: Family<ListenerLabel, Counter>,
    sessions_current: Family<ListenerLabel, Gauge>,
    commands: Family<CommandLabels, Counter>,
    messages: Family<ListenerLabel, Counter>,
    bytes: Family<ListenerLabel, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    auth: Family<AuthLabels, Counter>,
    limits: Family<LimitLabels, Counter>,
    bans: Family<BanLabels, Counter>,
    upstream_errors: Family<KindLabel, Counter>,
    upstream_latency: Histogram,
    reloads: Family<ResultLabel, Counter>,
    /// Milliseconds after `started` of the upstream's last reply; 0: none yet.
    last_upstream_reply: AtomicU64,
    started: Instant,
    listeners_bound: AtomicBool,
    draining: AtomicBool,
}

/// The process's metrics, made on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("relayguard");
        let m = Metrics {
            registry: Registry::default(),
            listeners: Mutex::default(),
            sessions_opened: Family::default(),
            sessions_current: Family::default(),
            commands: Family::default(),
            messages: Family::default(),
            bytes: Family::default(),
            rejections: Family::default(),
            auth: Family::default(),
            limits: Family::default(),
            bans: Family::default(),
            upstream_errors: Family::default(),
            upstream_latency: Histogram::new(LATENCY_BUCKETS),
            reloads: Family::default(),
            last_upstream_reply: AtomicU64::new(0),
            started: Instant::now(),
            listeners_bound: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        };
        // Counter names get their `_total` from the encoder.
        registry.register(
            "sessions_opened",
            "SMTP sessions accepted, by listener",
            m.sessions_opened.clone(),
        );
        registry.register(
            "sessions_current",
            "SMTP sessions open now, by listener",
            m.sessions_current.clone(),
        );
        registry.register(
            "commands",
            "SMTP command lines received, by listener and Postfix counter name",
            m.commands.clone(),
        );
        registry.register(
            "messages_forwarded",
            "messages the upstream accepted with 250, by listener",
            m.messages.clone(),
        );
        registry.register_with_unit(
            "forwarded",
            "message bytes sent to the upstream for accepted messages, by listener",
            Unit::Bytes,
            m.bytes.clone(),
        );
        registry.register(
            "rejections",
            "policy refusals by stage and the rule that decided (parameter, restriction, table, table entry key)",
            m.rejections.clone(),
        );
        registry.register(
            "auth",
            "AUTH outcomes: success, failure (credentials refused), refused (by the network gate)",
            m.auth.clone(),
        );
        registry.register(
            "limit_exceeded",
            "anvil limits exceeded, by limit",
            m.limits.clone(),
        );
        registry.register(
            "ban_events",
            "bans imposed and refusals of banned clients",
            m.bans.clone(),
        );
        registry.register(
            "upstream_errors",
            "failures to open an upstream leg, by kind",
            m.upstream_errors.clone(),
        );
        registry.register_with_unit(
            "upstream_reply_duration",
            "time from sending to the upstream until its reply arrived",
            Unit::Seconds,
            m.upstream_latency.clone(),
        );
        registry.register(
            "reloads",
            "config reloads (SIGHUP, relayguard reload), by result: ok or failed",
            m.reloads.clone(),
        );
        // Both series from the start, so a dashboard shows 0 rather than no data.
        for result in ["ok", "failed"] {
            drop(m.reloads.get_or_create(&ResultLabel { result }));
        }
        Metrics { registry, ..m }
    }

    /// The hot-path handle for `listener`, made on first use.
    pub fn listener(&self, listener: &str) -> Arc<ListenerMetrics> {
        let mut map = match self.listeners.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(l) = map.get(listener) {
            return l.clone();
        }
        let name = Name(Arc::from(listener));
        let label = ListenerLabel {
            listener: name.clone(),
        };
        let commands = VERBS.map(|verb| {
            self.commands
                .get_or_create(&CommandLabels {
                    listener: name.clone(),
                    verb,
                })
                .clone()
        });
        let handle = Arc::new(ListenerMetrics {
            sessions_opened: self.sessions_opened.get_or_create(&label).clone(),
            sessions_current: self.sessions_current.get_or_create(&label).clone(),
            commands,
            messages: self.messages.get_or_create(&label).clone(),
            bytes: self.bytes.get_or_create(&label).clone(),
            name,
        });
        map.insert(listener.into(), handle.clone());
        handle
    }

    /// An upstream reply arrived now for a request that went out at `asked`; `alive` is false
    /// for a 421, an upstream saying it is going away, which must not keep `/readyz` green.
    /// One clock read serves the latency and the liveness stamp: this runs for every reply.
    pub fn upstream_reply(&self, asked: Instant, alive: bool) {
        let now = Instant::now();
        self.upstream_latency
            .observe(now.saturating_duration_since(asked).as_secs_f64());
        if !alive {
            return;
        }
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.last_upstream_reply.store(ms.max(1), Ordering::Relaxed);
    }

    /// Opening an upstream leg failed; `kind` is [`crate::upstream::UpstreamError::kind`].
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// How long ago the upstream last answered, if it ever did.
    pub fn since_upstream_reply(&self) -> Option<Duration> {
        let at = self.last_upstream_reply.load(Ordering::Relaxed);
        (at > 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(at))
        })
    }

    /// A reload was applied (`ok`) or refused, keeping the running config.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn set_listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }

    pub fn listeners_bound(&self) -> bool {
        self.listeners_bound.load(Ordering::Acquire)
    }

    /// SIGTERM came: `/readyz` says 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_handle_counts_into_the_scrape() {
        let l = metrics().listener("metrics-unit");
        let open = l.session_opened();
        l.command("ehlo");
        l.command("EHLO-not-a-verb");
        l.message_forwarded(1234);
        let text = metrics().encode();
        assert!(text.contains("relayguard_sessions_opened_total{listener=\"metrics-unit\"} 1"));
        assert!(text.contains("relayguard_sessions_current{listener=\"metrics-unit\"} 1"));
        assert!(
            text.contains("relayguard_commands_total{listener=\"metrics-unit\",verb=\"ehlo\"} 1")
        );
        assert!(text
            .contains("relayguard_commands_total{listener=\"metrics-unit\",verb=\"unknown\"} 1"));
        assert!(text.contains("relayguard_forwarded_bytes_total{listener=\"metrics-unit\"} 1234"));
        drop(open);
        let text = metrics().encode();
        assert!(text.contains("relayguard_sessions_current{listener=\"metrics-unit\"} 0"));
        // The same handle again, not a second set of counters.
        assert!(Arc::ptr_eq(&l, &metrics().listener("metrics-unit")));
    }
}
