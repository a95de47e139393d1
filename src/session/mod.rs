//! One client, start to end: owns its sockets, runs the SMTP state machine, asks the policy,
//! drives the upstream leg.
//!
//! The loop is read -> step -> write: complete command lines are taken from the read buffer one
//! at a time, each answered in order; replies are flushed when the session needs more input.

mod abuse;
mod ahead;
mod auth;
mod bdat;
mod body;
mod decide;
mod dispatch;
pub mod end;
mod envelope;
mod errors;
mod events;
mod greet;
pub mod io;
pub mod phase;
mod policy_facts;
mod postscreen;
pub mod trace;
mod trace_header;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{ListenerSnapshot, Snapshot};
use crate::lookup::Lookups;
use crate::net::resolve::ClientNames;
use crate::net::shutdown::Shutdown;
use crate::net::stream::BoxStream;
use crate::observe::ip_text::IpText;
use crate::policy::{Client, Facts, TransactionState};
use crate::smtp::command::Command;
use crate::smtp::line::{LineFramer, LineScan};
use crate::smtp::{replies, Reply};
use crate::upstream::{ClientIdentity, Upstream, UpstreamConn, WarmPool};

pub use end::{CommandCounts, SessionEnd};
use events::EventLog;
use io::{ClientIo, ReadError};
use policy_facts::MailFacts;
pub use policy_facts::TlsFacts;

/// RFC 5321 4.5.3.1.4: 512 octets including CRLF.
const MAX_COMMAND_LINE: usize = 512;

/// What a session needs from the process: the snapshot it started with and the upstream.
#[derive(Clone)]
pub struct SessionContext {
    pub snapshot: Arc<Snapshot>,
    pub listener: Arc<ListenerSnapshot>,
    pub upstream: Arc<Upstream>,
    pub warm: Option<Arc<WarmPool>>,
    pub shutdown: Shutdown,
    /// What a waiting policy fetches its facts with.
    pub lookups: Arc<Lookups>,
    /// Where the limiter counts and bans are kept.
    pub state: Arc<crate::state::StateStore>,
    /// The listener's counters, resolved once when the listener starts.
    pub metrics: Arc<crate::observe::metrics::ListenerMetrics>,
}

/// The SASL login, once the upstream said 235.
#[derive(Clone, Debug)]
struct Login {
    name: String,
    method: String,
}

/// One mail transaction, from an accepted MAIL to the end of DATA or RSET.
#[derive(Debug, Default)]
struct Transaction {
    sender: String,
    recipients: Vec<String>,
    /// Chunk bytes sent so far: a BDAT transaction takes no DATA and no more RCPT.
    bdat_bytes: u64,
    bdat: bool,
    /// The chunked message under way, from its first accepted chunk.
    chunks: Option<Box<bdat::ChunkStream>>,
    /// Headers a policy server asked to PREPEND, put in front of the message.
    prepend: Vec<String>,
    /// The canonical MAIL line the upstream has not answered yet: held since the client's MAIL
    /// and sent with the next RCPT (`UpstreamSettings::defer_mail`).
    held_mail: Option<Vec<u8>>,
}

/// What the client told this session since connect, or since STARTTLS, which forgets all of
/// it at once (RFC 3207 4.2).
#[derive(Debug, Default)]
struct Heard {
    helo: Option<String>,
    esmtp: bool,
    login: Option<Login>,
    /// Boxed: an idle session carries none of a transaction's bytes.
    txn: Option<Box<Transaction>>,
}

/// How handling one command went: counted as OK or failed, or the session is over.
enum Step {
    Ok,
    Failed,
    End(SessionEnd),
}

