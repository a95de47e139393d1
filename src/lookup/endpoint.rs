//! Where a table server listens (`inet:host:port` or `unix:/path`) and the connections kept
//! open to it between lookups, as Postfix's auto_clnt keeps one per process: reused while
//! fresh, closed after [`MAX_IDLE`] unused or [`MAX_TTL`] old, and never shared by two lookups
//! at once.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// dict_sockmap.c DICT_SOCKMAP_DEF_MAX_IDLE: a connection unused this long is closed.
pub const MAX_IDLE: Duration = Duration::from_secs(10);
/// dict_sockmap.c DICT_SOCKMAP_DEF_MAX_TTL: a connection this old is closed after its lookup.
pub const MAX_TTL: Duration = Duration::from_secs(100);
/// Idle connections kept per server; more concurrent lookups open (and then close) their own.
const MAX_POOLED: usize = 8;

/// A table server's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`, as tokio resolves it.
    Inet(String),
    Unix(std::path::PathBuf),
}

impl Endpoint {
    /// `inet:host:port`, `unix:/path`, or (as Postfix's tcp table and socketmap also accept)
    /// a bare `host:port`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Endpoint::Unix(path.into()));
        }
        let hostport = text.strip_prefix("inet:").unwrap_or(text);
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| format!("\"{hostport}\" is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("\"{hostport}\" is not host:port"));
        }
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Ok(Endpoint::Inet(format!("{host}:{port}")))
    }

    async fn connect(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Endpoint::Inet(addr) => {
                let s = TcpStream::connect(addr.as_str()).await?;
                // One small request and one reply per lookup: do not wait for Nagle.
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Endpoint::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
        })
    }
}

/// One connection to a table server.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connection with its age, checked out of the pool for one lookup.
pub struct Conn {
    pub stream: Stream,
    opened: Instant,
    /// True when it came from the pool: a failure on it may only mean the server closed it
    /// while it idled, so the lookup is worth one more try on a new connection.
    pub reused: bool,
}

/// The idle connections to one server.
pub struct Pool {
    endpoint: Endpoint,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

impl Pool {
    pub fn new(endpoint: Endpoint) -> Self {
        Pool {
            endpoint,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A fresh-enough idle connection, or a new one.
    pub async fn get(&self) -> std::io::Result<Conn> {
        let now = Instant::now();
        let pooled = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|(c, since)| {
                now.duration_since(*since) < MAX_IDLE && now.duration_since(c.opened) < MAX_TTL
            });
            idle.pop()
        };
        if let Some((mut conn, _)) = pooled {
            conn.reused = true;
            return Ok(conn);
        }
        let stream = self.endpoint.connect().await?;
        Ok(Conn {
            stream,
            opened: Instant::now(),
            reused: false,
        })
    }

    /// Gives back a connection that ended its exchange cleanly.
    pub fn put(&self, conn: Conn) {
        let now = Instant::now();
        if now.duration_since(conn.opened) >= MAX_TTL {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_POOLED {
            idle.push((conn, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_postfix_writes_them() {
        assert_eq!(
            Endpoint::parse("inet:127.0.0.1:9000"),
            Ok(Endpoint::Inet("127.0.0.1:9000".into()))
        );
        assert_eq!(
            Endpoint::parse("localhost:9000"),
            Ok(Endpoint::Inet("localhost:9000".into()))
        );
        assert_eq!(
            Endpoint::parse("inet:[::1]:9000"),
            Ok(Endpoint::Inet("[::1]:9000".into()))
        );
        assert_eq!(
            Endpoint::parse("unix:/run/map.sock"),
            Ok(Endpoint::Unix("/run/map.sock".into()))
        );
        assert!(Endpoint::parse("inet:host").is_err());
        assert!(Endpoint::parse("inet:host:http").is_err());
    }
}
