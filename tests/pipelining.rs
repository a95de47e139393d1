//! PIPELINING: replies come in command order, and a pipelined group gives the same replies
//! whether it arrives in one read or byte by byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::relayguard::{Relayguard, Role, TRUST_LOOPBACK_PROXY};

const GROUP: &[u8] = b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<u@local.test>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<v@local.test>\r\nDATA\r\n";

fn relayguard() -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .start()
}

async fn session(rg: &Relayguard, byte_by_byte: bool) -> Vec<String> {
    let mut c = Client::connect_as(rg.addr("lb"), "192.0.2.9").await;
    let mut replies = vec![c.ehlo("c.example").await];
    if byte_by_byte {
        for b in GROUP {
            c.send_raw(&[*b]).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    } else {
        c.send_raw(GROUP).await;
    }
    for _ in 0..5 {
        replies.push(c.read_reply().await);
    }
    c.send_raw(b"Subject: pipelined\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        .await;
    let queued = c.read_reply().await;
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    replies.push(c.read_reply().await);
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_read_and_byte_by_byte_give_the_same_replies() {
    let rg = relayguard();
    let whole = session(&rg, false).await;
    let trickled = session(&rg, true).await;
    assert_eq!(
        &whole[1..],
        &[
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "454 4.7.1 <x@elsewhere.example>: Relay access denied",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "221 2.0.0 Bye",
        ]
    );
    assert_eq!(whole, trickled);
    let delivered = rg.maildir().wait_for(2, Duration::from_secs(15));
    assert_eq!(delivered.len(), 2);
}
