//! What waiting costs the policy engine: an all-in-memory RCPT decision, beside the two passes
//! of one that waits for a DNSBL answer (the pass that finds it missing, and the pass that
//! decides once it is fetched). The in-memory row is the path every session without network
//! lookups takes; it must not move when waiting policies exist.

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use relayguard::policy::pending::{DnsAnswer, FactAnswer};
use relayguard::policy::{
    Client, FactCache, Facts, Fetched, Origin, ParamMap, ParamValue, Policy, Progress, Stage,
    TransactionState,
};

fn policy(recipient_restrictions: &str) -> Policy {
    let mut m = ParamMap::new();
    let origin = Origin {
        file: "main.cf".into(),
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
    set("smtpd_recipient_restrictions", recipient_restrictions);
    Policy::compile(&m).expect("compiles")
}

fn bench(c: &mut Criterion) {
    let memory = policy("check_client_access inline:{ 10.1.2.3=REJECT }, permit");
    let waiting = policy(
        "check_client_access inline:{ 10.1.2.3=REJECT }, reject_rbl_client zen.example, permit",
    );
    let client = Client::unnamed("192.0.2.77".parse::<IpAddr>().unwrap(), 1);
    let facts = Facts {
        client: &client,
        helo: Some("c.example"),
        esmtp: true,
        login: None,
        tls: false,
        sender: Some("someone@sender.example"),
        recipient: Some("user@local.test"),
        listener: "smtp",
        improper_pipelining: false,
        session: Default::default(),
    };
    let empty = FactCache::default();
    let mut st = TransactionState::default();
    c.bench_function("decide: policy all in memory", |b| {
        b.iter(|| memory.decide(Stage::Rcpt, black_box(&facts), &mut st, &empty))
    });
    let Progress::Needs(needs) = waiting.decide(Stage::Rcpt, &facts, &mut st, &empty) else {
        panic!("the DNSBL must be asked for");
    };
    let mut answered = FactCache::default();
    for request in needs {
        answered.insert(Fetched {
            request,
            answer: FactAnswer::Dns(DnsAnswer::NxDomain),
            elapsed: Duration::ZERO,
            cached: false,
        });
    }
    c.bench_function("decide: waiting policy, first pass (asks)", |b| {
        b.iter(|| waiting.decide(Stage::Rcpt, black_box(&facts), &mut st, &empty))
    });
    c.bench_function("decide: waiting policy, resumed with the answer", |b| {
        b.iter(|| waiting.decide(Stage::Rcpt, black_box(&facts), &mut st, &answered))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
