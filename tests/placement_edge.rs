//! Placement rehearsal for docs/deploy/edge-host.md: relayguard on an edge host between the
//! Internet and a private MTA, each in a network namespace this test creates.
//!
//! client (10.201.1.1) --veth-- edge (10.201.1.2 | 10.201.2.1) --veth-- mta (10.201.2.2)
//!
//! The edge does not forward (a fresh namespace has `ip_forward = 0`), so the only way from the
//! client to the MTA is through relayguard; Postfix trusts XCLIENT from 10.201.2.1 alone. The
//! namespaces (and with them the veth pairs) go when the test ends, however it ends. Needs root,
//! ip(8), Postfix and swaks; fails, never skips, without them.

// Test helpers panic on setup failures; clippy only exempts `#[test]` bodies by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::external::Swaks;
use support::netns::{self, NetNs};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 1);
const EDGE_OUT: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);
const EDGE_IN: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 1);
const MTA: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 2);

/// A TCP connect from `ns` to `ip:port`, bounded by `timeout(1)`: true if it was accepted.
fn connects(ns: &NetNs, ip: Ipv4Addr, port: u16) -> bool {
    ns.command("timeout")
        .args(["3", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run timeout(1)")
        .success()
}

#[test]
fn edge_host_relays_with_the_real_client_and_keeps_the_mta_private() {
    let client = NetNs::new("cli");
    let edge = NetNs::new("edge");
    let mta = NetNs::new("mta");
    netns::link(&client, "10.201.1.1/24", &edge, "10.201.1.2/24");
    netns::link(&edge, "10.201.2.1/24", &mta, "10.201.2.2/24");
    // The client knows a way towards the MTA's network: via the edge, which must not forward.
    client.default_route(&EDGE_OUT.to_string());
    mta.default_route(&EDGE_IN.to_string());
    edge.sysctl("net.ipv4.ip_forward", "0");

    let postfix = Postfix::builder()
        .in_netns(&mta, MTA)
        .xclient_hosts(&format!("{EDGE_IN}/32"))
        .starttls(false)
        .start();
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy("mynetworks", "127.0.0.0/8")
        .policy(
            "smtpd_relay_restrictions",
            "permit_mynetworks, reject_unauth_destination",
        )
        .listener("smtp", Role::Smtp)
        .upstream_postfix(&postfix, Identity::Xclient)
        .in_netns(&edge, EDGE_OUT)
        // The namespaces have no DNS: a reverse lookup would only wait for its timeout.
        .extra_toml("[dns]\nlookups = \"never\"\n")
        .start();
    let smtp = rg.addr("smtp");
    assert_eq!(smtp.ip(), EDGE_OUT);

    // Delivery from the client's own namespace, through relayguard, with the client's address.
    let t = Swaks::new(smtp)
        .arg("--header")
        .arg("Subject: edge rehearsal")
        .run_in(&client);
    assert!(
        t.success(),
        "swaks through relayguard failed:\n{}",
        t.output
    );
    let msg = postfix
        .maildir()
        .wait_for_containing("edge rehearsal", Duration::from_secs(15));
    let received = msg.received().join("\n");
    assert!(
        received.contains(&format!("[{CLIENT}]")),
        "Postfix's Received does not name the client {CLIENT}:\n{received}"
    );
    assert!(
        !received.contains(&format!("[{EDGE_IN}]")),
        "Postfix recorded relayguard's address, not the client's:\n{received}"
    );
    postfix.wait_for_log(&format!("client=unknown[{CLIENT}]"), Duration::from_secs(5));

    // Relaying for the client is relayguard's decision: refused before Postfix sees RCPT.
    let t = Swaks::new(smtp)
        .arg("--to")
        .arg("victim@elsewhere.example")
        .run_in(&client);
    assert!(!t.success(), "relay was accepted:\n{}", t.output);
    // swaks marks a refusal `<** 554 ...`, which server_lines() leaves out.
    assert!(
        t.output
            .lines()
            .any(|l| l.contains("554 5.7.1 <victim@elsewhere.example>: Relay access denied")),
        "no 554 5.7.1 Relay access denied:\n{}",
        t.output
    );
    assert!(
        !postfix
            .maillog_lines()
            .iter()
            .any(|l| l.contains("victim@elsewhere.example")),
        "the refused RCPT reached Postfix"
    );

    // The MTA is reachable from the edge (relayguard delivered through it, and a plain connect
    // works), never from the client: no forwarding on the edge, so the connect fails in bounds.
    assert!(connects(&edge, MTA, postfix.port_xclient()));
    let started = Instant::now();
    assert!(
        !connects(&client, MTA, postfix.port_xclient()),
        "the client reached the MTA directly"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Relayguard itself is what the client reaches on the edge.
    assert!(connects(&client, EDGE_OUT, smtp.port()));
}
