//! `tcp:host:port` tables, the protocol of Postfix's dict_tcp.c and tcp_table(5): the request
//! `get KEY\n` with the key %XX-encoded, one reply line `200 VALUE` (found, %XX-encoded),
//! `500 ...` (not found) or `400 ...` (try again), at most 4096 bytes.
//!
//! As Postfix: the key is sent as given (access maps do not fold it for this type), a
//! malformed reply, a 4xx or another status closes the connection and fails the lookup for now,
//! and a failed connection is tried again after a second, up to ten times. Unlike Postfix,
//! all of that happens within one per-lookup deadline instead of 100 s per read or write.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::cache::{ReplyCache, CACHE_KEYS};
use super::endpoint::{Conn, Endpoint, Pool};
use super::table::{LookupFuture, RemoteTable, TableAnswer, TableReply};

/// dict_tcp.c DICT_TCP_MAXLEN.
pub const MAX_REPLY: usize = 4096;
/// dict_tcp.c DICT_TCP_MAXTRY.
const MAX_TRIES: usize = 10;
/// dict_tcp.c sleeps this long between attempts "instead of hammering the server".
const PAUSE: Duration = Duration::from_secs(1);

pub struct TcpTable {
    name: Box<str>,
    pool: Pool,
    timeout: Duration,
    cache: ReplyCache,
}

/// What one exchange on one connection gave.
enum Exchange {
    /// A whole reply line, without its newline; the connection may be reused.
    Line(Vec<u8>),
    /// The connection failed (EOF, error, overlong line): try again on a new one.
    Broken(String),
}

impl TcpTable {
    /// `name` is what follows `tcp:`. Opening connects nothing: the first lookup does.
    pub fn open(name: &str, timeout: Duration, ttl: Duration) -> Result<Self, String> {
        if name.starts_with("unix:") {
            return Err("tcp tables take host:port, not a UNIX socket".into());
        }
        Ok(TcpTable {
            name: name.into(),
            pool: Pool::new(Endpoint::parse(name)?),
            timeout,
            cache: ReplyCache::new(ttl, CACHE_KEYS),
        })
    }

    async fn lookup_key(&self, key: &str) -> TableAnswer {
        let ask = async {
            match tokio::time::timeout(self.timeout, self.ask(key)).await {
                Ok(reply) => reply,
                Err(_) => TableReply::Failed(format!(
                    "read TCP map reply from {}: time limit exceeded",
                    self.name
                )),
            }
        };
        self.cache.answer(key, ask).await
    }

    async fn ask(&self, key: &str) -> TableReply {
        let request = format!("get {}\n", hex_quote(key));
        let mut why = String::new();
        for _ in 0..MAX_TRIES {
            let (conn, reused) = match self.pool.get().await {
                Ok(c) => {
                    let reused = c.reused;
                    (Some(c), reused)
                }
                Err(e) => {
                    why = format!("connect to TCP map {}: {e}", self.name);
                    (None, false)
                }
            };
            if let Some(mut conn) = conn {
                match exchange(&mut conn, request.as_bytes()).await {
                    Exchange::Line(line) => return self.reply(conn, &line),
                    Exchange::Broken(w) => {
                        why = format!("read TCP map reply from {}: {w}", self.name)
                    }
                }
            }
            // A pooled connection the server closed while it idled is no reason to wait.
            if !reused {
                tokio::time::sleep(PAUSE).await;
            }
        }
        TableReply::Failed(why)
    }

    /// dict_tcp_lookup's reply checks; the connection goes back to the pool only after a
    /// well-formed 2xx or 5xx.
    fn reply(&self, conn: Conn, line: &[u8]) -> TableReply {
        let printable = || {
            String::from_utf8_lossy(line.get(..100).unwrap_or(line))
                .chars()
                .map(|c| if c.is_control() { '_' } else { c })
                .collect::<String>()
        };
        let status = match line {
            [a, b, c, s, ..]
                if a.is_ascii_digit()
                    && b.is_ascii_digit()
                    && c.is_ascii_digit()
                    && s.is_ascii_whitespace() =>
            {
                *a
            }
            _ => 0,
        };
        let value = line.get(4..).and_then(hex_unquote);
        let (Some(value), true) = (value, status != 0) else {
            return TableReply::Failed(format!(
                "read TCP map reply from {}: malformed reply: {}",
                self.name,
                printable()
            ));
        };
        match status {
            b'5' => {
                self.pool.put(conn);
                TableReply::NotFound
            }
            b'2' => {
                self.pool.put(conn);
                TableReply::Found(String::from_utf8_lossy(&value).into_owned())
            }
            b'4' => {
                TableReply::Failed(format!("TCP map {} soft error: {}", self.name, printable()))
            }
            _ => TableReply::Failed(format!(
                "read TCP map reply from {}: bad status code: {}",
                self.name,
                printable()
            )),
        }
    }
}

impl RemoteTable for TcpTable {
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a> {
        Box::pin(self.lookup_key(key))
    }
}

async fn exchange(conn: &mut Conn, request: &[u8]) -> Exchange {
    if let Err(e) = conn.stream.write_all(request).await {
        return Exchange::Broken(e.to_string());
    }
    let mut r = BufReader::new(&mut conn.stream).take(MAX_REPLY as u64 + 1);
    let mut line = Vec::new();
    match r.read_until(b'\n', &mut line).await {
        Err(e) => Exchange::Broken(format!("unexpected EOF ({e})")),
        Ok(_) if line.last() == Some(&b'\n') => {
            line.pop();
            Exchange::Line(line)
        }
        Ok(n) if n > MAX_REPLY => Exchange::Broken(format!("text longer than {MAX_REPLY}")),
        Ok(_) => Exchange::Broken("unexpected EOF".into()),
    }
}

/// hex_quote.c: `%`, white space and unprintable bytes as `%XX`.
pub fn hex_quote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b != b'%' && !b.is_ascii_whitespace() && (b.is_ascii_graphic()) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// hex_quote.c hex_unquote: `None` for a `%` not followed by two hex digits.
pub fn hex_unquote(hex: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(hex.len());
    let mut it = hex.iter();
    while let Some(&b) = it.next() {
        if b == b'%' {
            let hi = char::from(*it.next()?).to_digit(16)?;
            let lo = char::from(*it.next()?).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_as_hex_quote_does() {
        assert_eq!(hex_quote("a@b.test"), "a@b.test");
        assert_eq!(hex_quote("100% sure"), "100%25%20sure");
        assert_eq!(hex_quote("tab\there"), "tab%09here");
        assert_eq!(hex_quote("é"), "%C3%A9");
    }

    #[test]
    fn values_are_unquoted_and_bad_escapes_refused() {
        assert_eq!(hex_unquote(b"REJECT%20no"), Some(b"REJECT no".to_vec()));
        assert_eq!(hex_unquote(b"REJECT no"), Some(b"REJECT no".to_vec()));
        assert_eq!(hex_unquote(b"%4a%4A"), Some(b"JJ".to_vec()));
        assert_eq!(hex_unquote(b"50%"), None);
        assert_eq!(hex_unquote(b"%zz"), None);
    }
}