pub struct Session {
    ctx: SessionContext,
    client: Client,
    names: ClientNames,
    peer: SocketAddr,
    local: SocketAddr,
    io: ClientIo,
    tls: bool,
    heard: Heard,
    upstream: Option<Box<UpstreamConn>>,
    /// The leg being opened ahead of need, in a task of its own (`ahead`).
    opening: Option<ahead::Opening>,
    counts: CommandCounts,
    /// Postfix's error_count: failed commands since connect or the last delivered message.
    errors: u32,
    /// Postfix's junk_cmds: HELO, EHLO, NOOP, RSET and VRFY since then.
    junk: u32,
    /// What earlier stages left for later ones (a delayed or connect-stage reject, armed
    /// defer_if_permit): one per session, as the engine requires. Boxed and kept only while
    /// it holds something, so most sessions carry none of its bytes.
    policy_state: Option<Box<TransactionState>>,
    /// The client sent commands ahead of replies where that is not allowed; sticky.
    improper_pipelining: bool,
    /// The EHLO keywords this client is not offered, decided at connect (smtpd.c).
    discard: crate::smtp::ehlo_mask::EhloMask,
    /// What a policy service hears about the transaction and the TLS session.
    mail_facts: MailFacts,
    /// Boxed, as the upstream leg is: most sessions have neither while they sit idle.
    tls_facts: Option<Box<TlsFacts>>,
    chunking: bdat::Chunking,
    started: Instant,
    /// The last command, for `lost connection after X` and `timeout after X`.
    last: &'static str,
    framer: LineFramer,
    line: Vec<u8>,
    log: EventLog,
    abuse: abuse::AbuseState,
    /// postscreen failed this client with `enforce`: every RCPT is refused.
    screened: Option<Box<postscreen::Enforced>>,
}

impl Session {
    /// `tls` is true when the transport is already encrypted (implicit TLS on 465).
    pub fn new(
        ctx: SessionContext,
        stream: BoxStream,
        names: ClientNames,
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
    ) -> Self {
        let client = Client {
            addr: peer.ip(),
            port: peer.port(),
            name: names.name.as_str().to_owned(),
            reverse_name: names.reverse_name.as_str().to_owned(),
            name_status: names.name.status(),
            reverse_status: names.reverse_name.status(),
        };
        let log = EventLog::new(
            ctx.listener.smtpd.syslog_tag.clone(),
            format!("{}[{}]", client.name, IpText(client.addr)),
        );
        let write_timeout = ctx.listener.smtpd.smtpd_timeout;
        let discard = ctx.listener.smtpd.dialogue.discard_ehlo_for(peer.ip());
        Session {
            ctx,
            client,
            names,
            peer,
            local,
            io: ClientIo::new(stream, write_timeout),
            tls,
            heard: Heard::default(),
            upstream: None,
            opening: None,
            counts: CommandCounts::default(),
            errors: 0,
            junk: 0,
            policy_state: None,
            improper_pipelining: false,
            discard,
            mail_facts: MailFacts::default(),
            tls_facts: None,
            chunking: bdat::Chunking::default(),
            started: Instant::now(),
            last: "CONNECT",
            framer: LineFramer::default(),
            line: Vec::new(),
            log,
            abuse: abuse::AbuseState::default(),
            screened: None,
        }
    }

    /// Runs the session to its end and logs the disconnect line. Takes `&mut self`, not
    /// `self`: an `async fn` keeps a by-value `self` twice in its state, and the caller's task
    /// holds the session for as long as the client is connected.
    pub async fn run(&mut self) -> SessionEnd {
        let end = self.serve().await;
        // Whatever was queued last (a 421 for a timeout) still goes out, then the client's
        // socket closes; the log lines and the upstream's goodbye are not its to wait for.
        let _ = self.io.flush().await;
        drop(self.io.take_stream());
        // Boxed: a shared-state call is large, and the session's state is sized by its
        // largest await while every idle session waits at its smallest.
        Box::pin(self.release_client()).await;
        match &end {
            SessionEnd::ClientClosed { after } => self.log.info(format_args!(
                "lost connection after {after} from {}",
                self.log.client()
            )),
            SessionEnd::Timeout { after } => self.log.info(format_args!(
                "timeout after {after} from {}",
                self.log.client()
            )),
            _ => {}
        }
        if let Some(upstream) = self.upstream.take() {
            upstream.quit_without_reply();
        }
        self.abandon_opening();
        if !matches!(end, SessionEnd::Screened { .. }) {
            self.log.info(format_args!(
                "disconnect from {} {}",
                self.log.client(),
                self.counts.summary()
            ));
        }
        end
    }

    async fn serve(&mut self) -> SessionEnd {
        // Bans and anvil's connect limits first: a banned client is not worth a DNSBL query.
        if let Some(end) = Box::pin(self.admit_client()).await {
            return end;
        }
        if let Some(end) = self.postscreen().await {
            return end;
        }
        // Boxed, as every command's handler is: once per session, and larger than the wait
        // for the next command, which is where idle sessions sit.
        if let Some(end) = Box::pin(self.greet()).await {
            return end;
        }
        loop {
            let line = match self.next_line(MAX_COMMAND_LINE).await {
                Ok(line) => line,
                Err(end) => return end,
            };
            let step = self.dispatch(&line).await;
            self.line = line;
            match step {
                Step::Ok => {}
                Step::Failed => self.add_error(),
                Step::End(end) => {
                    let _ = self.io.flush().await;
                    return end;
                }
            }
            if let Some(end) = self.error_limit_reached() {
                return end;
            }
        }
    }

