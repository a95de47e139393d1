//! One open SMTP connection to the upstream: canonical commands out, parsed replies in.
//!
//! Commands can be queued and flushed together (pipelining to the upstream); replies are read
//! in order under the reply timeout. Nothing here knows about the client.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::timeout;

use crate::net::deadline::Deadline;
use crate::net::stream::BoxStream;
use crate::smtp::ehlo::Capabilities;
use crate::smtp::response::{build_reply, scan_reply, ReplyError, ReplyFrame};
use crate::smtp::Reply;

/// How long a goodbye may take before the connection is dropped regardless.
const QUIT_GRACE: Duration = Duration::from_secs(2);

/// Why talking to the upstream failed. Every variant means the upstream leg is unusable.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("timeout after {0:?} waiting for the upstream")]
    Timeout(Duration),
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream sent a bad reply: {0}")]
    BadReply(#[from] ReplyError),
    #[error("upstream refused {stage}: {reply}")]
    Refused { stage: &'static str, reply: Reply },
    #[error("upstream TLS: {0}")]
    Tls(String),
}

impl UpstreamError {
    /// The upstream may simply not be up yet (or was briefly gone): trying again can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::Timeout(_)
                | UpstreamError::Closed
                | UpstreamError::Io(_)
        ) || matches!(self, UpstreamError::Refused { reply, .. } if reply.is_transient())
    }

    /// A short name of the variant, for the upstream-errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Closed => "closed",
            UpstreamError::Io(_) => "io",
            UpstreamError::BadReply(_) => "bad_reply",
            UpstreamError::Refused { .. } => "refused",
            UpstreamError::Tls(_) => "tls",
        }
    }

    /// The connection had gone before its first command: closed, reset, or a 421 goodbye.
    pub fn closed_while_idle(&self) -> bool {
        matches!(self, UpstreamError::Closed | UpstreamError::Io(_))
            || matches!(self, UpstreamError::Refused { reply, .. } if reply.code == 421)
    }
}

pub struct UpstreamConn {
    stream: BoxStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Bytes went to the stream since its last flush.
    unflushed: bool,
    reply_timeout: Duration,
    deadline: Deadline,
    capabilities: Capabilities,
    /// An EHLO on this connection was answered, so `capabilities` is what the upstream offered
    /// rather than the empty default.
    ehlo_answered: bool,
}

impl UpstreamConn {
    pub(crate) fn new(stream: BoxStream, reply_timeout: Duration) -> Self {
        Self {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            unflushed: false,
            reply_timeout,
            deadline: Deadline::default(),
            capabilities: Capabilities::default(),
            ehlo_answered: false,
        }
    }

    pub(crate) fn into_stream(self) -> BoxStream {
        self.stream
    }

    /// The upstream's EHLO answer for this connection; empty when it was never asked (a leg
    /// for a client that gave no HELO, see `connect::introduce`).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Whether [`Self::capabilities`] came from an EHLO answered on this connection.
    pub fn ehlo_answered(&self) -> bool {
        self.ehlo_answered
    }

    pub(crate) fn set_capabilities(&mut self, caps: Capabilities) {
        self.capabilities = caps;
        self.ehlo_answered = true;
    }

