//! A whole RCPT decision with the default relay restrictions, a client access table and a
//! regexp sender table: what each RCPT costs a session; and the same with 10,000 local users
//! checked by smtpd_reject_unlisted_recipient.

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use relayguard::policy::{
    Client, Facts, Origin, ParamMap, ParamValue, Policy, Stage, TransactionState,
};
use std::hint::black_box;

fn policy(with_users: bool) -> Policy {
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
    if with_users {
        let users: String = (0..10_000).map(|i| format!("user{i} x\n")).collect();
        std::fs::write(dir.join("users"), users).expect("write");
        set("local_recipient_maps", "texthash:users");
    }
    Policy::compile(&m).expect("compiles")
}

fn bench(c: &mut Criterion) {
    let p = policy(false);
    let with_users = policy(true);
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
    let listed = facts("user9999@local.test");
    let unlisted = facts("nobody@local.test");
    c.bench_function("rcpt local, listed in local_recipient_maps", |b| {
        b.iter(|| with_users.evaluate(Stage::Rcpt, black_box(&listed), &mut st))
    });
    c.bench_function("rcpt local, unlisted (550 User unknown)", |b| {
        b.iter(|| with_users.evaluate(Stage::Rcpt, black_box(&unlisted), &mut st))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
