//! The commands relayguard answers itself, with Postfix's exact replies (postfix-semantics
//! 9.1-9.2): HELO/EHLO, RSET, NOOP, VRFY, HELP, MAIL/RCPT/DATA syntax and sequence errors, bad
//! UTF-8, non-SMTP input, the hard error limit, EHLO in mid-transaction, and the disconnect
//! line's counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(15);
const HOST: &str = "relayguard.test";

fn relayguard() -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .listener_with("novrfy", Role::Smtp, &[("disable_vrfy_command", "yes")])
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .start()
}

/// (name, command, exact reply), sent in this order on one session after EHLO: every case is
/// answered and none ends the session.
const CASES: &[(&str, &str, &str)] = &[
    ("noop", "NOOP", "250 2.0.0 Ok"),
    ("noop_arg", "NOOP x", "250 2.0.0 Ok"),
    ("rset", "RSET", "250 2.0.0 Ok"),
    ("rset_arg", "RSET x", "501 5.5.4 Syntax: RSET"),
    ("vrfy", "VRFY x@local.test", "252 2.0.0 x@local.test"),
    (
        "vrfy_empty",
        "VRFY",
        "501 5.5.4 Syntax: VRFY address [SMTPUTF8]",
    ),
    (
        "help",
        "HELP",
        "214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321",
    ),
    ("ehlo_no_arg", "EHLO", "501 Syntax: EHLO hostname"),
    ("helo_no_arg", "HELO", "501 Syntax: HELO hostname"),
    (
        "unknown",
        "FOO bar",
        "500 5.5.2 Error: command not recognized",
    ),
    ("empty", "", "500 5.5.2 Error: bad syntax"),
    (
        "rcpt_before_mail",
        "RCPT TO:<u@local.test>",
        "503 5.5.1 Error: need MAIL command",
    ),
    (
        "data_before_mail",
        "DATA",
        "503 5.5.1 Error: need RCPT command",
    ),
    ("data_arg", "DATA x", "501 5.5.4 Syntax: DATA"),
    ("mail_bare", "MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    (
        "mail_empty_from",
        "MAIL FROM:",
        "501 5.5.4 Syntax: MAIL FROM:<address>",
    ),
    (
        "mail_unclosed",
        "MAIL FROM:<a@b",
        "501 5.1.7 Bad sender address syntax",
    ),
    (
        "mail_unknown_option",
        "MAIL FROM:<a@b.example> FOO=bar",
        "555 5.5.4 Unsupported option: FOO=bar",
    ),
    (
        "mail_bad_size",
        "MAIL FROM:<a@b.example> SIZE=abc",
        "501 5.5.4 Bad message size syntax",
    ),
    (
        "bad_utf8",
        "MAIL FROM:<\u{fffd}@b.example>",
        "500 5.5.2 Error: bad UTF-8 syntax",
    ),
];

