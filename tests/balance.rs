//! With two workers, two long sessions run one on each, whichever worker's socket the kernel
//! hashed them to: the busier worker hands a new connection to the idler one. Measured by what
//! the kernel says each worker thread ran (`/proc/PID/task/TID/schedstat`) while the two
//! sessions stream large bodies at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::client::Client;
use support::relayguard::{Identity, Relayguard, Role};

const BODY: usize = 96 << 20;
const ROUNDS: usize = 3;

/// An upstream that takes any message and discards it; it refuses relayguard's start-up relay
/// probe, so relayguard starts without allow_open_relay.
async fn sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(sink_session(stream));
        }
    });
    addr
}

async fn sink_session(mut s: TcpStream) {
    s.set_nodelay(true).unwrap();
    let end = memmem::Finder::new(b"\r\n.\r\n");
    let mut buf = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    s.write_all(b"220 sink ESMTP\r\n").await.unwrap();
    loop {
        // Commands: one line at a time is enough, relayguard waits for each reply.
        while !buf.contains(&b'\n') {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let at = buf.iter().position(|&b| b == b'\n').unwrap();
        let line = String::from_utf8_lossy(&buf[..at]).to_ascii_uppercase();
        buf.drain(..=at);
        let reply: &[u8] = if line.starts_with("EHLO") {
            b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        } else if line.contains("RELAY-CHECK.INVALID") {
            b"554 5.7.1 Relay access denied\r\n"
        } else if line.starts_with("MAIL") {
            b"250 2.1.0 Ok\r\n"
        } else if line.starts_with("RCPT") {
            b"250 2.1.5 Ok\r\n"
        } else if line.starts_with("QUIT") {
            let _ = s.write_all(b"221 2.0.0 Bye\r\n").await;
            return;
        } else if line.starts_with("DATA") {
            s.write_all(b"354 go ahead\r\n").await.unwrap();
            // Keep only a tail long enough to hold a terminator split across reads.
            loop {
                if let Some(i) = end.find(&buf) {
                    buf.drain(..i + 5);
                    break;
                }
                let keep = buf.len().min(4);
                buf.drain(..buf.len() - keep);
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            b"250 2.0.0 Ok: queued as SINK\r\n"
        } else {
            b"250 2.0.0 Ok\r\n"
        };
        s.write_all(reply).await.unwrap();
    }
}

/// Nanoseconds each `relayguard-N` worker thread has run.
fn worker_cpu(pid: u32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name.trim();
        if name.starts_with("relayguard-") {
            let stat = fs::read_to_string(dir.join("schedstat")).unwrap();
            let ns = stat.split_whitespace().next().unwrap().parse().unwrap();
            out.insert(name.to_owned(), ns);
        }
    }
    out
}

async fn send_big(mut c: Client, body: &'static [u8]) {
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send_raw(body).await;
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as SINK"), "{reply}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_long_sessions_run_on_different_workers() {
    let rg = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("message_size_limit", "0")
        .listener("smtp", Role::Smtp)
        .upstream_smtp(sink().await, Identity::None)
        .extra_toml("[limits]\nworkers = 2")
        .start();
    let pid = rg.pid().unwrap();
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    let line = [b'z'; 998];
    while body.len() < BODY {
        body.extend_from_slice(&line);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    let body: &'static [u8] = body.leak();
    // Each round, a hashed pair may land on one worker; after the hand-off it never runs there.
    for round in 0..ROUNDS {
        let timeout = Duration::from_secs(60);
        let a = Client::after_ehlo(rg.addr("smtp"))
            .await
            .with_timeout(timeout);
        let b = Client::after_ehlo(rg.addr("smtp"))
            .await
            .with_timeout(timeout);
        let before = worker_cpu(pid);
        tokio::join!(send_big(a, body), send_big(b, body));
        let after = worker_cpu(pid);
        let ran: Vec<u64> = after
            .iter()
            .map(|(name, ns)| ns - before.get(name).copied().unwrap_or(0))
            .collect();
        assert_eq!(ran.len(), 2, "{after:?}");
        let total: u64 = ran.iter().sum();
        let least = *ran.iter().min().unwrap();
        assert!(
            least * 4 >= total,
            "round {round}: one worker ran {least} of {total} ns: {ran:?}"
        );
    }
}
