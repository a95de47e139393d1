//! The upstream learns the real client: each identity mode end to end against a private
//! Postfix 3.7, proven by the Received: header Postfix writes and its log; and the start-up
//! trust-boundary check that refuses an upstream which would relay for relayguard itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::flows::{behind_lb, deliver_as};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(20);

fn relayguard(pf: &Postfix, identity: Identity) -> Relayguard {
    behind_lb(pf, identity).start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_carries_address_and_helo() {
    let pf = Postfix::builder().start();
    let rg = relayguard(&pf, Identity::Xclient);
    let r4 = deliver_as(
        &rg,
        &pf,
        "PROXY TCP4 198.51.100.7 127.0.0.1 40001 25\r\n",
        "xclient v4",
    )
    .await;
    assert!(r4.starts_with("from client.example (unknown [198.51.100.7]) by mx.relayguard.test (Postfix) with ESMTP id "), "{r4}");
    let r6 = deliver_as(
        &rg,
        &pf,
        "PROXY TCP6 2001:db8::7 ::1 40002 25\r\n",
        "xclient v6",
    )
    .await;
    assert!(
        r6.starts_with("from client.example (unknown [IPv6:2001:db8::7]) by mx.relayguard.test"),
        "{r6}"
    );
    pf.wait_for_log("client=unknown[198.51.100.7]", WAIT);
    rg.wait_for_log("client=unknown[198.51.100.7]", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_and_v1_carry_the_address() {
    let pf = Postfix::builder().start();
    for (identity, subject) in [
        (Identity::ProxyV2, "proxy v2"),
        (Identity::ProxyV1, "proxy v1"),
    ] {
        let rg = relayguard(&pf, identity);
        let r = deliver_as(
            &rg,
            &pf,
            "PROXY TCP4 203.0.113.9 127.0.0.1 40003 25\r\n",
            subject,
        )
        .await;
        assert!(
            r.starts_with("from client.example (unknown [203.0.113.9]) by mx.relayguard.test"),
            "{identity:?}: {r}"
        );
    }
    pf.wait_for_log("connect from unknown[203.0.113.9]", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_none_shows_relayguard_and_warns() {
    let pf = Postfix::builder().start();
    let rg = relayguard(&pf, Identity::None);
    rg.wait_for_log("identity = \"none\"", WAIT);
    let r = deliver_as(
        &rg,
        &pf,
        "PROXY TCP4 203.0.113.10 127.0.0.1 40004 25\r\n",
        "identity none",
    )
    .await;
    assert!(r.contains("[127.0.0.1]"), "{r}");
}

#[test]
fn refuses_to_start_when_the_upstream_relays_for_relayguard() {
    let pf = Postfix::builder().mynetworks("127.0.0.0/8").start();
    let result = Relayguard::builder()
        .listener("smtp", Role::Smtp)
        .upstream_postfix(&pf, Identity::Xclient)
        .try_start();
    let err = result.err().expect("relayguard must refuse to start");
    assert!(err.contains("relay-check.invalid"), "{err}");
    assert!(err.contains("allow_open_relay"), "{err}");

    let rg = Relayguard::builder()
        .listener("smtp", Role::Smtp)
        .upstream_postfix(&pf, Identity::Xclient)
        .upstream_toml("allow_open_relay = true")
        .start();
    rg.wait_for_log("starting because allow_open_relay = true", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_carries_the_forward_confirmed_name() {
    let dns = support::dns::start_dnsmasq();
    let pf = Postfix::builder().start();
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(&pf, Identity::Xclient)
        .extra_toml(&format!(
            "[dns]\nlookups = \"always\"\nnameservers = [\"{}\"]\ntimeout = \"3s\"\n",
            dns.addr
        ))
        .start();
    let named = deliver_as(
        &rg,
        &pf,
        "PROXY TCP4 198.51.100.7 127.0.0.1 40005 25\r\n",
        "named",
    )
    .await;
    assert!(
        named.starts_with(
            "from client.example (client.example [198.51.100.7]) by mx.relayguard.test"
        ),
        "{named}"
    );
    rg.wait_for_log("connect from client.example[198.51.100.7]", WAIT);
    // A forged PTR is not confirmed: the client is `unknown`, as Postfix would say.
    let forged = deliver_as(
        &rg,
        &pf,
        "PROXY TCP4 198.51.100.8 127.0.0.1 40006 25\r\n",
        "forged",
    )
    .await;
    assert!(
        forged.starts_with("from client.example (unknown [198.51.100.8]) by mx.relayguard.test"),
        "{forged}"
    );
}

/// A client that never says HELO/EHLO must reach the upstream with no HELO at all, in every
/// identity mode that names the client: not with relayguard's own `EHLO relayguard.test`,
/// which HELO rules upstream would then judge as the client's (issue 10, item 6). Postfix's
/// WARN line carries `helo=<...>` whenever it has a HELO name, and its Received: header says
/// `from HELO (...)`; both must show the client as Postfix shows a direct client without HELO.
/// Over an upstream STARTTLS the EHLO relayguard must say first is forgotten with the handshake
/// (RFC 3207 4.2; Postfix keeps only PROTO=ESMTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_helo_has_no_helo_upstream() {
    let pf = Postfix::builder()
        .extra_main_cf(
            "smtpd_recipient_restrictions = \
             check_recipient_access inline:{ { u@local.test = WARN helo-check } }",
        )
        .start();
    for (identity, client, starttls, with, proto) in [
        (Identity::Xclient, "198.51.100.61", false, "SMTP", "SMTP"),
        (Identity::ProxyV1, "198.51.100.62", false, "SMTP", "SMTP"),
        (Identity::ProxyV2, "198.51.100.63", false, "SMTP", "SMTP"),
        // Postfix writes XCLIENT's PROTO=SMTP as is; only an EHLO after TLS makes it ESMTPS.
        (Identity::Xclient, "198.51.100.64", true, "SMTP", "SMTP"),
        (Identity::ProxyV2, "198.51.100.65", true, "ESMTPS", "ESMTP"),
    ] {
        let mut rg = behind_lb(&pf, identity).policy("smtpd_helo_required", "no");
        if starttls {
            rg = rg.upstream_toml("starttls = true");
        }
        let rg = rg.start();
        let mut c = support::client::Client::connect(rg.addr("lb")).await;
        c.send_raw(format!("PROXY TCP4 {client} 127.0.0.1 40010 25\r\n").as_bytes())
            .await;
        c.greeting().await;
        let subject = format!("no helo {identity:?} {client}");
        support::flows::send_queued(&mut c, &subject).await;
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
        let msg = pf
            .maildir()
            .wait_for_containing(&format!("Subject: {subject}"), WAIT);
        let received = &msg.received()[0];
        assert!(
            received.starts_with(&format!(
                "from unknown (unknown [{client}]) by mx.relayguard.test (Postfix) with {with} id "
            )),
            "{identity:?}: {received}"
        );
        let warn = pf.wait_for_log(&format!("warn: RCPT from unknown[{client}]"), WAIT);
        assert!(
            warn.ends_with(&format!(
                "NOQUEUE: warn: RCPT from unknown[{client}]: helo-check; \
                 from=<s@sender.example> to=<u@local.test> proto={proto}"
            )),
            "{identity:?}: {warn}"
        );
    }
    // relayguard's own start-up probe says EHLO as itself; no line about a client may.
    let log = pf.maillog_lines();
    let with_helo: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("[198.51.100.6") && l.contains("helo="))
        .collect();
    assert!(with_helo.is_empty(), "{with_helo:#?}");
}
