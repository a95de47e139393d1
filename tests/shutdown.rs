//! SIGTERM drains: no new connections, idle sessions hear 421, a message in flight finishes and
//! is delivered, and the process exits once the sessions are done.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::relayguard::{Relayguard, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_sessions() {
    let mut rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .start();
    let mut idle = Client::after_ehlo(rg.addr("smtp")).await;
    let mut busy = Client::after_ehlo(rg.addr("smtp")).await;
    busy.open_data("a@sender.example", "u@local.test").await;
    busy.send_raw(b"Subject: in flight\r\n\r\nfirst half\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    rg.signal("TERM");
    assert_eq!(
        idle.read_reply().await,
        "421 4.3.2 relayguard.test Error: service shutting down"
    );
    idle.expect_closed().await;

    busy.send_raw(b"second half\r\n.\r\n").await;
    let reply = busy.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(
        busy.read_reply().await,
        "421 4.3.2 relayguard.test Error: service shutting down"
    );
    let msg = rg
        .maildir()
        .wait_for_containing("Subject: in flight", Duration::from_secs(5));
    assert!(msg.text().contains("second half"));

    let status = rg
        .stop_gracefully(Duration::from_secs(10))
        .expect("relayguard exits after draining");
    assert!(status.success(), "{status:?}");
}

/// A message still in DATA when `drain_timeout` runs out is cut: the client never hears 250
/// for it (so it will send it again), nothing half-received is delivered, and the process exits
/// at the deadline rather than waiting on the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_cuts_a_stalled_message_without_a_250() {
    let mut rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .extra_toml("[limits]\ndrain_timeout = \"1s\"\n")
        .start();
    let mut stalled = Client::after_ehlo(rg.addr("smtp")).await;
    stalled.open_data("a@sender.example", "u@local.test").await;
    stalled
        .send_raw(b"Subject: stalled\r\n\r\nnever finished\r\n")
        .await;
    let started = std::time::Instant::now();
    rg.signal("TERM");
    let status = rg
        .stop_gracefully(Duration::from_secs(10))
        .expect("relayguard exits at the drain deadline");
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(900),
        "exited before the deadline: {took:?}"
    );
    // The client is cut without a success reply.
    match stalled.try_read_reply().await {
        Ok(None) => {}
        Ok(Some(r)) => assert!(!r.starts_with("250"), "a 250 for a cut message: {r}"),
        Err(e) => assert!(e.contains("read failed") || e.contains("closed"), "{e}"),
    }
    assert!(
        rg.maildir().messages().is_empty(),
        "a cut message was delivered"
    );
}
