//! STARTTLS to the upstream (`[upstream] starttls = true`), verified against a CA: the session
//! to a real Postfix 3.7 is encrypted before XCLIENT and the envelope go out, and a certificate
//! the CA did not sign ends the session with 421, never a fallback to plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role};
use support::tls::CertSet;

const WAIT: Duration = Duration::from_secs(20);
const HOST: &str = "relayguard.test";

fn postfix() -> Postfix {
    Postfix::builder()
        .param("smtpd_tls_loglevel", "1")
        .param("smtpd_tls_received_header", "yes")
        .start()
}

fn builder(pf: &Postfix) -> support::relayguard::RelayguardBuilder {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_postfix(pf, Identity::Xclient)
        .upstream_toml("starttls = true")
        .upstream_toml("connect_timeout = \"2s\"")
}

async fn send(rg: &Relayguard, subject: &str) -> String {
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    let reply = c.cmd("MAIL FROM:<a@sender.example>").await;
    if reply != "250 2.1.0 Ok" {
        return reply;
    }
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    c.send_raw(format!("Subject: {subject}\r\n\r\nx\r\n.\r\n").as_bytes())
        .await;
    c.read_reply().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_session_is_encrypted_and_verified() {
    let pf = postfix();
    let rg = builder(&pf).start();
    let config = std::fs::read_to_string(rg.config_path()).unwrap();
    assert!(
        config.contains(&format!(
            "ca_file = \"{}\"",
            pf.ca_path().unwrap().display()
        )),
        "the harness points relayguard at Postfix's CA: {config}"
    );
    let reply = send(&rg, "over upstream tls").await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let m = pf
        .maildir()
        .wait_for_containing("Subject: over upstream tls", WAIT);
    let top = &m.received()[0];
    // Postfix's own words for an encrypted session, with the real client from XCLIENT.
    assert!(
        top.starts_with("from client.example (unknown [127.0.0.1]) (using TLSv1.3 with cipher "),
        "{top}"
    );
    assert!(
        top.contains(" by mx.relayguard.test (Postfix) with ESMTPS id "),
        "{top}"
    );
    pf.wait_for_log("TLS connection established from localhost[127.0.0.1]", WAIT);
    // One upstream session: TLS, then XCLIENT, then the transaction.
    pf.wait_for_log(
        "disconnect from unknown[127.0.0.1] ehlo=2 xclient=0/1 starttls=1 mail=1 rcpt=1 data=1",
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_ca_did_not_sign_gives_421_not_plaintext() {
    let pf = postfix();
    let rg = builder(&pf).start();
    let reply = send(&rg, "before the swap").await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");

    // Postfix now presents a certificate from another CA.
    let other = pf.dir().join("other-tls");
    std::fs::create_dir(&other).unwrap();
    let certs = CertSet::generate(&other);
    pf.postconf(&[
        ("smtpd_tls_cert_file", certs.cert.to_str().unwrap()),
        ("smtpd_tls_key_file", certs.key.to_str().unwrap()),
    ]);
    pf.reload();
    let sessions_before = pf
        .smtpd_log()
        .iter()
        .filter(|l| l.starts_with("disconnect from"))
        .count();

    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    // The MAIL is answered while the leg opens behind it (open_ahead = "mail"); the RCPT
    // that needs the leg hears that it could not be opened.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        format!("421 4.3.0 {HOST} Error: upstream server unavailable")
    );
    c.expect_closed().await;
    rg.wait_for_log("upstream unavailable for unknown[127.0.0.1]", WAIT);
    // Postfix saw a failed handshake and nothing after it: no XCLIENT, no MAIL in clear.
    pf.wait_for_log(
        "lost connection after STARTTLS from localhost[127.0.0.1]",
        WAIT,
    );
    let disconnect = pf.wait_for_log("ehlo=1 starttls=0/1 commands=1/2", WAIT);
    let log = pf.smtpd_log();
    let after: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("disconnect from"))
        .skip(sessions_before)
        .collect();
    assert!(
        after
            .iter()
            .all(|l| !l.contains("xclient") && !l.contains("mail=")),
        "{disconnect}\n{after:?}"
    );
    assert_eq!(pf.maildir().messages().len(), 1);
}

#[test]
fn a_wrong_ca_or_no_starttls_at_start_up_is_refused() {
    let pf = postfix();
    let dir = tempfile::tempdir().unwrap();
    let other = CertSet::generate(dir.path());
    // upstream_smtp: the harness adds no CA of its own, so this one is the only one.
    let err = Relayguard::builder()
        .policy("myhostname", HOST)
        .listener("smtp", Role::Smtp)
        .upstream_smtp(pf.addr_xclient(), Identity::Xclient)
        .upstream_toml("starttls = true")
        .upstream_toml("connect_timeout = \"2s\"")
        .upstream_toml(&format!("ca_file = {:?}", other.ca.display().to_string()))
        .upstream_toml("server_name = \"localhost\"")
        .try_start()
        .err()
        .expect("relayguard must not start with an upstream it cannot verify");
    assert!(err.contains("exited with"), "{err}");
    assert!(err.contains("probing the upstream at start-up"), "{err}");
    assert!(
        err.contains("upstream TLS: invalid peer certificate"),
        "{err}"
    );

    let plain = Postfix::builder().starttls(false).start();
    let err = builder(&plain)
        .try_start()
        .err()
        .expect("relayguard must not start when the upstream has no STARTTLS");
    assert!(err.contains("upstream does not offer STARTTLS"), "{err}");
}
