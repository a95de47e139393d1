//! Differential test for check_policy_service: a private Postfix 3.7 (the client set with
//! XCLIENT) and relayguard (the client set with a PROXY header) ask policy servers that give
//! the same answers; every RCPT reply must be the same on both, the requests must carry the
//! same attributes in the same order, and a dead server must fail the same way.
//!
//! Needs root and the `postfix` binary (a private instance, stopped on drop); skipped with a
//! message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::client::Client;
use support::policy_server::{Answer, PolicyServer, Request};
use support::postfix::Postfix;
use support::process::{self, free_port};
use support::relayguard::{Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(15);
const CLIENT: &str = "198.51.100.40";

fn answer(r: &Request) -> Answer {
    let rcpt = r.get("recipient").cloned().unwrap_or_default();
    let a = |s: &str| Answer::Action(s.into());
    match rcpt.split('@').next().unwrap_or("") {
        "pok" => a("OK"),
        "preject" => a("REJECT policy says no"),
        "pdefer" => a("DEFER_IF_PERMIT policy says later"),
        "p550" => a("550 5.7.9 custom policy text"),
        "p551" => a("550 5.1.1 no such user"),
        "pfrob" => a("frobnicate"),
        "pempty" => a(""),
        "pprepend" => a("PREPEND X-Policy: yes"),
        "pclass" => a("reject_unauth_destination"),
        _ => a("DUNNO"),
    }
}

const RECIPIENTS: &[&str] = &[
    "pdunno@local.test",
    "pok@local.test",
    "preject@local.test",
    "pdefer@local.test",
    "p550@local.test",
    "p551@local.test",
    "pfrob@local.test",
    "pempty@local.test",
    "pprepend@local.test",
    "pclass@local.test",
];

fn skip() -> Option<&'static str> {
    if !process::is_root() {
        return Some("needs root for a private Postfix");
    }
    if std::process::Command::new("postfix")
        .arg("-h")
        .output()
        .is_err()
    {
        return Some("no postfix binary");
    }
    None
}

/// One session: the client introduced, EHLO, MAIL, then each RCPT; the RCPT replies.
async fn rcpts(addr: SocketAddr, postfix: bool, rcpts: &[&str]) -> Vec<String> {
    let mut c = if postfix {
        let mut c = Client::connect(addr).await;
        c.greeting().await;
        let r = c
            .cmd(&format!(
                "XCLIENT ADDR={CLIENT} NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]"
            ))
            .await;
        assert!(r.starts_with("220 "), "{r}");
        c
    } else {
        Client::connect_as(addr, CLIENT).await
    };
    c.ehlo("client.example").await;
    assert!(c
        .cmd("MAIL FROM:<s@sender.example>")
        .await
        .starts_with("250 2.1.0"));
    let mut out = Vec::new();
    for r in rcpts {
        out.push(c.cmd(&format!("RCPT TO:<{r}>")).await);
    }
    let _ = c.cmd("QUIT").await;
    out
}

/// One session over STARTTLS: the client introduced, EHLO, STARTTLS, EHLO, MAIL, one RCPT.
async fn tls_rcpt(addr: SocketAddr, postfix: bool, ca: &std::path::Path, rcpt: &str) -> String {
    let mut c = if postfix {
        let mut c = Client::connect(addr).await.with_ca(ca);
        c.greeting().await;
        c.cmd(&format!(
            "XCLIENT ADDR={CLIENT} NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]"
        ))
        .await;
        c
    } else {
        Client::connect_as(addr, CLIENT).await.with_ca(ca)
    };
    c.ehlo("client.example").await;
    assert!(c.starttls("localhost").await.starts_with("220 "));
    c.ehlo("client.example").await;
    assert!(c
        .cmd("MAIL FROM:<s@sender.example>")
        .await
        .starts_with("250 2.1.0"));
    c.cmd(&format!("RCPT TO:<{rcpt}>")).await
}

fn postfix_with(restrictions: &str) -> Postfix {
    Postfix::builder()
        .param("smtpd_recipient_restrictions", restrictions)
        .start()
}

