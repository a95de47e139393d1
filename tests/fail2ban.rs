//! fail2ban's stock `postfix` filter, run with `fail2ban-regex` over relayguard's own log, bans
//! the right clients: `mode=auth` the one whose AUTH failed, the normal mode the one refused
//! relaying and the one that made too many errors, and neither mode an innocent client.
//! Needs fail2ban (`apt-get install fail2ban`, in `.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::client::auth_plain;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(20);

/// The addresses `fail2ban-regex` finds in `log` with the stock filter `filter`.
fn banned(log: &Path, filter: &str) -> BTreeSet<String> {
    let out = Command::new("fail2ban-regex")
        .args(["--raw", "-o", "ip"])
        .arg(log)
        .arg(filter)
        .output()
        .expect("fail2ban-regex runs (apt-get install fail2ban)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(|l| l.trim().to_owned()).collect()
}

/// relayguard in front of `pf` with AUTH, clients proxied through loopback, `extra` appended.
fn proxied_sasl(pf: &Postfix, extra: &str) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with("lb", Role::Smtp, &[("smtpd_sasl_auth_enable", "yes")])
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(pf, Identity::Xclient)
        .extra_toml(extra)
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_postfix_filter_bans_the_right_clients() {
    let pf = Postfix::builder().sasl(true).start();
    let rg = proxied_sasl(&pf, "");

    let mut c = rg.client_as("lb", "198.51.100.20").await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "wrong")))
            .await,
        "535 5.7.8 Error: authentication failed: (reason unavailable)"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    let mut c = rg.client_as("lb", "198.51.100.30").await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<x@elsewhere.example>").await,
        "454 4.7.1 <x@elsewhere.example>: Relay access denied"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    let mut c = rg.client_as("lb", "198.51.100.40").await;
    for _ in 0..19 {
        c.cmd("FOO").await;
    }
    c.send_raw(b"FOO\r\n").await;
    c.read_reply().await;
    assert_eq!(
        c.read_reply().await,
        "421 4.7.0 relayguard.test Error: too many errors"
    );

    // A username that carries a CR LF and a whole forged log line naming an address that never
    // connected: one failed AUTH must be one line, for this client alone.
    let mut c = rg.client_as("lb", "198.51.100.60").await;
    let forged = "mallory\r\nDec  1 23:59:59 relayguard postfix/smtpd[4242]: warning: \
                  unknown[203.0.113.99]: SASL LOGIN authentication failed: UGFzc3dvcmQ6";
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain(forged, "wrong")))
            .await,
        "535 5.7.8 Error: authentication failed: (reason unavailable)"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let line = rg.wait_for_log("SASL PLAIN authentication failed", WAIT);
    let line = rg
        .log_lines()
        .into_iter()
        .find(|l| l.contains("unknown[198.51.100.60]: SASL PLAIN"))
        .unwrap_or(line);
    assert!(
        line.ends_with("sasl_username=mallory??Dec  1 23:59:59 relayguard postfix/smtpd[4242]: warning: unknown[203.0.113.99]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"),
        "{line}"
    );

    // An innocent client: authenticates and delivers.
    let mut c = rg.client_as("lb", "198.51.100.50").await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("bob", "hunter2")))
            .await,
        "235 2.7.0 Authentication successful"
    );
    let r = c
        .send_mail("bob@b.example", &["u@local.test"], "Subject: ok\n\nx\n")
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    rg.wait_for_log("disconnect from unknown[198.51.100.50]", WAIT);
    let log = rg.config_path().with_file_name("relayguard.log");
    assert_eq!(
        banned(&log, "postfix[mode=auth]"),
        BTreeSet::from(["198.51.100.20".to_owned(), "198.51.100.60".to_owned()])
    );
    assert_eq!(
        banned(&log, "postfix"),
        BTreeSet::from(["198.51.100.30".to_owned(), "198.51.100.40".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_postfix_filter_sees_relayguards_bans() {
    let pf = Postfix::builder().sasl(true).start();
    let rg = proxied_sasl(&pf, "[bans]\n");
    let mut c = rg.client_as("lb", "198.51.100.90").await;
    for i in 0..5 {
        c.cmd(&format!(
            "AUTH PLAIN {}",
            auth_plain("alice", &format!("g{i}"))
        ))
        .await;
    }
    // The banned client's next command is refused in the words of a Postfix RBL reject.
    let r = c.cmd("MAIL FROM:<a@b.example>").await;
    assert!(
        r.starts_with("554 5.7.1 Service unavailable; Client host [198.51.100.90] blocked"),
        "{r}"
    );
    // A client that is not banned makes no such line.
    let mut ok = rg.client_as("lb", "198.51.100.91").await;
    assert_eq!(ok.cmd("QUIT").await, "221 2.0.0 Bye");
    rg.wait_for_log("disconnect from unknown[198.51.100.91]", WAIT);
    rg.wait_for_log("NOQUEUE: reject: MAIL from unknown[198.51.100.90]", WAIT);
    let log = rg.config_path().with_file_name("relayguard.log");
    for mode in ["postfix", "postfix[mode=rbl]", "postfix[mode=aggressive]"] {
        assert!(
            banned(&log, mode).contains("198.51.100.90"),
            "{mode} misses the ban"
        );
        assert!(!banned(&log, mode).contains("198.51.100.91"), "{mode}");
    }
}
