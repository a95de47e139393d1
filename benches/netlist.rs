//! First-match lookups in a 100,000-entry network list and cidr table: the answer must come in
//! well under a microsecond and without allocating, whatever the position of the matching entry.

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use criterion::{criterion_group, criterion_main, Criterion};
use relayguard::policy::{Origin, ParamMap, ParamValue, Policy, Table};
use std::hint::black_box;

const N: u32 = 100_000;

/// Entry i: a /24 or /32 in 10.0.0.0/8 and beyond, IPv6 every 7th; the network of the last
/// entry is also covered by nothing earlier, so a hit on it is the worst case for order.
fn entries() -> Vec<String> {
    (0..N)
        .map(|i| {
            let a = 10 + (i >> 16) as u8;
            let b = (i >> 8) as u8;
            let c = i as u8;
            match i % 7 {
                0 => format!("[2001:db8:{:x}:{:x}::]/64", i >> 8, i & 0xff),
                1 => format!("!{a}.{b}.{c}.9"),
                2 => format!("{a}.{b}.{c}.0/24"),
                _ => format!("{a}.{b}.{c}.1"),
            }
        })
        .collect()
}

fn policy_with_mynetworks() -> Policy {
    let mut m = ParamMap::new();
    let origin = Origin {
        file: PathBuf::from("bench.cf"),
        line: 1,
    };
    m.insert(
        "mynetworks",
        ParamValue {
            value: entries().join(" "),
            origin: origin.clone(),
        },
    );
    m.insert(
        "mydestination",
        ParamValue {
            value: "local.test".into(),
            origin,
        },
    );
    Policy::compile(&m).expect("bench list compiles")
}

fn cidr_table() -> Table {
    let dir = std::env::temp_dir().join(format!("relayguard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("big.cidr");
    let text: String = entries()
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{} REJECT entry {i}\n", e.replace(['[', ']', '!'], "")))
        .collect();
    std::fs::write(&file, text).expect("write table");
    let (t, _) =
        Table::load(&format!("cidr:{}", file.display()), &Origin::default()).expect("cidr loads");
    t
}

fn bench(c: &mut Criterion) {
    let t0 = std::time::Instant::now();
    let p = policy_with_mynetworks();
    println!("netlist: compiling {N} entries took {:?}", t0.elapsed());
    let list = p.mynetworks();
    let hit_last: IpAddr = "11.134.159.1".parse().unwrap();
    let excluded: IpAddr = "10.0.1.9".parse().unwrap();
    let miss: IpAddr = "192.0.2.1".parse().unwrap();
    let v6: IpAddr = "2001:db8:15:7e::5".parse().unwrap();
    assert!(list.match_client("unknown", hit_last).is_match());
    assert!(!list.match_client("unknown", miss).is_match());

    let before = counting_alloc::allocations();
    for a in [hit_last, excluded, miss, v6] {
        black_box(list.match_client("unknown", a));
        black_box(list.match_client("Mail.Example.COM", a));
    }
    let allocs = counting_alloc::allocations() - before;
    assert_eq!(allocs, 0, "network list lookups must not allocate");
    println!("netlist: 8 lookups in a {N}-entry list made {allocs} allocations");

    c.bench_function("netlist 100k hit late entry", |b| {
        b.iter(|| list.match_client("unknown", black_box(hit_last)))
    });
    c.bench_function("netlist 100k excluded", |b| {
        b.iter(|| list.match_client("unknown", black_box(excluded)))
    });
    c.bench_function("netlist 100k miss", |b| {
        b.iter(|| list.match_client("unknown", black_box(miss)))
    });
    c.bench_function("netlist 100k ipv6", |b| {
        b.iter(|| list.match_client("unknown", black_box(v6)))
    });

    let t = cidr_table();
    let before = counting_alloc::allocations();
    assert!(t.lookup("11.134.159.1").is_some());
    assert!(t.lookup("192.0.2.1").is_none());
    assert_eq!(
        counting_alloc::allocations() - before,
        0,
        "cidr lookups must not allocate"
    );
    c.bench_function("cidr 100k hit", |b| {
        b.iter(|| t.lookup(black_box("11.134.159.1")))
    });
    c.bench_function("cidr 100k miss", |b| {
        b.iter(|| t.lookup(black_box("192.0.2.1")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
