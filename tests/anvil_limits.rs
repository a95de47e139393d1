//! anvil's per-client limits through the real binary: concurrent connections, connection,
//! message, recipient and AUTH rates, each with smtpd's reply and warning line, counted per
//! listener and per client (IPv6 clients by their /64), with smtpd_client_event_limit_exceptions
//! exempt. Clients appear at many addresses through a listener that trusts loopback's PROXY
//! header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::client::{auth_plain, Client};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(20);

fn limited(overrides: &[(&str, &str)]) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with("lb", Role::Smtp, overrides)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_over_the_count_limit_are_refused_until_one_ends() {
    let rg = limited(&[("smtpd_client_connection_count_limit", "2")]);
    let first = rg.client_as("lb", "198.51.100.1").await;
    let _second = rg.client_as("lb", "198.51.100.1").await;
    let mut third = Client::connect_as(rg.addr("lb"), "198.51.100.1").await;
    assert_eq!(
        third.greeting.as_deref(),
        Some("421 4.7.0 relayguard.test Error: too many connections from 198.51.100.1")
    );
    third.expect_closed().await;
    rg.wait_for_log(
        "warning: Connection concurrency limit exceeded: 3 from unknown[198.51.100.1] for service lb",
        WAIT,
    );
    // Another client is not affected.
    let other = Client::connect_as(rg.addr("lb"), "198.51.100.2").await;
    assert!(other.greeting.as_deref().unwrap().starts_with("220 "));
    // One session ends: there is room again.
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let c = Client::connect_as(rg.addr("lb"), "198.51.100.1").await;
        if c.greeting.as_deref().unwrap().starts_with("220 ") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_rate_counts_one_time_unit_from_the_first_connection() {
    let rg = limited(&[
        ("smtpd_client_connection_rate_limit", "3"),
        ("anvil_rate_time_unit", "3s"),
    ]);
    let start = Instant::now();
    for _ in 0..3 {
        let mut c = rg.client_as("lb", "198.51.100.3").await;
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    }
    let mut fourth = Client::connect_as(rg.addr("lb"), "198.51.100.3").await;
    assert_eq!(
        fourth.greeting.as_deref(),
        Some("421 4.7.0 relayguard.test Error: too many connections from 198.51.100.3")
    );
    fourth.expect_closed().await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "too slow to test the window"
    );
    rg.wait_for_log(
        "warning: Connection rate limit exceeded: 4 from unknown[198.51.100.3] for service lb",
        WAIT,
    );
    // Once the unit has passed since the first connection, the count starts again.
    tokio::time::sleep(
        Duration::from_secs(3).saturating_sub(start.elapsed()) + Duration::from_millis(300),
    )
    .await;
    let again = Client::connect_as(rg.addr("lb"), "198.51.100.3").await;
    assert!(
        again.greeting.as_deref().unwrap().starts_with("220 "),
        "{:?}",
        again.greeting
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_and_recipient_rates_refuse_with_450_across_sessions() {
    let rg = limited(&[
        ("smtpd_client_message_rate_limit", "2"),
        ("smtpd_client_recipient_rate_limit", "3"),
    ]);
    let mut c = rg.client_as("lb", "198.51.100.4").await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    for i in 0..3 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<u{i}@local.test>")).await,
            "250 2.1.5 Ok"
        );
    }
    assert_eq!(
        c.cmd("RCPT TO:<u9@local.test>").await,
        "450 4.7.1 Error: too many recipients from 198.51.100.4"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    // The second MAIL, in a new session: still within the limit; the third is over it.
    let mut c = rg.client_as("lb", "198.51.100.4").await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example>").await,
        "450 4.7.1 Error: too much mail from 198.51.100.4"
    );
    rg.wait_for_log(
        "warning: Message delivery request rate limit exceeded: 3 from unknown[198.51.100.4] for service lb",
        WAIT,
    );
    rg.wait_for_log(
        "warning: Recipient address rate limit exceeded: 4 from unknown[198.51.100.4] for service lb",
        WAIT,
    );
    // Another client has its own counts.
    let mut other = rg.client_as("lb", "198.51.100.5").await;
    assert_eq!(other.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_counted_by_their_64_and_exceptions_are_never_counted() {
    let rg = limited(&[
        ("smtpd_client_message_rate_limit", "1"),
        (
            "smtpd_client_event_limit_exceptions",
            "198.51.100.99, [2001:db8:9::]/48",
        ),
    ]);
    let mut a = rg.client_as("lb", "2001:db8:1:2::1").await;
    assert_eq!(a.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    // Another address of the same /64 shares the count; one of the next /64 does not.
    let mut b = rg.client_as("lb", "2001:db8:1:2:ffff::7").await;
    assert_eq!(
        b.cmd("MAIL FROM:<a@b.example>").await,
        "450 4.7.1 Error: too much mail from 2001:db8:1:2:ffff::7"
    );
    let mut c = rg.client_as("lb", "2001:db8:1:3::1").await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    for addr in ["198.51.100.99", "2001:db8:9:1::5"] {
        let mut c = rg.client_as("lb", addr).await;
        for _ in 0..5 {
            assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
            assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_rate_refuses_before_the_upstream_hears_the_attempt() {
    let pf = Postfix::builder().sasl(true).start();
    let rg = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with(
            "lb",
            Role::Smtp,
            &[
                ("smtpd_sasl_auth_enable", "yes"),
                ("smtpd_client_auth_rate_limit", "2"),
            ],
        )
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    let mut c = rg.client_as("lb", "198.51.100.6").await;
    for _ in 0..2 {
        assert_eq!(
            c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "wrong")))
                .await,
            "535 5.7.8 Error: authentication failed: (reason unavailable)"
        );
    }
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "secret")))
            .await,
        "450 4.7.1 Error: too many AUTH commands from 198.51.100.6"
    );
    rg.wait_for_log(
        "warning: AUTH command rate limit exceeded: 3 from unknown[198.51.100.6] for service lb",
        WAIT,
    );
    // Postfix heard two AUTH attempts, not three.
    pf.wait_for_log("authentication failed", WAIT);
    let failures = pf
        .maillog_lines()
        .iter()
        .filter(|l| l.contains("authentication failed"))
        .count();
    assert_eq!(failures, 2, "{:#?}", pf.maillog_lines());
    // Others still authenticate.
    let mut d = rg.client_as("lb", "198.51.100.7").await;
    assert_eq!(
        d.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "secret")))
            .await,
        "235 2.7.0 Authentication successful"
    );
}
