//! A Rust SMTP client for exact-reply assertions over plain TCP, STARTTLS and implicit TLS.
//! The swaks and smtplib wrappers live in `external.rs`.
//!
//! Replies are returned as text, multi-line replies joined with `\n` and without CRLF, so that a
//! test writes `assert_eq!(c.cmd("RCPT TO:<x@elsewhere.example>").await, "454 4.7.1 ...")`.
//! Every read is bounded by a timeout; a timeout or an early close panics with what was read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::tls::CertSet;

/// How long one reply may take unless [`Client::with_timeout`] says otherwise.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps the transport.
    Swapping,
}

/// One SMTP connection with a read buffer of its own, so that pipelined replies are kept.
pub struct Client {
    conn: Conn,
    buf: Vec<u8>,
    timeout: Duration,
    ca: Option<PathBuf>,
    /// The greeting, once read by [`Client::greeting`] or the layered helpers.
    pub greeting: Option<String>,
    /// The last EHLO reply's keyword lines (without the first line), e.g. `PIPELINING`.
    pub capabilities: Vec<String>,
}

impl Client {
    /// Connects over plain TCP. The CA for a later STARTTLS defaults to `certs/dev-ca.pem` if
    /// it exists; set another with [`Client::with_ca`].
    pub async fn connect(addr: SocketAddr) -> Client {
        match Client::try_connect(addr).await {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Connects over plain TCP; `Err` says why not (a draining server refuses, for one).
    pub async fn try_connect(addr: SocketAddr) -> Result<Client, String> {
        let tcp = timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        Ok(Client::over(tcp))
    }

    fn over(tcp: TcpStream) -> Client {
        tcp.set_nodelay(true).unwrap();
        Client {
            conn: Conn::Plain(tcp),
            buf: Vec::new(),
            timeout: REPLY_TIMEOUT,
            ca: CertSet::dev().map(|c| c.ca),
            greeting: None,
            capabilities: Vec::new(),
        }
    }

    /// Connects over plain TCP from `local` (another loopback address, say 127.0.0.7), so the
    /// server sees a client that is not 127.0.0.1 without any PROXY header.
    pub async fn connect_from(addr: SocketAddr, local: std::net::IpAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(local, 0))
            .unwrap_or_else(|e| panic!("bind {local}: {e}"));
        let tcp = timeout(REPLY_TIMEOUT, socket.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr} from {local}: {e}"));
        Client::over(tcp)
    }

    /// Connects and does the TLS handshake at once (port 465 style), trusting `ca`.
    pub async fn connect_tls(addr: SocketAddr, server_name: &str, ca: &Path) -> Client {
        let mut c = Client::connect(addr).await.with_ca(ca);
        c.handshake(server_name).await;
        c
    }

    pub fn with_ca(mut self, ca: &Path) -> Client {
        self.ca = Some(ca.to_owned());
        self
    }

    pub fn with_timeout(mut self, t: Duration) -> Client {
        self.timeout = t;
        self
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.conn, Conn::Tls(_))
    }

    /// Reads the greeting and remembers it.
    /// Connects to a listener that trusts loopback's PROXY header and appears as `client` (an
    /// IPv4 or IPv6 address); the greeting is read and kept in `greeting`.
    pub async fn connect_as(addr: SocketAddr, client: &str) -> Client {
        let mut c = Client::connect(addr).await;
        let header = if client.contains(':') {
            format!("PROXY TCP6 {client} ::1 40001 25\r\n")
        } else {
            format!("PROXY TCP4 {client} 127.0.0.1 40001 25\r\n")
        };
        c.send_raw(header.as_bytes()).await;
        c.greeting().await;
        c
    }

    pub async fn greeting(&mut self) -> String {
        let g = self.read_reply().await;
        self.greeting = Some(g.clone());
        g
    }

