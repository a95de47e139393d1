//! The client's side of a session: one read buffer, one write buffer, a deadline on every read
//! and every write.
//!
//! Replies are queued and written when the session next needs input, so a pipelined group is
//! answered in one write, in command order, however its bytes arrived. A write has
//! smtpd_timeout to finish, as in Postfix: a client that pipelines and never reads its replies
//! would otherwise hold its session, and its connection slot, forever.

use std::io;
use std::time::Duration;

use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use futures_util::future::Either;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::net::deadline::Deadline;
use crate::net::stream::BoxStream;
use crate::smtp::Reply;

/// Read size while waiting for commands. The bytes are read into the stack and copied into
/// `rbuf`, so a session waiting for its next command holds no more than a line's worth, and
/// one outside a transaction no read buffer at all.
const COMMAND_READ: usize = 1024;
/// A read buffer this small is kept while a transaction waits for its next command: it holds
/// one command line, and keeping it spares an allocation per RCPT and DATA.
const COMMAND_KEPT: usize = 128;
/// What a reply queue starts with: a one-line reply fits, an EHLO reply grows it once.
const REPLY_QUEUE: usize = 128;
/// First read size once a body streams: a typical message fits, and a buffer this small is
/// reused by the allocator instead of being mapped and unmapped per message.
const BODY_READ_MIN: usize = 16 * 1024;
/// Largest read size, reached by doubling while reads keep filling the buffer (large bodies).
const BODY_READ_MAX: usize = 256 * 1024;

#[derive(Debug)]
pub enum ReadError {
    Closed,
    Timeout,
    Io(io::Error),
}

pub struct ClientIo {
    stream: BoxStream,
    pub rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// The next body read size; grows while a body keeps the socket full.
    body_read: usize,
    deadline: Deadline,
    /// How long one flush may wait for the client to take the bytes (smtpd_timeout).
    write_timeout: Duration,
    /// A write timed out: the stream is stuck, and nothing more is tried on it, not even the
    /// final 421, so the session ends without waiting another timeout.
    write_stuck: bool,
    /// Postfix's tarpit (smtpd_error_sleep_time): while set, every reply queued waits this
    /// long before it goes out, and goes out on its own.
    tarpit: Option<Duration>,
    /// Where in `wbuf` each delayed reply starts, with its delay.
    delayed: Vec<(usize, Duration)>,
    /// Keep a line-sized read buffer and a reply-sized queue while waiting for the client:
    /// set inside a transaction, where the client's next command follows at once, and clear
    /// outside one, where a session may sit idle for minutes and should hold no buffers.
    keep_small_buffers: bool,
}

impl ClientIo {
    pub fn new(stream: BoxStream, write_timeout: Duration) -> Self {
        Self {
            stream,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            body_read: BODY_READ_MIN,
            deadline: Deadline::default(),
            write_timeout,
            write_stuck: false,
            tarpit: None,
            delayed: Vec::new(),
            keep_small_buffers: false,
        }
    }

    /// Whether the waits from now on keep small buffers (see `keep_small_buffers`).
    pub fn keep_small_buffers(&mut self, keep: bool) {
        self.keep_small_buffers = keep;
    }

    /// Queues a reply; it is written at the next flush (after the tarpit's delay, if set).
    pub fn reply(&mut self, reply: &Reply) {
        self.wbuf.reserve(REPLY_QUEUE);
        if let Some(delay) = self.tarpit {
            self.delayed.push((self.wbuf.len(), delay));
        }
        reply.write_to(&mut self.wbuf);
    }

    /// Sets or lifts the delay put before each reply queued from now on. As smtpd_chat.c
    /// does, a delayed reply is sent and flushed after its sleep, so a pipelining client
    /// sees its replies arrive one delay apart, and not all at once after the sum of them.
    pub fn set_tarpit(&mut self, delay: Option<Duration>) {
        self.tarpit = delay.filter(|d| !d.is_zero());
    }

