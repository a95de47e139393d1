//! BDAT (RFC 3030 CHUNKING): chunks are scanned with DATA's line rules and go to this session's
//! upstream leg as BDAT chunks when that leg offered CHUNKING, or as one DATA body when it did
//! not; the message's final reply is the upstream's.
//!
//! CHUNKING is offered from the leg when one is open and from the upstream as last seen
//! otherwise (the leg is opened at MAIL, after EHLO was answered), so a client may send BDAT
//! to a session whose leg lacks it: BDAT on such a leg would be read there as commands past
//! relayguard's policy, so it never gets one, and the chunks become DATA instead.
//!
//! As Postfix does (smtpd.c `bdat_cmd`): BDAT where CHUNKING is not offered and malformed BDAT
//! (parsed elsewhere) get a 521 and the connection closes, since the bytes behind them are
//! content; every other refusal reads the chunk to its last byte first, and a refused chunk
//! that is not the last makes the session discard chunks until the LAST one or RSET.
//!
//! A violation (bare CR or LF, NUL, long line) is answered after the chunk it is found in, as
//! Postfix 3.9 answers a bare LF in BDAT content (its end-of-chunk check of `state->err`, then
//! `SMTPD_BDAT_STAT_ERROR`); the upstream never gets the end of such a message: its leg is
//! closed.

use super::decide::decide;
use super::{Session, SessionEnd, Step};
use crate::config::BareNewline;
use crate::policy::Stage;
use crate::smtp::command::Command;
use crate::smtp::dot::{DotMode, DotScanner, Violation};
use crate::smtp::{replies, Reply};

/// The session's CHUNKING state outside any one transaction.
#[derive(Debug, Default)]
pub(super) struct Chunking {
    /// What the client's last EHLO reply said about CHUNKING; `None` before any EHLO.
    offered: Option<bool>,
    /// Postfix's BDAT error state: chunks are read and discarded until the LAST one, RSET,
    /// HELO/EHLO or STARTTLS.
    skipping: bool,
}

/// A chunked message on its way upstream, from its first accepted chunk to its end.
#[derive(Debug)]
pub(super) struct ChunkStream {
    scanner: DotScanner,
    /// The leg offered CHUNKING: the content goes as BDAT. Otherwise DATA was sent, the leg
    /// answered 354, and the content goes as a dot-stuffed body.
    bdat: bool,
    /// [`Session::leading_headers`], sent in front of the first piece.
    prepend: Vec<u8>,
}

/// How one accepted chunk ended.
enum ChunkEnd {
    /// Not the last chunk; all of it went upstream and the upstream took it.
    Taken,
    /// The last chunk: the upstream's reply to the message.
    Final(Reply),
    Refused(Violation),
    /// The upstream refused a BDAT piece of a chunk that is not the last.
    UpstreamRefused(Reply),
    UpstreamFailed(String),
}

/// The upstream's replies to the pieces of one client chunk.
#[derive(Default)]
struct PieceReplies {
    /// Replies not read yet.
    owed: usize,
    /// The first one that was not 250.
    refused: Option<Reply>,
    last: Option<Reply>,
}

