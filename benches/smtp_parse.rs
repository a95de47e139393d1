//! Command framing, parsing and canonical writing for a pipelined MAIL/RCPT/DATA group, and
//! the upstream's EHLO reply. Before measuring, checks that a steady-state group allocates
//! nothing and that a one-line reply holds its line without a heap list (STYLE 3.8), with a
//! counting allocator scoped to this thread.

use std::hint::black_box;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use criterion::{criterion_group, Criterion, Throughput};
use relayguard::smtp::line::{next_line, LineScan, COMMAND_LINE_MAX};
use relayguard::smtp::{parse, parse_reply, replies};

const GROUP: &[u8] = b"MAIL FROM:<sender@example.com> SIZE=12345 BODY=8BITMIME\r\n\
RCPT TO:<alice@local.test>\r\n\
RCPT TO:<bob@local.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@local.test\r\n\
rcpt to: carol@local.test\r\n\
DATA\r\n";

const EHLO: &[u8] = b"250-mx.relayguard.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n\
250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n\
250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

/// Frames, parses and re-writes every command of `input`; returns the count.
fn relay_group(input: &[u8], out: &mut Vec<u8>) -> usize {
    let mut rest = input;
    let mut n = 0;
    while let LineScan::Complete { line, consumed } = next_line(rest, COMMAND_LINE_MAX) {
        if let Ok(cmd) = parse(line) {
            cmd.write_to(out);
            n += 1;
        }
        rest = &rest[consumed..];
    }
    n
}

fn assert_no_allocation() {
    let mut out = Vec::with_capacity(1024);
    let before = counting_alloc::allocations();
    for _ in 0..100 {
        out.clear();
        assert_eq!(relay_group(black_box(GROUP), &mut out), 5);
    }
    let allocated = counting_alloc::allocations() - before;
    assert_eq!(
        allocated, 0,
        "parsing and writing a command group allocated"
    );
    println!("steady-state MAIL/RCPT/DATA group: 0 allocations");
}

/// A message's session writes about ten one-line replies and reads as many from the upstream:
/// relayguard's own cost no allocation, and an upstream's costs only its text.
fn assert_one_line_replies_hold_no_list() {
    let mut out = Vec::with_capacity(1024);
    let before = counting_alloc::allocations();
    for reply in [
        replies::mail_ok(),
        replies::rcpt_ok(),
        replies::start_data(),
        replies::bye(),
    ] {
        reply.write_to(&mut out);
    }
    let written = counting_alloc::allocations() - before;
    assert_eq!(
        written, 0,
        "building and writing fixed one-line replies allocated"
    );
    let before = counting_alloc::allocations();
    let parsed = parse_reply(black_box(b"250 2.0.0 Ok: queued as 4XyZ1\r\n"));
    let allocated = counting_alloc::allocations() - before;
    assert!(matches!(parsed, Ok(Some((ref r, _))) if r.code == 250));
    assert_eq!(
        allocated, 1,
        "an upstream's one-line reply took more than its text"
    );
    println!("one-line replies: 0 allocations written, 1 read (the text)");
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("smtp_parse");
    g.throughput(Throughput::Elements(5));
    let mut out = Vec::with_capacity(1024);
    g.bench_function("pipelined MAIL/RCPT/DATA group", |b| {
        b.iter(|| {
            out.clear();
            relay_group(black_box(GROUP), &mut out)
        })
    });
    g.throughput(Throughput::Bytes(EHLO.len() as u64));
    g.bench_function("upstream EHLO reply", |b| {
        b.iter(|| parse_reply(black_box(EHLO)))
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    assert_no_allocation();
    assert_one_line_replies_hold_no_list();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
