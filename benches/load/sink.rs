//! A fast SMTP sink for body throughput: smtp-sink tops out near 160 MiB/s, which would hide
//! the proxies' cost. Greets, answers EHLO with PIPELINING/SIZE/8BITMIME/XCLIENT, XCLIENT with
//! a fresh 220 greeting as Postfix does, skips a PROXY v2 header at the start (as Postfix's
//! `smtpd_upstream_proxy_protocol = haproxy` would read it), swallows DATA up to CRLF.CRLF found
//! with memchr's memmem, and says 250. Parses nothing else.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running sink; dropping it stops accepting (sessions end when their peers close).
pub struct Sink {
    pub addr: SocketAddr,
    pub messages: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

const EHLO: &[u8] = b"250-sink.localhost\r\n250-PIPELINING\r\n250-SIZE 1073741824\r\n\
250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n250 8BITMIME\r\n";
const READ_CHUNK: usize = 256 * 1024;
/// The binary PROXY v2 signature; the header is 16 bytes and the length in bytes 14..16.
const PROXY_V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Binds 127.0.0.1:0 and serves until dropped.
pub async fn start() -> Result<Sink, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("sink bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("sink addr: {e}"))?;
    let messages = Arc::new(AtomicU64::new(0));
    let count = messages.clone();
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(session(stream, count.clone()));
        }
    });
    Ok(Sink {
        addr,
        messages,
        accept,
    })
}

async fn session(mut stream: TcpStream, messages: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let finder = memmem::Finder::new(b"\r\n.\r\n");
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(512);
    let mut in_body = false;
    // Whether the first bytes are still to be checked for a PROXY v2 header.
    let mut at_start = true;
    if stream
        .write_all(b"220 sink.localhost ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(if in_body { READ_CHUNK } else { 4096 });
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if at_start {
            let seen = buf.len().min(PROXY_V2.len());
            if buf.len() < 16 && buf[..seen] == PROXY_V2[..seen] {
                continue; // perhaps a header: read on
            }
            at_start = false;
            if buf.starts_with(PROXY_V2) {
                let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
                while buf.len() < 16 + len {
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                buf.drain(..16 + len);
            }
        }
        let mut quit = false;
        loop {
            if in_body {
                match finder.find(&buf) {
                    Some(at) => {
                        buf.drain(..at + 5);
                        in_body = false;
                        messages.fetch_add(1, Ordering::Relaxed);
                        out.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
                    }
                    None => {
                        // Keep the last four bytes: the terminator may straddle two reads.
                        let keep = buf.len().min(4);
                        let from = buf.len() - keep;
                        buf.copy_within(from.., 0);
                        buf.truncate(keep);
                        break;
                    }
                }
            } else {
                let Some(nl) = memchr::memchr(b'\n', &buf) else {
                    break;
                };
                let mut verb = [0u8; 4];
                if let Some(v) = buf.get(..4) {
                    verb.copy_from_slice(v);
                    verb.make_ascii_uppercase();
                }
                buf.drain(..nl + 1);
                match &verb {
                    b"EHLO" => out.extend_from_slice(EHLO),
                    // Postfix answers XCLIENT with a new greeting; the client EHLOs again.
                    b"XCLI" => out.extend_from_slice(b"220 sink.localhost ESMTP\r\n"),
                    b"DATA" => {
                        out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                        in_body = true;
                        // The body's first line also follows a CRLF: ".\r\n" at once ends it.
                        buf.splice(0..0, *b"\r\n");
                    }
                    b"QUIT" => {
                        out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                        quit = true;
                        break;
                    }
                    _ => out.extend_from_slice(b"250 2.0.0 Ok\r\n"),
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if quit {
            return;
        }
    }
}
