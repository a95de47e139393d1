//! Whole SMTP exchanges that several test files repeat.

use std::time::Duration;

use super::client::Client;
use super::postfix::Postfix;
use super::relayguard::{Identity, Relayguard, RelayguardBuilder, Role, TRUST_LOOPBACK_PROXY};

/// relayguard in front of `pf` with one listener, `lb`, that takes PROXY headers from loopback,
/// so a test can appear as any client.
pub fn behind_lb(pf: &Postfix, identity: Identity) -> RelayguardBuilder {
    Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(pf, identity)
}

/// Sends one message as the client `proxy_line` names, through relayguard's PROXY listener
/// `lb`, to a Postfix upstream, and returns the Received: line Postfix wrote for it.
pub async fn deliver_as(rg: &Relayguard, pf: &Postfix, proxy_line: &str, subject: &str) -> String {
    let mut c = lb_client(rg, proxy_line).await;
    send_queued(&mut c, subject).await;
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let msg = pf
        .maildir()
        .wait_for_containing(&format!("Subject: {subject}"), Duration::from_secs(20));
    msg.received()[0].clone()
}

/// A client of relayguard's PROXY listener `lb`, as the client `proxy_line` names, after EHLO.
pub async fn lb_client(rg: &Relayguard, proxy_line: &str) -> Client {
    let mut c = Client::connect(rg.addr("lb")).await;
    c.send_raw(proxy_line.as_bytes()).await;
    c.greeting().await;
    c.ehlo("client.example").await;
    c
}

/// Sends one message from s@sender.example to u@local.test and checks the upstream queued it.
pub async fn send_queued(c: &mut Client, subject: &str) {
    let reply = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            &format!("Subject: {subject}\n\nhi\n"),
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
}
