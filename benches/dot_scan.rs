//! DotScanner over a 10 MB body arriving in 64 KiB reads, both modes, reported as throughput.
//! Reject mode is checked to allocate nothing.

use std::hint::black_box;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use criterion::{criterion_group, Criterion, Throughput};
use relayguard::smtp::{DotMode, DotScanner};

const READ: usize = 64 * 1024;
const BODY_SIZE: usize = 10 * 1024 * 1024;

/// Header, then 76-character lines with some dot-stuffed ones, then the end.
fn body() -> Vec<u8> {
    let mut b = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: bench\r\n\r\n".to_vec();
    let mut i = 0u32;
    while b.len() < BODY_SIZE {
        if i % 50 == 0 {
            b.extend_from_slice(b"..a stuffed line\r\n");
        }
        b.extend_from_slice(
            b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod te\r\n",
        );
        i += 1;
    }
    b.extend_from_slice(b".\r\n");
    b
}

/// Scans `body` as reads of `READ` bytes arrive; returns the bytes handed out to forward.
fn scan(scanner: &mut DotScanner, body: &[u8], out: &mut Vec<u8>) -> usize {
    let mut pos = 0;
    let mut arrived = 0;
    let mut forwarded = 0;
    loop {
        arrived = (arrived + READ).min(body.len());
        let s = scanner.scan(&body[pos..arrived], out);
        forwarded += s.forward + out.len();
        out.clear();
        pos += s.consumed;
        if s.end {
            assert!(s.violation.is_none());
            return forwarded;
        }
    }
}

fn assert_no_allocation(body: &[u8]) {
    let mut scanner = DotScanner::new(DotMode::Reject);
    let mut out = Vec::new();
    let before = counting_alloc::allocations();
    assert_eq!(scan(&mut scanner, body, &mut out), body.len());
    assert_eq!(counting_alloc::allocations() - before, 0);
    println!("Reject mode over {} bytes: 0 allocations", body.len());
}

fn bench(c: &mut Criterion) {
    let body = body();
    assert_no_allocation(&body);
    let mut g = c.benchmark_group("dot_scan");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.sample_size(20);
    for mode in [DotMode::Reject, DotMode::Normalize] {
        let mut out = Vec::with_capacity(2 * READ);
        g.bench_function(format!("10 MB in 64 KiB reads, {mode:?}"), |b| {
            b.iter(|| {
                let mut scanner = DotScanner::new(mode);
                scan(&mut scanner, black_box(&body), &mut out)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