impl Session {
    pub(super) async fn bdat(&mut self, size: u64, last: bool) -> Step {
        if !self.chunking_offered() {
            return self.refuse(replies::bdat_not_implemented());
        }
        if size == 0 && !last {
            return self.skip_chunk(0, false, replies::null_bdat()).await;
        }
        if self.chunking.skipping {
            let reply = replies::discarded_after_error(size);
            return self.skip_chunk(size, last, reply).await;
        }
        if let Some(reply) = self.bdat_refusal(size, last).await {
            return self.skip_chunk(size, last, reply).await;
        }
        if let Err(reply) = self.start_chunk_stream().await {
            return self.skip_chunk(size, last, reply).await;
        }
        let end = match self.relay_chunk(size, last).await {
            Ok(end) => end,
            Err(end) => {
                // The client vanished mid-chunk: the upstream never gets the end of the message.
                self.upstream = None;
                self.heard.txn = None;
                return Step::End(end);
            }
        };
        let reply = match end {
            ChunkEnd::Taken => {
                if let Some(t) = self.heard.txn.as_mut() {
                    t.bdat_bytes = t.bdat_bytes.saturating_add(size);
                }
                self.io.reply(&replies::chunk_ok(size));
                return Step::Ok;
            }
            ChunkEnd::Final(reply) => {
                let txn = self.heard.txn.take();
                if reply.code == 250 {
                    let earlier = txn.map_or(0, |t| t.bdat_bytes);
                    self.ctx
                        .metrics
                        .message_forwarded(earlier.saturating_add(size));
                    self.forgive_errors();
                    self.io.reply(&reply);
                    self.reply_then_log_accepted(&reply).await;
                    return Step::Ok;
                }
                return self.refuse(reply);
            }
            ChunkEnd::Refused(violation) => {
                let reply = violation.reply(&self.ctx.listener.smtpd.myhostname);
                let sender = self.heard.txn.as_ref().map(|t| t.sender.clone());
                self.log.rejected(
                    "END-OF-MESSAGE",
                    &reply,
                    &self.reject_context(sender.as_deref(), None),
                );
                reply
            }
            ChunkEnd::UpstreamRefused(reply) => reply,
            ChunkEnd::UpstreamFailed(why) => {
                // The leg is gone with part of the message: the session ends with a 421, as
                // after a 421 from the upstream, rather than going on without a leg.
                tracing::warn!(upstream = %why, "upstream failed during BDAT for {}", self.log.client());
                self.upstream_unavailable()
            }
        };
        // The upstream holds part of a message that must never be completed.
        self.upstream = None;
        self.heard.txn = None;
        self.chunking.skipping = !last;
        self.refuse(reply)
    }

    /// Why this chunk is not taken, in Postfix's words and order (postfix-semantics 9.4).
    async fn bdat_refusal(&mut self, size: u64, last: bool) -> Option<Reply> {
        let Some(txn) = &self.heard.txn else {
            return Some(replies::need_rcpt());
        };
        if txn.recipients.is_empty() {
            return Some(replies::no_valid_recipients());
        }
        let sender = txn.sender.clone();
        let first = txn.chunks.is_none();
        let limit = self.ctx.listener.smtpd.message_size_limit;
        if limit > 0 && txn.bdat_bytes.saturating_add(size) > limit {
            return Some(replies::chunk_exceeds_limit());
        }
        if first {
            let decision = decide!(self, Stage::Data, Some(&sender), None);
            if let Some(reply) = self.judge("BDAT", decision, Some(&sender), None) {
                return Some(reply);
            }
        }
        if last {
            // The end-of-data policy speaks before the upstream is told this is the last chunk.
            let decision = decide!(self, Stage::EndOfData, Some(&sender), None);
            if let Some(reply) = self.judge("END-OF-MESSAGE", decision, Some(&sender), None) {
                return Some(reply);
            }
        }
        None
    }

    /// Reads and drops a refused chunk, then answers it. A refused last chunk ends the
    /// transaction; any other starts discarding the chunks that follow.
    pub(super) async fn skip_chunk(&mut self, size: u64, last: bool, reply: Reply) -> Step {
        let mut remaining = size;
        while remaining > 0 {
            match self.chunk_piece(remaining).await {
                Ok(take) => {
                    bytes::Buf::advance(&mut self.io.rbuf, take);
                    remaining -= take as u64;
                }
                Err(end) => return Step::End(end),
            }
        }
        if last {
            self.chunking.skipping = false;
            self.end_chunked_transaction().await;
        } else {
            self.chunking.skipping = true;
            // Until then the transaction is in BDAT: no RCPT, no DATA.
            if let Some(t) = self.heard.txn.as_mut() {
                t.bdat = true;
            }
        }
        self.refuse(reply)
    }

    /// Ends a transaction that will not complete. The leg is closed if it holds part of the
    /// message, and otherwise told RSET, so its MAIL and RCPT go too.
    async fn end_chunked_transaction(&mut self) {
        let Some(txn) = self.heard.txn.take() else {
            return;
        };
        if txn.chunks.is_some() {
            self.upstream = None;
        } else if self.upstream.is_some() {
            let _ = self.upstream_command(b"RSET\r\n").await;
        }
    }

