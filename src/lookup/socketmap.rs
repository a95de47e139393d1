//! `socketmap:inet:host:port:name` and `socketmap:unix:/path:name` tables: Sendmail's socketmap
//! protocol as Postfix's dict_sockmap.c speaks it. One netstring request `<name> <key>`, one
//! netstring reply `OK <value>`, `NOTFOUND `, `TEMP <why>`, `TIMEOUT <why>` or `PERM <why>`.
//!
//! As Postfix: the key is sent as given (access maps do not fold it for this type), a reply is
//! at most 100,000 bytes, a connection closed by the server is retried once on a new one, and
//! a connection is reused between lookups. Unlike Postfix, one deadline covers the whole
//! lookup (connect, retry, reply) instead of 100 s per read or write: a proxy's client waits.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use super::cache::{ReplyCache, CACHE_KEYS};
use super::endpoint::{Endpoint, Pool, Stream};
use super::table::{LookupFuture, RemoteTable, TableAnswer, TableReply};

/// dict_sockmap.c DICT_SOCKMAP_DEF_MAX_REPLY.
pub const MAX_REPLY: usize = 100_000;

/// One socketmap table.
pub struct Socketmap {
    spec: Box<str>,
    map: String,
    pool: Pool,
    timeout: Duration,
    cache: ReplyCache,
}

/// Why an exchange failed, in netstring_strerror's words.
#[derive(Debug, PartialEq, Eq)]
enum NetstringError {
    Eof,
    Format,
    Size,
    Io(String),
}

impl NetstringError {
    fn describe(&self) -> String {
        match self {
            NetstringError::Eof => "unexpected disconnect".into(),
            NetstringError::Format => "input format error".into(),
            NetstringError::Size => "input exceeds size limit".into(),
            NetstringError::Io(e) => e.clone(),
        }
    }
}

impl Socketmap {
    /// `name` is what follows `socketmap:`. Opening connects nothing: the first lookup does.
    pub fn open(spec: &str, name: &str, timeout: Duration, ttl: Duration) -> Result<Self, String> {
        // dict_sockmap_open: split_at_right(name, ':').
        let (server, map) = name
            .rsplit_once(':')
            .filter(|(_, m)| !m.is_empty())
            .ok_or("socketmap requires server:socketmap argument")?;
        if !(server.starts_with("inet:") || server.starts_with("unix:")) {
            return Err(format!(
                "socketmap server \"{server}\" is neither inet:host:port nor unix:/path"
            ));
        }
        Ok(Socketmap {
            spec: spec.into(),
            map: map.to_string(),
            pool: Pool::new(Endpoint::parse(server)?),
            timeout,
            cache: ReplyCache::new(ttl, CACHE_KEYS),
        })
    }

    async fn lookup_key(&self, key: &str) -> TableAnswer {
        let ask = async {
            match tokio::time::timeout(self.timeout, self.ask(key)).await {
                Ok(reply) => reply,
                Err(_) => self.failed("time limit exceeded"),
            }
        };
        self.cache.answer(key, ask).await
    }

    fn failed(&self, why: &str) -> TableReply {
        TableReply::Failed(format!("table {} lookup error: {why}", self.spec))
    }

    async fn ask(&self, key: &str) -> TableReply {
        let request = encode(&format!("{} {key}", self.map));
        // "We retry connection-level errors once, to make server restarts transparent."
        for attempt in 0..2 {
            let mut conn = match self.pool.get().await {
                Ok(c) => c,
                Err(e) => return self.failed(&e.to_string()),
            };
            match exchange(&mut conn.stream, &request).await {
                Ok(payload) => {
                    self.pool.put(conn);
                    return self.reply(&payload);
                }
                Err(NetstringError::Eof) if attempt == 0 => continue,
                Err(e) => return self.failed(&e.describe()),
            }
        }
        self.failed(&NetstringError::Eof.describe())
    }

    /// dict_sockmap_lookup's reply parsing.
    fn reply(&self, payload: &[u8]) -> TableReply {
        let text = String::from_utf8_lossy(payload);
        let (status, data) = match text.split_once(' ') {
            Some((s, d)) => (s, Some(d)),
            None => (&*text, None),
        };
        let class = match status {
            // "OK" without a space gives Postfix a null payload: not found.
            "OK" => return data.map_or(TableReply::NotFound, |d| TableReply::Found(d.into())),
            "NOTFOUND" => return TableReply::NotFound,
            "TEMP" => "temporary",
            "TIMEOUT" => "timeout",
            "PERM" => "permanent",
            _ => "unknown",
        };
        let why = data.map(str::trim_start).filter(|d| !d.is_empty());
        let why: String = why
            .map(|d| {
                let printable: String = d
                    .chars()
                    .take(200)
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect();
                format!(": {printable}")
            })
            .unwrap_or_default();
        TableReply::Failed(format!("{} socketmap server {class} error{why}", self.spec))
    }
}

