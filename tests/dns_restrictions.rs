//! The DNS restrictions on a running relayguard, resolving against a private dnsmasq (and a
//! nameserver that never answers): exact replies, log lines, the explain tool's lookups, and
//! a thousand sessions waiting on a dead nameserver while in-memory sessions go on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use support::client::Client;
use support::dns::{start_dnsmasq_with, Dnsmasq};
use support::relayguard::{Relayguard, Role, TRUST_LOOPBACK_PROXY};

fn zone() -> Dnsmasq {
    let records = [
        // 127.0.0.2 is the conventional "listed" test entry of every DNSBL.
        "--address=/2.0.0.127.zen.example/127.0.0.2",
        "--txt-record=2.0.0.127.zen.example,listed for testing",
        "--address=/bad.example.rhsbl.example/127.0.0.2",
        "--mx-host=mx.example,mail.mx.example,10",
        "--address=/mail.mx.example/192.0.2.25",
        "--address=/aonly.example/192.0.2.26",
    ];
    start_dnsmasq_with(&records.map(String::from))
}

fn dns_toml(nameserver: SocketAddr, timeout: &str) -> String {
    format!("[dns]\nnameservers = [\"{nameserver}\"]\ntimeout = \"{timeout}\"\n")
}

fn start(policy: &[(&str, &str)], dns: &str) -> Relayguard {
    let mut b = Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy("mynetworks", "192.0.2.1/32");
    for (k, v) in policy {
        b = b.policy(k, v);
    }
    b.listener("mx", Role::Smtp)
        .listener_toml("mx", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .extra_toml(dns)
        .start()
}

/// EHLO, MAIL and RCPT as `client`; the MAIL and RCPT replies.
async fn envelope(rg: &Relayguard, client: &str, from: &str, to: &str) -> (String, String) {
    let mut c = Client::connect_as(rg.addr("mx"), client).await;
    c.ehlo("client.example").await;
    let mail = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    let rcpt = c.cmd(&format!("RCPT TO:<{to}>")).await;
    let _ = c.cmd("QUIT").await;
    (mail, rcpt)
}

#[tokio::test]
async fn dnsbl_and_unknown_domains_answer_as_postfix() {
    let dns = zone();
    let rg = start(
        &[(
            "smtpd_recipient_restrictions",
            "reject_rbl_client zen.example, reject_rhsbl_sender rhsbl.example, reject_unknown_sender_domain, permit",
        )],
        &dns_toml(dns.addr, "3s"),
    );
    let (_, rcpt) = envelope(&rg, "127.0.0.2", "s@aonly.example", "u@local.test").await;
    assert_eq!(
        rcpt,
        "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed for testing"
    );
    rg.wait_for_log(
        "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed for testing; from=<s@aonly.example> to=<u@local.test>",
        Duration::from_secs(5),
    );
    let (_, rcpt) = envelope(&rg, "127.0.0.3", "s@bad.example", "u@local.test").await;
    assert_eq!(
        rcpt,
        "554 5.7.1 Service unavailable; Sender address [s@bad.example] blocked using rhsbl.example"
    );
    let (mail, rcpt) = envelope(&rg, "127.0.0.3", "s@nxdomain.example", "u@local.test").await;
    assert_eq!(mail, "250 2.1.0 Ok");
    assert_eq!(
        rcpt,
        "450 4.1.8 <s@nxdomain.example>: Sender address rejected: Domain not found"
    );
    for sender in ["s@mx.example", "s@aonly.example"] {
        let (_, rcpt) = envelope(&rg, "127.0.0.3", sender, "u@local.test").await;
        assert_eq!(rcpt, "250 2.1.5 Ok", "{sender}");
    }
}

#[tokio::test]
async fn a_dead_nameserver_defers_or_passes_as_each_restriction_says() {
    // Bound and never read: every query times out.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rg = start(
        &[(
            "smtpd_recipient_restrictions",
            "reject_rbl_client zen.example, reject_unknown_sender_domain, permit",
        )],
        &dns_toml(silent.local_addr().unwrap(), "1s"),
    );
    // The DNSBL gives the benefit of the doubt (with a warning); the unknown-domain check
    // arms defer_if_permit, so the recipient is deferred, never permitted.
    let (_, rcpt) = envelope(&rg, "127.0.0.2", "s@mx.example", "u@local.test").await;
    assert_eq!(
        rcpt,
        "450 4.1.8 <s@mx.example>: Sender address rejected: Domain not found"
    );
    rg.wait_for_log(
        "warning: 2.0.0.127.zen.example: RBL lookup error: temporary failure: timed out",
        Duration::from_secs(5),
    );
    // Every failed lookup is logged with what it cost.
    rg.wait_for_log(
        "warning: DNS MX mx.example failed after",
        Duration::from_secs(5),
    );
}

