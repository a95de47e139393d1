//! AUTH passes through: the exchange is relayed to a real Postfix (SASL via a fake Dovecot
//! server), the upstream's reply decides, failures are logged in the wording fail2ban matches,
//! and where policy does not allow AUTH it never reaches the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use support::client::{auth_plain, Client};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(20);

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn setup() -> (Postfix, Relayguard) {
    let pf = Postfix::builder().sasl(true).start();
    let rg = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with("auth", Role::Smtp, &[("smtpd_sasl_auth_enable", "yes")])
        .listener("mx", Role::Smtp)
        .listener_toml("auth", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    (pf, rg)
}

async fn from_outside(rg: &Relayguard) -> Client {
    let mut c = Client::connect_as(rg.addr("auth"), "198.51.100.20").await;
    let ehlo = c.ehlo("client.example").await;
    assert!(
        ehlo.lines()
            .any(|l| l.starts_with("250-AUTH ") && l.contains("PLAIN") && l.contains("LOGIN")),
        "{ehlo}"
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_success_lets_the_client_relay() {
    let (pf, rg) = setup();
    let mut c = from_outside(&rg).await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "secret")))
            .await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN").await,
        "503 5.5.1 Error: already authenticated"
    );
    let reply = c
        .send_mail(
            "alice@sender.example",
            &["u@local.test"],
            "Subject: authed\n\nhi\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    pf.wait_for_log("sasl_method=PLAIN, sasl_username=alice", WAIT);
    rg.wait_for_log("sasl_method=PLAIN, sasl_username=alice", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_exchange_is_relayed_with_its_challenges() {
    let (_pf, rg) = setup();
    let mut c = from_outside(&rg).await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&b64("bob")).await, "334 UGFzc3dvcmQ6");
    assert_eq!(
        c.cmd(&b64("hunter2")).await,
        "235 2.7.0 Authentication successful"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_cancel_are_logged_like_postfix() {
    let (_pf, rg) = setup();
    let mut c = from_outside(&rg).await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "wrong")))
            .await,
        "535 5.7.8 Error: authentication failed: (reason unavailable)"
    );
    rg.wait_for_log(
        "warning: unknown[198.51.100.20]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=alice",
        WAIT,
    );
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd("*").await, "501 5.7.0 Authentication aborted");
    rg.wait_for_log(
        "warning: unknown[198.51.100.20]: SASL LOGIN authentication aborted",
        WAIT,
    );
    assert!(
        !rg.log_lines()
            .iter()
            .any(|l| l.contains("wrong") || l.contains(&auth_plain("alice", "wrong"))),
        "a password reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_not_enabled_never_reaches_the_upstream() {
    let (pf, rg) = setup();
    let mut c = Client::after_ehlo(rg.addr("mx")).await;
    assert!(
        !c.capabilities.iter().any(|k| k.starts_with("AUTH")),
        "{:?}",
        c.capabilities
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "secret")))
            .await,
        "503 5.5.1 Error: authentication not enabled"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    rg.wait_for_log(
        "reject: AUTH from unknown[127.0.0.1]: 503 5.5.1 Error: authentication not enabled",
        WAIT,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !pf.smtpd_log()
            .iter()
            .any(|l| l.contains("sasl_username=alice")),
        "the upstream saw the AUTH"
    );
}

