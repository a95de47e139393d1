//! `[upstream] defer_mail`: on an upstream leg that offers PIPELINING, MAIL is answered here and
//! sent to a private Postfix 3.7 together with the first RCPT, whether the leg was opened by that
//! MAIL or carried a message before. Postfix's refusal of
//! such a MAIL answers each RCPT (and the MAIL stays held for the next one); a leg Postfix
//! closed while the client was idle is replaced at MAIL, never answered for by a dead one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::{dot_stuff, Client};
use support::flows::{behind_lb, lb_client, send_queued};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard};

const WAIT: Duration = Duration::from_secs(20);
const REFUSED: &str = "554 5.7.1 <bad@sender.example>: Sender address rejected: Access denied";

/// Postfix refusing one sender at MAIL itself (not delayed to RCPT, as it would by default).
fn refusing_postfix() -> Postfix {
    Postfix::builder()
        .param("smtpd_delay_reject", "no")
        .param(
            "smtpd_sender_restrictions",
            "check_sender_access inline:{ bad@sender.example=REJECT }",
        )
        .start()
}

async fn session(rg: &Relayguard, client_ip: &str) -> Client {
    lb_client(
        rg,
        &format!("PROXY TCP4 {client_ip} 127.0.0.1 40100 25\r\n"),
    )
    .await
}

/// Postfix's own log lines refusing the bad sender at MAIL.
fn mail_refusals(pf: &Postfix) -> usize {
    pf.maillog_lines()
        .iter()
        .filter(|l| l.contains("reject: MAIL from") && l.contains("bad@sender.example"))
        .count()
}

/// Waits (bounded) until Postfix has logged `n` such refusals, then checks no more came.
fn expect_refusals(pf: &Postfix, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while mail_refusals(pf) < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Postfix logs as it replies; a line still to come would have come by now.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mail_refusals(pf), n, "{:#?}", pf.maillog_lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_held_mail_answers_every_rcpt_and_the_session_goes_on() {
    let pf = refusing_postfix();
    let rg = behind_lb(&pf, Identity::Xclient).start();
    let mut c = session(&rg, "198.51.100.20").await;
    send_queued(&mut c, "first").await;

    // The upstream leg is open now: the MAIL is answered here and waits for a RCPT.
    assert_eq!(
        c.cmd("MAIL FROM:<bad@sender.example>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(mail_refusals(&pf), 0, "the MAIL went upstream on its own");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, REFUSED);
    // Still held, and sent again with the next recipient: each one hears Postfix's refusal.
    assert_eq!(c.cmd("RCPT TO:<v@local.test>").await, REFUSED);
    assert_eq!(c.cmd("DATA").await, "554 5.5.1 Error: no valid recipients");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    expect_refusals(&pf, 2);

    // A pipelined transaction on the same leg: replies in order, the message delivered.
    c.send_raw(b"MAIL FROM:<s@sender.example>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n")
        .await;
    assert_eq!(c.read_reply().await, "250 2.1.0 Ok");
    assert_eq!(c.read_reply().await, "250 2.1.5 Ok");
    assert!(c.read_reply().await.starts_with("354 "));
    c.send_raw(&dot_stuff("Subject: pipelined\n\nhi\n")).await;
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    for subject in ["first", "pipelined"] {
        let msg = pf
            .maildir()
            .wait_for_containing(&format!("Subject: {subject}"), WAIT);
        assert!(
            msg.received()[0].contains("[198.51.100.20]"),
            "{:?}",
            msg.received()
        );
    }
    assert_eq!(pf.maildir().messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mail_that_opens_the_leg_waits_for_the_first_rcpt_too() {
    let pf = refusing_postfix();
    let rg = behind_lb(&pf, Identity::Xclient).start();
    let mut c = session(&rg, "198.51.100.23").await;
    // No upstream leg yet: this MAIL opens one (XCLIENT, EHLO), then is answered here.
    assert_eq!(
        c.cmd("MAIL FROM:<bad@sender.example>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(mail_refusals(&pf), 0, "the MAIL went upstream on its own");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, REFUSED);
    expect_refusals(&pf, 1);
    // Postfix judged the held MAIL as the client's: XCLIENT reached it before the MAIL did.
    assert!(
        pf.maillog_lines()
            .iter()
            .any(|l| l.contains("reject: MAIL from") && l.contains("[198.51.100.23]")),
        "{:#?}",
        pf.maillog_lines()
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    send_queued(&mut c, "after a refused sender").await;
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    pf.maildir()
        .wait_for_containing("Subject: after a refused sender", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_defer_mail_off_the_upstream_answers_mail_itself() {
    let pf = refusing_postfix();
    let rg = behind_lb(&pf, Identity::Xclient)
        .upstream_toml("defer_mail = false")
        .start();
    // On the MAIL that opens the leg, and on one that finds it open.
    let mut fresh = session(&rg, "198.51.100.24").await;
    assert_eq!(fresh.cmd("MAIL FROM:<bad@sender.example>").await, REFUSED);
    expect_refusals(&pf, 1);
    let mut c = session(&rg, "198.51.100.21").await;
    send_queued(&mut c, "first").await;
    assert_eq!(c.cmd("MAIL FROM:<bad@sender.example>").await, REFUSED);
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    expect_refusals(&pf, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_the_upstream_timed_out_is_replaced_at_the_next_mail() {
    let pf = Postfix::builder().param("smtpd_timeout", "2s").start();
    let rg = behind_lb(&pf, Identity::Xclient).start();
    let mut c = session(&rg, "198.51.100.22").await;
    send_queued(&mut c, "before the timeout").await;
    // Postfix gives up on relayguard's idle leg (421, then close) while the client thinks.
    pf.wait_for_log("timeout after", WAIT);
    send_queued(&mut c, "after the timeout").await;
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let msg = pf
        .maildir()
        .wait_for_containing("Subject: after the timeout", WAIT);
    assert!(
        msg.received()[0].contains("[198.51.100.22]"),
        "{:?}",
        msg.received()
    );
}
