//! strict_rfc821_envelopes (issue 12): MAIL FROM and RCPT TO only as `<address>`, answered as
//! a private Postfix 3.7 with the same setting answers the same lines; without the setting
//! both take the bare forms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::client::Client;
use support::postfix::Postfix;
use support::relayguard::{Relayguard, Role};

/// Each script: MAIL, then RCPT (sent only when MAIL was accepted).
const SCRIPTS: &[(&str, &str)] = &[
    ("MAIL FROM:<a@b.example>", "RCPT TO:<u@local.test>"),
    ("MAIL FROM: <a@b.example>", "RCPT TO: <u@local.test>"),
    ("MAIL FROM:a@b.example", "RCPT TO:<u@local.test>"),
    ("MAIL FROM:<a@b.example>", "RCPT TO:u@local.test"),
    ("MAIL FROM:<>", "RCPT TO:<postmaster>"),
];

async fn replies(addr: std::net::SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    for (mail, rcpt) in SCRIPTS {
        let mut c = Client::after_ehlo(addr).await;
        let m = c.cmd(mail).await;
        out.push(format!("{mail} -> {m}"));
        if m.starts_with("250") {
            out.push(format!("{rcpt} -> {}", c.cmd(rcpt).await));
        }
        c.cmd("QUIT").await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_envelopes_answer_as_postfix() {
    for strict in ["yes", "no"] {
        let judge = Postfix::builder()
            .param("mydestination", "local.test")
            .param("strict_rfc821_envelopes", strict)
            .start();
        let rg = Relayguard::builder()
            .policy("mydestination", "local.test")
            .listener_with("mx", Role::Smtp, &[("strict_rfc821_envelopes", strict)])
            .upstream_maildir()
            .start();
        let want = replies(judge.addr_xclient()).await;
        let got = replies(rg.addr("mx")).await;
        assert_eq!(got, want, "strict_rfc821_envelopes = {strict}");
        let refused = want.iter().filter(|l| l.contains("-> 501 ")).count();
        assert_eq!(refused, if strict == "yes" { 2 } else { 0 }, "{want:?}");
    }
}
