//! A whole RCPT decision with the default relay restrictions, a client access table and a
//! regexp sender table: what each RCPT costs a session.

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use relayguard::policy::{
    Client, Facts, Origin, ParamMap, ParamValue, Policy, Stage, TransactionState,
};
use std::hint::black_box;

fn policy() -> Policy {
    let dir = std::env::temp_dir().join(format!("relayguard-bench-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let clients: String = (0..10_000u32)
        .map(|i| {
            format!(
                "10.{}.{}.{} REJECT client {i}\n",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            )
        })
        .collect();
    std::fs::write(dir.join("clients"), clients).expect("write");
    let senders: String = (0..200)
        .map(|i| format!("/^spam{i}@.*\\.example$/ REJECT spam {i}\n"))
        .collect();
    std::fs::write(dir.join("senders.re"), senders).expect("write");
    let mut m = ParamMap::new();
    let origin = Origin {
        file: dir.join("main.cf"),
        line: 1,
    };
    let mut set = |k: &str, v: &str| {
        m.insert(
            k,
            ParamValue {
                value: v.into(),
                origin: origin.clone(),
            },
        )
    };
    set("mydestination", "local.test");
    set("mynetworks", "127.0.0.0/8 [::1]/128");
    set(
        "smtpd_client_restrictions",
        "check_client_access texthash:clients",
    );
    set(
        "smtpd_sender_restrictions",
        "check_sender_access regexp:senders.re",
    );
    Policy::compile(&m).expect("compiles")
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let client = Client::unnamed("192.0.2.77".parse::<IpAddr>().unwrap(), 1);
    let facts = |rcpt: &'static str| Facts {
        client: &client,
        helo: Some("c.example"),
        esmtp: true,
        login: None,
        tls: false,
        sender: Some("someone@sender.example"),
        recipient: Some(rcpt),
        listener: "smtp",
        improper_pipelining: false,
        session: Default::default(),
    };
    let local = facts("user@local.test");
    let foreign = facts("user@elsewhere.example");
    let mut st = TransactionState::default();
    c.bench_function("rcpt local (client+sender+relay lists)", |b| {
        b.iter(|| p.evaluate(Stage::Rcpt, black_box(&local), &mut st))
    });
    c.bench_function("rcpt relay denied", |b| {
        b.iter(|| p.evaluate(Stage::Rcpt, black_box(&foreign), &mut st))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
