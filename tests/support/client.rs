//! SMTP clients for tests: a Rust client for exact-reply assertions (plain TCP, STARTTLS,
//! implicit TLS), and wrappers that run swaks and Python's smtplib and return their transcript.
//!
//! Replies are returned as text, multi-line replies joined with `\n` and without CRLF, so that a
//! test writes `assert_eq!(c.cmd("RCPT TO:<x@elsewhere.example>").await, "454 4.7.1 ...")`.
//! Every read is bounded by a timeout; a timeout or an early close panics with what was read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
        let tcp = timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
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
        r.unwrap_or_else(|_| panic!("write timed out"))
            .unwrap_or_else(|e| panic!("write failed: {e}"));
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

/// What an external client printed and how it ended.
#[derive(Debug)]
pub struct Transcript {
    /// Exit status code (None if killed by a signal).
    pub code: Option<i32>,
    /// stdout then stderr.
    pub output: String,
}

impl Transcript {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Server reply lines as swaks prints them (`<- 250 ...`, `<~ ` under TLS), without the arrow.
    pub fn server_lines(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix("<- ").or_else(|| l.strip_prefix("<~ ")))
            .map(|l| l.trim_start())
            .collect()
    }
}

/// swaks(1) with a fixed envelope (`s@sender.example` -> `u@local.test`, HELO `client.example`).
#[derive(Clone, Debug)]
pub struct Swaks {
    args: Vec<String>,
}

impl Swaks {
    pub fn new(server: SocketAddr) -> Swaks {
        let args = [
            "--server",
            &server.to_string(),
            "--timeout",
            "15",
            "--from",
            "s@sender.example",
            "--to",
            "u@local.test",
            "--helo",
            "client.example",
            "--hide-informational",
        ];
        Swaks {
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `--tls`: STARTTLS, required.
    pub fn tls(self) -> Swaks {
        self.arg("--tls")
    }

    /// `--tlsc`: TLS on connect (implicit TLS).
    pub fn tlsc(self) -> Swaks {
        self.arg("--tlsc")
    }

    /// `--auth PLAIN --auth-user U --auth-password P`.
    pub fn auth(self, user: &str, pass: &str) -> Swaks {
        self.arg("--auth")
            .arg("PLAIN")
            .arg("--auth-user")
            .arg(user)
            .arg("--auth-password")
            .arg(pass)
    }

    /// `--pipeline`: send MAIL, RCPT and DATA in one write (RFC 2920).
    pub fn pipeline(self) -> Swaks {
        self.arg("--pipeline")
    }

    pub fn arg(mut self, a: &str) -> Swaks {
        self.args.push(a.to_owned());
        self
    }

    /// Runs swaks to completion (its own `--timeout` bounds each step).
    pub fn run(&self) -> Transcript {
        run_captured(Command::new("swaks").args(&self.args))
    }
}

/// How the smtplib script connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtplibMode {
    Plain,
    Starttls,
    /// `smtplib.SMTP_SSL` (implicit TLS).
    Ssl,
}

/// Python's smtplib sending one message; its debug transcript goes into the output.
#[derive(Clone, Debug)]
pub struct Smtplib {
    server: SocketAddr,
    mode: SmtplibMode,
    auth: Option<(String, String)>,
    from: String,
    to: Vec<String>,
    message: String,
}

const SMTPLIB_SCRIPT: &str = r#"
import smtplib, ssl, sys
host, port, mode, user, password, sender, rcpts, message = sys.argv[1:9]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    if mode == "ssl":
        s = smtplib.SMTP_SSL(host, int(port), local_hostname="client.example", timeout=15, context=ctx)
    else:
        s = smtplib.SMTP(host, int(port), local_hostname="client.example", timeout=15)
    s.set_debuglevel(1)
    s.ehlo()
    if mode == "starttls":
        print("STARTTLS", s.starttls(context=ctx))
        s.ehlo()
    if user:
        print("AUTH", s.login(user, password))
    refused = s.sendmail(sender, rcpts.split(","), message)
    print("REFUSED", refused)
    print("QUIT", s.quit())
except smtplib.SMTPResponseException as e:
    print("ERROR", type(e).__name__, e.smtp_code, e.smtp_error.decode("latin1"))
    sys.exit(1)
except smtplib.SMTPRecipientsRefused as e:
    print("ERROR SMTPRecipientsRefused", {k: (c, m.decode("latin1")) for k, (c, m) in e.recipients.items()})
    sys.exit(1)
except Exception as e:
    print("ERROR", type(e).__name__, e)
    sys.exit(2)
"#;

impl Smtplib {
    pub fn new(server: SocketAddr) -> Smtplib {
        Smtplib {
            server,
            mode: SmtplibMode::Plain,
            auth: None,
            from: "s@sender.example".into(),
            to: vec!["u@local.test".into()],
            message: "Subject: smtplib test\r\n\r\nhello\r\n".into(),
        }
    }

    pub fn mode(mut self, mode: SmtplibMode) -> Smtplib {
        self.mode = mode;
        self
    }

    pub fn auth(mut self, user: &str, pass: &str) -> Smtplib {
        self.auth = Some((user.into(), pass.into()));
        self
    }

    pub fn envelope(mut self, from: &str, to: &[&str]) -> Smtplib {
        self.from = from.into();
        self.to = to.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn message(mut self, message: &str) -> Smtplib {
        self.message = message.into();
        self
    }

    /// Runs the script; `ERROR <exception> <code> <text>` closes the output on failure.
    pub fn run(&self) -> Transcript {
        let mode = match self.mode {
            SmtplibMode::Plain => "plain",
            SmtplibMode::Starttls => "starttls",
            SmtplibMode::Ssl => "ssl",
        };
        let (user, pass) = self.auth.clone().unwrap_or_default();
        run_captured(
            Command::new("python3")
                .arg("-c")
                .arg(SMTPLIB_SCRIPT)
                .arg(self.server.ip().to_string())
                .arg(self.server.port().to_string())
                .arg(mode)
                .arg(user)
                .arg(pass)
                .arg(&self.from)
                .arg(self.to.join(","))
                .arg(&self.message),
        )
    }
}

fn run_captured(cmd: &mut Command) -> Transcript {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    Transcript {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
