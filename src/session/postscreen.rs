//! postscreen(8) in front of the session, before the greeting: the access list, the pass
//! cache, the pregreet test and the DNSBL lookups that run while the client waits, and what
//! a failed test does to the rest of the session.
//!
//! The decisions and the wording are `crate::postscreen`'s; this file reads the client, asks
//! the DNS and the state store, and logs under postscreen's own tag (`postfix/postscreen`), as
//! a Postfix that runs postscreen in front of smtpd logs. A client that passes goes on to
//! [`Session::greet`], whose `220 ` ends the `220-` teaser sent here, as smtpd's greeting ends
//! postscreen's. A store that cannot answer is a cache miss: the tests run.

use std::net::IpAddr;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::time::Instant;

use super::events::EventLog;
use super::io::ReadError;
use super::{Session, SessionEnd, Step, Transaction};
use crate::policy::pending::{DnsAnswer, FactAnswer};
use crate::postscreen::screen::{self, client};
use crate::postscreen::{AclVerdict, Action, DnsblScore, DomainReply, PostscreenSettings};
use crate::smtp::{replies, Reply};

/// A client that failed a test whose action is `enforce`: its MAIL is taken here and every
/// RCPT refused, so no transaction of it reaches the upstream (postscreen's dummy SMTP engine).
#[derive(Debug)]
pub(super) struct Enforced {
    /// The failed test's 550 reply.
    rcpt_reply: Reply,
    /// postscreen sends no `220 ` to a client it caught pregreeting.
    pub(super) banner: bool,
    /// `[addr]:port`, for the reject lines.
    who: String,
    tag: Arc<str>,
}

/// What ended one wait for the client, the DNS or the clock.
enum Event {
    Input(Result<usize, ReadError>),
    /// One DNSBL domain's lookup: its index, the query, the answer unless it timed out.
    Dns(Option<(usize, String, Looked)>),
    TimeUp,
}

type Looked = Result<(DnsAnswer, Option<u32>), tokio::time::error::Elapsed>;

/// How the tests before the greeting went.
#[derive(Default)]
struct Tests {
    /// A test failed with `enforce`: its reply (the last one wins, as in postscreen).
    enforce: Option<Reply>,
    /// The client talked before its turn, whatever the action.
    pregreeted: bool,
    pregreet_pass: Option<crate::limits::Millis>,
    dnsbl_pass: Option<crate::limits::Millis>,
    /// The DNS score allowlisted the client: its other tests pass until then.
    allowlisted: Option<crate::limits::Millis>,
}

impl Session {
    /// Runs postscreen's tests when the listener has them. `Some` ends the session.
    pub(super) async fn postscreen(&mut self) -> Option<SessionEnd> {
        let settings = self.ctx.listener.postscreen.clone()?;
        if self.tls {
            return None;
        }
        Box::pin(self.screen(settings)).await
    }

    async fn screen(&mut self, ps: Arc<PostscreenSettings>) -> Option<SessionEnd> {
        let addr = self.peer.ip().to_canonical();
        let who = client(addr, self.peer.port());
        let log = EventLog::new(ps.tag.clone(), who.clone());
        log.info(format_args!(
            "CONNECT from {who} to {}",
            client(self.local.ip(), self.local.port())
        ));
        let mut tests = Tests::default();
        let mut warnings = Vec::new();
        let verdict =
            ps.access
                .evaluate(addr, self.ctx.listener.policy.mynetworks(), &mut warnings);
        for w in &warnings {
            log.warning(format_args!("{w}"));
        }
        match verdict {
            AclVerdict::Permit => {
                log.info(format_args!(
                    "{} {who}",
                    screen::listed(ps.respectful_logging, true)
                ));
                return None;
            }
            AclVerdict::Reject => {
                log.info(format_args!(
                    "{} {who}",
                    screen::listed(ps.respectful_logging, false)
                ));
                match ps.denylist_action {
                    Action::Drop => {
                        return Some(
                            self.drop_client(&ps, &log, screen::denylisted_reply(521))
                                .await,
                        )
                    }
                    Action::Enforce => tests.enforce = Some(screen::denylisted_reply(550)),
                    Action::Ignore => {}
                }
            }
            AclVerdict::Dunno | AclVerdict::Error => {}
        }
        if !ps.has_tests() {
            return self.conclude(&ps, tests);
        }
        // A client that failed already takes every test afresh (psc_new_tests).
        let now = crate::state::now();
        let cached = match tests.enforce {
            Some(_) => None,
            None => self
                .ctx
                .state
                .postscreen_get(addr, now)
                .await
                .unwrap_or(None),
        };
        let plan = ps.plan(cached.as_ref(), now);
        if tests.enforce.is_none() && !plan.pregreet && !plan.dnsbl {
            log.info(format_args!("PASS OLD {who}"));
            return None;
        }
        if let Some(end) = self.early_tests(&ps, &log, plan, &mut tests).await {
            return Some(end);
        }
        if tests.enforce.is_none() {
            let all =
                (!plan.pregreet || tests.pregreet_pass.is_some() || tests.allowlisted.is_some())
                    && (!plan.dnsbl || tests.dnsbl_pass.is_some());
            if all {
                let age = if plan.new { "NEW" } else { "OLD" };
                log.info(format_args!("PASS {age} {who}"));
            }
            let renewed = screen::renewed(cached, tests.pregreet_pass, tests.dnsbl_pass);
            let renewed = match tests.allowlisted {
                Some(until) => screen::allowlisted(renewed, until),
                None => renewed,
            };
            if Some(renewed) != cached {
                // A store that fails only forgets: the client is tested again next time.
                let _ = self.ctx.state.postscreen_put(addr, renewed, now).await;
            }
        }
        self.conclude(&ps, tests)
    }

