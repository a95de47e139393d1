//! The dialogue parameters of issue 12 ("paste the whole main.cf") against the judge: the same
//! dialogue with relayguard and with a private Postfix 3.7 given the same parameters (asked
//! through XCLIENT, as any client), compared reply for reply, delay for delay, log line for
//! log line.
//!
//! Needs root and Postfix; fails, never skips, without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::client::{auth_plain, Client};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role};

const WAIT: Duration = Duration::from_secs(20);

/// A client of the judge, made to look like 127.0.0.1 with no name (as relayguard's clients
/// in these tests are).
async fn judge(pf: &Postfix) -> Client {
    let mut c = Client::connect(pf.addr_xclient()).await;
    c.greeting().await;
    let reply = c.cmd("XCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]").await;
    assert!(reply.starts_with("220 "), "{reply}");
    c
}

fn relayguard(pf: &Postfix, overrides: &[(&str, &str)]) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "mx.relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with("smtp", Role::Smtp, overrides)
        .upstream_postfix(pf, Identity::Xclient)
        .start()
}

/// Two Postfix instances whose fake Dovecot offers ANONYMOUS and CRAM-MD5 beside PLAIN and
/// LOGIN: the upstream offers all four; the judge has `options` (and STARTTLS).
fn sasl_upstream_and_judge(options: &[(&str, &str)]) -> (Postfix, Postfix) {
    let mechs = ["ANONYMOUS:anonymous", "CRAM-MD5:dictionary:active"];
    let upstream = Postfix::builder()
        .sasl_mechanisms(&mechs)
        .param("smtpd_sasl_security_options", "")
        .start();
    let mut judge = Postfix::builder().sasl_mechanisms(&mechs).starttls(true);
    for (k, v) in options {
        judge = judge.param(k, v);
    }
    (upstream, judge.start())
}

/// Each command's reply, and whether it came a tarpit's delay late (≥ 0.8 s).
async fn transcript(c: &mut Client, lines: &[&str]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for line in lines {
        let start = Instant::now();
        let reply = c.cmd(line).await;
        out.push((reply, start.elapsed() >= Duration::from_millis(800)));
    }
    out
}

/// [`transcript`], then the reply the server ends the session with, and the close.
async fn closing_transcript(c: &mut Client, lines: &[&str]) -> Vec<(String, bool)> {
    let mut out = transcript(c, lines).await;
    let start = Instant::now();
    let last = c.read_reply().await;
    out.push((last, start.elapsed() >= Duration::from_millis(800)));
    c.expect_closed().await;
    out
}

