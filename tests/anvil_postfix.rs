//! Differential: the same clients against a real Postfix 3.7 (through its PROXY-protocol port,
//! where smtpd's anvil limits count the proxied client) and against relayguard (through a
//! listener that trusts loopback's PROXY header), with the same limits. The transcripts must be
//! identical, and the warning lines the same up to the service name.
//!
//! Postfix does not count XCLIENT sessions from authorized hosts (smtpd.c skips
//! `xclient_allowed` clients), so the same instance is also relayguard's upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::client::{auth_plain, Client};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(20);

const LIMITS: &[(&str, &str)] = &[
    ("smtpd_client_connection_count_limit", "2"),
    ("smtpd_client_connection_rate_limit", "4"),
    ("smtpd_client_message_rate_limit", "2"),
    ("smtpd_client_recipient_rate_limit", "3"),
    ("smtpd_client_auth_rate_limit", "2"),
    ("anvil_rate_time_unit", "60s"),
];

/// One scenario's replies, greeting first.
async fn transcript(at: SocketAddr, client: &str, commands: &[String]) -> Vec<String> {
    let mut c = Client::connect_as(at, client).await;
    let mut out = vec![c.greeting.clone().unwrap()];
    if out[0].starts_with("220") {
        for line in commands {
            out.push(c.cmd(line).await);
        }
    }
    out
}

fn commands(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_limits_answer_as_postfix_answers() {
    let mut pf = Postfix::builder().sasl(true);
    for (k, v) in LIMITS {
        pf = pf.param(k, v);
    }
    let pf = pf.start();
    let mut overrides = vec![("smtpd_sasl_auth_enable", "yes")];
    overrides.extend_from_slice(LIMITS);
    let rg = Relayguard::builder()
        .policy("myhostname", "mx.relayguard.test")
        .policy("mail_name", "Postfix")
        .policy("mydestination", "")
        .policy("virtual_mailbox_domains", "local.test")
        .policy("mynetworks", "192.0.2.1/32")
        .listener_with("lb", Role::Smtp, &overrides)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    let targets = [("postfix", pf.addr_proxy()), ("relayguard", rg.addr("lb"))];

    let wrong = format!("AUTH PLAIN {}", auth_plain("alice", "wrong"));
    let scenarios: Vec<(&str, Vec<String>)> = vec![
        (
            "198.51.100.21",
            commands(&[
                "EHLO c.example",
                "MAIL FROM:<a@b.example>",
                "RSET",
                "MAIL FROM:<a@b.example>",
                "RSET",
                "MAIL FROM:<a@b.example>",
                "QUIT",
            ]),
        ),
        (
            "198.51.100.22",
            commands(&[
                "EHLO c.example",
                "MAIL FROM:<a@b.example>",
                "RCPT TO:<u1@local.test>",
                "RCPT TO:<u2@local.test>",
                "RCPT TO:<u3@local.test>",
                "RCPT TO:<u4@local.test>",
                "QUIT",
            ]),
        ),
        (
            "198.51.100.23",
            vec![
                "EHLO c.example".into(),
                wrong.clone(),
                wrong.clone(),
                wrong.clone(),
                "QUIT".into(),
            ],
        ),
    ];
    for (client, lines) in &scenarios {
        let mut seen = Vec::new();
        for (who, at) in targets {
            let mut t = transcript(at, client, lines).await;
            // The EHLO reply lists each server's own extensions; the limits are not in it.
            t[1] = t[1].lines().next().unwrap_or_default().to_owned();
            seen.push((who, t));
        }
        assert_eq!(seen[0].1, seen[1].1, "{client}: {seen:#?}");
    }

    // Concurrency: two sessions held open, the third refused at its greeting.
    for (who, at) in targets {
        let held: Vec<Client> = vec![
            Client::connect_as(at, "198.51.100.24").await,
            Client::connect_as(at, "198.51.100.24").await,
        ];
        let third = transcript(at, "198.51.100.24", &[]).await;
        assert_eq!(
            third,
            ["421 4.7.0 mx.relayguard.test Error: too many connections from 198.51.100.24"],
            "{who}"
        );
        drop(held);
    }
    // Rate: four connections in the unit, the fifth refused.
    for (who, at) in targets {
        let mut greetings = Vec::new();
        for _ in 0..5 {
            greetings.push(transcript(at, "198.51.100.25", &commands(&["QUIT"])).await[0].clone());
        }
        assert!(
            greetings[..4].iter().all(|g| g.starts_with("220 ")),
            "{who}: {greetings:?}"
        );
        assert_eq!(
            greetings[4],
            "421 4.7.0 mx.relayguard.test Error: too many connections from 198.51.100.25",
            "{who}"
        );
    }

    // The warning lines match up to the service name (Postfix's is its master.cf name).
    let warnings = [
        "Message delivery request rate limit exceeded: 3 from unknown[198.51.100.21]",
        "Recipient address rate limit exceeded: 4 from unknown[198.51.100.22]",
        "AUTH command rate limit exceeded: 3 from unknown[198.51.100.23]",
        "Connection concurrency limit exceeded: 3 from unknown[198.51.100.24]",
        "Connection rate limit exceeded: 5 from unknown[198.51.100.25]",
    ];
    for w in warnings {
        pf.wait_for_log(&format!("warning: {w} for service"), WAIT);
        rg.wait_for_log(&format!("warning: {w} for service lb"), WAIT);
    }
}