/// (name, command, exact reply) for the transaction, on a fresh session: the syntax cases above
/// already made 15 errors, and the 20th would close the session.
const TRANSACTION_CASES: &[(&str, &str, &str)] = &[
    (
        "null_sender_trailing_space",
        "MAIL FROM:<> ",
        "250 2.1.0 Ok",
    ),
    (
        "nested_mail",
        "MAIL FROM:<a@b.example>",
        "503 5.5.1 Error: nested MAIL command",
    ),
    ("rcpt_bare", "RCPT", "501 5.5.4 Syntax: RCPT TO:<address>"),
    (
        "rcpt_empty_to",
        "RCPT TO:",
        "501 5.5.4 Syntax: RCPT TO:<address>",
    ),
    (
        "rcpt_null",
        "RCPT TO:<>",
        "501 5.1.3 Bad recipient address syntax",
    ),
    (
        "rcpt_unknown_option",
        "RCPT TO:<x@local.test> FOO=1",
        "555 5.5.4 Unsupported option: FOO=1",
    ),
    (
        "data_without_rcpt",
        "DATA",
        "554 5.5.1 Error: no valid recipients",
    ),
    ("rset_ends_txn", "RSET", "250 2.0.0 Ok"),
    (
        "rcpt_after_rset",
        "RCPT TO:<u@local.test>",
        "503 5.5.1 Error: need MAIL command",
    ),
    ("lower_case_verb", "mail from:<a@b.example>", "250 2.1.0 Ok"),
    ("rset_again", "rset", "250 2.0.0 Ok"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_gets_postfixs_reply() {
    let rg = relayguard();
    for cases in [CASES, TRANSACTION_CASES] {
        let mut c = Client::connect(rg.addr("smtp")).await;
        assert_eq!(c.greeting().await, format!("220 {HOST} ESMTP relayguard"));
        c.ehlo("client.example").await;
        for (name, command, expected) in cases {
            let reply = if *name == "bad_utf8" {
                // Not UTF-8 on the wire: 0xff where the text shows U+FFFD.
                c.send_raw(b"MAIL FROM:<\xff@b.example>\r\n").await;
                c.read_reply().await
            } else {
                c.cmd(command).await
            };
            assert_eq!(reply, *expected, "case {name}: {command:?}");
        }
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
        c.expect_closed().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helo_and_ehlo() {
    let rg = relayguard();
    let mut c = Client::greeted(rg.addr("smtp")).await;
    assert_eq!(c.cmd("HELO client.example").await, format!("250 {HOST}"));
    let ehlo = c.ehlo("client.example").await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert_eq!(lines[0], format!("250-{HOST}"));
    assert!(lines.contains(&"250-VRFY"), "{ehlo}");
    assert!(lines.last().unwrap().starts_with("250 "), "{ehlo}");
    assert_eq!(c.cmd("helo other.example").await, format!("250 {HOST}"));
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    // HELO after EHLO is plain SMTP again: the reject log line says proto=SMTP.
    let mut c = client_from(&rg, "192.0.2.9").await;
    assert_eq!(c.cmd("HELO c.example").await, format!("250 {HOST}"));
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<x@elsewhere.example>").await,
        "454 4.7.1 <x@elsewhere.example>: Relay access denied"
    );
    rg.wait_for_log(
        "NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 454 4.7.1 <x@elsewhere.example>: Relay access denied; from=<a@b.example> to=<x@elsewhere.example> proto=SMTP helo=<c.example>",
        WAIT,
    );
}

/// A client that appears as `addr` through the trusted PROXY listener.
async fn client_from(rg: &Relayguard, addr: &str) -> Client {
    let c = Client::connect_as(rg.addr("lb"), addr).await;
    assert_eq!(
        c.greeting.as_deref(),
        Some(format!("220 {HOST} ESMTP relayguard").as_str())
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vrfy_runs_the_recipient_restrictions_and_can_be_disabled() {
    let rg = relayguard();
    let mut c = client_from(&rg, "192.0.2.10").await;
    c.ehlo("c.example").await;
    assert_eq!(
        c.cmd("VRFY <x@elsewhere.example>").await,
        "454 4.7.1 <x@elsewhere.example>: Relay access denied"
    );
    assert_eq!(c.cmd("VRFY u@local.test").await, "252 2.0.0 u@local.test");
    // The brackets are syntax, not part of the address (Postfix's extract_addr).
    assert_eq!(c.cmd("VRFY <u@local.test>").await, "252 2.0.0 u@local.test");
    assert_eq!(
        c.cmd("VRFY <>").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    rg.wait_for_log(
        "NOQUEUE: reject: VRFY from unknown[192.0.2.10]: 454 4.7.1 <x@elsewhere.example>: Relay access denied; to=<x@elsewhere.example> proto=ESMTP helo=<c.example>",
        WAIT,
    );

    let mut c = Client::after_ehlo(rg.addr("novrfy")).await;
    assert!(
        !c.capabilities.iter().any(|k| k == "VRFY"),
        "{:?}",
        c.capabilities
    );
    assert_eq!(
        c.cmd("VRFY u@local.test").await,
        "502 5.5.1 VRFY command is disabled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_smtp_input_is_answered_and_closed() {
    let rg = relayguard();
    for line in [
        "GET / HTTP/1.0",
        "POST /x HTTP/1.1",
        "Subject: hello",
        "1234 x",
    ] {
        let mut c = Client::after_ehlo(rg.addr("smtp")).await;
        assert_eq!(
            c.cmd(line).await,
            "221 2.7.0 Error: I can break rules, too. Goodbye.",
            "{line}"
        );
        c.expect_closed().await;
        rg.wait_for_log(
            &format!("warning: non-SMTP command from unknown[127.0.0.1]: {line}"),
            WAIT,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twentieth_error_closes_the_session() {
    let rg = relayguard();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    for i in 1..20 {
        assert_eq!(
            c.cmd("FOO").await,
            "500 5.5.2 Error: command not recognized",
            "error {i}"
        );
    }
    // The 20th error gets its own reply and then, without another command, the 421.
    c.send_raw(b"FOO\r\n").await;
    assert_eq!(
        c.read_reply().await,
        "500 5.5.2 Error: command not recognized"
    );
    assert_eq!(
        c.read_reply().await,
        format!("421 4.7.0 {HOST} Error: too many errors")
    );
    c.expect_closed().await;
    rg.wait_for_log(
        "too many errors after UNKNOWN from unknown[127.0.0.1]",
        WAIT,
    );
    rg.wait_for_log(
        "disconnect from unknown[127.0.0.1] ehlo=1 unknown=0/20 commands=1/21",
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_message_resets_the_error_count() {
    let rg = relayguard();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    for _ in 0..19 {
        assert_eq!(
            c.cmd("FOO").await,
            "500 5.5.2 Error: command not recognized"
        );
    }
    let reply = c
        .send_mail("a@b.example", &["u@local.test"], "Subject: reset\n\nx\n")
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    // Postfix counts from 0 again after a 250 for a message (postfix-semantics 8.2).
    for i in 0..5 {
        assert_eq!(
            c.cmd("FOO").await,
            "500 5.5.2 Error: command not recognized",
            "error {i} after the message"
        );
    }
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehlo_mid_transaction_resets_it_here_and_upstream() {
    let pf = Postfix::builder().start();
    let rg = Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(c.cmd("MAIL FROM:<first@b.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    let ehlo = c.ehlo("again.example").await;
    assert!(ehlo.starts_with(&format!("250-{HOST}\n")), "{ehlo}");
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Error: need RCPT command");
    // Upstream too: a new MAIL is not a nested one there, and only its sender arrives.
    let reply = c
        .send_mail(
            "second@b.example",
            &["u@local.test"],
            "Subject: after ehlo\n\nx\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let msg = pf
        .maildir()
        .wait_for_containing("Subject: after ehlo", WAIT);
    assert_eq!(
        msg.header("Return-Path").as_deref(),
        Some("<second@b.example>")
    );
    assert!(
        msg.received()[0].starts_with("from again.example "),
        "{:?}",
        msg.received()
    );
    assert_eq!(pf.maildir().messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_line_counts_every_command() {
    let rg = relayguard();
    let mut c = Client::greeted(rg.addr("smtp")).await;
    assert_eq!(c.cmd("HELO c.example").await, format!("250 {HOST}"));
    c.ehlo("c.example").await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<>").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    c.send_raw(b"Subject: counted\r\n\r\nx\r\n.\r\n").await;
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("VRFY u@local.test").await, "252 2.0.0 u@local.test");
    assert_eq!(
        c.cmd("VRFY").await,
        "501 5.5.4 Syntax: VRFY address [SMTPUTF8]"
    );
    assert_eq!(
        c.cmd("BOGUS").await,
        "500 5.5.2 Error: command not recognized"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    rg.wait_for_log(
        "disconnect from unknown[127.0.0.1] helo=1 ehlo=1 mail=1 rcpt=1/2 data=1 rset=1 noop=2 vrfy=1/2 quit=1 unknown=0/1 commands=10/13",
        WAIT,
    );

    // A client that says nothing at all.
    let mut c = Client::greeted(rg.addr("smtp")).await;
    drop(c.greeting.take());
    drop(c);
    rg.wait_for_log("disconnect from unknown[127.0.0.1] commands=0/0", WAIT);
    rg.wait_for_log(
        "lost connection after CONNECT from unknown[127.0.0.1]",
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_syntax_error_disconnects_like_postfix() {
    let rg = relayguard();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(c.cmd("BDAT x").await, "521 5.5.4 Syntax: BDAT count [LAST]");
    c.expect_closed().await;
    let line = rg.wait_for_log("disconnect from unknown[127.0.0.1]", WAIT);
    assert!(
        line.ends_with("disconnect from unknown[127.0.0.1] ehlo=1 bdat=0/1 commands=1/2"),
        "{line}"
    );
    assert!(
        !rg.log_lines()
            .iter()
            .any(|l| l.contains("non-SMTP command")),
        "BDAT is an SMTP command"
    );
}