    pub fn reply_bytes(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Writes the queued replies. Fails with `TimedOut` when the client took none of them for
    /// `write_timeout`, and at once on every call after that.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.write_stuck {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut start = 0;
        for (at, delay) in std::mem::take(&mut self.delayed) {
            self.write_range(start, at).await?;
            tokio::time::sleep(delay).await;
            start = at;
        }
        self.write_range(start, self.wbuf.len()).await?;
        // Given back: the session is about to wait for its client, and an idle session
        // should hold no buffers. Inside a transaction one reply's room is kept, so the
        // one-line replies to RCPT and DATA allocate no queue each.
        if !self.keep_small_buffers || self.wbuf.capacity() > REPLY_QUEUE {
            self.wbuf = Vec::new();
        } else {
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Writes and flushes `wbuf[start..end]`, within the write timeout.
    async fn write_range(&mut self, start: usize, end: usize) -> io::Result<()> {
        let (stream, queued) = (&mut self.stream, self.wbuf.get(start..end).unwrap_or(&[]));
        let write = async {
            if !queued.is_empty() {
                stream.write_all(queued).await?;
            }
            stream.flush().await
        };
        match self.deadline.after(self.write_timeout, write).await {
            Ok(written) => written?,
            Err(_) => {
                self.write_stuck = true;
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        Ok(())
    }

    /// Flushes pending replies, then reads more input before `deadline`: up to `body_read`
    /// bytes straight into `rbuf`, or (`None`) a command read through the stack. A flush that
    /// timed out is a timeout of the session, as a read's is.
    async fn fill(
        &mut self,
        deadline: Instant,
        body_read: Option<usize>,
    ) -> Result<usize, ReadError> {
        self.flush().await.map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => ReadError::Timeout,
            _ => ReadError::Io(e),
        })?;
        let read = match body_read {
            Some(size) => {
                self.rbuf.reserve(size);
                Either::Left(self.stream.read_buf(&mut self.rbuf))
            }
            None => {
                // An empty buffer is given back unless a transaction waits and it holds no
                // more than a line. `capacity()` counts only what is left past the bytes
                // consumed, so a body's 16 KiB buffer read to its end looks empty-sized;
                // `try_reclaim` succeeds exactly when the allocation itself is larger.
                if self.rbuf.is_empty()
                    && (!self.keep_small_buffers || self.rbuf.try_reclaim(COMMAND_KEPT + 1))
                {
                    self.rbuf = BytesMut::new();
                }
                Either::Right(read_via_stack(&mut self.stream, &mut self.rbuf))
            }
        };
        match self.deadline.within(deadline, read).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(e)) => Err(ReadError::Io(e)),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// Takes in whatever input has already arrived, without waiting: Postfix's peek before
    /// its greeting, which catches a client that talks first. True when there is input.
    pub fn take_early_input(&mut self) -> bool {
        use futures_util::FutureExt as _;
        // A read that is not ready is dropped unpolled again and takes nothing.
        let _ = read_via_stack(&mut self.stream, &mut self.rbuf).now_or_never();
        !self.rbuf.is_empty()
    }

    pub async fn fill_command(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        self.body_read = BODY_READ_MIN;
        self.fill(deadline, None).await
    }

    /// Reads body bytes: small reads for small messages, doubling up to `BODY_READ_MAX` while
    /// each read fills what it asked for.
    pub async fn fill_body(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        let n = self.fill(deadline, Some(self.body_read)).await?;
        if n >= self.body_read {
            self.body_read = (self.body_read * 2).min(BODY_READ_MAX);
        }
        Ok(n)
    }

    /// Takes the stream out for a TLS handshake, leaving a closed one in its place.
    pub fn take_stream(&mut self) -> BoxStream {
        let closed: BoxStream = Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink()));
        std::mem::replace(&mut self.stream, closed)
    }

    /// Puts the (now encrypted) stream in place; buffers start empty.
    pub fn set_stream(&mut self, stream: BoxStream) {
        self.stream = stream;
        self.rbuf = BytesMut::new();
        self.wbuf.clear();
        self.delayed.clear();
    }
}

/// Reads up to [`COMMAND_READ`] bytes into a buffer on the stack of each poll and appends
/// them to `rbuf`: while the read waits, neither the future nor the session holds a buffer.
fn read_via_stack<'a>(
    stream: &'a mut BoxStream,
    rbuf: &'a mut BytesMut,
) -> impl std::future::Future<Output = io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        let mut bytes = [0u8; COMMAND_READ];
        let mut buf = ReadBuf::new(&mut bytes);
        std::task::ready!(Pin::new(&mut **stream).poll_read(cx, &mut buf))?;
        rbuf.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session between BDAT chunks waits inside its transaction: the chunk's read buffer,
    /// read to its end, must not be kept as if it were a line's.
    #[tokio::test]
    async fn a_body_buffer_is_not_kept_for_the_next_command() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = ClientIo::new(Box::new(server), Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        client.write_all(&[b'x'; BODY_READ_MIN]).await.unwrap();
        let mut read = 0;
        while read < BODY_READ_MIN {
            read += io.fill_body(deadline).await.unwrap();
        }
        bytes::Buf::advance(&mut io.rbuf, read);
        io.keep_small_buffers(true);
        client.write_all(b"BDAT 10 LAST\r\n").await.unwrap();
        io.fill_command(deadline).await.unwrap();
        assert_eq!(&io.rbuf[..], b"BDAT 10 LAST\r\n");
        assert!(io.rbuf.capacity() <= COMMAND_KEPT, "{}", io.rbuf.capacity());
        // A line-sized buffer is kept inside a transaction...
        bytes::Buf::advance(&mut io.rbuf, 14);
        client.write_all(b"DATA\r\n").await.unwrap();
        io.fill_command(deadline).await.unwrap();
        let kept = io.rbuf.as_ptr();
        bytes::Buf::advance(&mut io.rbuf, 6);
        client.write_all(b"RSET\r\n").await.unwrap();
        io.fill_command(deadline).await.unwrap();
        let same =
            (kept as usize..kept as usize + COMMAND_KEPT).contains(&(io.rbuf.as_ptr() as usize));
        assert!(same, "the line-sized buffer was replaced");
        // ...and given back outside one.
        bytes::Buf::advance(&mut io.rbuf, 6);
        io.keep_small_buffers(false);
        client.write_all(b"QUIT\r\n").await.unwrap();
        io.fill_command(deadline).await.unwrap();
        assert_eq!(&io.rbuf[..], b"QUIT\r\n");
    }
}