    /// On the first accepted chunk: chunks for this leg go as BDAT if it offered CHUNKING,
    /// else DATA is sent now and must be answered 354. `Err` is the reply for the client.
    async fn start_chunk_stream(&mut self) -> Result<(), Reply> {
        if self.heard.txn.as_ref().is_some_and(|t| t.chunks.is_some()) {
            return Ok(());
        }
        let Some(up) = self.upstream.as_ref() else {
            return Err(self.upstream_unavailable());
        };
        let bdat = up.capabilities().offers("CHUNKING");
        if !bdat {
            let reply = self.upstream_command(b"DATA\r\n").await?;
            if reply.code != 354 {
                return Err(reply);
            }
        }
        let mode = match self.ctx.listener.smtpd.bare_newline {
            BareNewline::Reject => DotMode::Reject,
            BareNewline::Normalize => DotMode::Normalize,
        };
        let prepend = self.leading_headers();
        let Some(txn) = self.heard.txn.as_mut() else {
            return Err(self.upstream_unavailable());
        };
        let stream = ChunkStream {
            scanner: DotScanner::chunks(mode, !bdat),
            bdat,
            prepend,
        };
        txn.bdat = true;
        txn.chunks = Some(Box::new(stream));
        Ok(())
    }

    /// Moves one accepted chunk from the client through the scanner to the leg. Each piece
    /// read goes on at once: as a BDAT chunk of its own (the scanner may hold a CR back or
    /// normalize, so sizes are relayguard's), or as more of the DATA body. After a violation
    /// or an upstream failure the rest is read and dropped. `Err`: the client is gone.
    async fn relay_chunk(&mut self, size: u64, last: bool) -> Result<ChunkEnd, SessionEnd> {
        let Some(mut stream) = self.heard.txn.as_mut().and_then(|t| t.chunks.take()) else {
            return Ok(ChunkEnd::UpstreamFailed("no chunk stream".into()));
        };
        let pipelining = self
            .upstream
            .as_ref()
            .is_some_and(|up| up.capabilities().offers("PIPELINING"));
        let mut remaining = size;
        let mut out = Vec::new();
        let mut owed = PieceReplies::default();
        let mut failed: Option<String> = None;
        loop {
            let take = self.chunk_piece(remaining).await?;
            out.clear();
            // The PREPEND headers lead the first piece; the sizes sent are relayguard's own.
            out.append(&mut stream.prepend);
            stream.scanner.scan(&self.io.rbuf[..take], &mut out);
            bytes::Buf::advance(&mut self.io.rbuf, take);
            remaining -= take as u64;
            let final_piece = remaining == 0 && last;
            if final_piece {
                stream.scanner.finish(&mut out);
            }
            let sending =
                failed.is_none() && owed.refused.is_none() && stream.scanner.violation().is_none();
            if sending && (!out.is_empty() || (final_piece && stream.bdat)) {
                if let Err(why) = self
                    .send_piece(&stream, &out, final_piece, pipelining, &mut owed)
                    .await
                {
                    failed = Some(why);
                }
            }
            if remaining == 0 {
                break;
            }
        }
        if let Some(v) = stream.scanner.violation() {
            return Ok(ChunkEnd::Refused(v));
        }
        if failed.is_none() {
            if let Err(why) = self.collect_replies(&mut owed).await {
                failed = Some(why);
            }
        }
        if let Some(why) = failed {
            return Ok(ChunkEnd::UpstreamFailed(why));
        }
        if !last {
            return Ok(match owed.refused {
                Some(reply) => ChunkEnd::UpstreamRefused(reply),
                None => {
                    if let Some(t) = self.heard.txn.as_mut() {
                        t.chunks = Some(stream);
                    }
                    ChunkEnd::Taken
                }
            });
        }
        // A refused piece before the last one explains whatever the last one got.
        Ok(match owed.refused.or(owed.last) {
            Some(reply) => ChunkEnd::Final(reply),
            None => ChunkEnd::UpstreamFailed("no reply to the last chunk".into()),
        })
    }

