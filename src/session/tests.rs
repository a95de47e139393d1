//! The session state machine in process: the client over a `tokio::io::duplex` pair, the
//! built-in Maildir upstream behind it, and tokio's paused clock for the deadlines, so a
//! five-minute timeout is tested in microseconds and a transcript reads like one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Session, SessionContext, SessionEnd};
use crate::config;
use crate::net::resolve::{ClientNames, HostName};
use crate::net::shutdown::Drain;
use crate::smtp::response::parse_reply;
use crate::upstream::{probe, Upstream};

/// One session under test: the client's end of the pipe and the session's task.
struct Harness {
    client: DuplexStream,
    buf: Vec<u8>,
    task: JoinHandle<SessionEnd>,
    maildir: tempfile::TempDir,
    _drain: Drain,
}

impl Harness {
    /// A session on an `smtp` listener with `policy` lines added to `[policy]`; the pipe holds
    /// `pipe` bytes each way before a writer waits.
    async fn start(policy: &str, pipe: usize) -> Harness {
        Self::start_with(policy, "", pipe).await
    }

    /// [`Self::start`] with more top-level TOML (`[limits]`).
    async fn start_with(policy: &str, toml: &str, pipe: usize) -> Harness {
        let maildir = tempfile::TempDir::new().unwrap();
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        let text = format!(
            "{toml}[tls]\ncert = \"{certs}/dev-cert.pem\"\nkey = \"{certs}/dev-key.pem\"\n[policy]\nmyhostname = \"relayguard.test\"\nmydestination = \"local.test\"\n{policy}\n\
             [[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:0\"\nrole = \"smtp\"\n\
             [upstream]\nkind = \"maildir\"\npath = \"{}\"\n",
            maildir.path().join("mail").display()
        );
        let snapshot = config::load_str(&text, &maildir.path().join("relayguard.toml"))
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        let report = probe::probe(&snapshot.upstream).await.unwrap();
        let drain = Drain::new();
        let snapshot = Arc::new(snapshot);
        let ctx = SessionContext {
            listener: snapshot.listeners[0].clone(),
            snapshot,
            upstream: Arc::new(Upstream::new(report.capabilities)),
            warm: None,
            shutdown: drain.watcher(),
            lookups: Arc::new(crate::lookup::Lookups::new(None)),
            state: Arc::new(crate::state::StateStore::in_memory()),
            metrics: crate::observe::metrics::metrics().listener("session-tests"),
        };
        let (client, server) = tokio::io::duplex(pipe);
        let peer: SocketAddr = "192.0.2.10:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let names = ClientNames::failed(HostName::Unavailable);
        let mut session = Session::new(ctx, Box::new(server), names, peer, local, false);
        let task = tokio::spawn(async move { session.run().await });
        Harness {
            client,
            buf: Vec::new(),
            task,
            maildir,
            _drain: drain,
        }
    }

