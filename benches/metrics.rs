//! What a metric costs on the session's hot path: one command counted on a listener handle
//! (resolved once per session), a message forwarded, an upstream reply timed, all of which
//! must allocate nothing; and, for scale, a rejection (which builds its label set), a
//! listener handle looked up (once per session) and a whole scrape encoded.
//!
//! Run with `cargo bench --bench metrics`.

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use relayguard::observe::metrics::metrics;
use relayguard::policy::Reason;

fn hot_path(c: &mut Criterion) {
    let l = metrics().listener("bench");
    // The hot path allocates nothing: asserted before it is timed.
    let before = counting_alloc::allocations();
    for _ in 0..1000 {
        l.command(black_box("rcpt"));
        l.message_forwarded(black_box(4096));
        metrics().upstream_reply(black_box(std::time::Instant::now()), true);
    }
    let allocs = counting_alloc::allocations() - before;
    assert_eq!(allocs, 0, "the hot path allocated {allocs} times");

    c.bench_function("metrics/command", |b| {
        b.iter(|| l.command(black_box("rcpt")))
    });
    c.bench_function("metrics/message_forwarded", |b| {
        b.iter(|| l.message_forwarded(black_box(4096)))
    });
    c.bench_function("metrics/upstream_reply", |b| {
        b.iter(|| metrics().upstream_reply(black_box(std::time::Instant::now()), true))
    });
    let reason = Reason {
        parameter: "smtpd_recipient_restrictions".into(),
        restriction: "check_client_access cidr:/etc/relayguard/clients".into(),
        table: Some("cidr:/etc/relayguard/clients".into()),
        entry: Some("192.0.2.0/24".into()),
        ..Reason::default()
    };
    c.bench_function("metrics/rejection", |b| {
        b.iter(|| l.rejection(black_box("RCPT"), Some(&reason)))
    });
    c.bench_function("metrics/listener_lookup", |b| {
        b.iter(|| metrics().listener(black_box("bench")))
    });
    c.bench_function("metrics/encode", |b| b.iter(|| metrics().encode().len()));
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
