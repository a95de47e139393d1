//! SMTP smuggling: every CR/LF/NUL variant around the dot is refused with a 5xx after the
//! client's real end of data, the upstream never gets a fake end of data, and the session stays
//! in step. Checked against the built-in Maildir upstream and against a real Postfix 3.7, whose
//! default (`smtpd_forbid_bare_newline = no`) would end DATA at `<LF>.<LF>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::maildir::Message;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role};

const HOST: &str = "relayguard.test";

/// (name, body bytes before the real `\r\n.\r\n`, expected reply)
fn attacks() -> Vec<(&'static str, &'static [u8], String)> {
    let lf = format!("550 5.5.2 {HOST} Error: bare <LF> received");
    let cr = format!("550 5.5.2 {HOST} Error: bare <CR> received");
    let nul = format!("550 5.5.2 {HOST} Error: NUL character received");
    vec![
        ("lf_dot_lf", b"Subject: s1\r\n\r\nline1\n.\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@local.test>\r\nDATA\r\nSubject: smuggled\r\n", lf.clone()),
        ("cr_dot_cr", b"Subject: s2\r\n\r\nline1\r.\rMAIL FROM:<evil@x.example>\r\n", cr.clone()),
        ("crlf_dot_lf", b"Subject: s3\r\n\r\nline1\r\n.\nMAIL FROM:<evil@x.example>\r\n", lf.clone()),
        ("lf_dot_crlf", b"Subject: s4\r\n\r\nline1\n.\r\nMAIL FROM:<evil@x.example>\r\n", lf.clone()),
        ("crlf_dot_cr", b"Subject: s5\r\n\r\nline1\r\n.\rMAIL FROM:<evil@x.example>\r\n", cr.clone()),
        ("dot_nul", b"Subject: s6\r\n\r\nline1\r\n.\0\r\nMAIL FROM:<evil@x.example>\r\n", nul),
        ("bare_lf_line", b"Subject: s7\r\n\r\nline1\nline2\r\n", lf),
        ("bare_cr_line", b"Subject: s8\r\n\r\nline1\rline2\r\n", cr),
    ]
}

/// MAIL and RCPT, both accepted.
async fn open_transaction(c: &mut Client, name: &str) {
    assert_eq!(
        c.cmd("MAIL FROM:<a@sender.example>").await,
        "250 2.1.0 Ok",
        "{name}"
    );
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "250 2.1.5 Ok",
        "{name}"
    );
}

