//! Bans through the real binary, with a real Postfix deciding the passwords: five distinct
//! failed AUTHs ban the client, mid-session and then at connect, for a time that doubles for
//! a repeat offender, while the user whose name was hammered logs in from elsewhere; the same
//! bad password retried counts once; exempt networks are never banned; other triggers (relay
//! attempts) are optional; `relayguard bans` lists, adds and lifts bans of the running
//! process, and bans survive a reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::client::{auth_plain, Client};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(20);
const FAILED: &str = "535 5.7.8 Error: authentication failed: (reason unavailable)";

fn with_bans(pf: &Postfix, bans: &str, overrides: &[(&str, &str)]) -> Relayguard {
    let mut all = vec![("smtpd_sasl_auth_enable", "yes")];
    all.extend_from_slice(overrides);
    Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with("lb", Role::Smtp, &all)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(pf, Identity::Xclient)
        .extra_toml(&format!("[admin]\nsocket = \"admin.sock\"\n[bans]\n{bans}"))
        .start()
}

async fn auth(c: &mut Client, user: &str, pass: &str) -> String {
    c.cmd(&format!("AUTH PLAIN {}", auth_plain(user, pass)))
        .await
}

fn refusal(addr: &str) -> String {
    format!("554 5.7.1 Service unavailable; Client host [{addr}] blocked by relayguard for ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_guesses_ban_the_guesser_not_the_user_and_a_second_ban_is_longer() {
    let pf = Postfix::builder().sasl(true).start();
    let rg = with_bans(&pf, "ban_time = \"2s\"\nwindow = \"1m\"\n", &[]);
    let attacker = "198.51.100.66";

    let mut c = rg.client_as("lb", attacker).await;
    for i in 0..5 {
        assert_eq!(auth(&mut c, "alice", &format!("guess{i}")).await, FAILED);
    }
    let line = rg.wait_for_log("banned for 2s", WAIT);
    assert!(
        line.contains(
            "warning: unknown[198.51.100.66]: banned for 2s: 5 failed AUTH attempts, offence 1"
        ),
        "{line}"
    );
    // The next command of the same session is refused, in words fail2ban knows, and the
    // session ends before the upstream hears a sixth guess.
    let r = auth(&mut c, "alice", "guess5").await;
    assert!(r.starts_with(&refusal(attacker)), "{r}");
    assert!(r.ends_with(": 5 failed AUTH attempts"), "{r}");
    c.expect_closed().await;
    rg.wait_for_log("NOQUEUE: reject: AUTH from unknown[198.51.100.66]: 554 5.7.1 Service unavailable; Client host [198.51.100.66] blocked", WAIT);
    // Postfix's log is written by postlogd, a little after the replies: wait for the fifth
    // line, then make sure no sixth guess reached the upstream.
    let upstream_failures = || {
        pf.maillog_lines()
            .iter()
            .filter(|l| l.contains("authentication failed"))
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while upstream_failures() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(upstream_failures(), 5);

    // Refused at connect, before any upstream contact.
    let mut again = Client::connect_as(rg.addr("lb"), attacker).await;
    assert!(
        again
            .greeting
            .as_deref()
            .unwrap()
            .starts_with(&refusal(attacker)),
        "{:?}",
        again.greeting
    );
    again.expect_closed().await;
    rg.wait_for_log(
        "NOQUEUE: reject: CONNECT from unknown[198.51.100.66]: 554 5.7.1",
        WAIT,
    );

    // Alice, from her own address, is not locked out.
    let mut alice = rg.client_as("lb", "192.0.2.10").await;
    assert_eq!(
        auth(&mut alice, "alice", "secret").await,
        "235 2.7.0 Authentication successful"
    );
    let r = alice
        .send_mail(
            "alice@local.test",
            &["bob@local.test"],
            "Subject: hi\n\nstill here\n",
        )
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");

    // The ban ends; the next one, for the same client, lasts twice as long.
    let deadline = Instant::now() + WAIT;
    let mut c = loop {
        let c = Client::connect_as(rg.addr("lb"), attacker).await;
        if c.greeting.as_deref().unwrap().starts_with("220 ") {
            break c;
        }
        assert!(Instant::now() < deadline, "the ban never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    c.ehlo("client.example").await;
    for i in 10..15 {
        assert_eq!(auth(&mut c, "alice", &format!("guess{i}")).await, FAILED);
    }
    rg.wait_for_log("banned for 4s: 5 failed AUTH attempts, offence 2", WAIT);
    let (code, list) = rg.cli(&["bans", "list", "--json"]);
    assert_eq!(code, 0, "{list}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["client"], attacker);
    assert_eq!(list[0]["offence"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bad_password_counts_once_and_exempt_networks_are_never_banned() {
    let pf = Postfix::builder().sasl(true).start();
    let rg = with_bans(
        &pf,
        "",
        &[("smtpd_client_event_limit_exceptions", "203.0.113.0/24")],
    );
    // A client retrying one stale password: one failure, however often.
    let mut stale = rg.client_as("lb", "198.51.100.70").await;
    for _ in 0..8 {
        assert_eq!(auth(&mut stale, "bob", "old-password").await, FAILED);
    }
    assert_eq!(
        auth(&mut stale, "bob", "hunter2").await,
        "235 2.7.0 Authentication successful"
    );
    // An exempt network guessing is never banned.
    let mut inside = rg.client_as("lb", "203.0.113.5").await;
    for i in 0..8 {
        assert_eq!(auth(&mut inside, "bob", &format!("g{i}")).await, FAILED);
    }
    assert_eq!(
        auth(&mut inside, "bob", "hunter2").await,
        "235 2.7.0 Authentication successful"
    );
    let (code, out) = rg.cli(&["bans", "list"]);
    assert_eq!((code, out.trim()), (0, "no bans"));
    assert!(!rg.log_lines().iter().any(|l| l.contains("banned for")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_add_and_lift_bans_and_bans_survive_a_reload() {
    let pf = Postfix::builder().sasl(true).start();
    let rg = with_bans(
        &pf,
        "reply = \"defer\"\n[bans.triggers]\nrelay = 3\n",
        &[(
            "smtpd_recipient_restrictions",
            "check_recipient_access inline:{ {decoy@local.test = 554 Relay access denied} }",
        )],
    );
    let (code, out) = rg.cli(&["bans", "add", "2001:db8:7:7::1", "1h", "seen", "spamming"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("banned 2001:db8:7:7::/64 for 3600s: seen spamming"),
        "{out}"
    );
    // The whole /64 is banned, with the deferring reply.
    let c = Client::connect_as(rg.addr("lb"), "2001:db8:7:7:abcd::9").await;
    let g = c.greeting.clone().unwrap();
    assert!(
        g.starts_with("421 4.7.1 Service unavailable; Client host [2001:db8:7:7:abcd::9] blocked by relayguard for "),
        "{g}"
    );
    assert!(g.ends_with(": seen spamming"), "{g}");

    // A refusal that only says the words is not a relay attempt: no ban.
    let mut decoy = rg.client_as("lb", "198.51.100.81").await;
    assert_eq!(decoy.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    for _ in 0..3 {
        let r = decoy.cmd("RCPT TO:<decoy@local.test>").await;
        assert!(
            r.starts_with("554 ") && r.ends_with("Relay access denied"),
            "{r}"
        );
    }
    assert_eq!(decoy.cmd("QUIT").await, "221 2.0.0 Bye");
    let again = Client::connect_as(rg.addr("lb"), "198.51.100.81").await;
    assert!(
        again.greeting.as_deref().unwrap().starts_with("220 "),
        "{:?}",
        again.greeting
    );

    // Three refused relay attempts ban too, with this config.
    let mut relay = rg.client_as("lb", "198.51.100.80").await;
    assert_eq!(relay.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    for i in 0..3 {
        assert_eq!(
            relay
                .cmd(&format!("RCPT TO:<x{i}@elsewhere.example>"))
                .await,
            format!("454 4.7.1 <x{i}@elsewhere.example>: Relay access denied")
        );
    }
    rg.wait_for_log(
        "banned for 600s: 3 rejected relay attempts, offence 1",
        WAIT,
    );

    // A reload keeps the store, and with it the bans.
    rg.signal("HUP");
    rg.wait_for_log("reloaded", WAIT);
    let c = Client::connect_as(rg.addr("lb"), "198.51.100.80").await;
    assert!(
        c.greeting
            .as_deref()
            .unwrap()
            .starts_with("421 4.7.1 Service unavailable"),
        "{:?}",
        c.greeting
    );
    let (_, list) = rg.cli(&["bans", "list"]);
    assert!(
        list.contains("198.51.100.80") && list.contains("2001:db8:7:7::/64"),
        "{list}"
    );

    let (code, out) = rg.cli(&["bans", "remove", "198.51.100.80"]);
    assert_eq!((code, out.trim()), (0, "ban lifted"));
    let c = Client::connect_as(rg.addr("lb"), "198.51.100.80").await;
    assert!(
        c.greeting.as_deref().unwrap().starts_with("220 "),
        "{:?}",
        c.greeting
    );
    let (code, out) = rg.cli(&["bans", "remove", "198.51.100.80"]);
    assert_eq!((code, out.trim()), (2, "not banned"));
    let (code, out) = rg.cli(&["bans", "add", "not-an-address", "1h"]);
    assert_eq!(code, 1);
    assert!(out.contains("`not-an-address` is not an address"), "{out}");
}
