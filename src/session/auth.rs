//! AUTH: the SASL gate, the exchange relayed to the upstream, the login recorded.
//!
//! relayguard checks nothing of the credentials itself: the upstream's final reply decides
//! (235 = authenticated). It decodes the username where the mechanism carries one, for logs and
//! policy, and never logs a password.

use super::{Login, Session, SessionEnd, Step};
use crate::limits::{Event, Trigger};
use crate::observe::metrics::AuthResult;
use crate::policy::AuthRefusalKind;
use crate::smtp::command::Command;
use crate::smtp::ehlo_mask::EhloMask;
use crate::smtp::{replies, sasl, Reply};
use crate::state::digest;

/// Postfix's smtpd_sasl_response_limit (12288) plus CRLF.
const SASL_RESPONSE_LIMIT: usize = 12290;

impl Session {
    pub(super) async fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Step {
        if self.discard.discards(EhloMask::AUTH) {
            return self.refuse(replies::auth_not_enabled());
        }
        // smtpd_sasl_proto.c counts the AUTH against smtpd_client_auth_rate_limit before it
        // looks at the mechanism.
        if let Some(reply) = self.over_rate(Event::Auth).await {
            return self.refuse(reply);
        }
        if let Err(refusal) = self.ctx.listener.policy.check_auth(&self.facts(None, None)) {
            // Its own event, apart from a failed password: the credentials never left here.
            self.log
                .rejected("AUTH", &refusal.reply, &self.reject_context(None, None));
            tracing::info!(parameter = %refusal.reason.parameter, restriction = %refusal.reason.restriction, "AUTH refused by policy");
            self.ctx
                .metrics
                .auth(AuthResult::Refused, &refusal.reason.parameter);
            if refusal.kind == AuthRefusalKind::ExceptedNetwork {
                Box::pin(self.report_failure(Trigger::AuthGate, 0, 0)).await;
            }
            return self.refuse(refusal.reply);
        }
        let security = self.ctx.listener.smtpd.dialogue.sasl_security(self.tls);
        let caps = self.ctx.upstream.capabilities();
        let allowed = caps.allowed_mechanisms(security);
        let (none, offered) = (
            allowed.is_empty(),
            allowed.iter().any(|m| m.eq_ignore_ascii_case(mechanism)),
        );
        drop(caps);
        if none {
            return self.refuse(replies::auth_not_enabled());
        }
        if !offered {
            // What Postfix answers for a mechanism its security options filtered out (or one
            // never offered): the SASL server's refusal, logged as a failed authentication.
            let mechanism = mechanism.to_owned();
            let reply = replies::invalid_auth_mechanism();
            return self.auth_finished(&mechanism, reply, None, false, 0).await;
        }
        if let Err(reply) = self.upstream().await {
            let _ = reply;
            return self.refuse(replies::temporary_auth_failure());
        }
        let mechanism = mechanism.to_owned();
        let mut username = initial.and_then(|r| sasl::username(&mechanism, 0, r));
        let mut line = match initial {
            Some(r) => format!("AUTH {mechanism} {r}\r\n"),
            None => format!("AUTH {mechanism}\r\n"),
        }
        .into_bytes();
        let mut step = usize::from(initial.is_some());
        // What the client answered, to tell a new guess from the same credentials again.
        let mut credentials = Credentials::new(&mechanism, initial);
        let mut aborted = false;
        loop {
            let reply = match self.upstream_command(&line).await {
                Ok(r) => r,
                Err(reply) => return self.refuse(reply),
            };
            if reply.code != 334 {
                let digest = credentials.digest();
                return self
                    .auth_finished(&mechanism, reply, username, aborted, digest)
                    .await;
            }
            self.io.reply(&reply);
            let response = match self.next_line(SASL_RESPONSE_LIMIT).await {
                Ok(r) => r,
                Err(end) => return Step::End(end),
            };
            line.clear();
            if !is_sasl_response(&response) {
                // Only base64 goes upstream: anything else could smuggle bytes into the
                // upstream's command stream. Cancel the exchange there, refuse it here.
                self.line = response;
                let _ = self.upstream_command(b"*\r\n").await;
                let reply = replies::auth_bad_response();
                let digest = credentials.digest();
                return self
                    .auth_finished(&mechanism, reply, username, false, digest)
                    .await;
            }
            if response == b"*" {
                aborted = true;
                line.extend_from_slice(b"*\r\n");
            } else {
                let text = String::from_utf8_lossy(&response);
                if username.is_none() {
                    username = sasl::username(&mechanism, step, &text);
                }
                credentials.add(&response);
                line.extend_from_slice(&response);
                line.extend_from_slice(b"\r\n");
            }
            self.line = response;
            step += 1;
        }
    }