    /// The pregreet test and the DNSBL lookups, side by side for postscreen_greet_wait
    /// (psc_early_tests). `Some` ends the session (a drop action, or the client hung up).
    async fn early_tests(
        &mut self,
        ps: &PostscreenSettings,
        log: &EventLog,
        plan: crate::postscreen::Plan,
        tests: &mut Tests,
    ) -> Option<SessionEnd> {
        let addr = self.peer.ip().to_canonical();
        let started = Instant::now();
        let deadline = started + ps.greet_wait;
        let mut reading = false;
        if let Some(banner) = ps.greet_banner.as_ref().filter(|_| plan.pregreet) {
            // Half a greeting, by way of teaser: a robot that talks now talks out of turn.
            self.io.reply_bytes(format!("220-{banner}\r\n").as_bytes());
            if self.io.flush().await.is_err() {
                return Some(SessionEnd::Screened {
                    reason: "the teaser could not be sent".into(),
                });
            }
            reading = true;
        }
        let dnsbl = ps.dnsbl.as_ref().filter(|_| plan.dnsbl);
        let mut pending = FuturesUnordered::new();
        for (i, domain) in dnsbl.iter().flat_map(|t| t.domains.iter().enumerate()) {
            let lookups = Arc::clone(&self.ctx.lookups);
            let timeout = dnsbl.map_or(ps.greet_wait, |t| t.timeout);
            let query = domain.query(addr);
            pending.push(async move {
                let looked =
                    tokio::time::timeout(timeout, lookups.addresses_with_ttl(&query)).await;
                (i, query, looked)
            });
        }
        let mut replies: Vec<(usize, DomainReply)> = Vec::new();
        let mut score: Option<DnsblScore> = None;
        loop {
            if !reading && pending.is_empty() {
                break;
            }
            let event = tokio::select! {
                read = self.io.fill_command(deadline), if reading => Event::Input(read),
                looked = pending.next(), if !pending.is_empty() => Event::Dns(looked),
                () = tokio::time::sleep_until(deadline) => Event::TimeUp,
            };
            match event {
                Event::TimeUp | Event::Input(Err(ReadError::Timeout)) => break,
                Event::Input(Err(_)) => {
                    log.info(format_args!(
                        "HANGUP after {} from {} in tests before SMTP handshake",
                        screen::delay(started.elapsed()),
                        log.client()
                    ));
                    log.info(format_args!("DISCONNECT {}", log.client()));
                    return Some(SessionEnd::Screened {
                        reason: "hangup during postscreen's tests".into(),
                    });
                }
                Event::Input(Ok(_)) => {
                    // The input stays in the read buffer: the session reads it as commands.
                    reading = false;
                    tests.pregreeted = true;
                    log.info(format_args!(
                        "{}",
                        screen::pregreet_line(&self.io.rbuf, started.elapsed(), log.client())
                    ));
                    match ps.greet_action {
                        Action::Drop => {
                            return Some(
                                self.drop_client(ps, log, screen::pregreet_reply(521)).await,
                            )
                        }
                        Action::Enforce => tests.enforce = Some(screen::pregreet_reply(550)),
                        // Neither passed nor failed: the test runs again next time.
                        Action::Ignore => {}
                    }
                }
                Event::Dns(None) => {}
                Event::Dns(Some((i, query, looked))) => {
                    let name = dnsbl
                        .and_then(|t| t.domains.get(i))
                        .map_or("", |d| d.name.as_str());
                    replies.push((i, dnsblog(ps, &query, name, addr, looked)));
                    if let (Some(test), true) = (dnsbl, pending.is_empty()) {
                        let s = test.score(&replies);
                        if test.allowlists(&s, tests.pregreeted || tests.enforce.is_some()) {
                            // Allowlisted by its score: the pregreet wait is over too.
                            tests.allowlisted = Some(crate::state::now().after(test.ttl(&s)));
                            reading = false;
                        }
                        score = Some(s);
                    }
                }
            }
        }
        let now = crate::state::now();
        // Allowlisted, the pregreet test is passed already, until the DNS says.
        if plan.pregreet && !tests.pregreeted && tests.allowlisted.is_none() {
            tests.pregreet_pass = Some(now.after(ps.greet_ttl));
        }
        let test = dnsbl?;
        // What arrived before the wait ended: a late list does not count.
        let score = score.unwrap_or_else(|| test.score(&replies));
        if !test.fails(&score) {
            tests.dnsbl_pass = Some(now.after(test.ttl(&score)));
            return None;
        }
        log.info(format_args!(
            "DNSBL rank {} for {}",
            score.total,
            log.client()
        ));
        let site = score.name.as_deref();
        match test.action {
            Action::Drop => Some(
                self.drop_client(ps, log, screen::dnsbl_reply(521, addr, site))
                    .await,
            ),
            Action::Enforce => {
                tests.enforce = Some(screen::dnsbl_reply(550, addr, site));
                None
            }
            Action::Ignore => None,
        }
    }