    /// Sends `out` to the leg: as `BDAT n [LAST]` and its bytes, or as DATA body bytes.
    async fn send_piece(
        &mut self,
        stream: &ChunkStream,
        out: &[u8],
        final_piece: bool,
        pipelining: bool,
        owed: &mut PieceReplies,
    ) -> Result<(), String> {
        let Some(up) = self.upstream.as_mut() else {
            return Err("upstream gone during BDAT".into());
        };
        if stream.bdat {
            // Checked where the command is written: BDAT on a leg without CHUNKING would be
            // read there as commands.
            if !up.capabilities().offers("CHUNKING") {
                return Err("leg lost CHUNKING".into());
            }
            let header = format!(
                "BDAT {}{}\r\n",
                out.len(),
                if final_piece { " LAST" } else { "" }
            );
            up.queue(header.as_bytes());
        }
        up.write_body(out).await.map_err(|e| e.to_string())?;
        // A reply per BDAT piece; over DATA, one to the end of data.
        if stream.bdat || final_piece {
            owed.owed += 1;
        }
        if !pipelining {
            self.collect_replies(owed).await?;
        }
        Ok(())
    }

    /// Reads the replies the leg owes, keeping the first refusal and the last reply.
    async fn collect_replies(&mut self, owed: &mut PieceReplies) -> Result<(), String> {
        let Some(up) = self.upstream.as_mut() else {
            return Err("upstream gone during BDAT".into());
        };
        while owed.owed > 0 {
            let reply = up.read_reply().await.map_err(|e| e.to_string())?;
            owed.owed -= 1;
            if reply.code != 250 && owed.refused.is_none() {
                owed.refused = Some(reply.clone());
            }
            owed.last = Some(reply);
        }
        Ok(())
    }

    /// Waits until chunk bytes are buffered and returns how many of them belong to the chunk
    /// (0 only when nothing remains). `Err`: the client is gone or timed out.
    async fn chunk_piece(&mut self, remaining: u64) -> Result<usize, SessionEnd> {
        let idle = self.ctx.listener.smtpd.smtpd_timeout;
        while remaining > 0 && self.io.rbuf.is_empty() {
            let deadline = (tokio::time::Instant::now() + idle).min(self.session_deadline());
            if let Err(e) = self.io.fill_body(deadline).await {
                return Err(self.read_failed(e));
            }
        }
        Ok(usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(self.io.rbuf.len()))
    }

    /// Whether this client was offered CHUNKING: by its last EHLO reply, or (no EHLO yet) by
    /// what one would say now.
    fn chunking_offered(&self) -> bool {
        self.chunking
            .offered
            .unwrap_or_else(|| self.offers_chunking())
    }

    /// Whether an EHLO now offers CHUNKING: the session's own leg says when one is open; before
    /// that the upstream as last seen is enough, since chunks for a leg without CHUNKING are
    /// sent as DATA.
    pub(super) fn offers_chunking(&self) -> bool {
        if self
            .discard
            .discards(crate::smtp::ehlo_mask::EhloMask::CHUNKING)
        {
            return false;
        }
        match &self.upstream {
            Some(up) => up.capabilities().offers("CHUNKING"),
            None => self.ctx.upstream.capabilities().offers("CHUNKING"),
        }
    }

    /// Remembers whether the EHLO reply just queued offered CHUNKING.
    pub(super) fn note_ehlo_offer(&mut self, reply: &Reply) {
        let offered = reply
            .lines
            .iter()
            .any(|l| l.eq_ignore_ascii_case("CHUNKING"));
        self.chunking.offered = Some(offered);
    }

    /// Postfix's BDAT error state as other commands see it: MAIL and DATA are refused while
    /// chunks are being discarded, and a command that resets the transaction ends it (and a
    /// message half sent as DATA, with its leg).
    pub(super) fn bdat_state_refusal(&mut self, command: &Command<'_>) -> Option<Reply> {
        match command {
            Command::Mail { .. } if self.chunking.skipping && self.heard.txn.is_none() => {
                Some(replies::mail_after_bdat())
            }
            Command::Data if self.chunking.skipping => Some(replies::data_after_bdat()),
            Command::Rset | Command::Ehlo(_) | Command::Helo(_) | Command::StartTls => {
                self.chunking.skipping = false;
                let in_data = self
                    .heard
                    .txn
                    .as_ref()
                    .and_then(|t| t.chunks.as_ref())
                    .is_some_and(|c| !c.bdat);
                if in_data {
                    // The leg is inside DATA: the RSET or EHLO it would be sent would be
                    // message text there, and the message must not be completed.
                    self.upstream = None;
                }
                None
            }
            _ => None,
        }
    }
}