    /// The next whole reply as sent, its lines joined with `\n`.
    async fn reply(&mut self) -> String {
        loop {
            if let Ok(Some((_, used))) = parse_reply(&self.buf) {
                let text = String::from_utf8_lossy(&self.buf[..used]).replace("\r\n", "\n");
                self.buf.drain(..used);
                return text.trim_end().to_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = self.client.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed; unread: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, bytes: &str) {
        self.client.write_all(bytes.as_bytes()).await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// How the session ended; it must end by itself.
    async fn end(self) -> SessionEnd {
        self.task.await.unwrap()
    }

    fn delivered(&self) -> usize {
        std::fs::read_dir(self.maildir.path().join("mail/new"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// tokio's timer wheel rounds a deadline up to its next millisecond.
fn assert_within_a_tick(took: Duration, want: Duration) {
    // The session starts its clock before the test pauses time, so the real time between the
    // two (a few ms on a loaded machine) comes off what the paused clock then shows.
    assert!(
        took + Duration::from_millis(50) >= want && took <= want + Duration::from_millis(2),
        "{took:?}, not {want:?}"
    );
}

#[tokio::test]
async fn a_transaction_in_order_and_every_refusal_of_the_phase_rules() {
    let mut s = Harness::start("", 64 * 1024).await;
    assert_eq!(s.reply().await, "220 relayguard.test ESMTP relayguard");
    assert_eq!(
        s.cmd("RCPT TO:<u@local.test>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(s.cmd("DATA").await, "503 5.5.1 Error: need RCPT command");
    assert!(s
        .cmd("EHLO c.example")
        .await
        .starts_with("250-relayguard.test\n"));
    assert_eq!(s.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        s.cmd("MAIL FROM:<a@sender.example>").await,
        "503 5.5.1 Error: nested MAIL command"
    );
    assert_eq!(s.cmd("DATA").await, "554 5.5.1 Error: no valid recipients");
    assert_eq!(
        s.cmd("RCPT TO:<x@elsewhere.example>").await,
        "454 4.7.1 <x@elsewhere.example>: Relay access denied"
    );
    assert_eq!(s.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(s.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    s.send("Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    let queued = s.reply().await;
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    assert_eq!(
        s.cmd("RCPT TO:<u@local.test>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(s.cmd("QUIT").await, "221 2.0.0 Bye");
    assert!(matches!(s.end().await, SessionEnd::Quit));
}

#[tokio::test]
async fn helo_required_and_the_recipient_limit() {
    let mut s = Harness::start(
        "smtpd_helo_required = \"yes\"\nsmtpd_recipient_limit = \"1\"",
        64 * 1024,
    )
    .await;
    s.reply().await;
    assert_eq!(
        s.cmd("MAIL FROM:<a@sender.example>").await,
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    assert_eq!(s.cmd("HELO c.example").await, "250 relayguard.test");
    assert_eq!(s.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(s.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(
        s.cmd("RCPT TO:<v@local.test>").await,
        "452 4.5.3 Error: too many recipients"
    );
    assert_eq!(s.cmd("RSET").await, "250 2.0.0 Ok");
    assert_eq!(
        s.cmd("RCPT TO:<u@local.test>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(s.delivered(), 0);
}

#[tokio::test]
async fn an_idle_client_times_out_after_smtpd_timeout() {
    let mut s = Harness::start("smtpd_timeout = \"300s\"", 64 * 1024).await;
    s.reply().await;
    assert!(s.cmd("EHLO c.example").await.starts_with("250-"));
    tokio::time::pause();
    let start = Instant::now();
    assert_eq!(
        s.reply().await,
        "421 4.4.2 relayguard.test Error: timeout exceeded"
    );
    assert_within_a_tick(start.elapsed(), Duration::from_secs(300));
    assert!(matches!(
        s.end().await,
        SessionEnd::Timeout { after: "EHLO" }
    ));
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_after_smtpd_timeout() {
    // A pipe of 256 bytes: a few EHLO replies fill it.
    let mut s = Harness::start("smtpd_timeout = \"60s\"", 256).await;
    tokio::time::pause();
    let start = Instant::now();
    let flood = "EHLO never-reads.example\r\n".repeat(8);
    let mut sent = 0;
    // The client writes and never reads; once the session's writes stall, so do the client's.
    while tokio::time::timeout(Duration::from_secs(1), s.send(&flood))
        .await
        .is_ok()
    {
        sent += 1;
        assert!(sent < 100, "the session never stopped reading");
    }
    let end = tokio::time::timeout(Duration::from_secs(120), s.task)
        .await
        .expect("the stuck session ended by itself")
        .unwrap();
    assert!(matches!(end, SessionEnd::Timeout { .. }), "{end:?}");
    // The session's write stalled at once, and smtpd_timeout counts from there.
    assert_within_a_tick(start.elapsed(), Duration::from_secs(60));
}

#[tokio::test]
async fn the_session_limit_ends_a_busy_client() {
    let mut s = Harness::start_with("", "[limits]\nsession_timeout = \"30s\"\n", 64 * 1024).await;
    s.reply().await;
    tokio::time::pause();
    let start = Instant::now();
    // A NOOP every 7 s keeps smtpd_timeout from firing; the session limit does, at 30 s, while
    // the session waits for the NOOP due at 35 s.
    while start.elapsed() < Duration::from_secs(28) {
        assert_eq!(s.cmd("NOOP").await, "250 2.0.0 Ok");
        tokio::time::sleep(Duration::from_secs(7)).await;
    }
    assert_eq!(
        s.reply().await,
        "421 4.4.2 relayguard.test Error: timeout exceeded"
    );
    assert_within_a_tick(start.elapsed(), Duration::from_secs(30));
    assert!(matches!(s.end().await, SessionEnd::SessionTimeLimit));
}

#[tokio::test]
async fn a_chunk_refused_before_tls_is_read_past_not_run() {
    let mut s = Harness::start("smtpd_tls_security_level = \"encrypt\"", 64 * 1024).await;
    s.reply().await;
    assert!(s.cmd("EHLO c.example").await.starts_with("250-"));
    let chunk = "MAIL FROM:<x@y.example>\r\n";
    s.send(&format!("BDAT {} LAST\r\n{chunk}NOOP\r\n", chunk.len()))
        .await;
    assert_eq!(
        s.reply().await,
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    assert_eq!(
        s.reply().await,
        "250 2.0.0 Ok",
        "the chunk's MAIL was not run"
    );
}

/// The reply to `line` and how long it took on the paused clock.
async fn timed(s: &mut Harness, line: &str) -> (String, Duration) {
    let start = Instant::now();
    let reply = s.cmd(line).await;
    (reply, start.elapsed())
}

#[tokio::test]
async fn from_the_soft_error_limit_every_reply_waits_and_the_hard_limit_ends_it() {
    let mut s = Harness::start(
        "smtpd_soft_error_limit = \"2\"\nsmtpd_hard_error_limit = \"4\"\nsmtpd_error_sleep_time = \"5s\"",
        64 * 1024,
    )
    .await;
    s.reply().await;
    tokio::time::pause();
    let none = Duration::ZERO;
    let sleep = Duration::from_secs(5);
    let unknown = "500 5.5.2 Error: command not recognized";
    // The second error's own reply is not delayed: smtpd counts it after replying.
    for (line, want, delay) in [
        ("FOO", unknown, none),
        ("FOO", unknown, none),
        ("NOOP", "250 2.0.0 Ok", sleep),
        ("FOO", unknown, sleep),
    ] {
        let (reply, took) = timed(&mut s, line).await;
        assert_eq!(reply, want);
        assert_within_a_tick(took, delay);
    }
    // The fourth error: its reply waits, and so does the 421 behind it.
    let (reply, took) = timed(&mut s, "FOO").await;
    assert_eq!(reply, unknown);
    assert_within_a_tick(took, sleep);
    let start = Instant::now();
    assert_eq!(
        s.reply().await,
        "421 4.7.0 relayguard.test Error: too many errors"
    );
    assert_within_a_tick(start.elapsed(), sleep);
    assert!(matches!(s.end().await, SessionEnd::Closed { .. }));
}

#[tokio::test]
async fn junk_commands_past_the_limit_are_errors_until_a_message_is_delivered() {
    let mut s = Harness::start(
        "smtpd_junk_command_limit = \"2\"\nsmtpd_hard_error_limit = \"3\"\nsmtpd_error_sleep_time = \"0\"",
        64 * 1024,
    )
    .await;
    s.reply().await;
    // Junk 0, 1 and 2 are under the limit; 3 and 4 are errors 1 and 2.
    for line in [
        "NOOP",
        "EHLO c.example",
        "RSET",
        "VRFY u@local.test",
        "NOOP",
    ] {
        let reply = s.cmd(line).await;
        assert!(!reply.starts_with("421"), "{line}: {reply}");
    }
    // A delivered message forgives errors and junk alike.
    assert_eq!(s.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(s.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(s.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    s.send("Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    assert!(s.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    for _ in 0..5 {
        assert_eq!(s.cmd("NOOP").await, "250 2.0.0 Ok");
    }
    // Junk 5 is error 3, the hard limit: its 250 comes first, then the 421.
    assert_eq!(s.cmd("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(
        s.reply().await,
        "421 4.7.0 relayguard.test Error: too many errors"
    );
    assert!(matches!(s.end().await, SessionEnd::Closed { .. }));
}

#[tokio::test]
async fn a_junk_command_at_the_hard_limit_gets_its_reply_then_the_421_both_late() {
    let mut s = Harness::start(
        "smtpd_junk_command_limit = \"1\"\nsmtpd_soft_error_limit = \"1\"\nsmtpd_hard_error_limit = \"3\"\nsmtpd_error_sleep_time = \"5s\"",
        64 * 1024,
    )
    .await;
    s.reply().await;
    tokio::time::pause();
    let sleep = Duration::from_secs(5);
    let none = Duration::ZERO;
    for delay in [none, none, none, sleep, sleep] {
        let (reply, took) = timed(&mut s, "NOOP").await;
        assert_eq!(reply, "250 2.0.0 Ok");
        assert_within_a_tick(took, delay);
    }
    let start = Instant::now();
    assert_eq!(
        s.reply().await,
        "421 4.7.0 relayguard.test Error: too many errors"
    );
    assert_within_a_tick(start.elapsed(), sleep);
}
