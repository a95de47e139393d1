//! BDAT (CHUNKING): offered to a session when its own upstream leg offers it (or, before the leg
//! is open, the upstream as last seen), chunks streamed as counted bytes to a real Postfix or
//! translated into DATA for a leg without CHUNKING, refusals that still read the chunk so the
//! session stays in step, Postfix's hang-ups, and nothing inside a chunk ever read as a command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::client::Client;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role};

const WAIT: Duration = Duration::from_secs(20);

fn through_postfix(pf: &Postfix, size_limit: &str) -> Relayguard {
    Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy("message_size_limit", size_limit)
        .listener("smtp", Role::Smtp)
        .upstream_postfix(pf, Identity::Xclient)
        .start()
}

async fn chunk(c: &mut Client, data: &[u8], last: bool) -> String {
    let mut bytes =
        format!("BDAT {}{}\r\n", data.len(), if last { " LAST" } else { "" }).into_bytes();
    bytes.extend_from_slice(data);
    c.send_raw(&bytes).await;
    c.read_reply().await
}

/// A session in a transaction that was offered CHUNKING (relayguard probed an upstream with
/// it) while its leg has none (Postfix dropped it since).
async fn offered_chunking_on_a_leg_without_it() -> (Postfix, Relayguard, Client) {
    let pf = Postfix::builder().start();
    let rg = through_postfix(&pf, "10240000");
    set_chunking(&pf, false);
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(offers_chunking(&c), "{:?}", c.capabilities);
    open_transaction(&mut c).await;
    (pf, rg, c)
}

/// Sends `bytes`, expects `reply` for the first command and then the connection closed.
async fn expect_hang_up(mut c: Client, bytes: &[u8], reply: &str) {
    c.send_raw(bytes).await;
    assert_eq!(c.read_reply().await, reply);
    c.expect_closed().await;
}

/// MAIL and RCPT, both accepted.
async fn open_transaction(c: &mut Client) {
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
}

/// Turns Postfix's CHUNKING on or off for the sessions it starts from now on.
fn set_chunking(pf: &Postfix, on: bool) {
    let discard = if on { "" } else { "chunking" };
    pf.postconf(&[("smtpd_discard_ehlo_keywords", discard)]);
    pf.reload();
}