    /// Sends one command line (CRLF added) and returns the full reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    /// Sends EHLO, remembers the capability lines, returns the full reply.
    pub async fn ehlo(&mut self, name: &str) -> String {
        let reply = self.cmd(&format!("EHLO {name}")).await;
        self.capabilities = reply
            .lines()
            .skip(1)
            .map(|l| l.get(4..).unwrap_or("").to_owned())
            .collect();
        reply
    }

    /// Writes bytes as they are (pipelining, smuggling, PROXY headers).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes).await {
            panic!("{e}")
        }
    }

    /// Writes bytes as they are; `Err` on a timeout or a connection the server closed.
    pub async fn try_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let t = self.timeout;
        let r = match &mut self.conn {
            Conn::Plain(s) => timeout(t, s.write_all(bytes)).await,
            Conn::Tls(s) => {
                timeout(t, async {
                    s.write_all(bytes).await?;
                    s.flush().await
                })
                .await
            }
            Conn::Swapping => unreachable!("transport is being swapped"),
        };
        r.map_err(|_| "write timed out".to_owned())?
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Reads one complete reply; panics on timeout or if the server closes first.
    pub async fn read_reply(&mut self) -> String {
        match self.try_read_reply().await {
            Ok(Some(r)) => r,
            Ok(None) => panic!(
                "server closed the connection; unread bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => panic!("{e}"),
        }
    }

    /// Reads one complete reply: `Ok(None)` if the server closed cleanly before any byte of
    /// it, `Err` with what was read on timeout, reset or a close mid-reply.
    pub async fn try_read_reply(&mut self) -> Result<Option<String>, String> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf) {
                self.buf.drain(..used);
                return Ok(Some(reply));
            }
            let mut chunk = [0u8; 16 * 1024];
            let t = self.timeout;
            let read = match &mut self.conn {
                Conn::Plain(s) => timeout(t, s.read(&mut chunk)).await,
                Conn::Tls(s) => timeout(t, s.read(&mut chunk)).await,
                Conn::Swapping => unreachable!("transport is being swapped"),
            };
            let partial = String::from_utf8_lossy(&self.buf).into_owned();
            match read {
                Err(_) => return Err(format!("no complete reply within {t:?}; got {partial:?}")),
                Ok(Err(e)) => return Err(format!("read failed: {e}; got {partial:?}")),
                Ok(Ok(0)) if self.buf.is_empty() => return Ok(None),
                Ok(Ok(0)) => return Err(format!("server closed mid-reply; got {partial:?}")),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Asserts that the server closes the connection (after any replies already read) within
    /// the timeout, without sending anything more.
    pub async fn expect_closed(&mut self) {
        match self.try_read_reply().await {
            Ok(None) => {}
            Ok(Some(r)) => panic!("expected the server to close, got {r:?}"),
            // A reset is a close too.
            Err(e) if e.contains("read failed") => {}
            Err(e) => panic!("expected the server to close: {e}"),
        }
    }

    /// Sends STARTTLS; on a 220 reply does the handshake for `server_name` against the CA set
    /// with [`Client::with_ca`]. Returns the reply either way. Forgets the capabilities, as
    /// RFC 3207 section 4.2 requires.
    pub async fn starttls(&mut self, server_name: &str) -> String {
        let reply = self.cmd("STARTTLS").await;
        if reply.starts_with("220 ") {
            assert!(
                self.buf.is_empty(),
                "server sent bytes after its 220 to STARTTLS: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.handshake(server_name).await;
            self.capabilities.clear();
        }
        reply
    }

    /// MAIL, RCPT (each), DATA, the message (dot-stuffed here, terminator added), and returns
    /// the final reply. Panics with the transcript if MAIL, a RCPT or DATA is refused.
    pub async fn send_mail(&mut self, from: &str, rcpts: &[&str], message: &str) -> String {
        let mut transcript = Vec::new();
        let mut step = |cmd: String, reply: String, ok: &str| {
            transcript.push(format!("> {cmd}\n{reply}"));
            assert!(
                reply.starts_with(ok),
                "send_mail refused:\n{}",
                transcript.join("\n")
            );
        };
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        step(format!("MAIL FROM:<{from}>"), r, "250");
        for rcpt in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            step(format!("RCPT TO:<{rcpt}>"), r, "250");
        }
        let r = self.cmd("DATA").await;
        step("DATA".into(), r, "354");
        self.send_raw(&dot_stuff(message)).await;
        self.read_reply().await
    }

    /// MAIL, one RCPT and DATA, each asserted accepted with Postfix's wording: the message's
    /// bytes are the caller's to send (a test that stops halfway, or pauses).
    pub async fn open_data(&mut self, from: &str, rcpt: &str) {
        assert_eq!(
            self.cmd(&format!("MAIL FROM:<{from}>")).await,
            "250 2.1.0 Ok"
        );
        assert_eq!(self.cmd(&format!("RCPT TO:<{rcpt}>")).await, "250 2.1.5 Ok");
        assert_eq!(
            self.cmd("DATA").await,
            "354 End data with <CR><LF>.<CR><LF>"
        );
    }

    /// The TLS handshake alone, for a test that sent STARTTLS itself (with pipelined bytes).
    pub async fn tls_handshake(&mut self, server_name: &str) {
        self.handshake(server_name).await;
        self.capabilities.clear();
    }

    async fn handshake(&mut self, server_name: &str) {
        let ca = self
            .ca
            .clone()
            .expect("no CA to verify the server: call with_ca()");
        let connector = TlsConnector::from(Arc::new(client_config(&ca)));
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Swapping) else {
            panic!("TLS is already on");
        };
        let tls = timeout(self.timeout, connector.connect(name, tcp))
            .await
            .unwrap_or_else(|_| panic!("TLS handshake timed out"))
            .unwrap_or_else(|e| panic!("TLS handshake failed: {e}"));
        self.conn = Conn::Tls(Box::new(tls));
    }

    /// Connects and reads the greeting, asserting code 220 (the text is in `greeting`).
    pub async fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        let g = c.greeting().await;
        assert!(
            g.starts_with("220 ") || g.starts_with("220-"),
            "greeting: {g:?}"
        );
        c
    }

    /// [`Client::greeted`], then EHLO `client.example`, asserting a 250 reply.
    pub async fn after_ehlo(addr: SocketAddr) -> Client {
        let mut c = Client::greeted(addr).await;
        let r = c.ehlo("client.example").await;
        assert!(r.starts_with("250"), "EHLO: {r:?}");
        c
    }

    /// [`Client::after_ehlo`], then AUTH PLAIN, asserting Postfix's exact success reply.
    pub async fn authenticated(addr: SocketAddr, user: &str, pass: &str) -> Client {
        let mut c = Client::after_ehlo(addr).await;
        let r = c
            .cmd(&format!("AUTH PLAIN {}", auth_plain(user, pass)))
            .await;
        assert_eq!(r, "235 2.7.0 Authentication successful");
        c
    }
}

/// The base64 initial response of AUTH PLAIN (RFC 4616): `\0user\0pass`.
pub fn auth_plain(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

/// A message as DATA sends it: LF made CRLF, leading dots doubled, CRLF.CRLF appended.
pub fn dot_stuff(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    for line in message.split_inclusive('\n') {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Finds one complete reply at the start of `buf`: (lines joined with `\n`, bytes used).
/// A line `ddd-text` continues the reply, `ddd text` or a bare `ddd` ends it (RFC 5321 4.2.1).
fn parse_reply(buf: &[u8]) -> Option<(String, usize)> {
    let mut lines = Vec::new();
    let mut pos = 0;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let raw = &buf[pos..pos + nl];
        pos += nl + 1;
        let line = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line);
        if !more {
            return Some((lines.join("\n"), pos));
        }
    }
    None
}

fn client_config(ca: &Path) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).unwrap_or_else(|e| panic!("read {}: {e}", ca.display()))
    {
        roots.add(cert.unwrap()).unwrap();
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}
