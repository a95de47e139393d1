//! Real clients over every client-side transport, through relayguard to a real Postfix 3.7:
//! swaks with STARTTLS, implicit TLS and PIPELINING, smtplib with STARTTLS and SMTP_SSL, and
//! AUTH PLAIN on the submission listener after STARTTLS. Each message is found in Postfix's
//! Maildir with the Received: header Postfix wrote for the real client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::external::{Smtplib, SmtplibMode, Swaks, Transcript};
use support::maildir::Message;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role};

const WAIT: Duration = Duration::from_secs(20);
const HOST: &str = "relayguard.test";

fn setup() -> (Postfix, Relayguard) {
    let pf = Postfix::builder().sasl(true).start();
    let submission = [("smtpd_sasl_auth_enable", "yes")];
    let rg = Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .listener_with("submission", Role::Submission, &submission)
        .listener_with("submissions", Role::Submissions, &submission)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    (pf, rg)
}

fn ok(t: &Transcript) {
    assert!(t.success(), "{}", t.output);
}

/// The delivered message with `subject`; its top Received: is Postfix's, naming the client
/// relayguard reported (helo `client.example`, address 127.0.0.1).
fn delivered(pf: &Postfix, subject: &str, with: &str) -> Message {
    let m = pf
        .maildir()
        .wait_for_containing(&format!("Subject: {subject}"), WAIT);
    let top = &m.received()[0];
    assert!(
        top.starts_with("from client.example (unknown [127.0.0.1])"),
        "{subject}: {top}"
    );
    assert!(
        top.contains(&format!(" by mx.relayguard.test (Postfix) with {with} id ")),
        "{subject}: {top}"
    );
    m
}

fn swaks(rg: &Relayguard, listener: &str, subject: &str) -> Swaks {
    Swaks::new(rg.addr(listener))
        .arg("--header")
        .arg(&format!("Subject: {subject}"))
}

#[test]
fn swaks_over_starttls_implicit_tls_and_pipelining() {
    let (pf, rg) = setup();
    let t = swaks(&rg, "smtp", "swaks starttls").tls().run();
    ok(&t);
    assert!(
        t.server_lines().contains(&"220 2.0.0 Ready to start TLS"),
        "{}",
        t.output
    );
    // swaks prints `~>` for what it sends inside TLS.
    assert!(
        t.output.contains("~> MAIL FROM:<s@sender.example>"),
        "{}",
        t.output
    );
    delivered(&pf, "swaks starttls", "ESMTP");

    let t = swaks(&rg, "submissions", "swaks tlsc")
        .tlsc()
        .auth("alice", "secret")
        .run();
    ok(&t);
    assert!(
        t.server_lines()
            .contains(&format!("220 {HOST} ESMTP relayguard").as_str()),
        "{}",
        t.output
    );
    delivered(&pf, "swaks tlsc", "ESMTPA");

    let t = swaks(&rg, "smtp", "swaks pipeline").pipeline().run();
    ok(&t);
    // The three pipelined replies come back in order.
    let lines = t.server_lines();
    let mail = lines.iter().position(|l| *l == "250 2.1.0 Ok").unwrap();
    assert_eq!(lines[mail + 1], "250 2.1.5 Ok", "{}", t.output);
    assert_eq!(
        lines[mail + 2],
        "354 End data with <CR><LF>.<CR><LF>",
        "{}",
        t.output
    );
    delivered(&pf, "swaks pipeline", "ESMTP");
    assert_eq!(pf.maildir().messages().len(), 3);
}

#[test]
fn smtplib_starttls_and_smtp_ssl() {
    let (pf, rg) = setup();
    let t = Smtplib::new(rg.addr("smtp"))
        .mode(SmtplibMode::Starttls)
        .message("Subject: smtplib starttls\r\n\r\nhello\r\n")
        .run();
    ok(&t);
    assert!(
        t.output
            .contains("STARTTLS (220, b'2.0.0 Ready to start TLS')"),
        "{}",
        t.output
    );
    assert!(t.output.contains("REFUSED {}"), "{}", t.output);
    delivered(&pf, "smtplib starttls", "ESMTP");

    let t = Smtplib::new(rg.addr("submissions"))
        .mode(SmtplibMode::Ssl)
        .auth("bob", "hunter2")
        .message("Subject: smtplib ssl\r\n\r\nhello\r\n")
        .run();
    ok(&t);
    assert!(
        t.output
            .contains("AUTH (235, b'2.7.0 Authentication successful')"),
        "{}",
        t.output
    );
    delivered(&pf, "smtplib ssl", "ESMTPA");
    pf.wait_for_log("sasl_username=bob", WAIT);
}

#[test]
fn swaks_auth_on_submission_after_starttls() {
    let (pf, rg) = setup();
    let t = swaks(&rg, "submission", "swaks auth")
        .tls()
        .auth("alice", "secret")
        .arg("--to")
        .arg("u@elsewhere.example,u@local.test")
        .run();
    ok(&t);
    assert!(
        t.server_lines()
            .contains(&"235 2.7.0 Authentication successful"),
        "{}",
        t.output
    );
    let m = delivered(&pf, "swaks auth", "ESMTPA");
    assert_eq!(
        m.header("Return-Path").as_deref(),
        Some("<s@sender.example>")
    );
    rg.wait_for_log(
        "client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=alice",
        WAIT,
    );
    pf.wait_for_log("sasl_method=PLAIN, sasl_username=alice", WAIT);

    // And a wrong password is Postfix's 535, never a delivery.
    let t = swaks(&rg, "submission", "swaks badpass")
        .tls()
        .auth("alice", "wrong")
        .run();
    assert!(!t.success(), "{}", t.output);
    // swaks marks an error reply `<~*`.
    assert!(
        t.output
            .contains("<~* 535 5.7.8 Error: authentication failed: (reason unavailable)\n"),
        "{}",
        t.output
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pf.maildir().messages().len(), 1);
}