impl RemoteTable for Socketmap {
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a> {
        Box::pin(self.lookup_key(key))
    }
}

/// `<len>:<data>,`
fn encode(data: &str) -> Vec<u8> {
    let mut out = format!("{}:", data.len()).into_bytes();
    out.extend_from_slice(data.as_bytes());
    out.push(b',');
    out
}

/// Sends one netstring and reads one back.
async fn exchange(stream: &mut Stream, request: &[u8]) -> Result<Vec<u8>, NetstringError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::UnexpectedEof => NetstringError::Eof,
        _ => NetstringError::Io(e.to_string()),
    };
    stream.write_all(request).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut r = BufReader::new(stream);
    read_netstring(&mut r).await.map_err(|e| match e {
        NetstringError::Io(_) => e,
        other => other,
    })
}

async fn read_netstring<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Vec<u8>, NetstringError> {
    let eof = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
            NetstringError::Eof
        }
        _ => NetstringError::Io(e.to_string()),
    };
    let mut len: usize = 0;
    loop {
        let b = r.read_u8().await.map_err(eof)?;
        match b {
            b':' => break,
            b'0'..=b'9' => {
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(b - b'0')))
                    .ok_or(NetstringError::Size)?;
                if len > MAX_REPLY {
                    return Err(NetstringError::Size);
                }
            }
            _ => return Err(NetstringError::Format),
        }
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await.map_err(eof)?;
    match r.read_u8().await.map_err(eof)? {
        b',' => Ok(data),
        _ => Err(NetstringError::Format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Socketmap {
        Socketmap::open(
            "socketmap:inet:127.0.0.1:9:access",
            "inet:127.0.0.1:9:access",
            Duration::from_secs(1),
            Duration::ZERO,
        )
        .unwrap()
    }

    #[test]
    fn requests_are_netstrings() {
        assert_eq!(encode("access a@b.test"), b"15:access a@b.test,".to_vec());
        assert_eq!(encode(""), b"0:,".to_vec());
    }

    #[test]
    fn replies_as_dict_sockmap_reads_them() {
        let m = map();
        assert_eq!(
            m.reply(b"OK REJECT no"),
            TableReply::Found("REJECT no".into())
        );
        assert_eq!(m.reply(b"OK "), TableReply::Found("".into()));
        assert_eq!(m.reply(b"OK"), TableReply::NotFound);
        assert_eq!(m.reply(b"NOTFOUND "), TableReply::NotFound);
        assert_eq!(
            m.reply(b"TEMP  db down"),
            TableReply::Failed(
                "socketmap:inet:127.0.0.1:9:access socketmap server temporary error: db down"
                    .into()
            )
        );
        assert_eq!(
            m.reply(b"PERM"),
            TableReply::Failed(
                "socketmap:inet:127.0.0.1:9:access socketmap server permanent error".into()
            )
        );
        assert!(matches!(m.reply(b"WHAT x"), TableReply::Failed(w) if w.contains("unknown error")));
    }

    #[tokio::test]
    async fn netstring_limits() {
        let read = |b: &'static [u8]| async move { read_netstring(&mut &b[..]).await };
        assert_eq!(read(b"2:OK,").await, Ok(b"OK".to_vec()));
        assert_eq!(read(b"2:OK;").await, Err(NetstringError::Format));
        assert_eq!(read(b"x:OK,").await, Err(NetstringError::Format));
        assert_eq!(read(b"100001:").await, Err(NetstringError::Size));
        assert_eq!(read(b"5:OK").await, Err(NetstringError::Eof));
    }

    #[test]
    fn names_need_a_server_and_a_map() {
        let open = |n: &str| Socketmap::open(n, n, Duration::from_secs(1), Duration::ZERO);
        assert!(open("inet:127.0.0.1:9").is_err());
        assert!(open("127.0.0.1:9:map").is_err());
        assert!(open("unix:/run/s.sock:map").is_ok());
    }
}
