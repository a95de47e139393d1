//! The session end to end against the built-in Maildir upstream: the out-of-the-box path,
//! exact replies for the commands relayguard answers itself, relay control through a PROXY
//! header, and real clients (swaks, smtplib).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::external::{Smtplib, Swaks};
use support::relayguard::{Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(15);
const HOST: &str = "relayguard.test";

fn relayguard() -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .start()
}

/// A client that appears as `addr` through the trusted PROXY listener.
async fn client_from(rg: &Relayguard, addr: &str) -> Client {
    let c = Client::connect_as(rg.addr("lb"), addr).await;
    let greeting = c.greeting.clone().unwrap();
    assert_eq!(greeting, format!("220 {HOST} ESMTP relayguard"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_and_answers_like_postfix() {
    let rg = relayguard();
    let mut c = Client::connect(rg.addr("smtp")).await;
    assert_eq!(c.greeting().await, format!("220 {HOST} ESMTP relayguard"));
    let ehlo = c.ehlo("client.example").await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert_eq!(lines[0], format!("250-{HOST}"));
    assert!(lines.contains(&"250-PIPELINING"), "{ehlo}");
    assert!(lines.contains(&"250-STARTTLS"), "{ehlo}");
    assert!(
        !ehlo.contains("XCLIENT"),
        "XCLIENT must never be offered: {ehlo}"
    );
    assert!(
        !ehlo.contains("AUTH"),
        "AUTH is not enabled on this listener: {ehlo}"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(
        c.cmd("FOO bar").await,
        "500 5.5.2 Error: command not recognized"
    );
    assert_eq!(
        c.cmd("XCLIENT ADDR=1.2.3.4").await,
        "500 5.5.2 Error: command not recognized"
    );
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Error: need RCPT command");
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("MAIL FROM:<a@sender.example>").await,
        "503 5.5.1 Error: nested MAIL command"
    );
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    c.send_raw(b"Subject: first\r\n\r\n..dotted line\r\nbody\r\n.\r\n")
        .await;
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    let msg = rg.maildir().wait_for_containing("Subject: first", WAIT);
    assert_eq!(msg.body(), b".dotted line\r\nbody\r\n");
    let received = msg.received();
    assert!(
        received[0].starts_with("from client.example (unknown [127.0.0.1])"),
        "{received:?}"
    );
    rg.wait_for_log("postfix/smtpd", WAIT);
    rg.wait_for_log("connect from unknown[127.0.0.1]", WAIT);
    rg.wait_for_log("disconnect from unknown[127.0.0.1] ehlo=1 mail=1/2 rcpt=1/2 data=1/2 noop=1 quit=1 unknown=0/2", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_clients_may_not_relay() {
    let rg = relayguard();
    let mut c = client_from(&rg, "192.0.2.7").await;
    c.ehlo("c.example").await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<x@elsewhere.example>").await,
        "454 4.7.1 <x@elsewhere.example>: Relay access denied"
    );
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    rg.wait_for_log(
        "NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 454 4.7.1 <x@elsewhere.example>: Relay access denied; from=<a@b.example> to=<x@elsewhere.example> proto=ESMTP helo=<c.example>",
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_requires_proxy_refuses_a_bare_client() {
    let rg = relayguard();
    let mut c = Client::connect(rg.addr("lb")).await;
    c.send_raw(b"EHLO c.example\r\n").await;
    assert_eq!(
        c.read_reply().await,
        format!("421 4.3.0 {HOST} Server local error")
    );
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_and_smtplib_deliver() {
    let rg = relayguard();
    let t = Swaks::new(rg.addr("smtp"))
        .arg("--to")
        .arg("u@local.test")
        .arg("--header")
        .arg("Subject: by swaks")
        .run();
    assert!(t.success(), "{}", t.output);
    rg.maildir().wait_for_containing("Subject: by swaks", WAIT);

    let t = Smtplib::new(rg.addr("smtp"))
        .envelope("a@sender.example", &["u@local.test"])
        .message("Subject: by smtplib\r\n\r\nhello\r\n")
        .run();
    assert!(t.success(), "{}", t.output);
    rg.maildir()
        .wait_for_containing("Subject: by smtplib", WAIT);
}

/// relayguard over the Maildir upstream, refusing mail from blocked@sender.example at the end
/// of data.
fn blocking_at_end_of_data() -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .policy(
            "smtpd_end_of_data_restrictions",
            "check_sender_access inline:{ blocked@sender.example=REJECT }",
        )
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .start()
}

/// A client of [`blocking_at_end_of_data`] whose first message was just refused at its end.
async fn refused_at_end_of_data(rg: &Relayguard) -> Client {
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(
        data_reply(
            &mut c,
            "blocked@sender.example",
            b"Subject: refused at the end\r\n\r\nbody\r\n.\r\n"
        )
        .await,
        "554 5.7.1 <blocked@sender.example>: Sender address rejected: Access denied"
    );
    c
}

/// MAIL from `from`, RCPT u@local.test, DATA, then `body` as sent (its terminator included):
/// the reply to the end of data.
async fn data_reply(c: &mut Client, from: &str, body: &[u8]) -> String {
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    c.send_raw(body).await;
    c.read_reply().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_data_policy_decides_before_the_upstream_sees_the_end() {
    let rg = blocking_at_end_of_data();
    let mut c = refused_at_end_of_data(&rg).await;
    let ok = c
        .send_mail(
            "fine@sender.example",
            &["u@local.test"],
            "Subject: accepted\n\nbody\n",
        )
        .await;
    assert!(ok.starts_with("250 2.0.0 Ok: queued as "), "{ok}");
    let delivered = rg.maildir().wait_for(1, WAIT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = rg.maildir().messages();
    assert_eq!(all.len(), 1, "only the accepted message arrives");
    assert!(delivered[0].text().contains("Subject: accepted"));
    rg.wait_for_log(
        "reject: END-OF-MESSAGE from unknown[127.0.0.1]: 554 5.7.1 <blocked@sender.example>",
        WAIT,
    );
}

/// A DATA that relayguard refuses ends the upstream leg mid-body, the only way to abort a
/// message in SMTP. The Maildir upstream takes that as a client gone, as Postfix's `lost
/// connection after DATA` is: no warning, no message, the partial file removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_data_leaves_no_maildir_warning() {
    let rg = blocking_at_end_of_data();
    // Refused by the end-of-data policy, then for a bare LF in the body.
    let mut c = refused_at_end_of_data(&rg).await;
    assert_eq!(
        data_reply(
            &mut c,
            "a@sender.example",
            b"Subject: bare\r\n\r\nbare\nlf\r\n.\r\n"
        )
        .await,
        format!("550 5.5.2 {HOST} Error: bare <LF> received")
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    rg.wait_for_log("disconnect from unknown[127.0.0.1]", WAIT);
    assert!(rg.maildir().messages().is_empty());
    // The agent's task removes the partial file once it sees the leg gone, a moment after
    // the session moved on; a warning would come right after that.
    let deadline = std::time::Instant::now() + WAIT;
    let tmp = rg.maildir_path().join("tmp");
    while std::fs::read_dir(&tmp).unwrap().next().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "partial files left in tmp/"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let noise: Vec<String> = rg
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("maildir upstream") || l.contains("unexpected end of file"))
        .collect();
    assert!(noise.is_empty(), "{noise:#?}");
}

/// The Maildir agent treats XCLIENT as Postfix does: one without HELO clears the HELO, so a
/// client that never said HELO is not written down under relayguard's EHLO name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_helo_is_received_without_one() {
    let rg = relayguard();
    let mut c = Client::greeted(rg.addr("smtp")).await;
    let ok = c
        .send_mail(
            "a@sender.example",
            &["u@local.test"],
            "Subject: no helo\n\nx\n",
        )
        .await;
    assert!(ok.starts_with("250 2.0.0 Ok: queued as "), "{ok}");
    let msg = rg.maildir().wait_for_containing("Subject: no helo", WAIT);
    let received = &msg.received()[0];
    assert!(
        received.starts_with(
            "from unknown (unknown [127.0.0.1]) by maildir.relayguard (relayguard maildir) with SMTP id "
        ),
        "{received}"
    );
}