    async fn auth_finished(
        &mut self,
        mechanism: &str,
        reply: Reply,
        username: Option<String>,
        aborted: bool,
        credentials: u32,
    ) -> Step {
        self.io.reply(&reply);
        let client = self.log.client().to_owned();
        let result = match reply.code {
            235 => AuthResult::Success,
            400..=499 => AuthResult::TemporaryFailure,
            _ => AuthResult::Failure,
        };
        self.ctx.metrics.auth(result, "");
        if reply.code == 235 {
            let name = username.unwrap_or_else(|| "unknown".into());
            self.heard.login = Some(Login {
                name: self.ctx.listener.smtpd.dialogue.login_name(name),
                method: mechanism.to_owned(),
            });
            return Step::Ok;
        }
        if aborted {
            self.log.warning(format_args!(
                "{client}: SASL {mechanism} authentication aborted"
            ));
        } else {
            // The wording fail2ban's postfix[mode=auth] filter matches (postfix-semantics 7.3).
            let text = reply.text();
            let reason = text
                .split_once("authentication failed: ")
                .map(|(_, r)| r)
                .unwrap_or(text);
            self.log.warning(format_args!(
                "{client}: SASL {mechanism} authentication failed: {reason}, sasl_username={}",
                username.as_deref().unwrap_or("(unavailable)")
            ));
            // A refusal the upstream's SASL server gave counts towards a ban; a temporary
            // one (454: its auth service is down) is nobody's guess.
            if reply.code >= 500 {
                let user = username.as_deref().map_or(0, |u| digest(&[u.as_bytes()]));
                Box::pin(self.report_failure(Trigger::Auth, credentials, user)).await;
            }
        }
        if reply.closes_connection() {
            Step::End(SessionEnd::Closed {
                reason: reply.to_string(),
            })
        } else {
            Step::Failed
        }
    }

    /// Sends one command line upstream and reads its reply; a broken upstream becomes the
    /// reply the client gets, and the upstream leg is dropped.
    pub(super) async fn upstream_command(&mut self, line: &[u8]) -> Result<Reply, Reply> {
        self.upstream_exchange(|queue| queue.extend_from_slice(line))
            .await
    }

    /// [`Self::upstream_command`] for a parsed command, written in canonical form straight
    /// into the upstream's write queue.
    pub(super) async fn forward(&mut self, command: &Command<'_>) -> Result<Reply, Reply> {
        self.upstream_exchange(|queue| command.write_to(queue))
            .await
    }

    async fn upstream_exchange(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Reply, Reply> {
        let Some(up) = self.upstream.as_mut() else {
            return Err(self.upstream_unavailable());
        };
        write(up.queue_buf());
        match up.read_reply().await {
            Ok(reply) if reply.closes_connection() => Err(self.upstream_closed(reply)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(self.upstream_failed(&e)),
        }
    }
}

/// A SASL response line: base64 text, `=` (an empty initial response) or `*` (cancel).
/// The client's side of one SASL exchange, reduced to a short digest (`state::digest`): the
/// password never leaves this function's caller.
struct Credentials {
    seen: Vec<u8>,
}

impl Credentials {
    fn new(mechanism: &str, initial: Option<&str>) -> Self {
        let mut seen = mechanism.to_ascii_uppercase().into_bytes();
        if let Some(r) = initial {
            seen.push(b' ');
            seen.extend_from_slice(r.as_bytes());
        }
        Credentials { seen }
    }

    fn add(&mut self, response: &[u8]) {
        // An exchange the upstream keeps going is the upstream's to bound; the digest needs
        // no more than the first few responses.
        if self.seen.len() > 4 * SASL_RESPONSE_LIMIT {
            return;
        }
        self.seen.push(b'\n');
        self.seen.extend_from_slice(response);
    }

    fn digest(&self) -> u32 {
        digest(&[&self.seen])
    }
}

fn is_sasl_response(line: &[u8]) -> bool {
    line == b"*"
        || line
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}