    /// A client that failed a test with `drop`: the reply, then the end.
    async fn drop_client(
        &mut self,
        ps: &PostscreenSettings,
        log: &EventLog,
        reply: Reply,
    ) -> SessionEnd {
        let reply = if ps.soft_bounce {
            screen::soften(reply)
        } else {
            reply
        };
        self.io.reply(&reply);
        let _ = self.io.flush().await;
        log.info(format_args!("DISCONNECT {}", log.client()));
        SessionEnd::Screened {
            reason: reply.to_string(),
        }
    }

    /// Enforces a failed test for the rest of the session, or lets the client on.
    fn conclude(&mut self, ps: &PostscreenSettings, tests: Tests) -> Option<SessionEnd> {
        if let Some(reply) = tests.enforce {
            self.screened = Some(Box::new(Enforced {
                rcpt_reply: if ps.soft_bounce {
                    screen::soften(reply)
                } else {
                    reply
                },
                // An ignored pregreet is forgotten by then; an enforced one costs the banner.
                banner: !(tests.pregreeted && ps.greet_action == Action::Enforce),
                who: client(self.peer.ip(), self.peer.port()),
                tag: ps.tag.clone(),
            }));
        }
        None
    }

    /// MAIL and RCPT from a client postscreen enforces: the sender is taken without a look
    /// and without the upstream, every recipient is refused with the test's reply and logged
    /// as postscreen logs it (psc_mail_cmd, psc_rcpt_cmd).
    pub(super) fn screened_command(&mut self, command: &crate::smtp::command::Command<'_>) -> Step {
        use crate::smtp::command::Command;
        match command {
            Command::Mail { from, .. } => {
                self.heard.txn = Some(Box::new(Transaction {
                    sender: (*from).to_owned(),
                    ..Transaction::default()
                }));
                self.io.reply(&replies::mail_ok());
                Step::Ok
            }
            Command::Rcpt { to, .. } => {
                let Some(e) = self.screened.as_deref() else {
                    return Step::Failed;
                };
                let reply = e.rcpt_reply.clone();
                let from = self.heard.txn.as_ref().map_or("", |t| t.sender.as_str());
                EventLog::new(e.tag.clone(), String::new()).info(format_args!(
                    "NOQUEUE: reject: RCPT from {}: {reply}; from=<{from}>, to=<{to}>, proto={}, helo=<{}>",
                    e.who,
                    if self.heard.esmtp { "ESMTP" } else { "SMTP" },
                    self.heard.helo.as_deref().unwrap_or("")
                ));
                self.refuse(reply)
            }
            _ => Step::Failed,
        }
    }
}

/// One DNSBL reply as dnsblog(8) logs and returns it.
fn dnsblog(
    ps: &PostscreenSettings,
    query: &str,
    domain: &str,
    addr: IpAddr,
    looked: Looked,
) -> DomainReply {
    let log = EventLog::new(ps.dnsblog_tag.clone(), String::new());
    let (answer, ttl) = match looked {
        Ok(found) => found,
        Err(_) => {
            let secs = ps.dnsbl.as_ref().map_or(0, |t| t.timeout.as_secs());
            EventLog::new(ps.tag.clone(), String::new())
                .warning(format_args!("dnsblog reply timeout {secs}s for {domain}"));
            return DomainReply::default();
        }
    };
    match &answer {
        DnsAnswer::Records(_) => {
            let addrs: Vec<IpAddr> = answer.addresses().collect();
            for a in &addrs {
                log.info(format_args!("addr {addr} listed by domain {domain} as {a}"));
            }
            DomainReply { addrs, ttl }
        }
        DnsAnswer::NoData | DnsAnswer::NxDomain => DomainReply {
            addrs: Vec::new(),
            ttl,
        },
        DnsAnswer::NullMx | DnsAnswer::Refused(_) | DnsAnswer::TryAgain(_) => {
            log.warning(format_args!(
                "dnsblog_query: lookup error for DNS query {query}: {}",
                FactAnswer::Dns(answer.clone()).describe()
            ));
            DomainReply::default()
        }
    }
}