fn offers_chunking(c: &Client) -> bool {
    c.capabilities.iter().any(|k| k == "CHUNKING")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_reach_postfix_and_nothing_in_them_is_a_command() {
    let pf = Postfix::builder().start();
    let rg = through_postfix(&pf, "10240000");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(offers_chunking(&c), "{:?}", c.capabilities);
    open_transaction(&mut c).await;
    let first = b"Subject: chunked\r\n\r\nline one\r\n.\r\nMAIL FROM:<evil@x.example>\r\n";
    assert_eq!(
        chunk(&mut c, first, false).await,
        format!("250 2.0.0 Ok: {} bytes", first.len())
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Error: DATA after BDAT");
    assert_eq!(
        c.cmd("RCPT TO:<v@local.test>").await,
        "503 5.5.1 Error: RCPT after BDAT"
    );
    let reply = chunk(&mut c, b"line two\r\n", true).await;
    assert!(
        reply.starts_with("250 2.0.0 Ok: ") && reply.contains(" queued as "),
        "{reply}"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let msg = pf.maildir().wait_for_containing("Subject: chunked", WAIT);
    // Postfix's virtual(8) stores LF line ends.
    let text = msg.text().replace('\r', "");
    assert!(
        text.contains("line one\n.\nMAIL FROM:<evil@x.example>\nline two"),
        "{text}"
    );
    rg.wait_for_log("client=unknown[127.0.0.1]", WAIT);
    let leg = pf.wait_for_log("disconnect from unknown[127.0.0.1]", WAIT);
    assert!(leg.contains(" bdat=2 "), "the leg took BDAT: {leg}");
}

/// The refusals Postfix answers after reading the chunk, in Postfix's order; run against
/// Postfix itself and through relayguard, which must answer alike.
async fn refusal_script(addr: SocketAddr) -> Vec<String> {
    let mut c = Client::after_ehlo(addr).await;
    let mut replies = Vec::new();
    // No transaction: the chunk is read whole, and the command inside it never runs; until
    // the LAST chunk (or RSET) every chunk is discarded.
    replies.push(chunk(&mut c, b"RCPT TO:<u@local.test>\r\n", false).await);
    replies.push(c.cmd("NOOP").await);
    replies.push(c.cmd("MAIL FROM:<a@sender.example>").await);
    replies.push(chunk(&mut c, b"QUIT\r\n", false).await);
    replies.push(chunk(&mut c, b"QUIT\r\n", true).await);
    replies.push(c.cmd("MAIL FROM:<a@sender.example>").await);
    // No recipient: the LAST chunk ends the transaction.
    replies.push(chunk(&mut c, b"hello", true).await);
    replies.push(c.cmd("RCPT TO:<u@local.test>").await);
    replies.push(c.cmd("MAIL FROM:<a@sender.example>").await);
    replies.push(c.cmd("RCPT TO:<u@local.test>").await);
    // An empty chunk that is not the last, then one past the size limit.
    replies.push(chunk(&mut c, b"", false).await);
    replies.push(chunk(&mut c, b"x", false).await);
    replies.push(c.cmd("RSET").await);
    replies.push(c.cmd("MAIL FROM:<a@sender.example>").await);
    replies.push(c.cmd("RCPT TO:<u@local.test>").await);
    replies.push(chunk(&mut c, &vec![b'x'; 2000], true).await);
    replies.push(c.cmd("NOOP").await);
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_chunks_are_read_and_dropped_as_postfix_does() {
    let pf = Postfix::builder()
        .param("message_size_limit", "1000")
        .start();
    let rg = through_postfix(&pf, "1000");
    let expected = [
        "503 5.5.1 Error: need RCPT command",
        "250 2.0.0 Ok",
        "503 5.5.1 Error: MAIL after BDAT",
        "551 5.0.0 Discarded 6 bytes after earlier error",
        "551 5.0.0 Discarded 6 bytes after earlier error",
        "250 2.1.0 Ok",
        "554 5.5.1 Error: no valid recipients",
        "503 5.5.1 Error: need MAIL command",
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "551 5.7.1 Null BDAT request",
        "551 5.0.0 Discarded 1 bytes after earlier error",
        "250 2.0.0 Ok",
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "552 5.3.4 Chunk exceeds message size limit",
        "250 2.0.0 Ok",
    ];
    assert_eq!(refusal_script(pf.addr_xclient()).await, expected, "Postfix");
    assert_eq!(
        refusal_script(rg.addr("smtp")).await,
        expected,
        "relayguard"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pf.maildir().messages().is_empty(), "nothing was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_not_offered_gets_521_and_the_connection_closes() {
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .start();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(!offers_chunking(&c), "{:?}", c.capabilities);
    open_transaction(&mut c).await;
    // What follows the BDAT line is message content: read as commands it would run.
    let bdat = b"BDAT 46 LAST\r\nRSET\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<v@local.test>\r\n";
    expect_hang_up(c, bdat, "521 5.5.1 Error: command not implemented").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bdat_gets_521_and_the_connection_closes() {
    let pf = Postfix::builder().start();
    let rg = through_postfix(&pf, "10240000");
    for line in [
        "BDAT 5 X",
        "BDAT x",
        "BDAT",
        "BDAT -1 LAST",
        "BDAT 5 LAST x",
    ] {
        let mut c = Client::after_ehlo(rg.addr("smtp")).await;
        open_transaction(&mut c).await;
        let bytes = format!("{line}\r\nRSET\r\nDATA\r\n");
        expect_hang_up(c, bytes.as_bytes(), "521 5.5.4 Syntax: BDAT count [LAST]").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_become_data_on_a_leg_without_chunking() {
    let (pf, _rg, mut c) = offered_chunking_on_a_leg_without_it().await;
    // Lines that begin with a dot (stuffed on the DATA leg), a line and a CRLF split across
    // chunks, and no line end at the very end.
    let parts: [&[u8]; 3] = [
        b"Subject: translated\r\n\r\n.leading dot\r\n.\r\nline spanning",
        b" chunks\r",
        b"\n..two dots\r\nno final newline",
    ];
    for part in &parts[..2] {
        assert_eq!(
            chunk(&mut c, part, false).await,
            format!("250 2.0.0 Ok: {} bytes", part.len())
        );
    }
    let reply = chunk(&mut c, parts[2], true).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    // The leg is open now and has no CHUNKING: this session's next EHLO does not offer it.
    c.ehlo("client.example").await;
    assert!(!offers_chunking(&c), "{:?}", c.capabilities);
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let msg = pf
        .maildir()
        .wait_for_containing("Subject: translated", WAIT);
    assert_eq!(
        String::from_utf8_lossy(msg.body()),
        ".leading dot\n.\nline spanning chunks\n..two dots\nno final newline\n"
    );
    let legs = pf.wait_for_log("data=1", WAIT);
    assert!(!legs.contains("bdat"), "{legs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_never_reaches_a_leg_without_chunking_when_another_has_it() {
    let pf = Postfix::builder().start();
    let rg = through_postfix(&pf, "10240000");
    let mut a = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(offers_chunking(&a));
    // A's leg opens while Postfix has no CHUNKING ...
    set_chunking(&pf, false);
    open_transaction(&mut a).await;
    // ... and B's after it is back, so the upstream as last seen offers CHUNKING again.
    set_chunking(&pf, true);
    let mut b = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(b.cmd("MAIL FROM:<b@sender.example>").await, "250 2.1.0 Ok");
    // A chunk that Postfix, had it been sent BDAT without CHUNKING, would read as commands:
    // a new transaction past relayguard's relay policy.
    let content = b"Subject: shared\r\n\r\nRSET\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@elsewhere.example>\r\n";
    let reply = chunk(&mut a, content, true).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(a.cmd("QUIT").await, "221 2.0.0 Bye");
    let msg = pf.maildir().wait_for_containing("Subject: shared", WAIT);
    assert!(
        msg.text().contains("RCPT TO:<victim@elsewhere.example>"),
        "the chunk is the message's text"
    );
    assert_eq!(b.cmd("QUIT").await, "221 2.0.0 Bye");
    let leg = pf.wait_for_log("data=1", WAIT);
    assert!(!leg.contains("bdat="), "{leg}");
    let log = pf.smtpd_log().join("\n");
    assert!(!log.contains("evil@x.example"), "{log}");
    assert!(!log.contains("bdat="), "no leg got BDAT: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_normalized_under_forbid_bare_newline_normalize() {
    let pf = Postfix::builder()
        .param("smtpd_forbid_bare_newline", "reject")
        .param("smtpd_forbid_bare_newline_exclusions", "")
        .start();
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy("smtpd_forbid_bare_newline", "normalize")
        .listener("smtp", Role::Smtp)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    for chunking in [true, false] {
        set_chunking(&pf, chunking);
        let mut c = Client::after_ehlo(rg.addr("smtp")).await;
        open_transaction(&mut c).await;
        let subject = format!("Subject: normalized {chunking}\r\n\r\n");
        let reply = chunk(&mut c, subject.as_bytes(), false).await;
        assert_eq!(reply, format!("250 2.0.0 Ok: {} bytes", subject.len()));
        assert_eq!(
            chunk(&mut c, b"line1\nline2\r", false).await,
            "250 2.0.0 Ok: 12 bytes"
        );
        let reply = chunk(&mut c, b"line3\n.\nMAIL FROM:<evil@x.example>\r", true).await;
        // Postfix's BDAT LAST reply names its byte count; DATA's does not.
        assert!(
            reply.starts_with("250 2.0.0 Ok: ") && reply.contains("queued as "),
            "{reply}"
        );
        let msg = pf
            .maildir()
            .wait_for_containing(&format!("normalized {chunking}"), WAIT);
        assert_eq!(
            String::from_utf8_lossy(msg.body()),
            "line1\nline2\nline3\n.\nMAIL FROM:<evil@x.example>\n"
        );
    }
    let log = pf.smtpd_log().join("\n");
    assert!(!log.contains("bare <LF>"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rset_between_chunks_on_a_data_leg_abandons_the_message() {
    let (pf, _rg, mut c) = offered_chunking_on_a_leg_without_it().await;
    let part = b"Subject: abandoned\r\n\r\nhalf a message\r\n";
    assert_eq!(
        chunk(&mut c, part, false).await,
        format!("250 2.0.0 Ok: {} bytes", part.len())
    );
    // The leg is inside DATA: an RSET (or EHLO) sent there would be message text.
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    open_transaction(&mut c).await;
    let reply = chunk(&mut c, b"Subject: after rset\r\n\r\nwhole\r\n", true).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let msg = pf
        .maildir()
        .wait_for_containing("Subject: after rset", WAIT);
    assert!(!msg.text().contains("RSET"), "{}", msg.text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pf.maildir().messages().len(),
        1,
        "the abandoned one is not delivered"
    );
}