/// After an attack: a clean message goes through on the same session, then QUIT.
async fn send_clean_and_quit(mut c: Client, name: &str) {
    let reply = c
        .send_mail(
            "a@sender.example",
            &["u@local.test"],
            &format!("Subject: clean {name}\n\nok\n"),
        )
        .await;
    assert!(
        reply.starts_with("250 2.0.0 Ok: queued as "),
        "{name}: {reply}"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
}

/// Runs every attack, each after `prefix` (clean body lines).
async fn run_attacks(addr: std::net::SocketAddr, prefix: &[u8]) {
    for (name, body, expected) in attacks() {
        let mut c = Client::after_ehlo(addr).await;
        open_transaction(&mut c, name).await;
        assert_eq!(
            c.cmd("DATA").await,
            "354 End data with <CR><LF>.<CR><LF>",
            "{name}"
        );
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(b"\r\n.\r\n");
        c.send_raw(&bytes).await;
        assert_eq!(c.read_reply().await, expected, "{name}");
        // In step: the next command is answered as a command, and a clean message goes through.
        assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok", "{name}");
        send_clean_and_quit(c, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_upstream_gets_no_smuggled_message() {
    let rg = Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .start();
    run_attacks(rg.addr("smtp"), b"").await;
    let n = attacks().len();
    assert_only_clean(&rg.maildir().wait_for(n, Duration::from_secs(15)), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_postfix_upstream_gets_no_smuggled_message() {
    let pf = Postfix::builder().start();
    let rg = in_front_of(&pf);
    run_attacks(rg.addr("smtp"), b"").await;
    let n = attacks().len();
    assert_only_clean(&settled(&pf, n), n);
    // Postfix saw a dropped DATA for each attack, never an end of data.
    let log = pf.smtpd_log().join("\n");
    assert!(!log.contains("evil@x.example"), "{log}");
}
/// relayguard in front of `pf`, by XCLIENT.
fn in_front_of(pf: &Postfix) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_postfix(pf, Identity::Xclient)
        .start()
}

/// `n` messages in Postfix's Maildir, and a second later still no more.
fn settled(pf: &Postfix, n: usize) -> Vec<Message> {
    pf.maildir().wait_for(n, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    pf.maildir().messages()
}

/// Exactly the `n` clean messages, and nothing of any attack.
fn assert_only_clean(messages: &[Message], n: usize) {
    assert_eq!(messages.len(), n, "only the clean messages are delivered");
    for m in messages {
        let text = m.text();
        assert!(text.contains("Subject: clean "), "{text}");
        assert!(
            !text.contains("evil") && !text.contains("smuggled"),
            "{text}"
        );
    }
}

/// Clean body lines: megabytes of them, so an attack arrives long after the body's first reads.
fn clean_lines(size: usize) -> Vec<u8> {
    let line = b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n";
    line.iter()
        .copied()
        .cycle()
        .take(size / line.len() * line.len())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_deep_in_large_bodies_over_plain_tcp_are_refused() {
    // Plain TCP on both legs, megabytes before each attack: the body reads have grown to their
    // largest, and the attack must still be found before Postfix could read it as an end.
    let pf = Postfix::builder().starttls(false).start();
    let rg = in_front_of(&pf);
    run_attacks(rg.addr("smtp"), &clean_lines(4 << 20)).await;
    // A command pipelined right behind a large body's end is read as a command.
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    let mut bytes = b"Subject: clean pipelined\r\n\r\n".to_vec();
    bytes.extend_from_slice(&clean_lines(4 << 20));
    bytes.extend_from_slice(b".\r\nNOOP\r\n");
    c.send_raw(&bytes).await;
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(c.read_reply().await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let n = attacks().len() + 1;
    assert_only_clean(&settled(&pf, n), n);
}

/// BDAT: one chunk of `Subject:` lines, the attack (cut into chunks at `cuts`), and a LAST
/// chunk after it. The reply after the chunk holding the violation is the DATA one, the chunks
/// after it are discarded until LAST, and the session stays in step.
async fn run_chunked_attacks(addr: std::net::SocketAddr) {
    let mut cases: Vec<(String, Vec<u8>, Vec<usize>, String)> = attacks()
        .into_iter()
        .map(|(name, body, reply)| (name.to_owned(), body.to_vec(), vec![], reply))
        .collect();
    // The same bytes with a chunk ending right after the first CR, LF or NUL of the body.
    for (name, body, reply) in attacks() {
        let header = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let at = header
            + body[header..]
                .iter()
                .position(|b| matches!(b, b'\n' | b'\r' | 0))
                .unwrap()
            + 1;
        cases.push((format!("{name}/split"), body.to_vec(), vec![at], reply));
    }
    let long = format!("550 5.5.2 {HOST} Error: message line too long");
    let mut long_line = b"Subject: s9\r\n\r\n".to_vec();
    long_line.extend(std::iter::repeat_n(b'x', 999));
    cases.push(("line_across_chunks".into(), long_line, vec![520], long));
    // Every client has its EHLO answered before any leg opens: with an upstream that dropped
    // CHUNKING, each is offered it from the upstream as last seen, and its leg lacks it.
    let mut clients = Vec::new();
    for _ in &cases {
        clients.push(Client::after_ehlo(addr).await);
    }
    for ((name, body, cuts, expected), mut c) in cases.into_iter().zip(clients) {
        assert!(
            c.capabilities.iter().any(|k| k == "CHUNKING"),
            "{name}: {:?}",
            c.capabilities
        );
        open_transaction(&mut c, &name).await;
        let mut bounds = cuts.clone();
        bounds.push(body.len());
        let mut start = 0;
        let mut refused = false;
        for end in bounds {
            let piece = &body[start..end];
            start = end;
            c.send_raw(format!("BDAT {}\r\n", piece.len()).as_bytes())
                .await;
            c.send_raw(piece).await;
            let reply = c.read_reply().await;
            if refused {
                assert_eq!(
                    reply,
                    format!(
                        "551 5.0.0 Discarded {} bytes after earlier error",
                        piece.len()
                    ),
                    "{name}"
                );
            } else if reply != format!("250 2.0.0 Ok: {} bytes", piece.len()) {
                assert_eq!(reply, expected, "{name}");
                refused = true;
            }
        }
        assert!(refused, "{name}: no chunk was refused");
        c.send_raw(b"BDAT 9 LAST\r\nline9\r\n\r\n").await;
        assert_eq!(
            c.read_reply().await,
            "551 5.0.0 Discarded 9 bytes after earlier error",
            "{name}"
        );
        assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok", "{name}");
        // The violation in the LAST chunk itself: the reply ends the transaction.
        open_transaction(&mut c, &name).await;
        c.send_raw(format!("BDAT {} LAST\r\n", body.len()).as_bytes())
            .await;
        c.send_raw(&body).await;
        assert_eq!(c.read_reply().await, expected, "{name}/last");
        assert_eq!(
            c.cmd("RCPT TO:<u@local.test>").await,
            "503 5.5.1 Error: need MAIL command",
            "{name}"
        );
        send_clean_and_quit(c, &name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_held_to_the_data_rules_over_bdat_and_over_data() {
    let pf = Postfix::builder().start();
    let rg = in_front_of(&pf);
    let n = 2 * attacks().len() + 1;
    // A leg with CHUNKING gets BDAT pieces; then, Postfix without CHUNKING, the same chunks
    // become DATA: neither may ever get a smuggled message or the end of a refused one.
    run_chunked_attacks(rg.addr("smtp")).await;
    pf.postconf(&[("smtpd_discard_ehlo_keywords", "chunking")]);
    pf.reload();
    let before = pf.smtpd_log().len();
    run_chunked_attacks(rg.addr("smtp")).await;
    assert_only_clean(&settled(&pf, 2 * n), 2 * n);
    let log = pf.smtpd_log();
    let after_reload = log[before..].join("\n");
    assert!(after_reload.contains("data="), "{after_reload}");
    assert!(!after_reload.contains("bdat="), "{after_reload}");
    let log = log.join("\n");
    assert!(!log.contains("evil@x.example"), "{log}");
}
