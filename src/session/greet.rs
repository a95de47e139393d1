//! The connect stage and the greeting, EHLO/HELO answered from the upstream's filtered
//! extensions, and STARTTLS done by relayguard itself.

use tokio_rustls::TlsAcceptor;

use super::decide::decide;
use super::policy_facts::TlsFacts;
use super::{Heard, Session, SessionEnd, Step};
use crate::policy::{Outcome, Stage};
use crate::smtp::ehlo::Offer;
use crate::smtp::{replies, Reply};

impl Session {
    /// Runs the connect stage and writes the 220. `Some` ends the session at once.
    pub(super) async fn greet(&mut self) -> Option<SessionEnd> {
        // Implicit TLS: the certificate is known before the greeting, which it replaces.
        if let Some(why) = self.certificate_refusal().filter(|_| self.tls) {
            return Some(self.refuse_certificate(why).await);
        }
        // A client that speaks before the greeting is pipelining improperly (smtpd.c checks
        // before anything else; never on an implicit-TLS connection, whose first bytes are
        // the handshake's, nor on one postscreen handed over, which judged that itself).
        let early =
            !self.tls && self.ctx.listener.postscreen.is_none() && self.io.take_early_input();
        if early && self.ctx.listener.smtpd.dialogue.forbid_unauth_pipelining {
            self.log
                .info(format_args!("connect from {}", self.log.client()));
            self.flag_ill_pipelining("CONNECT", false);
            self.io.reply(&replies::pipelining_sync_error());
            let _ = self.io.flush().await;
            return Some(SessionEnd::Closed {
                reason: "SMTP protocol synchronization".into(),
            });
        }
        let decision = decide!(self, Stage::Connect, None, None);
        self.log
            .notes("CONNECT", &decision.notes, &self.reject_context(None, None));
        match decision.outcome {
            Outcome::Accept => {
                // postscreen sends a client it caught pregreeting no banner (psc_smtpd_tests).
                if self.screened.as_ref().is_none_or(|s| s.banner) {
                    let banner = &self.ctx.listener.smtpd.banner;
                    self.io.reply(&Reply::plain(220, banner.clone()));
                }
                // The greeting first, the log line after: it is not the client's to wait for.
                let _ = self.io.flush().await;
                self.log
                    .info(format_args!("connect from {}", self.log.client()));
                if early {
                    self.flag_ill_pipelining("CONNECT", false);
                }
            }
            Outcome::Reject(reply) => {
                self.log
                    .info(format_args!("connect from {}", self.log.client()));
                if early {
                    self.flag_ill_pipelining("CONNECT", false);
                }
                // smtpd_delay_reject = no: the reject replaces the greeting and every later
                // command but QUIT is refused (postfix-semantics 2.3).
                self.log
                    .rejected("CONNECT", &reply, &self.reject_context(None, None));
                self.ctx
                    .metrics
                    .rejection("CONNECT", decision.reason.as_ref());
                self.io.reply(&reply);
                if reply.closes_connection() {
                    let _ = self.io.flush().await;
                    return Some(SessionEnd::Closed {
                        reason: reply.to_string(),
                    });
                }
            }
        }
        None
    }

    pub(super) async fn helo(&mut self, name: &str, esmtp: bool) -> Step {
        let previous = self.heard.helo.replace(name.to_owned());
        let previous_esmtp = std::mem::replace(&mut self.heard.esmtp, esmtp);
        let decision = decide!(self, Stage::Helo, None, None);
        let stage = if esmtp { "EHLO" } else { "HELO" };
        self.log
            .notes(stage, &decision.notes, &self.reject_context(None, None));
        if let Outcome::Reject(reply) = decision.outcome {
            self.log
                .rejected(stage, &reply, &self.reject_context(None, None));
            self.ctx.metrics.rejection(stage, decision.reason.as_ref());
            self.heard.helo = previous;
            self.heard.esmtp = previous_esmtp;
            return self.refuse(reply);
        }
        // HELO/EHLO in mid-transaction resets it, here and upstream.
        self.heard.txn = None;
        // A leg being opened ahead was told the old HELO: it is waited for and told the new.
        if let Err(e) = self.settle_opening().await {
            tracing::warn!(upstream = %e, "upstream unavailable for {}", self.log.client());
        }
        if let Some(up) = self.upstream.as_mut() {
            let line = format!("{} {name}\r\n", if esmtp { "EHLO" } else { "HELO" });
            match up.command(line.as_bytes()).await {
                Ok(reply) if reply.is_completion() => {}
                // A leg that refused the new HELO is not one to go on with; the next MAIL
                // opens another (or, after AUTH, ends the session).
                Ok(_) => self.upstream = None,
                Err(e) => {
                    let _ = self.upstream_failed(&e);
                }
            }
        }
        if esmtp {
            if let Some(line) = self.discard.log_line() {
                self.log.info(format_args!("{line}"));
            }
            let reply = self.ehlo_reply();
            self.note_ehlo_offer(&reply);
            self.io.reply(&reply);
        } else {
            self.io.reply(&Reply::plain(
                250,
                self.ctx.listener.smtpd.myhostname.clone(),
            ));
        }
        self.ahead_at_helo();
        Step::Ok
    }

