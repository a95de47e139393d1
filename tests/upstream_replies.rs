//! The upstream's replies judged as Postfix's proxy judges them: a MAIL accepted by its reply
//! class, a 421 that ends the session, and a login that never changes behind the client's back
//! when the upstream leg is replaced. The upstream is scripted (`support::scripted`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::{auth_plain, Client};
use support::relayguard::{Identity, Relayguard, Role};
use support::scripted::{Answer, ScriptedUpstream};

const HOST: &str = "relayguard.test";

fn relayguard(upstream: &ScriptedUpstream, identity: Identity, upstream_toml: &str) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .policy(
            "smtpd_relay_restrictions",
            "permit_sasl_authenticated, reject_unauth_destination",
        )
        .listener_with("smtp", Role::Smtp, &[("smtpd_sasl_auth_enable", "yes")])
        .upstream_smtp(upstream.addr, identity)
        .upstream_toml(&format!("reply_timeout = \"2s\"\n{upstream_toml}"))
        .start()
}

/// The ordinary answer to everything the script does not single out.
fn ordinary(line: &str) -> Answer {
    if line.starts_with("MAIL") {
        Answer::reply("250 2.1.0 Ok")
    } else if line.starts_with("RCPT") {
        Answer::reply("250 2.1.5 Ok")
    } else if line.starts_with("XCLIENT") {
        Answer::reply("220 fake.upstream ESMTP")
    } else if line.starts_with("AUTH PLAIN") {
        Answer::reply("235 2.7.0 Authentication successful")
    } else {
        Answer::reply("250 2.0.0 Ok")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_mail_accepted_with_252_lets_the_rcpt_reply_answer() {
    let up = ScriptedUpstream::start(&["PIPELINING"], |_, line| {
        if line.starts_with("MAIL") {
            Answer::reply("252 2.1.0 Ok, but not verified")
        } else if line.starts_with("RCPT") {
            Answer::reply("550 5.1.1 <nobody@local.test>: Recipient address rejected: unknown")
        } else {
            ordinary(line)
        }
    })
    .await;
    let rg = relayguard(&up, Identity::None, "");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<nobody@local.test>").await,
        "550 5.1.1 <nobody@local.test>: Recipient address rejected: unknown"
    );
    assert_eq!(
        c.cmd("DATA").await,
        "554 5.5.1 Error: no valid recipients",
        "the refused recipient was not counted"
    );
}

/// A 421 from the upstream at RCPT, with the MAIL held or forwarded on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_421_ends_the_session() {
    for defer in ["true", "false"] {
        let up = ScriptedUpstream::start(&["PIPELINING"], |_, line| {
            if line.starts_with("RCPT") {
                Answer::close_with("421 4.3.2 fake.upstream Service shutting down")
            } else {
                ordinary(line)
            }
        })
        .await;
        let rg = relayguard(&up, Identity::None, &format!("defer_mail = {defer}"));
        let mut c = Client::after_ehlo(rg.addr("smtp")).await;
        assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
        assert_eq!(
            c.cmd("RCPT TO:<u@local.test>").await,
            "421 4.3.2 fake.upstream Service shutting down",
            "defer_mail = {defer}"
        );
        c.expect_closed().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_421_at_mail_ends_the_session() {
    // Connection 0 is the start-up probe, which must pass.
    let up = ScriptedUpstream::start(&[], |connection, line| {
        if connection > 0 && line.starts_with("MAIL") {
            Answer::close_with("421 4.7.0 fake.upstream Error: too many connections")
        } else {
            ordinary(line)
        }
    })
    .await;
    let rg = relayguard(&up, Identity::None, "");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@sender.example>").await,
        "421 4.7.0 fake.upstream Error: too many connections"
    );
    c.expect_closed().await;
}

/// The upstream drops the leg the client authenticated on (its idle timeout, a restart).
fn drops_the_leg_after_auth(connection: usize, line: &str) -> Answer {
    if connection == 1 && line.starts_with("AUTH PLAIN") {
        // The 235 and, at once, the goodbye of an upstream going away.
        Answer::ReplyAndClose(vec![
            "235 2.7.0 Authentication successful".into(),
            "421 4.4.2 fake.upstream Error: timeout exceeded".into(),
        ])
    } else {
        ordinary(line)
    }
}

async fn authenticate_then_lose_the_leg(rg: &Relayguard) -> Client {
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "secret")))
            .await,
        "235 2.7.0 Authentication successful"
    );
    // Let the upstream's goodbye arrive before the MAIL that finds the leg gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_leg_carries_the_login_by_xclient() {
    let up = ScriptedUpstream::start(
        &[
            "PIPELINING",
            "AUTH PLAIN",
            "XCLIENT ADDR NAME HELO PROTO LOGIN PORT",
        ],
        drops_the_leg_after_auth,
    )
    .await;
    let rg = relayguard(&up, Identity::Xclient, "");
    let mut c = authenticate_then_lose_the_leg(&rg).await;
    assert_eq!(
        c.cmd("MAIL FROM:<alice@sender.example>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(c.cmd("RCPT TO:<x@elsewhere.example>").await, "250 2.1.5 Ok");
    assert_eq!(up.connections(), 3, "probe, the AUTH leg, its replacement");
    let xclient = up
        .lines(2)
        .into_iter()
        .find(|l| l.starts_with("XCLIENT"))
        .expect("the new leg names the client");
    assert!(xclient.contains(" LOGIN=alice"), "{xclient}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_xclient_a_lost_authenticated_leg_ends_the_session() {
    for identity in [Identity::None, Identity::ProxyV1] {
        let up =
            ScriptedUpstream::start(&["PIPELINING", "AUTH PLAIN"], drops_the_leg_after_auth).await;
        let rg = relayguard(&up, identity, "");
        let mut c = authenticate_then_lose_the_leg(&rg).await;
        assert_eq!(
            c.cmd("MAIL FROM:<alice@sender.example>").await,
            format!("421 4.3.0 {HOST} Error: upstream server unavailable")
        );
        c.expect_closed().await;
        assert_eq!(
            up.connections(),
            2,
            "no unauthenticated leg was opened for the client"
        );
        rg.wait_for_log(
            "upstream leg lost after AUTH for unknown[127.0.0.1]; ending the session",
            Duration::from_secs(5),
        );
    }
}

/// A 421, or a connection dropped without a word, in answer to a chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_lost_at_bdat_ends_the_session() {
    for (goodbye, heard) in [
        (
            "421 4.3.2 fake.upstream Service shutting down",
            "421 4.3.2 fake.upstream Service shutting down".to_owned(),
        ),
        (
            "",
            format!("421 4.3.0 {HOST} Error: upstream server unavailable"),
        ),
    ] {
        let up = ScriptedUpstream::start(&["PIPELINING", "CHUNKING"], move |_, line| {
            if line.starts_with("BDAT") {
                Answer::ReplyAndClose(if goodbye.is_empty() {
                    vec![]
                } else {
                    vec![goodbye.to_owned()]
                })
            } else {
                ordinary(line)
            }
        })
        .await;
        let rg = relayguard(&up, Identity::None, "");
        let mut c = Client::after_ehlo(rg.addr("smtp")).await;
        assert!(
            c.capabilities.iter().any(|k| k == "CHUNKING"),
            "{:?}",
            c.capabilities
        );
        assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
        assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
        c.send_raw(b"BDAT 12 LAST\r\nSubject: x\r\n").await;
        assert_eq!(c.read_reply().await, heard);
        c.expect_closed().await;
    }
}

/// An upstream that refuses XCLIENT (a Postfix whose smtpd_authorized_xclient_hosts leaves
/// relayguard out) never hears the client's MAIL, which it would take as relayguard's own:
/// the client's RCPT gets a temporary refusal and the log carries the upstream's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_xclient_hears_no_mail_and_the_log_says_why() {
    let up = ScriptedUpstream::start(&["PIPELINING", "XCLIENT ADDR NAME HELO"], |_, line| {
        if line.starts_with("XCLIENT") {
            Answer::reply("550 5.7.0 Error: insufficient authorization")
        } else {
            ordinary(line)
        }
    })
    .await;
    let rg = relayguard(&up, Identity::Xclient, "");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    // relayguard holds the MAIL until the first RCPT needs the upstream leg.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    let reply = c.cmd("RCPT TO:<u@local.test>").await;
    assert!(reply.starts_with("4"), "{reply}");
    // The start-up probe's connection (no XCLIENT) aside, the client's legs.
    let legs: Vec<Vec<String>> = (0..up.connections())
        .map(|i| up.lines(i))
        .filter(|l| l.iter().any(|l| l.starts_with("XCLIENT")))
        .collect();
    assert!(!legs.is_empty());
    for leg in &legs {
        assert!(!leg.iter().any(|l| l.starts_with("MAIL")), "{leg:?}");
    }
    let log = rg.log_lines().join("\n");
    assert!(
        log.contains("XCLIENT") && log.contains("550 5.7.0 Error: insufficient authorization"),
        "{log}"
    );
}

/// The leg is closed once QUIT is written, not after the upstream's 221: Postfix's own client
/// does the same (`smtp_skip_quit_response = yes`), and waiting would hold each leg open for
/// a reply that changes nothing. This upstream never answers QUIT, so a proxy that waited
/// would keep the leg for its 2 s grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leg_closes_after_quit_without_waiting_for_the_221() {
    // Connection 0, the start-up probe, is answered as usual.
    let up = ScriptedUpstream::start_scripting_quit(&["PIPELINING"], |connection, line| {
        match (connection, line) {
            (0, "QUIT") => Answer::close_with("221 2.0.0 Bye"),
            (_, "QUIT") => Answer::Silence,
            _ => ordinary(line),
        }
    })
    .await;
    let rg = relayguard(&up, Identity::None, "");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    assert!(
        up.wait_closed(1, Duration::from_secs(1)).await,
        "the leg was still open a second after QUIT: {:?}",
        up.lines(1)
    );
    assert_eq!(up.lines(1).last().map(String::as_str), Some("QUIT"));
}
