//! A 100 MB message streams through: it arrives intact in the built-in Maildir and in a real
//! Postfix 3.7, and relayguard's peak memory (VmHWM) grows by less than 8 MB while it does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::client::Client;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, RelayguardBuilder, Role};

const SIZE: usize = 100 * 1024 * 1024;
const LIMIT: &str = "200000000";
const MAX_GROWTH_KB: u64 = 8 * 1024;
const WAIT: Duration = Duration::from_secs(60);

/// The message as written on the wire (dot-stuffed, CRLF) and as the recipient must read it
/// (unstuffed), at least `SIZE` bytes. Every 1000th line starts with a dot.
fn message() -> (Vec<u8>, Vec<u8>) {
    let mut wire = Vec::with_capacity(SIZE + SIZE / 50);
    let mut plain = Vec::with_capacity(SIZE + SIZE / 50);
    let head = b"Subject: big\r\n\r\n";
    wire.extend_from_slice(head);
    plain.extend_from_slice(head);
    let mut i = 0u64;
    while plain.len() < SIZE {
        let line = format!(
            "{}{i:010} the quick brown fox jumps over the lazy dog 0123456789abcdef\r\n",
            if i % 1000 == 0 { "." } else { "" }
        );
        if line.starts_with('.') {
            wire.push(b'.');
        }
        wire.extend_from_slice(line.as_bytes());
        plain.extend_from_slice(line.as_bytes());
        i += 1;
    }
    wire.extend_from_slice(b".\r\n");
    (wire, plain)
}

fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn builder() -> RelayguardBuilder {
    Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy("message_size_limit", LIMIT)
        .listener("smtp", Role::Smtp)
}

/// Sends the message and returns relayguard's VmHWM growth in kB.
async fn stream(rg: &Relayguard, wire: &[u8]) -> u64 {
    let pid = rg.pid().unwrap();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    let before = vm_hwm_kb(pid);
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<a@b.example> SIZE={}", wire.len()))
            .await,
        "250 2.1.0 Ok"
    );
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    let started = Instant::now();
    for chunk in wire.chunks(1024 * 1024) {
        c.send_raw(chunk).await;
    }
    let mut c = c.with_timeout(WAIT);
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    eprintln!("100 MB through in {:?}", started.elapsed());
    eprintln!("VmHWM {before} kB before");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let after = vm_hwm_kb(pid);
    eprintln!("VmHWM {after} kB after");
    after - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_to_the_maildir() {
    let (wire, plain) = message();
    let rg = builder().upstream_maildir().start();
    let growth = stream(&rg, &wire).await;
    assert!(growth < MAX_GROWTH_KB, "VmHWM grew by {growth} kB");
    let m = &rg.maildir().wait_for(1, WAIT)[0];
    // The agent adds Return-Path and Received above the client's header.
    let start = m
        .raw
        .windows(9)
        .position(|w| w == b"Subject: ")
        .expect("the client's header");
    assert_eq!(m.raw.len() - start, plain.len());
    assert!(m.raw[start..] == plain[..], "the body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_to_postfix() {
    let (wire, plain) = message();
    let pf = big_postfix().start();
    let rg = builder().upstream_postfix(&pf, Identity::Xclient).start();
    let growth = stream(&rg, &wire).await;
    assert!(growth < MAX_GROWTH_KB, "VmHWM grew by {growth} kB");
    assert_delivered(&pf, &plain);
}

/// The same over plain TCP to the upstream (the test above runs STARTTLS to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_to_postfix_over_plain_tcp() {
    let (wire, plain) = message();
    let pf = big_postfix().starttls(false).start();
    let rg = builder().upstream_postfix(&pf, Identity::Xclient).start();
    let growth = stream(&rg, &wire).await;
    assert!(growth < MAX_GROWTH_KB, "VmHWM grew by {growth} kB");
    assert_delivered(&pf, &plain);
}

fn big_postfix() -> support::postfix::PostfixBuilder {
    Postfix::builder()
        .param("message_size_limit", LIMIT)
        .param("virtual_mailbox_limit", "0")
}

/// The one message in `pf`'s Maildir has the body `plain` (virtual(8) stores LF line ends).
fn assert_delivered(pf: &Postfix, plain: &[u8]) {
    let m = &pf.maildir().wait_for(1, WAIT)[0];
    let start = m
        .raw
        .windows(9)
        .position(|w| w == b"Subject: ")
        .expect("the client's header");
    let header_end = start
        + m.raw[start..]
            .windows(2)
            .position(|w| w == b"\n\n")
            .unwrap()
        + 2;
    let want: Vec<u8> = plain[b"Subject: big\r\n\r\n".len()..]
        .split(|b| *b == b'\n')
        .flat_map(|l| {
            l.strip_suffix(b"\r")
                .unwrap_or(l)
                .iter()
                .copied()
                .chain([b'\n'])
        })
        .collect();
    let want = &want[..want.len() - 1];
    assert_eq!(m.raw.len() - header_end, want.len());
    assert!(m.raw[header_end..] == *want, "the body differs");
}