    /// The deadline for the next command: smtpd_timeout from now, never past the session limit.
    /// Set once per command, so a client trickling bytes cannot stretch it.
    fn command_deadline(&self) -> Instant {
        let per_command = Instant::now() + self.ctx.listener.smtpd.smtpd_timeout;
        per_command.min(self.session_deadline())
    }

    fn session_deadline(&self) -> Instant {
        self.started + self.ctx.snapshot.session_timeout
    }

    /// Takes the next complete command line out of the read buffer, reading as needed.
    async fn next_line(&mut self, max: usize) -> Result<Vec<u8>, SessionEnd> {
        // Taken when the line first has to be waited for: a pipelined one needs no clock.
        let mut deadline = None;
        let mut line = std::mem::take(&mut self.line);
        loop {
            match self.framer.next(&self.io.rbuf, max) {
                LineScan::Complete {
                    line: bytes,
                    consumed,
                } => {
                    line.clear();
                    line.extend_from_slice(bytes);
                    bytes::Buf::advance(&mut self.io.rbuf, consumed);
                    return Ok(line);
                }
                LineScan::TooLong { consumed, ended } => {
                    bytes::Buf::advance(&mut self.io.rbuf, consumed);
                    if ended {
                        self.reject_long_line();
                        self.add_error();
                        if let Some(end) = self.error_limit_reached() {
                            self.line = line;
                            return Err(end);
                        }
                    }
                    continue;
                }
                LineScan::Incomplete => {}
            }
            let deadline = *deadline.get_or_insert_with(|| self.command_deadline());
            self.io.keep_small_buffers(self.heard.txn.is_some());
            let read = tokio::select! {
                read = self.io.fill_command(deadline) => read,
                _ = self.ctx.shutdown.announced() => {
                    self.line = line;
                    self.io.reply(&replies::shutting_down(&self.ctx.listener.smtpd.myhostname));
                    return Err(SessionEnd::Shutdown);
                }
            };
            if let Err(e) = read {
                self.line = line;
                return Err(self.read_failed(e));
            }
        }
    }

    fn reject_long_line(&mut self) {
        self.log.warning(format_args!(
            "{}: request longer than {}",
            self.log.client(),
            MAX_COMMAND_LINE
        ));
        self.io.reply(&replies::line_too_long());
        self.counts.record("unknown", false);
    }

    /// Turns a failed read into the session's end, answering a timeout as Postfix does.
    fn read_failed(&mut self, e: ReadError) -> SessionEnd {
        match e {
            ReadError::Closed => SessionEnd::ClientClosed { after: self.last },
            ReadError::Io(e) => SessionEnd::Io(e.to_string()),
            ReadError::Timeout => {
                self.io.reply(&replies::timeout_exceeded(
                    &self.ctx.listener.smtpd.myhostname,
                ));
                if Instant::now() >= self.session_deadline() {
                    SessionEnd::SessionTimeLimit
                } else {
                    SessionEnd::Timeout { after: self.last }
                }
            }
        }
    }