fn relayguard_with(restrictions: &str) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "mx.relayguard.test")
        .policy("mydestination", "local.test")
        .policy("smtpd_recipient_restrictions", restrictions)
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .start()
}

/// The attributes both sides must send alike (not the ports, the server address relayguard
/// and Postfix see differently, the queue id relayguard does not have, or the instance).
const COMPARED: &[&str] = &[
    "@order",
    "request",
    "protocol_state",
    "protocol_name",
    "client_address",
    "client_name",
    "reverse_client_name",
    "helo_name",
    "sender",
    "recipient",
    "recipient_count",
    "size",
    "etrn_domain",
    "stress",
    "sasl_method",
    "sasl_username",
    "sasl_sender",
    "encryption_protocol",
    "encryption_cipher",
    "encryption_keysize",
    "policy_context",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_replies_and_requests_as_postfix() {
    if let Some(why) = skip() {
        eprintln!("skipped: {why}");
        return;
    }
    let pf_server = PolicyServer::tcp(answer);
    let rg_server = PolicyServer::tcp(answer);
    let pf = postfix_with(&format!(
        "check_policy_service inet:127.0.0.1:{}",
        pf_server.port()
    ));
    let rg = relayguard_with(&format!(
        "check_policy_service inet:127.0.0.1:{}",
        rg_server.port()
    ));
    let from_postfix = rcpts(pf.addr_xclient(), true, RECIPIENTS).await;
    let from_relayguard = rcpts(rg.addr("lb"), false, RECIPIENTS).await;
    for ((rcpt, p), r) in RECIPIENTS.iter().zip(&from_postfix).zip(&from_relayguard) {
        assert_eq!(
            r, p,
            "RCPT TO:<{rcpt}>: relayguard (left) vs Postfix (right)"
        );
    }
    // The replies themselves, as observed from Postfix 3.7.
    assert_eq!(
        from_postfix[3],
        "450 4.7.1 <pdefer@local.test>: Recipient address rejected: policy says later"
    );
    assert_eq!(
        from_postfix[5],
        "550 5.1.1 <p551@local.test>: Recipient address rejected: no such user"
    );
    assert_eq!(from_postfix[6], "451 4.3.5 Server configuration error");

    // And once over TLS, for the encryption_* attributes.
    let p = tls_rcpt(
        pf.addr_xclient(),
        true,
        pf.ca_path().unwrap(),
        "preject@local.test",
    )
    .await;
    let r = tls_rcpt(rg.addr("lb"), false, rg.ca_path(), "preject@local.test").await;
    assert_eq!(r, p);

    let (p, r) = (pf_server.requests(), rg_server.requests());
    assert_eq!(p.len(), RECIPIENTS.len() + 1);
    assert_eq!(r.len(), RECIPIENTS.len() + 1);
    let tls = p.last().unwrap();
    eprintln!(
        "Postfix over TLS: encryption_protocol={} encryption_cipher={} encryption_keysize={}",
        tls["encryption_protocol"], tls["encryption_cipher"], tls["encryption_keysize"]
    );
    assert_eq!(tls["encryption_protocol"], "TLSv1.3");
    for (i, (p, r)) in p.iter().zip(&r).enumerate() {
        for name in COMPARED {
            assert_eq!(r.get(*name), p.get(*name), "request {i}, attribute {name}");
        }
    }
    assert_eq!(pf_server.connections(), 1, "Postfix reuses its connection");
    pf.wait_for_log("warning: unknown smtpd restriction: \"frobnicate\"", WAIT);
    pf.wait_for_log(
        &format!(
            "warning: access table inet:127.0.0.1:{} entry  has empty value",
            pf_server.port()
        ),
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_fails_the_same_way() {
    if let Some(why) = skip() {
        eprintln!("skipped: {why}");
        return;
    }
    let dead = free_port();
    let restrictions = format!(
        "check_policy_service {{ inet:127.0.0.1:{dead}, default_action=DUNNO }}, check_policy_service inet:127.0.0.1:{dead}"
    );
    let pf = postfix_with(&restrictions);
    let rg = relayguard_with(&restrictions);
    let rcpt = ["user@local.test"];
    let p = rcpts(pf.addr_xclient(), true, &rcpt).await;
    let r = rcpts(rg.addr("lb"), false, &rcpt).await;
    assert_eq!(
        p[0],
        "451 4.3.5 <user@local.test>: Recipient address rejected: Server configuration problem"
    );
    assert_eq!(r, p);
    for side in [
        format!("warning: connect to 127.0.0.1:{dead}: Connection refused"),
        format!("warning: problem talking to server 127.0.0.1:{dead}: Connection refused"),
    ] {
        pf.wait_for_log(&side, WAIT);
        rg.wait_for_log(&side, WAIT);
        let count = |lines: Vec<String>| lines.iter().filter(|l| l.contains(&side)).count();
        // Two services, two attempts each.
        assert_eq!(count(pf.maillog_lines()), 4, "{side}");
        assert_eq!(count(rg.log_lines()), 4, "{side}");
    }
}

/// One message to `rcpts` with `SIZE=`; the final reply.
async fn message(addr: SocketAddr, postfix: bool, rcpts: &[&str]) -> String {
    let mut c = if postfix {
        let mut c = Client::connect(addr).await;
        c.greeting().await;
        c.cmd(&format!(
            "XCLIENT ADDR={CLIENT} NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]"
        ))
        .await;
        c
    } else {
        Client::connect_as(addr, CLIENT).await
    };
    c.ehlo("client.example").await;
    assert!(c
        .cmd("MAIL FROM:<s@sender.example> SIZE=100")
        .await
        .starts_with("250 2.1.0"));
    for r in rcpts {
        assert_eq!(c.cmd(&format!("RCPT TO:<{r}>")).await, "250 2.1.5 Ok");
    }
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send_raw(b"Subject: size\r\n\r\ntwenty octets here\r\n.\r\n")
        .await;
    c.read_reply().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_end_of_message_requests_match() {
    if let Some(why) = skip() {
        eprintln!("skipped: {why}");
        return;
    }
    let pf_server = PolicyServer::tcp(answer);
    let rg_server = PolicyServer::tcp(answer);
    let list = |port: u16| format!("check_policy_service inet:127.0.0.1:{port}");
    let pf = Postfix::builder()
        .param("smtpd_data_restrictions", &list(pf_server.port()))
        .param("smtpd_end_of_data_restrictions", &list(pf_server.port()))
        .start();
    let rg = Relayguard::builder()
        .policy("myhostname", "mx.relayguard.test")
        .policy("mydestination", "local.test")
        .policy("smtpd_data_restrictions", &list(rg_server.port()))
        .policy("smtpd_end_of_data_restrictions", &list(rg_server.port()))
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .start();
    for rcpts in [&["a@local.test"][..], &["a@local.test", "b@local.test"]] {
        let p = message(pf.addr_xclient(), true, rcpts).await;
        let r = message(rg.addr("lb"), false, rcpts).await;
        assert!(p.starts_with("250 2.0.0 Ok"), "{p}");
        assert!(r.starts_with("250 2.0.0 Ok"), "{r}");
    }
    let (p, r) = (pf_server.requests(), rg_server.requests());
    let states: Vec<&str> = p.iter().map(|q| q["protocol_state"].as_str()).collect();
    assert_eq!(states, ["DATA", "END-OF-MESSAGE", "DATA", "END-OF-MESSAGE"]);
    assert_eq!(r.len(), p.len());
    for (i, (p, r)) in p.iter().zip(&r).enumerate() {
        eprintln!(
            "Postfix {}: recipient={} recipient_count={} size={}",
            p["protocol_state"], p["recipient"], p["recipient_count"], p["size"]
        );
        for name in COMPARED {
            assert_eq!(r.get(*name), p.get(*name), "request {i}, attribute {name}");
        }
    }
}
