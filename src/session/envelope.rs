//! MAIL, RCPT, RSET and VRFY: policy per command, the canonical command upstream, the upstream's
//! reply back to the client.

use super::decide::decide;
use super::{Session, Step, Transaction};
use crate::limits::{Event, Trigger};
use crate::policy::{Decision, Outcome, Stage};
use crate::smtp::command::{Command, CommandError};
use crate::smtp::{replies, Reply};

impl Session {
    pub(super) async fn mail(&mut self, command: &Command<'_>) -> Step {
        let Command::Mail { from, params } = command else {
            return Step::Failed;
        };
        // smtpd.c counts the MAIL against smtpd_client_message_rate_limit before anything
        // else judges it.
        if let Some(reply) = self.over_rate(Event::Message).await {
            return self.refuse(reply);
        }
        self.mail_facts = super::policy_facts::MailFacts::new(params.size, params.auth);
        let decision = decide!(self, Stage::Mail, Some(from), None);
        self.keep_prepends(&decision);
        if let Some(reply) = self.judge("MAIL", decision, Some(from), None) {
            return self.refuse(reply);
        }
        self.drop_leg_that_spoke();
        // On the leg open already or opened now: its EHLO reply says whether the MAIL may wait
        // for the first RCPT and travel with it.
        // Or on a leg opened ahead, while the client writes its RCPT: the MAIL is then
        // written for what the upstream offered last.
        let allowed = self.ctx.snapshot.upstream.defer_mail;
        let (defer, upstream_size) = match self.ahead_at_mail() {
            Some(offers) => (true, offers.offers("SIZE")),
            None => match self.upstream().await {
                Ok(up) => {
                    let offers = up.capabilities();
                    (
                        allowed && offers.offers("PIPELINING"),
                        offers.offers("SIZE"),
                    )
                }
                Err(reply) => return self.refuse(reply),
            },
        };
        let mut forwarded = *command;
        if let Command::Mail { params, .. } = &mut forwarded {
            // SIZE is relayguard's own offer (it enforces message_size_limit itself): the
            // upstream gets SIZE= only if it offered SIZE. AUTH= asserts a submitter identity,
            // which only an authenticated client may pass on (RFC 4954 5).
            if !upstream_size {
                params.size = None;
            }
            if self.heard.login.is_none() {
                params.auth = None;
            }
        }
        let transaction = Transaction {
            sender: from.to_string(),
            prepend: std::mem::take(&mut self.mail_facts.prepend),
            ..Transaction::default()
        };
        if defer {
            let mut line = Vec::with_capacity(64);
            forwarded.write_to(&mut line);
            self.io.reply(&replies::mail_ok());
            self.heard.txn = Some(Box::new(Transaction {
                held_mail: Some(line),
                ..transaction
            }));
            return Step::Ok;
        }
        let reply = match self.forward(&forwarded).await {
            Ok(r) => r,
            Err(reply) => return self.refuse(reply),
        };
        let accepted = reply.is_completion();
        self.io.reply(&reply);
        if accepted {
            self.heard.txn = Some(Box::new(transaction));
            Step::Ok
        } else {
            Step::Failed
        }
    }

    /// Drops an open leg that spoke unasked (a 421 at its idle limit) or closed since its last
    /// reply, so the MAIL opens a new one instead of meeting (or waiting on) a dead one.
    fn drop_leg_that_spoke(&mut self) {
        if self.upstream.as_mut().is_some_and(|up| up.has_input()) {
            tracing::debug!("upstream leg spoke or closed while idle; opening a new one");
            self.upstream = None;
        }
    }

    pub(super) async fn rcpt(&mut self, command: &Command<'_>) -> Step {
        let Command::Rcpt { to, .. } = command else {
            return Step::Failed;
        };
        // Admitted by the phase rules: a transaction is open and takes recipients.
        let Some(mut txn) = self.heard.txn.take() else {
            return self.refuse(replies::need_mail());
        };
        if let Some(reply) = self.over_rate(Event::Recipient).await {
            self.heard.txn = Some(txn);
            return self.refuse(reply);
        }
        let decision = decide!(self, Stage::Rcpt, Some(&txn.sender), Some(to));
        // The transaction is out of `heard` while its RCPT is decided.
        txn.prepend.extend(super::policy_facts::prepends(&decision));
        // A relay attempt is what the relay checks refused, whatever text the reply carries.
        let relay_denied = decision.reason.as_ref().is_some_and(|r| {
            matches!(
                &*r.restriction,
                "reject_unauth_destination" | "defer_unauth_destination"
            )
        });
        if let Some(reply) = self.judge("RCPT", decision, Some(&txn.sender), Some(to)) {
            self.heard.txn = Some(txn);
            if relay_denied {
                Box::pin(self.report_failure(Trigger::Relay, 0, 0)).await;
            }
            return self.refuse(reply);
        }
        let held_mail = txn.held_mail.take();
        self.heard.txn = Some(txn);
        let forwarded = match held_mail {
            Some(mail) => self.rcpt_with_held_mail(mail, command).await,
            None => self.forward(command).await,
        };
        let reply = match forwarded {
            Ok(r) => r,
            Err(reply) => return self.refuse(reply),
        };
        let accepted = reply.is_completion();
        self.io.reply(&reply);
        if accepted {
            if let Some(txn) = self.heard.txn.as_mut() {
                txn.recipients.push(to.to_string());
            }
            Step::Ok
        } else {
            Step::Failed
        }
    }