    /// The policy's view of this session; `sender` and `recipient` are filled per command.
    fn facts<'a>(&'a self, sender: Option<&'a str>, recipient: Option<&'a str>) -> Facts<'a> {
        Facts {
            client: &self.client,
            helo: self.heard.helo.as_deref(),
            esmtp: self.heard.esmtp,
            login: self.heard.login.as_ref().map(|l| l.name.as_str()),
            tls: self.tls,
            sender,
            recipient,
            listener: &self.ctx.listener.name,
            improper_pipelining: self.improper_pipelining,
            session: self.session_facts(sender.is_some()),
        }
    }

    /// The dialogue's rules for this listener (see [`phase`]).
    fn rules(&self) -> phase::Rules {
        phase::Rules::of(&self.ctx.listener.smtpd, self.ctx.listener.tls.is_some())
    }

    /// Where the dialogue stands, as [`phase::admit`] judges it.
    fn dialogue(&self) -> phase::Dialogue {
        let phase = match &self.heard.txn {
            None => phase::Phase::ExpectMail,
            Some(t) if t.bdat => phase::Phase::Chunking {
                bytes: t.bdat_bytes,
            },
            Some(t) => phase::Phase::ExpectRcpt {
                recipients: t.recipients.len(),
            },
        };
        phase::Dialogue {
            discard: self.discard,
            phase,
            helo: self.heard.helo.is_some(),
            authenticated: self.heard.login.is_some(),
            tls: self.tls,
        }
    }

    /// The `reject:` line Postfix writes for a refusal of the dialogue's rules.
    fn log_refusal(&self, command: &Command<'_>, reply: &Reply) {
        let sender = self.heard.txn.as_ref().map(|t| t.sender.as_str());
        let (stage, from, to) = match command {
            Command::Mail { from, .. } => ("MAIL", Some(*from), None),
            Command::Rcpt { to, .. } => ("RCPT", sender, Some(*to)),
            _ => (command.verb(), sender, None),
        };
        self.log
            .rejected(stage, reply, &self.reject_context(from, to));
    }

    /// Whether a new upstream leg can be told the login: only XCLIENT has a LOGIN attribute,
    /// which it sends from relayguard's own record of the AUTH (`unknown` when the mechanism
    /// carries no readable name).
    fn identity_carries_login(&self) -> bool {
        self.ctx.snapshot.upstream.identity == crate::config::IdentityMode::Xclient
    }

    fn identity(&self) -> ClientIdentity {
        ClientIdentity {
            addr: self.peer,
            server: self.local,
            name: self.names.name.clone(),
            reverse_name: self.names.reverse_name.clone(),
            helo: self.heard.helo.clone(),
            login: self.heard.login.as_ref().map(|l| l.name.clone()),
            esmtp: self.heard.esmtp,
        }
    }

    /// The upstream connection, opened on first need. `Err` carries the reply for the client.
    async fn upstream(&mut self) -> Result<&mut UpstreamConn, Reply> {
        if let Err(e) = self.settle_opening().await {
            tracing::warn!(upstream = %e, "upstream unavailable for {}", self.log.client());
            return Err(self.upstream_unavailable());
        }
        if self.upstream.is_none() && self.heard.login.is_some() && !self.identity_carries_login() {
            // The leg that confirmed the AUTH is gone, and a new one could not be told who
            // authenticated: going on would send as a client the upstream never authenticated.
            self.log.info(format_args!(
                "upstream leg lost after AUTH for {}; ending the session",
                self.log.client()
            ));
            return Err(self.upstream_unavailable());
        }
        if self.upstream.is_none() {
            match Box::pin(self.ctx.upstream.connect(
                &self.ctx.snapshot.upstream,
                &self.identity(),
                self.ctx.warm.as_deref(),
            ))
            .await
            {
                Ok(conn) => self.upstream = Some(Box::new(conn)),
                Err(e) => {
                    tracing::warn!(upstream = %e, "upstream unavailable for {}", self.log.client());
                    return Err(self.upstream_unavailable());
                }
            }
        }
        // Built only when needed: this runs for every MAIL, RCPT and DATA.
        let myhostname = &self.ctx.listener.smtpd.myhostname;
        self.upstream
            .as_deref_mut()
            .ok_or_else(|| replies::upstream_unavailable(myhostname))
    }

    /// Drops the upstream leg after a failure; the next transaction opens a new one.
    fn upstream_failed(&mut self, e: &crate::upstream::UpstreamError) -> Reply {
        tracing::warn!(upstream = %e, "upstream failed for {}", self.log.client());
        self.upstream = None;
        self.heard.txn = None;
        self.upstream_unavailable()
    }

    /// The upstream said 421 (or 521): its leg is gone, and the session ends with that reply,
    /// as behind Postfix's smtpd proxy, rather than going on over a leg that is not there.
    fn upstream_closed(&mut self, reply: Reply) -> Reply {
        tracing::warn!(upstream = %reply, "upstream closed the session for {}", self.log.client());
        self.upstream = None;
        self.heard.txn = None;
        reply
    }

    fn upstream_unavailable(&self) -> Reply {
        replies::upstream_unavailable(&self.ctx.listener.smtpd.myhostname)
    }

    fn handshake_timeout(&self) -> Duration {
        self.ctx.snapshot.handshake_timeout
    }
}
