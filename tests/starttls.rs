//! TLS on the client side: STARTTLS done by relayguard itself (commands pipelined behind it are
//! discarded), TLS 1.2 and 1.3 with openssl s_client, submission requiring TLS, implicit TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::client::Client;
use support::relayguard::{Relayguard, Role};

const HOST: &str = "relayguard.test";

fn relayguard() -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .listener("submission", Role::Submission)
        .listener("submissions", Role::Submissions)
        .upstream_maildir()
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelined_behind_starttls_are_discarded() {
    let rg = relayguard();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(
        c.capabilities.iter().any(|k| k == "STARTTLS"),
        "{:?}",
        c.capabilities
    );
    c.send_raw(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
        .await;
    assert_eq!(c.read_reply().await, "220 2.0.0 Ready to start TLS");
    c.tls_handshake("localhost").await;
    // The first reply inside TLS answers the client's next command, not the injected MAIL.
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    let ehlo = c.ehlo("c.example").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(
        c.cmd("STARTTLS").await,
        "554 5.5.1 Error: TLS already active"
    );
    let reply = c
        .send_mail(
            "a@sender.example",
            &["u@local.test"],
            "Subject: over tls\n\nhi\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    rg.maildir()
        .wait_for_containing("Subject: over tls", Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_requires_tls_first() {
    let rg = relayguard();
    let mut c = Client::after_ehlo(rg.addr("submission")).await;
    assert!(c.capabilities.iter().any(|k| k == "STARTTLS"));
    assert!(
        !c.capabilities.iter().any(|k| k.starts_with("AUTH")),
        "no AUTH before TLS: {:?}",
        c.capabilities
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@sender.example>").await,
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==").await,
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    assert_eq!(
        c.starttls("localhost").await,
        "220 2.0.0 Ready to start TLS"
    );
    c.ehlo("c.example").await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_on_submissions() {
    let rg = relayguard();
    let mut c = Client::connect_tls(rg.addr("submissions"), "localhost", rg.ca_path()).await;
    assert_eq!(c.greeting().await, format!("220 {HOST} ESMTP relayguard"));
    let ehlo = c.ehlo("c.example").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let reply = c
        .send_mail(
            "a@sender.example",
            &["u@local.test"],
            "Subject: implicit\n\nhi\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
}

/// openssl s_client negotiates each TLS version and verifies the chain against the dev CA.
/// It sends QUIT and waits (`-ign_eof`) until relayguard closes, so the transcript is whole.
fn s_client(port: u16, args: &[&str], ca: &std::path::Path) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-crlf",
            "-ign_eof",
        ])
        .args(args)
        .args([
            "-CAfile",
            ca.to_str().unwrap(),
            "-verify_return_error",
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client runs");
    child.stdin.take().unwrap().write_all(b"QUIT\n").unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openssl_s_client_negotiates_tls12_and_tls13() {
    let rg = relayguard();
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let text = s_client(rg.port("smtp"), &["-starttls", "smtp", flag], rg.ca_path());
        assert!(
            text.contains(&format!("Protocol  : {name}")) || text.contains(&format!("New, {name}")),
            "{flag}: {text}"
        );
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{flag}: {text}"
        );
        assert!(text.contains("221 2.0.0 Bye"), "{flag}: {text}");
    }
    let text = s_client(rg.port("submissions"), &["-tls1_3"], rg.ca_path());
    assert!(
        text.contains(&format!("220 {HOST} ESMTP relayguard")),
        "{text}"
    );
    assert!(text.contains("221 2.0.0 Bye"), "{text}");
}