#[tokio::test]
async fn a_nameserver_that_stops_mid_run_is_a_temporary_failure() {
    let dns = zone();
    let rg = start(
        &[(
            "smtpd_recipient_restrictions",
            "reject_rbl_client zen.example, reject_unknown_sender_domain, permit",
        )],
        &dns_toml(dns.addr, "1s"),
    );
    let (_, rcpt) = envelope(&rg, "127.0.0.2", "s@mx.example", "u@local.test").await;
    assert!(rcpt.contains("blocked using zen.example"), "{rcpt}");
    drop(dns);
    // Names not asked before, so no cached answer stands in for the server.
    let (_, rcpt) = envelope(&rg, "127.0.0.4", "s@aonly.example", "u@local.test").await;
    assert_eq!(
        rcpt,
        "450 4.1.8 <s@aonly.example>: Sender address rejected: Domain not found"
    );
    rg.wait_for_log(
        "4.0.0.127.zen.example: RBL lookup error: temporary failure",
        Duration::from_secs(5),
    );
}

#[test]
fn the_explain_tool_shows_each_lookup() {
    let dns = zone();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relayguard.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nmyhostname = \"mx.local.test\"\nmydestination = \"local.test\"\nsmtpd_recipient_restrictions = \"reject_rbl_client zen.example, permit\"\n\
             [[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:0\"\nrole = \"smtp\"\n\
             [upstream]\nkind = \"maildir\"\npath = \"{}\"\n{}",
            dir.path().join("mail").display(),
            dns_toml(dns.addr, "3s")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .args([
            "check",
            "--config",
            config.to_str().unwrap(),
            "--client",
            "127.0.0.2",
        ])
        .args(["--from", "a@b.example", "--rcpt", "u@local.test", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let rcpt = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "RCPT")
        .unwrap();
    assert!(rcpt["reply"]["line"]
        .as_str()
        .unwrap()
        .contains("blocked using zen.example; listed for testing"));
    let lookups = rcpt["lookups"].as_array().unwrap();
    assert_eq!(lookups[0]["request"], "DNS A 2.0.0.127.zen.example");
    assert_eq!(lookups[0]["answer"], "127.0.0.2");
    assert_eq!(lookups[1]["request"], "DNS TXT 2.0.0.127.zen.example");
    assert_eq!(lookups[1]["answer"], "\"listed for testing\"");
    assert!(lookups[0]["elapsed_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(out.status.code(), Some(1));
    // The text form names them too.
    let text = Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .args([
            "check",
            "--config",
            config.to_str().unwrap(),
            "--client",
            "127.0.0.2",
        ])
        .args(["--from", "a@b.example", "--rcpt", "u@local.test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("lookup DNS A 2.0.0.127.zen.example -> 127.0.0.2 ("),
        "{text}"
    );
}

/// A thousand sessions wait on a nameserver that never answers; sessions on a listener whose
/// policy is all in memory are served meanwhile, before any of the waiting ones is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sessions_go_on_while_a_thousand_wait() {
    const WAITING: usize = 1000;
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener_with(
            "slow",
            Role::Smtp,
            &[("smtpd_client_restrictions", "reject_rbl_client zen.example")],
        )
        .listener_toml("slow", "max_connections = 2000")
        .listener("fast", Role::Smtp)
        .upstream_maildir()
        .extra_toml(&dns_toml(silent.local_addr().unwrap(), "4s"))
        .start();
    let slow = rg.addr("slow");
    let mut waiting = Vec::new();
    for _ in 0..WAITING {
        waiting.push(tokio::spawn(async move {
            let mut c = Client::connect(slow)
                .await
                .with_timeout(Duration::from_secs(30));
            c.greeting().await;
            c.send_raw(b"EHLO w.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@local.test>\r\n")
                .await;
            c.read_reply().await; // EHLO
            c.read_reply().await; // MAIL
            c.read_reply().await // RCPT: waits for the client restrictions' lookup
        }));
    }
    // Give the waiting sessions time to reach their RCPT.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..20 {
        let mut c = Client::connect(rg.addr("fast")).await;
        c.greeting().await;
        c.ehlo("f.example").await;
        let reply = c
            .send_mail(
                "a@b.example",
                &["u@local.test"],
                &format!("Subject: {i}\r\n\r\nhi\r\n"),
            )
            .await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    let answered = waiting.iter().filter(|t| t.is_finished()).count();
    assert_eq!(
        answered, 0,
        "waiting sessions were answered before the fast ones ended"
    );
    for t in waiting {
        let rcpt = t.await.unwrap();
        // The DNSBL timed out: the benefit of the doubt, then the relay check passes.
        assert_eq!(rcpt, "250 2.1.5 Ok");
    }
}
