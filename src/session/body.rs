//! DATA: the body streams from the client through the DotScanner to the upstream in bounded
//! buffers; the final reply is the upstream's.
//!
//! The upstream gets the end of data (`.<CR><LF>`) only when the whole body was clean and the
//! end-of-data policy accepted it. On a smuggling attempt, an oversized message or a failed
//! upstream, the upstream connection is closed without an end of data, so nothing is
//! half-delivered; the client gets its reply after its own end of data, still in step.

use super::decide::decide;
use super::{Session, SessionEnd, Step};
use crate::config::BareNewline;
use crate::policy::Stage;
use crate::smtp::dot::{DotMode, DotScanner, Violation};
use crate::smtp::{replies, Reply};
use crate::upstream::UpstreamError;

/// How a body transfer ended, before the final reply is chosen.
enum BodyEnd {
    /// Clean body, accepted by the end-of-data policy; all of it and the end of data went
    /// upstream.
    Complete,
    /// The end-of-data policy refused it; the upstream never got the end of data.
    PolicyRefused(Reply),
    Refused(Violation),
    UpstreamFailed(UpstreamError),
}

impl Session {
    pub(super) async fn data(&mut self) -> Step {
        // Admitted by the phase rules: a transaction with recipients.
        let Some(txn) = &self.heard.txn else {
            return self.refuse(replies::need_rcpt());
        };
        let sender = txn.sender.clone();
        let decision = decide!(self, Stage::Data, Some(&sender), None);
        self.keep_prepends(&decision);
        if let Some(reply) = self.judge("DATA", decision, Some(&sender), None) {
            return self.refuse(reply);
        }
        let reply = match self.upstream_command(b"DATA\r\n").await {
            Ok(r) => r,
            Err(reply) => return self.refuse(reply),
        };
        if reply.code != 354 {
            return self.refuse(reply);
        }
        self.io.reply(&replies::start_data());
        self.last = "DATA";

        let (end, body_bytes) = match self.stream_body(&sender).await {
            Ok(r) => r,
            Err(end) => {
                // The client vanished mid-message: the upstream never gets an end of data.
                self.upstream = None;
                self.heard.txn = None;
                return Step::End(end);
            }
        };
        let host = self.ctx.listener.smtpd.myhostname.clone();
        let reply = match end {
            BodyEnd::Refused(violation) => {
                self.upstream = None;
                let reply = violation.reply(&host);
                self.log.rejected(
                    "END-OF-MESSAGE",
                    &reply,
                    &self.reject_context(Some(&sender), None),
                );
                reply
            }
            BodyEnd::UpstreamFailed(e) => {
                tracing::warn!(upstream = %e, "upstream failed during DATA ({body_bytes} bytes) for {}", self.log.client());
                self.upstream = None;
                replies::queue_file_write_error()
            }
            BodyEnd::PolicyRefused(reply) => {
                self.upstream = None;
                reply
            }
            BodyEnd::Complete => self.finish_message().await,
        };
        self.heard.txn = None;
        let ok = reply.code == 250;
        if ok {
            self.ctx.metrics.message_forwarded(body_bytes);
            self.forgive_errors();
        }
        self.io.reply(&reply);
        if ok {
            self.reply_then_log_accepted(&reply).await;
            Step::Ok
        } else if reply.closes_connection() {
            Step::End(SessionEnd::Closed {
                reason: reply.to_string(),
            })
        } else {
            Step::Failed
        }
    }

