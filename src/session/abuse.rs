//! anvil's limits and the ban list inside one session: the connection counted and judged
//! before the greeting, MAIL, RCPT and AUTH counted as they come, failures reported to the
//! ban list, and a ban imposed mid-session enforced at the next command.
//!
//! The store may be remote: each check is one call. When it does not answer, the listener's
//! `[state] on_failure` decides (open: the check passes; closed: 421).

use super::{Session, SessionEnd, Step};
use crate::limits::{Ban, ClientKey, Event, Exceeded, Trigger};
use crate::observe::metrics::BanEvent;
use crate::smtp::{replies, Reply};
use crate::state::{self, ConnectQuery, FailMode, FailureQuery};

/// What the session told the store about itself, to take back at the end.
#[derive(Debug, Default)]
pub(super) struct AbuseState {
    /// The client's key and this session's id, when counted among its concurrent sessions.
    counted: Option<(ClientKey, u64)>,
    /// A ban imposed during this session: the next command is refused.
    banned: Option<Box<Ban>>,
    /// smtpd_client_event_limit_exceptions matched: nothing is counted or banned.
    exempt: bool,
}

/// A session id no other session of any replica sharing the store has: a per-process random
/// base (drawn once) plus a counter.
fn session_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
        u64::from_ne_bytes(bytes)
    });
    base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Session {
    fn limits_apply(&self) -> bool {
        self.ctx.listener.anvil.any() || self.ctx.snapshot.abuse.bans.is_some()
    }

    /// The connect checks: the client's ban, then its concurrent sessions and connection
    /// rate. `Some` ends the session before the greeting, with the reply already queued.
    pub(super) async fn admit_client(&mut self) -> Option<SessionEnd> {
        if !self.limits_apply() {
            return None;
        }
        // smtpd.c exempts these from every anvil limit (its hogger_list); relayguard never
        // bans them either.
        self.abuse.exempt = self
            .ctx
            .listener
            .policy
            .event_limit_exceptions()
            .match_client(&self.client.name, self.client.addr)
            .is_match();
        if self.abuse.exempt {
            return None;
        }
        let anvil = &self.ctx.listener.anvil;
        let store = self.ctx.state.clone();
        let key = store.key(self.client.addr);
        let now = state::now();
        let query = ConnectQuery {
            listener: &self.ctx.listener.name,
            key,
            session: session_id(),
            now,
            lifetime: self.ctx.snapshot.session_timeout,
            count_concurrent: anvil.connection_count > 0,
            rate_unit: (anvil.connection_rate > 0).then_some(anvil.time_unit),
            check_ban: self.ctx.snapshot.abuse.bans.is_some(),
        };
        let view = match store.connect(query).await {
            Ok(view) => view,
            Err(_) => return self.store_failed("CONNECT").map(|_| self.closed_by_store()),
        };
        if query.count_concurrent {
            self.abuse.counted = Some((key, query.session));
        }
        if let Some(ban) = view.ban {
            let reply = self.ban_reply(&ban);
            self.connect_logged();
            self.log
                .rejected("CONNECT", &reply, &self.reject_context(None, None));
            tracing::info!(client = %key, reason = %ban.reason, offence = ban.offence, left_s = ban.until.left_from(now).as_secs(), "banned client refused");
            self.ctx.metrics.ban(BanEvent::RefusedAtConnect, "");
            self.io.reply(&reply);
            return Some(SessionEnd::Closed {
                reason: reply.to_string(),
            });
        }
        let exceeded = anvil.judge_connect(view.concurrent, view.rate)?;
        self.connect_logged();
        let reply = self.limit_exceeded(exceeded);
        self.io.reply(&reply);
        Box::pin(self.report_failure(Trigger::Limit, 0, 0)).await;
        Some(SessionEnd::Closed {
            reason: reply.to_string(),
        })
    }

    /// Counts a MAIL, RCPT or AUTH; the reply refusing it when the client is over the limit.
    /// The counting future is large (it may wait for Redis) and boxed only when a limit counts
    /// this event: with none, every MAIL and RCPT would pay for an allocation of it.
    pub(super) async fn over_rate(&mut self, event: Event) -> Option<Reply> {
        if self.ctx.listener.anvil.rate_limit(event) == 0 || self.abuse.exempt {
            return None;
        }
        Box::pin(self.count_rate(event)).await
    }

    async fn count_rate(&mut self, event: Event) -> Option<Reply> {
        let unit = self.ctx.listener.anvil.time_unit;
        // Arcs, not a copy of the listener's name: this runs for every MAIL, RCPT and AUTH.
        let (store, listener) = (self.ctx.state.clone(), self.ctx.listener.clone());
        let key = store.key(self.client.addr);
        let rate = match store
            .hit(&listener.name, event, key, state::now(), unit)
            .await
        {
            Ok(rate) => rate,
            Err(_) => return self.store_failed(event.name()),
        };
        let exceeded = self.ctx.listener.anvil.judge(event, rate)?;
        let reply = self.limit_exceeded(exceeded);
        Box::pin(self.report_failure(Trigger::Limit, 0, 0)).await;
        Some(reply)
    }

    /// Logs a limit the way smtpd does, plus a line with its fields; returns smtpd's reply.
    fn limit_exceeded(&self, exceeded: Exceeded) -> Reply {
        let service = &self.ctx.listener.name;
        self.log.warning(format_args!(
            "{}",
            exceeded.warning(self.log.client(), service)
        ));
        self.ctx.metrics.limit_exceeded(exceeded.limit_name());
        let (count, limit) = exceeded.values();
        tracing::info!(client = %self.client.addr, listener = %service, limit_name = exceeded.limit_name(), count, limit, "client over a limit");
        exceeded.reply(
            &self.ctx.listener.smtpd.myhostname,
            &self.client.addr.to_string(),
        )
    }

    /// Reports a failure that may count towards a ban: `digest` identifies the credentials
    /// (0: none, each failure counts), `user` the username (0: none).
    pub(super) async fn report_failure(&mut self, trigger: Trigger, digest: u32, user: u32) {
        let Some(rule) = self.ctx.snapshot.abuse.bans.as_ref() else {
            return;
        };
        if !rule.counts(trigger) || self.abuse.exempt || self.abuse.banned.is_some() {
            return;
        }
        let store = self.ctx.state.clone();
        let key = store.key(self.client.addr);
        let digest = if digest == 0 {
            // Consecutive ids differ in their low bits: no two failures share one.
            (session_id() as u32).max(1)
        } else {
            digest
        };
        let query = FailureQuery {
            key,
            trigger,
            digest,
            user,
            now: state::now(),
            rule,
        };
        let outcome = match store.record_failure(query).await {
            Ok(o) => o,
            Err(_) => return,
        };
        let Some(ban) = outcome.banned else {
            return;
        };
        // fail2ban's words for a ban are its own; relayguard's line says who, why, how long.
        self.log.warning(format_args!(
            "{}: banned for {}s: {}, offence {}",
            self.log.client(),
            ban.until.left_from(ban.since).as_secs(),
            ban.reason,
            ban.offence
        ));
        self.ctx.metrics.ban(BanEvent::Imposed, trigger.name());
        tracing::info!(client = %key, trigger = trigger.name(), failures = outcome.count.client, user_failures = outcome.count.user, offence = ban.offence, ban_s = ban.until.left_from(ban.since).as_secs(), "client banned");
        self.abuse.banned = Some(Box::new(ban));
    }

    /// A ban imposed during this session refuses whatever the client sends next but QUIT,
    /// and ends the session.
    pub(super) fn refuse_if_banned(&mut self, stage: &str) -> Option<Step> {
        let ban = self.abuse.banned.as_deref()?;
        let reply = self.ban_reply(ban);
        self.ctx.metrics.ban(BanEvent::RefusedCommand, "");
        self.log
            .rejected(stage, &reply, &self.reject_context(None, None));
        self.io.reply(&reply);
        Some(Step::End(SessionEnd::Closed {
            reason: reply.to_string(),
        }))
    }

    fn ban_reply(&self, ban: &Ban) -> Reply {
        let kind = self
            .ctx
            .snapshot
            .abuse
            .bans
            .as_ref()
            .map_or(crate::limits::BanReply::Reject, |r| r.reply);
        ban.reply(kind, &self.client.addr.to_string(), state::now())
    }

    /// The store did not answer: with `on_failure = "closed"` the command (or connection) is
    /// refused with 421; with `open` it goes on unchecked.
    fn store_failed(&mut self, what: &str) -> Option<Reply> {
        if self.ctx.state.fail_mode() == FailMode::Open {
            return None;
        }
        tracing::debug!("state backend did not answer at {what}; refusing (on_failure = closed)");
        Some(replies::server_local_error(
            &self.ctx.listener.smtpd.myhostname,
        ))
    }

    fn closed_by_store(&mut self) -> SessionEnd {
        self.connect_logged();
        let reply = replies::server_local_error(&self.ctx.listener.smtpd.myhostname);
        self.io.reply(&reply);
        SessionEnd::Closed {
            reason: reply.to_string(),
        }
    }

    fn connect_logged(&self) {
        self.log
            .info(format_args!("connect from {}", self.log.client()));
    }

    /// Takes this session off its client's concurrent count.
    pub(super) async fn release_client(&mut self) {
        if let Some((key, session)) = self.abuse.counted.take() {
            let listener = self.ctx.listener.clone();
            self.ctx
                .state
                .disconnect(&listener.name, key, session)
                .await;
        }
    }
}