/// The keywords of an EHLO reply, without the host name line.
async fn keywords(c: &mut Client) -> Vec<String> {
    let reply = c.cmd("EHLO client.example").await;
    reply.lines().skip(1).map(|l| l[4..].to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_limits_and_the_tarpit_match_postfix() {
    let limits = [
        ("smtpd_soft_error_limit", "2"),
        ("smtpd_hard_error_limit", "4"),
        ("smtpd_error_sleep_time", "1s"),
        ("smtpd_junk_command_limit", "1"),
    ];
    let mut builder = Postfix::builder();
    for (k, v) in limits {
        builder = builder.param(k, v);
    }
    let pf = builder.start();
    let rg = relayguard(&pf, &limits);
    // Junk 0 and 1 are free; the third junk command (NOOP) is error 1; two unknown commands
    // are errors 2 and 3, and from error 2 on every reply is a second late; the last NOOP is
    // junk and error 4, the hard limit.
    let lines = ["HELO c.example", "NOOP", "NOOP", "FOO", "BAR", "NOOP"];
    let mut ours = Client::connect(rg.addr("smtp")).await;
    ours.greeting().await;
    let a = closing_transcript(&mut ours, &lines).await;
    let mut theirs = judge(&pf).await;
    let b = closing_transcript(&mut theirs, &lines).await;
    assert_eq!(a, b);
    assert!(a[4].1 && !a[3].1, "{a:?}");
    assert_eq!(
        a.last().unwrap(),
        &(
            "421 4.7.0 mx.relayguard.test Error: too many errors".to_owned(),
            true
        )
    );
    rg.wait_for_log("too many errors after NOOP from unknown[127.0.0.1]", WAIT);
    pf.wait_for_log("too many errors after NOOP from unknown[127.0.0.1]", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_security_options_filter_what_is_offered_and_accepted() {
    let options = [
        ("smtpd_sasl_auth_enable", "yes"),
        ("smtpd_sasl_security_options", "noanonymous, noplaintext"),
        ("broken_sasl_auth_clients", "yes"),
    ];
    let (upstream, pf) = sasl_upstream_and_judge(&options);
    let rg = relayguard(&upstream, &options);
    let mut ours = Client::connect(rg.addr("smtp")).await;
    ours.greeting().await;
    let mut theirs = judge(&pf).await;
    let auth = |k: &Vec<String>| -> Vec<String> {
        k.iter()
            .filter(|l| l.starts_with("AUTH"))
            .cloned()
            .collect()
    };
    let (a, b) = (keywords(&mut ours).await, keywords(&mut theirs).await);
    assert_eq!(auth(&a), ["AUTH CRAM-MD5", "AUTH=CRAM-MD5"]);
    assert_eq!(auth(&a), auth(&b));
    let plain = format!("AUTH PLAIN {}", auth_plain("alice", "secret"));
    for line in [plain.as_str(), "AUTH anonymous"] {
        let (x, y) = (ours.cmd(line).await, theirs.cmd(line).await);
        assert_eq!(x, y, "{line}");
        assert_eq!(
            x,
            "535 5.7.8 Error: authentication failed: Invalid authentication mechanism"
        );
    }
    let log = "SASL PLAIN authentication failed: Invalid authentication mechanism, sasl_username=(unavailable)";
    rg.wait_for_log(log, WAIT);
    pf.wait_for_log(log, WAIT);
    // Without the options' filter, PLAIN works through relayguard as before.
    let open = relayguard(&upstream, &[("smtpd_sasl_auth_enable", "yes")]);
    let mut c = Client::connect(open.addr("smtp")).await;
    c.greeting().await;
    let k = keywords(&mut c).await;
    assert_eq!(auth(&k), ["AUTH PLAIN LOGIN CRAM-MD5"], "noanonymous");
    assert_eq!(c.cmd(&plain).await, "235 2.7.0 Authentication successful");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_ehlo_keywords_are_not_offered_and_their_commands_refused() {
    let discard = [
        ("smtpd_discard_ehlo_keywords", "dsn, chunking, starttls"),
        (
            "smtpd_discard_ehlo_keyword_address_maps",
            "cidr:{{192.0.2.0/24 silent-discard, pipelining}}",
        ),
    ];
    let mut jb = Postfix::builder().starttls(true);
    for (k, v) in discard {
        jb = jb.param(k, v);
    }
    let pf = jb.start();
    let rg = relayguard(&pf, &discard);
    let mut ours = Client::connect(rg.addr("smtp")).await;
    ours.greeting().await;
    let mut theirs = judge(&pf).await;
    let (a, b) = (keywords(&mut ours).await, keywords(&mut theirs).await);
    for k in ["DSN", "CHUNKING", "STARTTLS"] {
        assert!(!a.iter().chain(&b).any(|l| l == k), "{k}: {a:?} {b:?}");
    }
    assert!(a.contains(&"PIPELINING".to_owned()), "{a:?}");
    let lines = [
        "STARTTLS",
        "MAIL FROM:<s@sender.example> RET=FULL",
        "MAIL FROM:<s@sender.example>",
        "RCPT TO:<u@local.test> NOTIFY=NEVER",
        "RSET",
    ];
    assert_eq!(
        transcript(&mut ours, &lines).await,
        transcript(&mut theirs, &lines).await
    );
    // BDAT where CHUNKING was discarded: Postfix hangs up rather than read raw content.
    for c in [&mut ours, &mut theirs] {
        assert_eq!(
            c.cmd("BDAT 5 LAST").await,
            "521 5.5.1 Error: command not implemented"
        );
        c.expect_closed().await;
    }
    let log = "discarding EHLO keywords: STARTTLS DSN CHUNKING";
    rg.wait_for_log(log, WAIT);
    pf.wait_for_log(log, WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_unauth_pipelining_ends_the_session_as_postfix_does() {
    let forbid = [("smtpd_forbid_unauth_pipelining", "yes")];
    let pf = Postfix::builder().param(forbid[0].0, forbid[0].1).start();
    let rg = relayguard(&pf, &forbid);
    let mut ours = Client::connect(rg.addr("smtp")).await;
    ours.greeting().await;
    let mut theirs = judge(&pf).await;
    for c in [&mut ours, &mut theirs] {
        // MAIL and RCPT may be pipelined after EHLO; NOOP must end a group.
        assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
        c.send_raw(b"MAIL FROM:<s@sender.example>\r\nRCPT TO:<u@local.test>\r\n")
            .await;
        assert_eq!(c.read_reply().await, "250 2.1.0 Ok");
        c.read_reply().await;
        c.send_raw(b"NOOP\r\nRSET\r\n").await;
        assert_eq!(
            c.read_reply().await,
            "554 5.5.0 Error: SMTP protocol synchronization"
        );
        c.expect_closed().await;
    }
    let log = "improper command pipelining after NOOP from unknown[127.0.0.1]: RSET\\r\\n";
    rg.wait_for_log(log, WAIT);
    pf.wait_for_log(log, WAIT);
}

/// Connects and talks before the greeting; the first reply and whether the server closed
/// after it. The bytes race the server's peek, so a server that greeted first is tried again
/// (a few times at most).
async fn talk_first(addr: std::net::SocketAddr) -> (String, bool) {
    for _ in 0..10 {
        let mut c = Client::connect(addr).await;
        c.send_raw(b"EHLO client.example\r\n").await;
        let first = c.read_reply().await;
        if first.starts_with("220 ") {
            continue;
        }
        let closed = c.try_read_reply().await.map_or(true, |r| r.is_none());
        return (first, closed);
    }
    panic!("the server always greeted before the client's bytes arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talking_before_the_greeting_is_refused_when_pipelining_is_forbidden() {
    let forbid = [("smtpd_forbid_unauth_pipelining", "yes")];
    // A fresh smtpd per connection (max_use = 1): one that is already waiting in accept()
    // greets before the client's bytes arrive.
    let pf = Postfix::builder()
        .param(forbid[0].0, forbid[0].1)
        .param("max_use", "1")
        .start();
    let rg = relayguard(&pf, &forbid);
    let ours = talk_first(rg.addr("smtp")).await;
    let theirs = talk_first(pf.addr_xclient()).await;
    assert_eq!(ours, theirs);
    assert_eq!(
        ours,
        (
            "554 5.5.0 Error: SMTP protocol synchronization".to_owned(),
            true
        )
    );
    let log = "improper command pipelining after CONNECT from unknown[127.0.0.1]: EHLO client.example\\r\\n";
    rg.wait_for_log(log, WAIT);
    pf.wait_for_log(
        "improper command pipelining after CONNECT from localhost[127.0.0.1]: EHLO client.example\\r\\n",
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_security_options_apply_once_the_session_is_encrypted() {
    let options = [
        ("smtpd_sasl_auth_enable", "yes"),
        ("smtpd_sasl_security_options", "noplaintext, noanonymous"),
        ("smtpd_sasl_tls_security_options", "noanonymous"),
    ];
    let (upstream, pf) = sasl_upstream_and_judge(&options);
    let rg = relayguard(&upstream, &options);
    let mut ours = Client::connect(rg.addr("smtp")).await.with_ca(rg.ca_path());
    ours.greeting().await;
    let mut theirs = judge(&pf).await.with_ca(pf.ca_path().unwrap());
    let auth = |k: Vec<String>| -> Vec<String> {
        k.into_iter().filter(|l| l.starts_with("AUTH")).collect()
    };
    let plain = format!("AUTH PLAIN {}", auth_plain("alice", "secret"));
    for c in [&mut ours, &mut theirs] {
        assert_eq!(auth(keywords(c).await), ["AUTH CRAM-MD5"]);
        assert_eq!(
            c.cmd(&plain).await,
            "535 5.7.8 Error: authentication failed: Invalid authentication mechanism"
        );
        assert!(c.starttls("localhost").await.starts_with("220 "));
        assert_eq!(auth(keywords(c).await), ["AUTH PLAIN LOGIN CRAM-MD5"]);
        assert_eq!(c.cmd(&plain).await, "235 2.7.0 Authentication successful");
    }
}

/// smtpd_sasl_local_domain is the realm Postfix hands its SASL server; Cyrus SASL (Postfix's
/// default smtpd_sasl_type) reports a login without a domain in that realm, and that is the
/// name relayguard logs and checks sender ownership against. (Dovecot ignores the realm, so a
/// Postfix with Dovecot cannot judge this one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sasl_local_domain_qualifies_the_login_name() {
    let upstream = Postfix::builder().sasl(true).start();
    let policy = [
        ("smtpd_sasl_auth_enable", "yes"),
        (
            "smtpd_sender_login_maps",
            "inline:{alice@sender.example=alice@example.com}",
        ),
        ("smtpd_sender_restrictions", "reject_sender_login_mismatch"),
    ];
    let mut with_domain = policy.to_vec();
    with_domain.push(("smtpd_sasl_local_domain", "example.com"));
    let mut replies = Vec::new();
    for overrides in [&policy[..], &with_domain[..]] {
        let rg = relayguard(&upstream, overrides);
        let mut c = Client::connect(rg.addr("smtp")).await;
        c.greeting().await;
        c.ehlo("client.example").await;
        assert_eq!(
            c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "secret")))
                .await,
            "235 2.7.0 Authentication successful"
        );
        assert_eq!(
            c.cmd("MAIL FROM:<alice@sender.example>").await,
            "250 2.1.0 Ok"
        );
        replies.push(c.cmd("RCPT TO:<u@local.test>").await);
        if replies.len() == 2 {
            assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
            let queued = c.cmd("Subject: realm\r\n\r\nhi\r\n.").await;
            assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
            rg.wait_for_log("sasl_method=PLAIN, sasl_username=alice@example.com", WAIT);
        }
        c.cmd("QUIT").await;
    }
    assert_eq!(
        replies,
        [
            "553 5.7.1 <alice@sender.example>: Sender address rejected: not owned by user alice",
            "250 2.1.5 Ok"
        ]
    );
}
