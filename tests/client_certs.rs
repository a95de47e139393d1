//! Client certificates end to end: smtpd_tls_ask_ccert asks for one during STARTTLS, and
//! permit_tls_clientcerts (relay_clientcerts), permit_tls_all_clientcerts and
//! check_ccert_access judge it. The same certificates connect directly to a private
//! Postfix 3.7 with the same parameters and tables (XCLIENT cannot carry a certificate), and
//! every RCPT reply must be the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::postfix::Postfix;
use support::relayguard::{Relayguard, Role};
use support::tls::{s_client, smtp_replies, ClientCert};

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The RCPT reply after STARTTLS with `cert` (or none) and MAIL FROM `sender`.
fn rcpt_reply(
    port: u16,
    cert: Option<&ClientCert>,
    sender: &str,
    log: &dyn Fn() -> Vec<String>,
) -> String {
    let (c, k) = cert.map_or((String::new(), String::new()), |c| {
        (path(&c.cert), path(&c.key))
    });
    let mut args = vec!["-starttls", "smtp"];
    if cert.is_some() {
        args.extend(["-cert", &c, "-key", &k]);
    }
    let input = format!("EHLO c.example\nMAIL FROM:<{sender}>\nRCPT TO:<x@remote.example>\nQUIT\n");
    let text = s_client(port, &args, &input);
    let replies = smtp_replies(&text);
    assert_eq!(
        replies.last(),
        Some(&"221 2.0.0 Bye"),
        "{text}\n--- server log:\n{}",
        log().join("\n")
    );
    replies[replies.len() - 2].to_owned()
}

#[test]
fn client_certificate_restrictions_match_postfix() {
    let dir = tempfile::tempdir().unwrap();
    // Postfix's smtpd runs as `postfix` and reads the CA file and tables from here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let alice = ClientCert::generate(dir.path(), "alice");
    let bob = ClientCert::generate(dir.path(), "bob");
    // carol's certificate comes from alice's CA, so it is verified too.
    let carol = ClientCert::issued_by(dir.path(), "carol", &alice);

    let relay = dir.path().join("relay_clientcerts");
    // bob's CA is not trusted: his public key is listed, and that is enough (smtpd_check.c).
    std::fs::write(&relay, format!("{} bob\n", bob.pubkey_fingerprint)).unwrap();
    let ccert = dir.path().join("ccert_access");
    std::fs::write(&ccert, format!("{} REJECT no thanks\n", carol.fingerprint)).unwrap();
    let senders = dir.path().join("senders");
    std::fs::write(&senders, "verified@sender.example verified_only\n").unwrap();
    let params = [
        ("smtpd_tls_ask_ccert", "yes".to_owned()),
        ("smtpd_tls_CAfile", path(&alice.ca)),
        ("smtpd_tls_fingerprint_digest", "sha256".to_owned()),
        ("relay_clientcerts", format!("texthash:{}", path(&relay))),
        ("smtpd_restriction_classes", "verified_only".to_owned()),
        ("verified_only", "permit_tls_all_clientcerts, reject".to_owned()),
        (
            "smtpd_relay_restrictions",
            format!(
                "check_ccert_access texthash:{}, check_sender_access texthash:{}, permit_tls_clientcerts, reject_unauth_destination",
                path(&ccert),
                path(&senders)
            ),
        ),
    ];
    let overrides: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let rg = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with("smtp", Role::Smtp, &overrides)
        .upstream_maildir()
        .start();
    let mut pf = Postfix::builder();
    for (n, v) in &params {
        pf = pf.param(n, v);
    }
    let pf = pf.start();

    let cases: [(Option<&ClientCert>, &str, &str); 7] = [
        (
            None,
            "a@sender.example",
            "554 5.7.1 <x@remote.example>: Relay access denied",
        ),
        (
            Some(&alice),
            "a@sender.example",
            "554 5.7.1 <x@remote.example>: Relay access denied",
        ),
        (Some(&alice), "verified@sender.example", "250 2.1.5 Ok"),
        (Some(&bob), "a@sender.example", "250 2.1.5 Ok"),
        (
            Some(&bob),
            "verified@sender.example",
            // permit_tls_all_clientcerts falls through to relay_clientcerts in 3.7.
            "250 2.1.5 Ok",
        ),
        (
            Some(&carol),
            "a@sender.example",
            "554 5.7.1 <carol>: Client certificate rejected: no thanks",
        ),
        (
            None,
            "verified@sender.example",
            "554 5.7.1 <verified@sender.example>: Sender address rejected: Access denied",
        ),
    ];
    for (cert, sender, expected) in cases {
        let who = cert.map_or("no certificate", |c| c.cert.to_str().unwrap());
        let theirs = rcpt_reply(pf.port_xclient(), cert, sender, &|| pf.smtpd_log());
        let ours = rcpt_reply(rg.port("smtp"), cert, sender, &|| rg.log_lines());
        assert_eq!(theirs, expected, "Postfix, {who}, {sender}");
        assert_eq!(ours, theirs, "{who}, {sender}");
    }
}

/// smtpd_tls_req_ccert at level encrypt: no verified certificate, no session; relayguard
/// and Postfix answer the first command inside TLS alike.
#[test]
fn required_certificate_matches_postfix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let alice = ClientCert::generate(dir.path(), "alice");
    let bob = ClientCert::generate(dir.path(), "bob");
    let ca = path(&alice.ca);
    let params = [
        ("smtpd_tls_security_level", "encrypt"),
        ("smtpd_tls_req_ccert", "yes"),
        ("smtpd_tls_CAfile", ca.as_str()),
    ];
    let rg = Relayguard::builder()
        .policy("myhostname", "mx.relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with("smtp", Role::Smtp, &params)
        .upstream_maildir()
        .start();
    let mut pf = Postfix::builder();
    for (n, v) in params {
        pf = pf.param(n, v);
    }
    let pf = pf.start();
    let cases = [
        (
            None,
            "421 4.7.1 mx.relayguard.test Error: No client certificate presented",
        ),
        (
            Some(&bob),
            "421 4.7.1 mx.relayguard.test Error: Client certificate not trusted",
        ),
        (Some(&alice), "250 2.1.0 Ok"),
    ];
    for (cert, expected) in cases {
        let first_reply = |port: u16| {
            let (c, k) = cert.map_or((String::new(), String::new()), |c: &ClientCert| {
                (path(&c.cert), path(&c.key))
            });
            let mut args = vec!["-starttls", "smtp"];
            if cert.is_some() {
                args.extend(["-cert", &c, "-key", &k]);
            }
            let text = s_client(port, &args, "MAIL FROM:<a@sender.example>\nQUIT\n");
            let replies = smtp_replies(&text);
            // The MAIL reply, or the refusal in its place (s_client prints the plaintext
            // EHLO and STARTTLS replies only partly, on stderr).
            let reply = replies
                .iter()
                .find(|r| r.starts_with("421 ") || r.starts_with("250 2.1.0"));
            reply.map(|r| r.to_string()).unwrap_or_else(|| text.clone())
        };
        let theirs = first_reply(pf.port_xclient());
        assert_eq!(theirs, expected, "Postfix");
        assert_eq!(first_reply(rg.port("smtp")), theirs);
    }
}