    /// relayguard's own EHLO reply: the upstream's extensions, filtered for this client.
    fn ehlo_reply(&self) -> Reply {
        let settings = &self.ctx.listener.smtpd;
        let rules = self.rules();
        let caps = self.ctx.upstream.capabilities();
        let facts = self.facts(None, None);
        let auth =
            self.ctx.listener.policy.offers_auth(&facts) && (self.tls || !rules.tls_required);
        let offer = Offer {
            hostname: settings.myhostname.clone(),
            starttls: !self.tls && rules.starttls_available,
            auth: auth.then(|| settings.dialogue.sasl_security(self.tls)),
            broken_auth_clients: settings.dialogue.broken_sasl_auth_clients,
            size_limit: settings.message_size_limit,
            chunking: self.offers_chunking(),
            vrfy: !settings.vrfy_disabled,
            discard: self.discard,
        };
        caps.advertise(&offer)
    }

    /// smtpd_tls_req_ccert at level encrypt: why a session without a verified client
    /// certificate cannot go on; asked only once the session is encrypted.
    fn certificate_refusal(&self) -> Option<&'static str> {
        let cert = self.tls_facts.as_deref().and_then(TlsFacts::client_cert);
        let check = self.ctx.listener.client_certs.as_ref()?;
        check.refusal(cert)
    }

    /// smtpd.c's answer to a client without the certificate it must have: 421 and close.
    async fn refuse_certificate(&mut self, why: &str) -> SessionEnd {
        self.log.info(format_args!(
            "NOQUEUE: abort: TLS from {}: {why}",
            self.log.client()
        ));
        let host = &self.ctx.listener.smtpd.myhostname;
        self.io
            .reply(&Reply::new(421, (4, 7, 1), format!("{host} Error: {why}")));
        let _ = self.io.flush().await;
        SessionEnd::Closed {
            reason: why.to_owned(),
        }
    }

    pub(super) async fn starttls(&mut self) -> Step {
        // Admitted by the phase rules: not yet TLS, and the listener has it.
        let Some(config) = self.ctx.listener.tls.clone() else {
            return self.refuse(replies::command_not_implemented());
        };
        self.io.reply(&replies::ready_to_start_tls());
        if let Err(e) = self.io.flush().await {
            return Step::End(SessionEnd::Io(e.to_string()));
        }
        // Drop whatever the client pipelined behind STARTTLS: executing it after the handshake
        // would let a man in the middle inject commands into the encrypted session.
        self.io.rbuf.clear();
        self.framer = Default::default();
        let stream = self.io.take_stream();
        let accept = TlsAcceptor::from(config).accept(stream);
        match tokio::time::timeout(self.handshake_timeout(), accept).await {
            Ok(Ok(tls)) => {
                let check = self.ctx.listener.client_certs.as_deref();
                self.tls_facts = TlsFacts::of(tls.get_ref().1, check).map(Box::new);
                if let Some(sni) = self.ctx.listener.unmatched_sni(tls.get_ref().1) {
                    self.log.info(format_args!(
                        "TLS SNI {sni} from {} not matched, using default chain",
                        self.log.client()
                    ));
                }
                self.io.set_stream(Box::new(tls));
                if let Some(why) = self.certificate_refusal() {
                    // smtpd.c reads the client's first command inside TLS before refusing.
                    let deadline =
                        tokio::time::Instant::now() + self.ctx.listener.smtpd.smtpd_timeout;
                    let _ = self.io.fill_command(deadline).await;
                    return Step::End(self.refuse_certificate(why).await);
                }
                self.tls = true;
                // RFC 3207 4.2: forget everything learned before TLS, and what the policy
                // armed on the HELO. A connect-stage reject and the improper-pipelining flag
                // stay: they are about the client and its connection, which TLS does not change.
                self.heard = Heard::default();
                if let Some(state) = self.policy_state.as_mut() {
                    state.forget_helo();
                }
                if let Some(up) = self.upstream.take() {
                    up.quit_without_reply();
                }
                self.abandon_opening();
                Step::Ok
            }
            Ok(Err(e)) => Step::End(SessionEnd::TlsHandshake(e.to_string())),
            Err(_) => Step::End(SessionEnd::TlsHandshake("timeout".into())),
        }
    }

    /// Queues a refusal and counts it as a failed command.
    pub(super) fn refuse(&mut self, reply: Reply) -> Step {
        let closes = reply.closes_connection();
        self.io.reply(&reply);
        if closes {
            Step::End(SessionEnd::Closed {
                reason: reply.to_string(),
            })
        } else {
            Step::Failed
        }
    }

    pub(super) fn reject_context<'a>(
        &'a self,
        from: Option<&'a str>,
        to: Option<&'a str>,
    ) -> super::events::RejectContext<'a> {
        super::events::RejectContext {
            queue_id: None,
            from,
            to,
            esmtp: self.heard.esmtp,
            helo: self.heard.helo.as_deref(),
        }
    }
}
