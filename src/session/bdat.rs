//! BDAT (RFC 3030 CHUNKING): every chunk goes to the upstream as counted bytes in bounded
//! buffers; the final reply is the upstream's.
//!
//! A refused chunk is still read to its last byte, as Postfix does: the client sends it
//! whatever the reply, and reading it is the only way to stay in step. A chunk is counted, not
//! scanned: no byte in it can end the message early, so there is nothing to smuggle.

use super::{Session, SessionEnd, Step};
use crate::policy::Stage;
use crate::smtp::{replies, Reply};

impl Session {
    pub(super) async fn bdat(&mut self, size: u64, last: bool) -> Step {
        let refusal = self.bdat_refusal(size, last);
        if let Some(reply) = refusal {
            // A transaction the upstream holds chunks for cannot be trusted any more.
            if self.heard.txn.as_ref().is_some_and(|t| t.bdat_bytes > 0) {
                self.upstream = None;
                self.heard.txn = None;
            }
            return match self.forward_chunk(size, false).await {
                Ok(_) => self.refuse(reply),
                Err(end) => Step::End(end),
            };
        }
        if let Some(t) = self.heard.txn.as_mut() {
            t.bdat = true;
        }
        let mut line = format!("BDAT {size}").into_bytes();
        if last {
            line.extend_from_slice(b" LAST");
        }
        line.extend_from_slice(b"\r\n");
        if let Some(up) = self.upstream.as_mut() {
            up.queue(&line);
        }
        let forwarded = match self.forward_chunk(size, true).await {
            Ok(forwarded) => forwarded,
            Err(end) => {
                self.upstream = None;
                self.heard.txn = None;
                return Step::End(end);
            }
        };
        if let Some(t) = self.heard.txn.as_mut() {
            t.bdat_bytes += size;
        }
        let reply = match (forwarded, self.upstream.as_mut()) {
            (true, Some(up)) => match up.read_reply().await {
                Ok(reply) => reply,
                Err(e) => self.chunk_failed(&e.to_string()),
            },
            _ => self.chunk_failed("upstream gone during BDAT"),
        };
        let ok = reply.code == 250;
        if !ok || last {
            self.heard.txn = None;
        }
        self.io.reply(&reply);
        if ok && last {
            self.reply_then_log_accepted(&reply).await;
            self.errors = 0;
        }
        if ok {
            Step::Ok
        } else {
            Step::Failed
        }
    }

    /// Why this chunk is not forwarded, in Postfix's words (postfix-semantics 9.4).
    fn bdat_refusal(&mut self, size: u64, last: bool) -> Option<Reply> {
        if !self.chunking_offered() {
            return Some(replies::command_not_implemented());
        }
        let Some(txn) = &self.heard.txn else {
            return Some(replies::need_rcpt());
        };
        if txn.recipients.is_empty() {
            return Some(if last {
                replies::no_valid_recipients()
            } else {
                replies::need_rcpt()
            });
        }
        let sender = txn.sender.clone();
        let first = txn.bdat_bytes == 0;
        let limit = self.ctx.listener.smtpd.message_size_limit;
        if limit > 0 && txn.bdat_bytes.saturating_add(size) > limit {
            return Some(replies::chunk_exceeds_limit());
        }
        if first {
            let decision = self.decide(Stage::Data, Some(&sender), None);
            if let Some(reply) = self.judge("BDAT", decision, Some(&sender), None) {
                return Some(reply);
            }
        }
        if last {
            // The end-of-data policy speaks before the upstream is told this is the last chunk.
            let decision = self.decide(Stage::EndOfData, Some(&sender), None);
            if let Some(reply) = self.judge("END-OF-MESSAGE", decision, Some(&sender), None) {
                return Some(reply);
            }
        }
        None
    }

    /// relayguard offers CHUNKING exactly when the upstream does.
    pub(super) fn chunking_offered(&self) -> bool {
        self.ctx.upstream.capabilities().offers("CHUNKING")
    }

    /// Moves `size` bytes of chunk from the client to the upstream (`to_upstream`) or to
    /// nowhere. `Ok(false)`: the upstream failed on the way; the rest was read and dropped.
    async fn forward_chunk(&mut self, size: u64, to_upstream: bool) -> Result<bool, SessionEnd> {
        let mut remaining = size;
        let mut healthy = to_upstream && self.upstream.is_some();
        let idle = self.ctx.listener.smtpd.smtpd_timeout;
        loop {
            let take = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(self.io.rbuf.len());
            if take > 0 {
                if healthy {
                    if let Some(up) = self.upstream.as_mut() {
                        if up.write_body(&self.io.rbuf[..take]).await.is_err() {
                            healthy = false;
                        }
                    }
                }
                bytes::Buf::advance(&mut self.io.rbuf, take);
                remaining -= take as u64;
            }
            if remaining == 0 {
                if healthy {
                    if let Some(up) = self.upstream.as_mut() {
                        // A zero-length chunk still needs its command line sent.
                        healthy = up.flush().await.is_ok();
                    }
                }
                return Ok(healthy || !to_upstream);
            }
            let deadline = (tokio::time::Instant::now() + idle).min(self.session_deadline());
            if let Err(e) = self.io.fill_body(deadline).await {
                return Err(self.read_failed(e));
            }
        }
    }

    fn chunk_failed(&mut self, why: &str) -> Reply {
        tracing::warn!(upstream = %why, "upstream failed during BDAT for {}", self.log.client());
        self.upstream = None;
        replies::queue_file_write_error()
    }
}