/// Every way a credential can arrive, pipelined or not: none of it, encoded or decoded, is
/// ever written to the log. Pipelined input is still logged as Postfix does, up to the AUTH
/// line's mechanism.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_ever_reaches_the_log() {
    let (_pf, rg) = setup();
    let (user, pass) = ("carol", "Tr0ub4dor-3");
    let plain = auth_plain(user, pass);
    let (user64, pass64) = (b64(user), b64(pass));
    let addr = rg.addr("auth");
    let failed = "535 5.7.8 Error: authentication failed: (reason unavailable)";

    // EHLO and AUTH PLAIN with its initial response in one write.
    let mut c = Client::connect_as(addr, "198.51.100.71").await;
    c.send_raw(format!("EHLO c.example\r\nAUTH PLAIN {plain}\r\n").as_bytes())
        .await;
    assert!(c.read_reply().await.starts_with("250-relayguard.test"));
    assert_eq!(c.read_reply().await, failed);
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    // HELO, then AUTH LOGIN and both responses pipelined behind it.
    let mut c = Client::connect_as(addr, "198.51.100.72").await;
    c.send_raw(format!("HELO c.example\r\nAUTH LOGIN\r\n{user64}\r\n{pass64}\r\n").as_bytes())
        .await;
    assert_eq!(c.read_reply().await, "250 relayguard.test");
    assert_eq!(c.read_reply().await, "334 VXNlcm5hbWU6");
    assert_eq!(c.read_reply().await, "334 UGFzc3dvcmQ6");
    assert_eq!(c.read_reply().await, failed);
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    // After EHLO: AUTH LOGIN with its responses in one write, then PLAIN without an initial
    // response, then PLAIN step by step.
    let mut c = from_outside(&rg).await;
    c.send_raw(format!("AUTH LOGIN\r\n{user64}\r\n{pass64}\r\n").as_bytes())
        .await;
    assert_eq!(c.read_reply().await, "334 VXNlcm5hbWU6");
    assert_eq!(c.read_reply().await, "334 UGFzc3dvcmQ6");
    assert_eq!(c.read_reply().await, failed);
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(c.cmd(&plain).await, failed);
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&user64).await, "334 UGFzc3dvcmQ6");
    assert_eq!(c.cmd(&pass64).await, failed);
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    rg.wait_for_log("disconnect from unknown[198.51.100.20]", WAIT);
    let line = rg.wait_for_log("improper command pipelining after EHLO", WAIT);
    assert!(
        line.ends_with(
            "improper command pipelining after EHLO from unknown[198.51.100.71]: AUTH PLAIN"
        ),
        "{line}"
    );
    let line = rg.wait_for_log("improper command pipelining after HELO", WAIT);
    assert!(
        line.ends_with(
            "improper command pipelining after HELO from unknown[198.51.100.72]: AUTH LOGIN"
        ),
        "{line}"
    );
    let log = rg.log_lines().join("\n");
    for secret in [pass, pass64.as_str(), plain.as_str(), &plain[..12]] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
    assert!(log.contains("sasl_username=carol"), "{log}");
}

/// check_sasl_access (issue 12): the login name looked up in an access table, answered as a
/// Postfix with the same restriction answers the same login. relayguard's upstream has no such
/// restriction, so the refusal can only be relayguard's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sasl_access_answers_as_postfix_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let table = dir.path().join("logins");
    std::fs::write(&table, "alice REJECT account suspended\nbob OK\n").unwrap();
    let restrictions = format!(
        "check_sasl_access texthash:{}, reject_unauth_destination",
        table.display()
    );
    let judge = Postfix::builder()
        .sasl(true)
        .param("mydestination", "local.test")
        .param("mynetworks", "192.0.2.0/24")
        .param("smtpd_recipient_restrictions", &restrictions)
        .start();
    let upstream = Postfix::builder().sasl(true).start();
    let rg = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("mynetworks", "192.0.2.0/24")
        .listener_with(
            "auth",
            Role::Smtp,
            &[
                ("smtpd_sasl_auth_enable", "yes"),
                ("smtpd_recipient_restrictions", &restrictions),
            ],
        )
        .upstream_postfix(&upstream, Identity::Xclient)
        .start();
    for (user, pass, rcpt) in [
        ("alice", "secret", "u@local.test"),
        ("bob", "hunter2", "x@elsewhere.example"),
        ("bob", "hunter2", "u@local.test"),
    ] {
        let mut replies = Vec::new();
        for addr in [judge.addr_xclient(), rg.addr("auth")] {
            let mut c = Client::after_ehlo(addr).await;
            let auth = c
                .cmd(&format!("AUTH PLAIN {}", auth_plain(user, pass)))
                .await;
            assert_eq!(auth, "235 2.7.0 Authentication successful", "{addr}");
            c.cmd("MAIL FROM:<s@sender.example>").await;
            replies.push(c.cmd(&format!("RCPT TO:<{rcpt}>")).await);
        }
        assert_eq!(
            replies[0], replies[1],
            "{user} -> {rcpt}: postfix, relayguard"
        );
        if user == "alice" {
            assert_eq!(
                replies[1],
                "554 5.7.1 <alice>: SASL login name rejected: account suspended"
            );
        } else {
            assert!(replies[1].starts_with("250 "), "{}", replies[1]);
        }
    }
    rg.wait_for_log("SASL login name rejected: account suspended", WAIT);
}
