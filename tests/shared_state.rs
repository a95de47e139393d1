//! Replicas sharing one real redis-server: counts and bans seen by both relayguards, a ban
//! lifted through either, a ban that outlives the process that imposed it, and Redis killed
//! and restarted under load (fail-open keeps mail flowing, fail-closed refuses with 421, and
//! both use Redis again when it is back, without a restart).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::client::{auth_plain, Client};
use support::postfix::Postfix;
use support::redis::RedisServer;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(20);
const FAILED: &str = "535 5.7.8 Error: authentication failed: (reason unavailable)";

fn replica(pf: &Postfix, redis: &RedisServer, on_failure: &str) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with(
            "lb",
            Role::Smtp,
            &[
                ("smtpd_sasl_auth_enable", "yes"),
                ("smtpd_client_message_rate_limit", "3"),
            ],
        )
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(pf, Identity::Xclient)
        .extra_toml(&format!(
            "[state]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout = \"300ms\"\non_failure = \"{on_failure}\"\n\
             [bans]\n[admin]\nsocket = \"admin.sock\"\n",
            redis.url()
        ))
        .start()
}

async fn ban_by_guessing(rg: &Relayguard, addr: &str) {
    let mut c = rg.client_as("lb", addr).await;
    for i in 0..5 {
        assert_eq!(
            c.cmd(&format!(
                "AUTH PLAIN {}",
                auth_plain("alice", &format!("g{i}"))
            ))
            .await,
            FAILED
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_counts_and_bans() {
    let redis = RedisServer::start();
    let pf = Postfix::builder().sasl(true).start();
    let a = replica(&pf, &redis, "open");
    let b = replica(&pf, &redis, "open");

    // One client's MAILs counted across both replicas: the fourth is over the limit of 3.
    for (rg, expect) in [
        (&a, "250 2.1.0 Ok"),
        (&b, "250 2.1.0 Ok"),
        (&a, "250 2.1.0 Ok"),
    ] {
        let mut c = rg.client_as("lb", "198.51.100.11").await;
        assert_eq!(c.cmd("MAIL FROM:<s@b.example>").await, expect);
    }
    let mut c = b.client_as("lb", "198.51.100.11").await;
    assert_eq!(
        c.cmd("MAIL FROM:<s@b.example>").await,
        "450 4.7.1 Error: too much mail from 198.51.100.11"
    );

    // Banned by A, refused by B at connect.
    ban_by_guessing(&a, "198.51.100.66").await;
    a.wait_for_log("banned for 600s: 5 failed AUTH attempts", WAIT);
    let refused = Client::connect_as(b.addr("lb"), "198.51.100.66").await;
    let g = refused.greeting.clone().unwrap();
    assert!(
        g.starts_with(
            "554 5.7.1 Service unavailable; Client host [198.51.100.66] blocked by relayguard for "
        ),
        "{g}"
    );
    // B lists it; lifted through A, B admits the client again.
    assert!(b.cli(&["bans", "list"]).1.contains("198.51.100.66"));
    assert_eq!(
        a.cli(&["bans", "remove", "198.51.100.66"]).1.trim(),
        "ban lifted"
    );
    let back = Client::connect_as(b.addr("lb"), "198.51.100.66").await;
    assert!(
        back.greeting.as_deref().unwrap().starts_with("220 "),
        "{:?}",
        back.greeting
    );
    // A ban is in Redis under the configured prefix, where other tools can see it.
    assert!(redis
        .cli(&["--scan", "--pattern", "relayguard:*"])
        .contains("198.51.100"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_outlives_the_process_that_imposed_it() {
    let redis = RedisServer::start();
    let pf = Postfix::builder().sasl(true).start();
    let mut first = replica(&pf, &redis, "open");
    ban_by_guessing(&first, "198.51.100.67").await;
    first.wait_for_log("banned for 600s", WAIT);
    first.stop_gracefully(WAIT);
    let second = replica(&pf, &redis, "open");
    let refused = Client::connect_as(second.addr("lb"), "198.51.100.67").await;
    assert!(
        refused
            .greeting
            .as_deref()
            .unwrap()
            .starts_with("554 5.7.1 Service unavailable"),
        "{:?}",
        refused.greeting
    );
}

/// Delivers one message from `addr`; the final reply.
async fn deliver(rg: &Relayguard, addr: &str, n: usize) -> String {
    let mut c = Client::connect_as(rg.addr("lb"), addr).await;
    let g = c.greeting.clone().unwrap();
    if !g.starts_with("220 ") {
        return g;
    }
    c.ehlo("client.example").await;
    c.send_mail(
        "s@b.example",
        &["u@local.test"],
        &format!("Subject: load {n}\n\nx\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load() {
    let mut redis = RedisServer::start();
    let pf = Postfix::builder().sasl(true).start();
    let mut open = replica(&pf, &redis, "open");
    let mut closed = replica(&pf, &redis, "closed");

    // Load from several clients while Redis dies and comes back; every message either
    // reaches the upstream (250 after its 250) or is refused; none is lost, none hangs.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let addr = open.addr("lb");
        let running = running.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut results = Vec::new();
            let mut n = 0;
            while running.load(Ordering::Relaxed) && Instant::now() < deadline && n < 5000 {
                // A new client each time: the message rate limit is not what is tested here.
                let client = format!("198.18.{}.{}", n / 250, 1 + n % 250);
                let mut c = Client::connect_as(addr, &client).await;
                c.ehlo("client.example").await;
                let body = format!("Subject: bg {n}\n\nx\n");
                let r = c.send_mail("s@b.example", &["u@local.test"], &body).await;
                results.push((Instant::now(), r));
                n += 1;
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.stop();
    let down = Instant::now();
    // Fail-open: mail flows on, each session waiting at most the timeout for Redis.
    let r = deliver(&open, "198.51.100.20", 1).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert!(down.elapsed() < Duration::from_secs(5));
    open.wait_for_log("failing open", WAIT);
    // Fail-closed: refused with 421 while Redis is away.
    let r = deliver(&closed, "198.51.100.21", 2).await;
    assert_eq!(r, "421 4.3.0 relayguard.test Server local error");
    closed.wait_for_log("failing closed", WAIT);

    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart();
    let up = Instant::now();
    // Back without a restart of relayguard: the closed replica admits again, and a ban
    // imposed now by one replica is seen by the other.
    let deadline = Instant::now() + WAIT;
    loop {
        let r = deliver(&closed, "198.51.100.21", 3).await;
        if r.starts_with("250 2.0.0 Ok: queued as ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis never came back for the closed replica: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    closed.wait_for_log("state backend is answering again", WAIT);
    ban_by_guessing(&open, "198.51.100.68").await;
    open.wait_for_log("unknown[198.51.100.68]: banned for", WAIT);
    let refused = Client::connect_as(closed.addr("lb"), "198.51.100.68").await;
    assert!(
        refused
            .greeting
            .as_deref()
            .unwrap()
            .starts_with("554 5.7.1"),
        "{:?}",
        refused.greeting
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::Relaxed);
    let results = load.await.unwrap();
    let during = results.iter().filter(|(t, _)| *t > down && *t < up).count();
    let after = results.iter().filter(|(t, _)| *t > up).count();
    assert!(
        during >= 3 && after >= 1,
        "{during} sessions during the outage, {after} after"
    );
    for (_, r) in &results {
        assert!(
            r.starts_with("250 2.0.0 Ok: queued as "),
            "fail-open lost a message: {r}"
        );
    }
    let last = format!("Subject: bg {}", results.len() - 1);
    pf.maildir().wait_for_containing(&last, WAIT);
    assert!(open.is_running() && closed.is_running());
}
