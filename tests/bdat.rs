//! BDAT (CHUNKING): offered exactly when the upstream offers it, chunks streamed through as
//! counted bytes to a real Postfix, refusals that still read the chunk so the session stays in
//! step, and nothing inside a chunk ever read as a command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_reach_postfix_and_nothing_in_them_is_a_command() {
    let pf = Postfix::builder().start();
    let rg = through_postfix(&pf, "10240000");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(
        c.capabilities.iter().any(|k| k == "CHUNKING"),
        "{:?}",
        c.capabilities
    );
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
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
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    let msg = pf.maildir().wait_for_containing("Subject: chunked", WAIT);
    // Postfix's virtual(8) stores LF line ends.
    let text = msg.text().replace('\r', "");
    assert!(
        text.contains("line one\n.\nMAIL FROM:<evil@x.example>\nline two"),
        "{text}"
    );
    rg.wait_for_log("client=unknown[127.0.0.1]", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_chunks_are_read_and_dropped() {
    let pf = Postfix::builder().start();
    let rg = through_postfix(&pf, "100");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    // No transaction: the chunk is read whole, and the command inside it never runs.
    assert_eq!(
        chunk(&mut c, b"RCPT TO:<u@local.test>\r\n", false).await,
        "503 5.5.1 Error: need RCPT command"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        chunk(&mut c, b"hello", true).await,
        "554 5.5.1 Error: no valid recipients"
    );
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    let big = vec![b'x'; 200];
    assert_eq!(
        chunk(&mut c, &big, true).await,
        "552 5.3.4 Chunk exceeds message size limit"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pf.maildir().messages().is_empty(), "nothing was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_offered_when_the_upstream_has_no_chunking() {
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .start();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(
        !c.capabilities.iter().any(|k| k == "CHUNKING"),
        "{:?}",
        c.capabilities
    );
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(
        chunk(&mut c, b"QUIT\r\n", true).await,
        "502 5.5.1 Error: command not implemented"
    );
    assert_eq!(
        c.cmd("NOOP").await,
        "250 2.0.0 Ok",
        "the chunk was read, not executed"
    );
}
