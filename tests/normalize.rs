//! `smtpd_forbid_bare_newline = normalize`: bare LF and bare CR in a body become CRLF line ends
//! on the way to the upstream, and a `<LF>.<LF>` inside the body is text, not an end of data.
//! Proven against the built-in Maildir (exact bytes) and against a real Postfix 3.7 set to
//! `smtpd_forbid_bare_newline = reject`, which would refuse the message if one bare LF reached it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role};

const WAIT: Duration = Duration::from_secs(15);
const HOST: &str = "relayguard.test";

/// Bare LF lines, a bare CR, and a `\n.\n` that a lenient MTA would take for the end, followed
/// by what would be a smuggled second transaction.
const BODY: &[u8] = b"Subject: normalized\r\n\r\nline1\nline2\rline3\n.\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@local.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.line4\r\n";

/// What the recipient must get: one message, every line end CRLF, the dot line kept as text.
const EXPECTED_BODY: &[u8] = b"line1\r\nline2\r\nline3\r\n.\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@local.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nline4\r\n";

async fn send(rg: &Relayguard) {
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    let mut bytes = BODY.to_vec();
    bytes.extend_from_slice(b".\r\n");
    c.send_raw(&bytes).await;
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    // In step: the next command is a command, and a second message follows the first.
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    let reply = c
        .send_mail(
            "a@sender.example",
            &["u@local.test"],
            "Subject: second\n\nx\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
}

fn builder() -> support::relayguard::RelayguardBuilder {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .policy("smtpd_forbid_bare_newline", "normalize")
        .listener("smtp", Role::Smtp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_gets_crlf_and_one_message() {
    let rg = builder().upstream_maildir().start();
    send(&rg).await;
    let messages = rg.maildir().wait_for(2, WAIT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages_after = rg.maildir().messages();
    assert_eq!(messages_after.len(), 2, "exactly the two messages sent");
    let first = messages
        .iter()
        .find(|m| m.subject().as_deref() == Some("normalized"))
        .expect("the normalized message");
    assert_eq!(
        String::from_utf8_lossy(first.body()),
        String::from_utf8_lossy(EXPECTED_BODY)
    );
    assert!(messages
        .iter()
        .all(|m| m.subject().as_deref() != Some("smuggled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_postfix_accepts_the_normalized_body() {
    // reject: one bare LF reaching Postfix would give 550 5.5.2 ... bare <LF> received.
    let pf = Postfix::builder()
        .param("smtpd_forbid_bare_newline", "reject")
        .param("smtpd_forbid_bare_newline_exclusions", "")
        .start();
    // The same body straight to Postfix is refused: the check below could fail.
    let mut direct = Client::after_ehlo(pf.addr_xclient()).await;
    assert_eq!(
        direct.cmd("MAIL FROM:<a@sender.example>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(direct.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(
        direct.cmd("DATA").await,
        "354 End data with <CR><LF>.<CR><LF>"
    );
    direct.send_raw(&[BODY, b".\r\n"].concat()).await;
    assert_eq!(
        direct.read_reply().await,
        "550 5.5.2 mx.relayguard.test Error: bare <LF> received"
    );
    drop(direct);

    let rg = builder().upstream_postfix(&pf, Identity::Xclient).start();
    send(&rg).await;
    pf.maildir().wait_for(2, WAIT);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let messages = pf.maildir().messages();
    assert_eq!(messages.len(), 2, "exactly the two messages sent");
    let first = messages
        .iter()
        .find(|m| m.subject().as_deref() == Some("normalized"))
        .expect("the normalized message");
    // virtual(8) stores LF line ends; the lines are what matters here.
    let expected = String::from_utf8_lossy(EXPECTED_BODY).replace("\r\n", "\n");
    assert_eq!(String::from_utf8_lossy(first.body()), expected);
    let log = pf.smtpd_log().join("\n");
    assert_eq!(
        log.matches("bare <LF> received").count(),
        1,
        "only the direct one: {log}"
    );
}