    /// The upstream's verdict on the message, after the end of data went out with the body.
    async fn finish_message(&mut self) -> Reply {
        let Some(up) = self.upstream.as_mut() else {
            return replies::queue_file_write_error();
        };
        match up.read_reply().await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(upstream = %e, "upstream failed at end of DATA for {}", self.log.client());
                self.upstream = None;
                replies::queue_file_write_error()
            }
        }
    }

    /// The client's reply goes out first; the log line is not on its critical path.
    pub(super) async fn reply_then_log_accepted(&mut self, reply: &Reply) {
        let _ = self.io.flush().await;
        self.log_accepted(reply);
    }

    /// `QUEUEID: client=NAME[ADDR], sasl_method=PLAIN, sasl_username=alice`, with the queue id
    /// taken from the upstream's `250 2.0.0 Ok: queued as ID`, and `, received_id=ID` when
    /// relayguard wrote its own Received: header with that id.
    fn log_accepted(&self, reply: &Reply) {
        let text = reply.text();
        let queue_id = text
            .rsplit_once("queued as ")
            .map(|(_, id)| id.trim())
            .unwrap_or("UNKNOWN");
        // The id of relayguard's own Received: header, last, as Postfix adds its orig_ fields.
        let received = match &self.mail_facts.received_id {
            Some(id) => format!(", received_id={id}"),
            None => String::new(),
        };
        match &self.heard.login {
            Some(login) => self.log.info(format_args!(
                "{queue_id}: client={}, sasl_method={}, sasl_username={}{received}",
                self.log.client(),
                login.method,
                login.name
            )),
            None => self.log.info(format_args!(
                "{queue_id}: client={}{received}",
                self.log.client()
            )),
        }
    }

    /// Moves the body from the client to the upstream. `Err` means the client is gone.
    async fn stream_body(&mut self, sender: &str) -> Result<(BodyEnd, u64), SessionEnd> {
        let settings = &self.ctx.listener.smtpd;
        let mode = match settings.bare_newline {
            BareNewline::Reject => DotMode::Reject,
            BareNewline::Normalize => DotMode::Normalize,
        };
        let mut scanner = DotScanner::new(mode).with_size_limit(settings.message_size_limit);
        let mut normalized = Vec::new();
        let mut upstream_error: Option<UpstreamError> = None;
        let idle = settings.smtpd_timeout;
        // All relayguard's text, sent before any client byte.
        let leading = self.leading_headers();
        if let (Some(up), false) = (self.upstream.as_mut(), leading.is_empty()) {
            if let Err(e) = up.write_body(&leading).await {
                upstream_error = Some(e);
            }
        }
        loop {
            if !self.io.rbuf.is_empty() {
                normalized.clear();
                let scan = scanner.scan(&self.io.rbuf, &mut normalized);
                // The end-of-data policy speaks before the upstream can see the end of data:
                // on a reject the final `.<CR><LF>` is never sent.
                let mut refused = None;
                if scan.end && scan.violation.is_none() && upstream_error.is_none() {
                    // Postfix's act_size: a policy service hears the real size now. (Postfix
                    // counts the lines unstuffed; this counts them as sent.)
                    self.mail_facts.size = scanner.body_bytes();
                    let decision = decide!(self, Stage::EndOfData, Some(sender), None);
                    refused = self.judge("END-OF-MESSAGE", decision, Some(sender), None);
                }
                let mut out: &[u8] = &self.io.rbuf[..scan.forward];
                let mut extra: &[u8] = &normalized;
                if refused.is_some() {
                    if extra.len() >= 3 {
                        extra = &extra[..extra.len() - 3];
                    } else {
                        out = &out[..out.len().saturating_sub(3)];
                    }
                }
                if upstream_error.is_none() && scan.violation.is_none() {
                    if let Some(up) = self.upstream.as_mut() {
                        let mut result = up.write_body(out).await;
                        if result.is_ok() && !extra.is_empty() {
                            result = up.write_body(extra).await;
                        }
                        if let Err(e) = result {
                            upstream_error = Some(e);
                        }
                    }
                }
                bytes::Buf::advance(&mut self.io.rbuf, scan.consumed);
                if scan.end {
                    let end = match (scan.violation, upstream_error, refused) {
                        (Some(v), _, _) => BodyEnd::Refused(v),
                        (None, Some(e), _) => BodyEnd::UpstreamFailed(e),
                        (None, None, Some(reply)) => BodyEnd::PolicyRefused(reply),
                        (None, None, None) => BodyEnd::Complete,
                    };
                    return Ok((end, scanner.body_bytes()));
                }
            }
            // Each read must arrive within smtpd_timeout; the session limit caps the whole body.
            let deadline = (tokio::time::Instant::now() + idle).min(self.session_deadline());
            if let Err(e) = self.io.fill_body(deadline).await {
                let bytes = scanner.body_bytes();
                return Err(match self.read_failed(e) {
                    SessionEnd::ClientClosed { .. } => {
                        self.log.info(format_args!(
                            "lost connection after DATA ({bytes} bytes) from {}",
                            self.log.client()
                        ));
                        SessionEnd::Closed {
                            reason: "lost connection during DATA".into(),
                        }
                    }
                    SessionEnd::Timeout { .. } => {
                        self.log.info(format_args!(
                            "timeout after DATA ({bytes} bytes) from {}",
                            self.log.client()
                        ));
                        SessionEnd::Closed {
                            reason: "timeout during DATA".into(),
                        }
                    }
                    other => other,
                });
            }
        }
    }
}
