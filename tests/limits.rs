//! Limits with safe defaults, each answered with the right SMTP reply: line lengths, message
//! size, recipients, the per-command deadline a trickle cannot stretch, the session limit, and
//! concurrent connections per listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::client::Client;
use support::relayguard::{Relayguard, Role};

const HOST: &str = "relayguard.test";

fn relayguard(extra: &[(&str, &str)], limits: &str) -> Relayguard {
    let mut b = Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .extra_toml(limits);
    for (k, v) in extra {
        b = b.policy(k, v);
    }
    b.start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_refused_not_forwarded() {
    let rg = relayguard(&[], "");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    let long = format!("MAIL FROM:<{}@sender.example>", "a".repeat(600));
    assert_eq!(c.cmd(&long).await, "500 5.5.2 Error: line too long");
    assert_eq!(
        c.cmd("NOOP").await,
        "250 2.0.0 Ok",
        "still in step after the long line"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    c.send_raw(format!("Subject: long\r\n\r\n{}\r\n.\r\n", "x".repeat(999)).as_bytes())
        .await;
    assert_eq!(
        c.read_reply().await,
        format!("550 5.5.2 {HOST} Error: message line too long")
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rg.maildir().messages().is_empty(), "nothing was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_recipient_limits() {
    let rg = relayguard(
        &[
            ("message_size_limit", "1000"),
            ("smtpd_recipient_limit", "2"),
        ],
        "",
    );
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(
        c.capabilities.iter().any(|k| k == "SIZE 1000"),
        "{:?}",
        c.capabilities
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@sender.example> SIZE=2000").await,
        "552 5.3.4 Message size exceeds fixed limit"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@sender.example> SIZE=500").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(c.cmd("RCPT TO:<u1@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<u2@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<u3@local.test>").await,
        "452 4.5.3 Error: too many recipients"
    );
    rg.wait_for_log("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 452 4.5.3 Error: too many recipients; from=<a@sender.example> to=<u3@local.test>", Duration::from_secs(5));
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    let mut body = String::from("Subject: big\r\n\r\n");
    for _ in 0..30 {
        body.push_str(&"y".repeat(60));
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    c.send_raw(body.as_bytes()).await;
    assert_eq!(
        c.read_reply().await,
        "552 5.3.4 Error: message file too big"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rg.maildir().messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_cannot_stretch_the_command_deadline() {
    let rg = relayguard(&[("smtpd_timeout", "2s")], "");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    let start = Instant::now();
    for b in b"NOOP" {
        c.send_raw(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let reply = c.read_reply().await;
    assert_eq!(reply, format!("421 4.4.2 {HOST} Error: timeout exceeded"));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "deadline stretched to {took:?}"
    );
    c.expect_closed().await;
    rg.wait_for_log(
        "timeout after EHLO from unknown[127.0.0.1]",
        Duration::from_secs(5),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_limit_ends_a_busy_session() {
    let rg = relayguard(&[], "[limits]\nsession_timeout = \"3s\"\n");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    let start = Instant::now();
    loop {
        let reply = c.cmd("NOOP").await;
        if reply != "250 2.0.0 Ok" {
            assert_eq!(reply, format!("421 4.4.2 {HOST} Error: timeout exceeded"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the session limit never fired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_listener_are_capped() {
    let rg = Relayguard::builder()
        .listener("smtp", Role::Smtp)
        .listener_toml("smtp", "max_connections = 2")
        .upstream_maildir()
        .start();
    let mut a = Client::greeted(rg.addr("smtp")).await;
    let _b = Client::greeted(rg.addr("smtp")).await;
    let mut third = Client::connect(rg.addr("smtp")).await;
    assert_eq!(
        third.read_reply().await,
        "421 4.7.0 relayguard.test Error: too many connections"
    );
    third.expect_closed().await;
    let line = rg.wait_for_log(
        "]: warning: Connection concurrency limit exceeded: 3 from unknown[127.0.0.1] for service smtp",
        Duration::from_secs(5),
    );
    assert!(line.contains(" postfix/smtpd["), "{line}");
    // A freed slot serves the next client.
    assert_eq!(a.cmd("QUIT").await, "221 2.0.0 Bye");
    a.expect_closed().await;
    let mut fourth = Client::connect(rg.addr("smtp")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let greeting = fourth.read_reply().await;
        if greeting.starts_with("220 ") {
            break;
        }
        // The slot is given back when the session task ends, just after the client saw 221.
        assert!(greeting.starts_with("421 "), "{greeting}");
        assert!(std::time::Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        fourth = Client::connect(rg.addr("smtp")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_count_toward_the_hard_error_limit() {
    let rg = relayguard(&[], "");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    let long = format!("NOOP {}", "a".repeat(600));
    for _ in 0..19 {
        assert_eq!(c.cmd(&long).await, "500 5.5.2 Error: line too long");
    }
    c.send_raw(format!("{long}\r\n").as_bytes()).await;
    assert_eq!(c.read_reply().await, "500 5.5.2 Error: line too long");
    assert_eq!(
        c.read_reply().await,
        format!("421 4.7.0 {HOST} Error: too many errors")
    );
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_implicit_tls_listener_closes_without_a_plaintext_reply() {
    let rg = Relayguard::builder()
        .listener("submissions", Role::Submissions)
        .listener_toml("submissions", "max_connections = 1")
        .upstream_maildir()
        .start();
    // The first connection holds the only slot while relayguard waits for its handshake.
    let _first = Client::connect(rg.addr("submissions")).await;
    // Accepted at once on loopback; nothing is logged before the handshake to wait for.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = Client::connect(rg.addr("submissions")).await;
    second.expect_closed().await;
    rg.wait_for_log(
        "Connection concurrency limit exceeded: 2 from unknown[127.0.0.1] for service submissions",
        Duration::from_secs(5),
    );
}

/// Connects with a small receive buffer, then pipelines EHLO after EHLO without ever reading a
/// reply, until its own writes stall: relayguard is then stuck writing to it.
async fn client_that_never_reads(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let burst = "EHLO never-reads.example\r\n".repeat(1000);
    for _ in 0..2000 {
        let write = stream.write_all(burst.as_bytes());
        if tokio::time::timeout(Duration::from_secs(1), write)
            .await
            .is_err()
        {
            return stream;
        }
    }
    panic!("relayguard read 50 MB of EHLOs without its writes ever stalling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_lose_their_slots() {
    let rg = Relayguard::builder()
        .policy("smtpd_timeout", "3s")
        // The EHLOs are junk commands: past Postfix's limit of 100 the tarpit (a second per
        // command) would end these sessions by the error limit, not the write deadline.
        .policy("smtpd_junk_command_limit", "1000000")
        .listener("smtp", Role::Smtp)
        .listener_toml("smtp", "max_connections = 2")
        .upstream_maildir()
        .start();
    let _hogs = [
        client_that_never_reads(rg.addr("smtp")).await,
        client_that_never_reads(rg.addr("smtp")).await,
    ];
    // Both slots are held by sessions stuck writing; within smtpd_timeout (3 s) plus a margin
    // both must be dropped and an honest client served.
    let start = Instant::now();
    loop {
        let mut honest = Client::connect(rg.addr("smtp")).await;
        let greeting = honest.read_reply().await;
        if greeting.starts_with("220 ") {
            assert_eq!(honest.cmd("QUIT").await, "221 2.0.0 Bye");
            break;
        }
        assert_eq!(
            greeting,
            "421 4.7.0 relayguard.test Error: too many connections"
        );
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the stuck sessions kept their slots for {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rg.wait_for_log(
        "timeout after EHLO from unknown[127.0.0.1]",
        Duration::from_secs(5),
    );
}