    /// Sends the held MAIL and this RCPT together. A 2xx accepts the MAIL, whatever its exact
    /// code, and the RCPT's own reply answers the RCPT. While the upstream refuses the MAIL, its
    /// refusal is this RCPT's answer and the MAIL stays held for the next RCPT: every recipient
    /// hears why, and a temporary refusal stays temporary for each of them.
    async fn rcpt_with_held_mail(
        &mut self,
        mail: Vec<u8>,
        command: &Command<'_>,
    ) -> Result<Reply, Reply> {
        // The leg may have been opened ahead and offer less than the MAIL was written for.
        let up = self.upstream().await?;
        let mail = super::ahead::held_mail_for(up.capabilities(), mail);
        let pipelining = up.capabilities().offers("PIPELINING");
        up.queue(&mail);
        if pipelining {
            command.write_to(up.queue_buf());
        }
        let mail_reply = match up.read_reply().await {
            Ok(r) => r,
            Err(e) => return Err(self.upstream_failed(&e)),
        };
        if mail_reply.closes_connection() {
            return Err(self.upstream_closed(mail_reply));
        }
        if mail_reply.is_completion() {
            if !pipelining {
                command.write_to(up.queue_buf());
            }
            return match up.read_reply().await {
                Ok(r) if r.closes_connection() => Err(self.upstream_closed(r)),
                Ok(r) => Ok(r),
                Err(e) => Err(self.upstream_failed(&e)),
            };
        }
        // The RCPT reached an upstream without a transaction; its "need MAIL" is not the
        // client's business.
        if pipelining {
            if let Err(e) = up.read_reply().await {
                return Err(self.upstream_failed(&e));
            }
        }
        if let Some(txn) = self.heard.txn.as_mut() {
            txn.held_mail = Some(mail);
        }
        Ok(mail_reply)
    }

    pub(super) async fn rset(&mut self) -> Step {
        self.heard.txn = None;
        if self.upstream.is_some() {
            match self.upstream_command(b"RSET\r\n").await {
                Ok(reply) => {
                    let ok = reply.code == 250;
                    self.io.reply(&reply);
                    return if ok { Step::Ok } else { Step::Failed };
                }
                Err(reply) => return self.refuse(reply),
            }
        }
        self.io.reply(&replies::ok());
        Step::Ok
    }

    /// VRFY is answered here after the recipient restrictions: relayguard never lets it probe
    /// the upstream's users.
    pub(super) async fn vrfy(&mut self, address: &str) -> Step {
        // `VRFY <a@b>`: the brackets are syntax, as in RCPT (Postfix's extract_addr strips them
        // before the restrictions and the 252 echo).
        let address = address
            .strip_prefix('<')
            .and_then(|a| a.strip_suffix('>'))
            .unwrap_or(address);
        if address.is_empty() {
            return self.refuse(CommandError::BadRecipient.reply());
        }
        let decision = decide!(self, Stage::Vrfy, None, Some(address));
        if let Some(reply) = self.judge("VRFY", decision, None, Some(address)) {
            return self.refuse(reply);
        }
        self.io.reply(&replies::vrfy_cannot_verify(address));
        Step::Ok
    }

    /// Logs what the policy decided and returns the reply when it refused.
    pub(super) fn judge(
        &self,
        stage: &str,
        decision: Decision,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Option<Reply> {
        let ctx = self.reject_context(from, to);
        self.log.notes(stage, &decision.notes, &ctx);
        match decision.outcome {
            Outcome::Accept => None,
            Outcome::Reject(reply) => {
                self.log.rejected(stage, &reply, &ctx);
                self.ctx.metrics.rejection(stage, decision.reason.as_ref());
                if let Some(reason) = &decision.reason {
                    tracing::debug!(
                        parameter = %reason.parameter,
                        restriction = %reason.restriction,
                        table = reason.table.as_deref().unwrap_or(""),
                        key = reason.key.as_deref().unwrap_or(""),
                        "policy decided"
                    );
                }
                Some(reply)
            }
        }
    }
}