    /// Queues bytes (one or more complete command lines) to be sent at the next flush.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Gives access to the write queue, for writers that append in place (`Command::write_to`).
    pub fn queue_buf(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// Writes what is queued and flushes the stream (a TLS stream may hold records back), under
    /// one deadline; nothing at all when nothing was written since the last flush.
    pub async fn flush(&mut self) -> Result<(), UpstreamError> {
        if self.wbuf.is_empty() && !self.unflushed {
            return Ok(());
        }
        let (stream, queued) = (&mut self.stream, &self.wbuf);
        let write = async {
            stream.write_all(queued).await?;
            stream.flush().await
        };
        self.deadline
            .after(self.reply_timeout, write)
            .await
            .map_err(|_| UpstreamError::Timeout(self.reply_timeout))??;
        self.unflushed = false;
        self.wbuf.clear();
        if self.wbuf.capacity() > 16 * 1024 {
            self.wbuf = Vec::new();
        }
        Ok(())
    }

    /// Writes body bytes straight through, without copying them into the queue; the stream is
    /// flushed before the next reply is read.
    pub async fn write_body(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.flush().await?;
        let write = self.stream.write_all(bytes);
        self.deadline
            .after(self.reply_timeout, write)
            .await
            .map_err(|_| UpstreamError::Timeout(self.reply_timeout))??;
        self.unflushed = true;
        Ok(())
    }

    /// Flushes anything queued and reads the next reply.
    pub async fn read_reply(&mut self) -> Result<Reply, UpstreamError> {
        self.read_frame(build_reply).await
    }

    /// Flushes anything queued, reads the next reply and hands its bytes to `take` before
    /// they are dropped: a caller that wants only the code, or the EHLO keywords, copies out
    /// no text.
    pub async fn read_frame<T>(
        &mut self,
        take: impl FnOnce(&[u8], ReplyFrame) -> T,
    ) -> Result<T, UpstreamError> {
        // From the request's flush to its whole reply: the upstream's latency as seen here.
        // The same clock read starts the reply timeout: one read fewer per reply than
        // `Deadline::after`, on a path every command takes.
        let asked = tokio::time::Instant::now();
        let deadline = asked + self.reply_timeout;
        self.flush().await?;
        loop {
            if let Some(frame) = scan_reply(&self.rbuf)? {
                crate::observe::metrics::metrics()
                    .upstream_reply(asked.into_std(), frame.code != 421);
                let out = take(&self.rbuf, frame);
                self.rbuf.drain(..frame.len);
                if self.rbuf.is_empty() && self.rbuf.capacity() > 4096 {
                    self.rbuf = Vec::new();
                }
                return Ok(out);
            }
            self.rbuf.reserve(1024);
            let read = self.stream.read_buf(&mut self.rbuf);
            let n = self
                .deadline
                .within(deadline, read)
                .await
                .map_err(|_| UpstreamError::Timeout(self.reply_timeout))??;
            if n == 0 {
                return Err(UpstreamError::Closed);
            }
        }
    }

    /// Whether the upstream sent something, closed, or failed while this connection sat idle
    /// (a 421 at its timeout, a restart). Never waits: one read attempt, and what it read is
    /// lost, so only a connection about to be discarded when this says yes may ask.
    pub fn has_input(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return true;
        }
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(&mut self.stream)
            .poll_read(&mut cx, &mut buf)
            .is_ready()
    }

    /// Sends one command and returns its reply.
    pub async fn command(&mut self, line: &[u8]) -> Result<Reply, UpstreamError> {
        self.queue(line);
        self.read_reply().await
    }

    /// Says goodbye and reads the 221 for at most [`QUIT_GRACE`]; the connection is dropped
    /// after. For the start-up probe, the warm pool and shutdown, which await their goodbyes;
    /// a session's leg uses [`UpstreamConn::quit_without_reply`].
    pub async fn quit(mut self) {
        self.queue(b"QUIT\r\n");
        let _ = timeout(QUIT_GRACE, self.read_reply()).await;
    }

    /// Says QUIT and closes without reading the 221, as Postfix's own client does
    /// (`smtp_skip_quit_response = yes`): a session's leg has nothing left to learn from it,
    /// and waiting costs a read and a wakeup per connection. Only a write the socket cannot
    /// take at once is finished by a task.
    pub fn quit_without_reply(mut self) {
        self.queue(b"QUIT\r\n");
        if !self.write_queued_now() {
            tokio::spawn(async move {
                let _ = timeout(QUIT_GRACE, self.flush()).await;
            });
        }
    }

    /// Writes the queue and flushes the stream as far as they go without waiting. True when
    /// nothing is left to do (all written, or the connection failed); false leaves the
    /// unwritten rest queued for [`UpstreamConn::flush`].
    fn write_queued_now(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut written = 0;
        while written < self.wbuf.len() {
            match Pin::new(&mut self.stream).poll_write(&mut cx, &self.wbuf[written..]) {
                Poll::Ready(Ok(n)) if n > 0 => written += n,
                Poll::Pending => {
                    self.wbuf.drain(..written);
                    self.unflushed = true;
                    return false;
                }
                Poll::Ready(_) => return true,
            }
        }
        self.wbuf.clear();
        match Pin::new(&mut self.stream).poll_flush(&mut cx) {
            Poll::Pending => {
                self.unflushed = true;
                false
            }
            Poll::Ready(_) => true,
        }
    }
}
