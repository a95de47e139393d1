//! relayguard's own `Received:` header for the message under way (`[upstream]
//! received_header`): the session's facts handed to the pure formatter in
//! [`crate::smtp::received`], and the message id that the accepted-message log line repeats.
//!
//! The header is relayguard's bytes, never the client's: it goes upstream ahead of the first
//! body byte (after any PREPEND headers, where Postfix's smtpd puts its own), is not seen by
//! the body scanner, and is not counted against message_size_limit, as Postfix's smtpd counts
//! only what the client sent; the MTA behind counts it (at most a few hundred octets).

use std::sync::atomic::{AtomicU64, Ordering};

use super::Session;
use crate::observe::time::Civil;
use crate::smtp::received::{TlsLine, TraceFacts};

/// Messages this process has written a header for.
static MESSAGES: AtomicU64 = AtomicU64::new(0);

/// A message id unique on this host: the second it was made, the process, a counter. Hex,
/// upper case, as a Postfix queue id reads (`6931A2F1` `03E8` `1`).
fn next_id() -> String {
    let n = MESSAGES.fetch_add(1, Ordering::Relaxed);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:08X}{:04X}{n:X}",
        secs as u32,
        crate::observe::process_id() & 0xffff
    )
}

impl Session {
    /// What relayguard sends ahead of the client's first body byte, over DATA and BDAT alike:
    /// a policy server's PREPEND headers, first, as Postfix writes them before the message (one
    /// line each: a line break inside one would start a second header), then relayguard's own
    /// Received:, as Postfix's smtpd writes its own after the PREPENDs.
    pub(super) fn leading_headers(&mut self) -> Vec<u8> {
        let prepend = self
            .heard
            .txn
            .as_mut()
            .map(|t| std::mem::take(&mut t.prepend))
            .unwrap_or_default();
        let mut out = Vec::new();
        for header in prepend {
            out.extend_from_slice(header.replace(['\r', '\n'], " ").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend(self.trace_header().unwrap_or_default());
        out
    }

    /// The header for the message about to be sent, when this upstream gets one; its id is
    /// kept for the log line of the accepted message. `None`: no header.
    fn trace_header(&mut self) -> Option<Vec<u8>> {
        if !self.ctx.snapshot.upstream.received_header {
            return None;
        }
        let smtpd = &self.ctx.listener.smtpd;
        let id = next_id();
        let recipient = self
            .heard
            .txn
            .as_ref()
            .and_then(|t| match t.recipients.as_slice() {
                [one] => Some(one.as_str()),
                _ => None,
            });
        let tls = self.tls_facts.as_ref().filter(|_| self.tls);
        let addr = self.client.addr.to_canonical().to_string();
        let date = Civil::now().rfc5322();
        let header = TraceFacts {
            helo: self.heard.helo.as_deref(),
            name: &self.client.name,
            addr: &addr,
            tls: tls
                .filter(|_| smtpd.tls_received_header)
                .map(|t| t.received_line()),
            login: self
                .heard
                .login
                .as_ref()
                .filter(|_| smtpd.sasl_authenticated_header)
                .map(|l| l.name.as_str()),
            esmtp: self.heard.esmtp,
            encrypted: self.tls,
            authenticated: self.heard.login.is_some(),
            by: &smtpd.myhostname,
            id: &id,
            recipient,
            date: &date,
        }
        .header();
        self.mail_facts.received_id = Some(id);
        Some(header)
    }
}

impl super::TlsFacts {
    /// The facts Postfix's smtpd_tls_received_header line shows.
    fn received_line(&self) -> TlsLine<'static> {
        TlsLine {
            protocol: self.protocol,
            cipher: self.cipher,
            bits: self.keysize,
        }
    }
}
