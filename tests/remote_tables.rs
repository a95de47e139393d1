//! socketmap and tcp tables end to end: relayguard asks a real table server on loopback (the
//! test's own, in threads) through the waiting engine, with Postfix's keys and replies; a dead,
//! slow or garbling server is a temporary failure, never a permit; and a private Postfix asking
//! the same server answers the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::client::{auth_plain, Client};
use support::postfix::Postfix;
use support::process;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};
use support::table_server::{Behaviour, TableServer};

const WAIT: Duration = Duration::from_secs(20);

/// A Maildir relayguard whose `mx` listener trusts loopback's PROXY header, with `policy`.
fn relayguard(policy: &[(&str, &str)], extra: &str) -> Relayguard {
    let mut b = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("mynetworks", "127.0.0.0/8");
    for (k, v) in policy {
        b = b.policy(k, v);
    }
    b.listener("mx", Role::Smtp)
        .listener_toml("mx", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .extra_toml(&format!("[dns]\nlookups = \"never\"\n{extra}"))
        .start()
}

async fn rcpt(rg: &Relayguard, client: &str, from: &str, to: &str) -> String {
    let mut c = Client::connect_as(rg.addr("mx"), client).await;
    c.ehlo("Client.Example").await;
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await, "250 2.1.0 Ok");
    c.cmd(&format!("RCPT TO:<{to}>")).await
}

async fn rcpt_helo(rg: &Relayguard, client: &str, helo: &str, to: &str) -> String {
    let mut c = Client::connect_as(rg.addr("mx"), client).await;
    c.ehlo(helo).await;
    c.cmd("MAIL FROM:<s@sender.example>").await;
    c.cmd(&format!("RCPT TO:<{to}>")).await
}

/// Sends HUP after writing `text` and waits for the `reloaded` line.
fn reload(rg: &Relayguard, text: &str) {
    let before = rg
        .log_lines()
        .iter()
        .filter(|l| l.contains("reloaded "))
        .count();
    rg.write_config(text);
    rg.signal("HUP");
    let deadline = std::time::Instant::now() + WAIT;
    while rg
        .log_lines()
        .iter()
        .filter(|l| l.contains("reloaded "))
        .count()
        == before
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload:\n{}",
            rg.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_opens_the_tables_the_new_config_names() {
    let first = TableServer::socketmap("access", &[("u@local.test", "REJECT first")]);
    let second = TableServer::tcp(&[("u@local.test", "REJECT second")]);
    let restrictions = format!("check_recipient_access {}", first.spec());
    let rg = relayguard(
        &[("smtpd_recipient_restrictions", &restrictions)],
        "[tables]\ncache_ttl = \"0s\"\n",
    );
    let rejected =
        |text: &str| format!("554 5.7.1 <u@local.test>: Recipient address rejected: {text}");
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "u@local.test").await,
        rejected("first")
    );
    let config = std::fs::read_to_string(rg.config_path()).unwrap();
    reload(&rg, &config.replace(&first.spec(), &second.spec()));
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "u@local.test").await,
        rejected("second")
    );
    // A spec no backend can open keeps the running config.
    let bad = config.replace(&first.spec(), "socketmap:inet:127.0.0.1:1");
    rg.write_config(&bad);
    rg.signal("HUP");
    rg.wait_for_log("reload failed", WAIT);
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "u@local.test").await,
        rejected("second")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_access_over_socketmap() {
    let map = TableServer::socketmap(
        "access",
        &[
            ("blocked@local.test", "REJECT gone fishing"),
            ("ok@local.test", "OK"),
        ],
    );
    let restrictions = format!("check_recipient_access {}, permit", map.spec());
    let rg = relayguard(&[("smtpd_recipient_restrictions", &restrictions)], "");
    assert_eq!(
        rcpt(
            &rg,
            "198.51.100.20",
            "s@sender.example",
            "Blocked@Local.Test"
        )
        .await,
        "554 5.7.1 <Blocked@Local.Test>: Recipient address rejected: gone fishing"
    );
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "other@local.test").await,
        "250 2.1.5 Ok"
    );
    // socketmap is a pattern table: the full, folded address only, once per RCPT.
    assert_eq!(map.keys(), vec!["blocked@local.test", "other@local.test"]);
    // Within the cache TTL the same key is not asked again.
    rcpt(&rg, "198.51.100.20", "s@sender.example", "other@local.test").await;
    assert_eq!(map.keys().len(), 2, "{:?}", map.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_access_over_tcp_asks_the_name_then_the_address() {
    let tcp = TableServer::tcp(&[("198.51.100.21", "REJECT tcp says no")]);
    let restrictions = format!("check_client_access {}", tcp.spec());
    let rg = relayguard(&[("smtpd_client_restrictions", &restrictions)], "");
    assert_eq!(
        rcpt(&rg, "198.51.100.21", "s@sender.example", "u@local.test").await,
        "554 5.7.1 <unknown[198.51.100.21]>: Client host rejected: tcp says no"
    );
    assert_eq!(tcp.keys(), vec!["unknown", "198.51.100.21"]);
    assert_eq!(
        rcpt(&rg, "198.51.100.22", "s@sender.example", "u@local.test").await,
        "250 2.1.5 Ok"
    );
}

/// A server that stops, answers too late, or answers outside the protocol: each is a
/// temporary failure in the voice of the lookup (smtpd_check.c check_table_result with
/// "451 4.3.5 Server configuration error"), and the permit after it never applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_server_never_permits() {
    let mut map = TableServer::socketmap("access", &[("ok@local.test", "OK")]);
    let restrictions = format!("check_recipient_access {}, permit", map.spec());
    let rg = relayguard(
        &[("smtpd_recipient_restrictions", &restrictions)],
        "[tables]\ntimeout = \"1s\"\ncache_ttl = \"0s\"\n",
    );
    let failed = "451 4.3.5 <u@local.test>: Recipient address rejected: Server configuration error";
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "ok@local.test").await,
        "250 2.1.5 Ok"
    );
    map.set(Behaviour::Garbage);
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "u@local.test").await,
        failed
    );
    map.set(Behaviour::Raw("TEMP database down".into()));
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "u@local.test").await,
        failed
    );
    map.set(Behaviour::Slow(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "u@local.test").await,
        failed
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout is 1s"
    );
    map.stop();
    assert_eq!(
        rcpt(&rg, "198.51.100.20", "s@sender.example", "u@local.test").await,
        failed
    );
    rg.wait_for_log("lookup error for \"u@local.test\"", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_login_maps_over_socketmap_with_sasl() {
    if !process::is_root() {
        eprintln!("skipped: a private Postfix needs root");
        return;
    }
    let mut logins = TableServer::socketmap("logins", &[("alice@sender.example", "alice")]);
    let pf = Postfix::builder().sasl(true).start();
    let rg = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("smtpd_sasl_auth_enable", "yes")
        .policy("smtpd_sender_login_maps", &logins.spec())
        .policy("smtpd_sender_restrictions", "reject_sender_login_mismatch")
        .listener("auth", Role::Smtp)
        .listener_toml("auth", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(&pf, Identity::Xclient)
        .extra_toml("[dns]\nlookups = \"never\"\n[tables]\ntimeout = \"1s\"\ncache_ttl = \"0s\"\n")
        .start();
    let authed = |user: &'static str, pass: &'static str| {
        let addr = rg.addr("auth");
        async move {
            let mut c = Client::connect_as(addr, "198.51.100.20").await;
            c.ehlo("client.example").await;
            assert_eq!(
                c.cmd(&format!("AUTH PLAIN {}", auth_plain(user, pass)))
                    .await,
                "235 2.7.0 Authentication successful"
            );
            assert_eq!(
                c.cmd("MAIL FROM:<alice@sender.example>").await,
                "250 2.1.0 Ok"
            );
            c
        }
    };
    let mut c = authed("alice", "secret").await;
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    let mut c = authed("bob", "hunter2").await;
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "553 5.7.1 <alice@sender.example>: Sender address rejected: not owned by user bob"
    );
    logins.stop();
    let mut c = authed("alice", "secret").await;
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "451 4.3.0 <alice@sender.example>: Temporary lookup failure"
    );
}

#[test]
fn check_shows_each_table_lookup() {
    let map = TableServer::socketmap("access", &[("blocked@local.test", "REJECT no")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relayguard.toml");
    std::fs::write(
        &path,
        format!(
            "[policy]\nmydestination = \"local.test\"\nsmtpd_recipient_restrictions = \"check_recipient_access {}\"\n[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:2525\"\nrole = \"smtp\"\n\n[upstream]\nkind = \"maildir\"\npath = \"maildir\"\n",
            map.spec()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .args([
            "check",
            "--config",
            path.to_str().unwrap(),
            "--client",
            "192.0.2.1",
        ])
        .args(["--from", "s@sender.example", "--rcpt", "blocked@local.test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = format!(
        "lookup table {} key \"blocked@local.test\" -> found \"REJECT no\"",
        map.spec()
    );
    assert!(
        text.contains(&line),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("554 5.7.1 <blocked@local.test>: Recipient address rejected: no"),
        "{text}"
    );
}

/// The same server behind Postfix and behind relayguard: the same replies, for keys found,
/// not found, refused, and with the server gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_gives_the_same_replies() {
    if !process::is_root() {
        eprintln!("skipped: a private Postfix needs root");
        return;
    }
    let mut map = TableServer::socketmap(
        "access",
        &[
            ("blocked@local.test", "REJECT gone fishing"),
            ("moved@local.test", "550 5.1.6 moved away"),
            ("later@local.test", "DEFER try later"),
        ],
    );
    let tcp = TableServer::tcp(&[
        ("198.51.100.23", "REJECT tcp says no"),
        ("Bad.Helo.Example", "REJECT helo as written"),
    ]);
    let recipient = format!("check_recipient_access {}, permit", map.spec());
    let client = format!("check_client_access {}", tcp.spec());
    let helo = format!("check_helo_access {}", tcp.spec());
    let pf = Postfix::builder()
        .param("smtpd_client_restrictions", &client)
        .param("smtpd_helo_restrictions", &helo)
        .param("smtpd_recipient_restrictions", &recipient)
        .param(
            "smtpd_relay_restrictions",
            "permit_mynetworks, reject_unauth_destination",
        )
        .start();
    let rg = relayguard(
        &[
            ("mydestination", ""),
            ("mynetworks", "192.0.2.1/32"),
            ("virtual_mailbox_domains", "local.test"),
            ("smtpd_client_restrictions", &client),
            ("smtpd_helo_restrictions", &helo),
            ("smtpd_recipient_restrictions", &recipient),
        ],
        "[tables]\ntimeout = \"2s\"\ncache_ttl = \"0s\"\n",
    );
    let via_postfix = |addr: &'static str, helo: &'static str, to: &'static str| {
        let a = pf.addr_xclient();
        async move {
            let mut c = Client::connect(a).await;
            c.greeting().await;
            c.cmd(&format!(
                "XCLIENT ADDR={addr} NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]"
            ))
            .await;
            c.ehlo(helo).await;
            c.cmd("MAIL FROM:<s@sender.example>").await;
            c.cmd(&format!("RCPT TO:<{to}>")).await
        }
    };
    let cases = [
        ("198.51.100.20", "Client.Example", "Blocked@Local.Test"),
        ("198.51.100.20", "Client.Example", "moved@local.test"),
        ("198.51.100.20", "Client.Example", "later@local.test"),
        ("198.51.100.20", "Client.Example", "other@local.test"),
        ("198.51.100.23", "Client.Example", "other@local.test"),
        ("198.51.100.20", "Bad.Helo.Example", "other@local.test"),
    ];
    let mut seen = Vec::new();
    for (addr, helo, to) in cases {
        map.clear_keys();
        tcp.clear_keys();
        let theirs = via_postfix(addr, helo, to).await;
        let their_keys = (tcp.keys(), map.keys());
        map.clear_keys();
        tcp.clear_keys();
        let ours = rcpt_helo(&rg, addr, helo, to).await;
        assert_eq!(ours, theirs, "{addr} {helo} {to}");
        // The same keys, in the same order and case, reach the servers.
        assert_eq!((tcp.keys(), map.keys()), their_keys, "{addr} {helo} {to}");
        seen.push(format!(
            "{addr} {helo} {to}: {theirs} (keys {their_keys:?})"
        ));
    }
    map.stop();
    let theirs = via_postfix("198.51.100.20", "Client.Example", "other@local.test").await;
    let ours = rcpt(&rg, "198.51.100.20", "s@sender.example", "other@local.test").await;
    seen.push(format!("server stopped: {theirs}"));
    eprintln!("Postfix said:\n{}", seen.join("\n"));
    assert_eq!(ours, theirs, "server stopped");
}

/// `mynetworks` and `relay_domains` with remote entries, against Postfix asking the same
/// servers: trusted by the table, relayed by the table, refused, and each server gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_with_remote_entries_answer_as_postfix_does() {
    if !process::is_root() {
        eprintln!("skipped: a private Postfix needs root");
        return;
    }
    let mut domains = TableServer::socketmap("domains", &[("relay.example", "yes")]);
    let mut nets = TableServer::tcp(&[("198.51.100.30", "trusted")]);
    let mynetworks = format!("192.0.2.1/32 {}", nets.spec());
    let pf = Postfix::builder()
        .param("mynetworks", &mynetworks)
        .param("relay_domains", &domains.spec())
        .param(
            "smtpd_relay_restrictions",
            "permit_mynetworks, reject_unauth_destination",
        )
        .start();
    let rg = relayguard(
        &[
            ("mydestination", ""),
            ("mynetworks", &mynetworks),
            ("smtpd_client_event_limit_exceptions", "192.0.2.1/32"),
            ("relay_domains", &domains.spec()),
            (
                "smtpd_relay_restrictions",
                "permit_mynetworks, reject_unauth_destination",
            ),
            ("virtual_mailbox_domains", "local.test"),
        ],
        "[tables]\ntimeout = \"2s\"\ncache_ttl = \"0s\"\n",
    );
    let via_postfix = |addr: &'static str, to: &'static str| {
        let a = pf.addr_xclient();
        async move {
            let mut c = Client::connect(a).await;
            c.greeting().await;
            c.cmd(&format!(
                "XCLIENT ADDR={addr} NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]"
            ))
            .await;
            c.ehlo("client.example").await;
            c.cmd("MAIL FROM:<s@sender.example>").await;
            c.cmd(&format!("RCPT TO:<{to}>")).await
        }
    };
    let mut seen = Vec::new();
    let mut compare = |label: String, theirs: String, ours: String| {
        seen.push(format!("{label}: {theirs}"));
        assert_eq!(ours, theirs, "{label}");
    };
    let cases = [
        ("198.51.100.30", "x@elsewhere.example"),
        ("198.51.100.31", "x@relay.example"),
        ("198.51.100.31", "x@sub.relay.example"),
        ("198.51.100.31", "x@elsewhere.example"),
        ("198.51.100.31", "x@local.test"),
    ];
    for (addr, to) in cases {
        let theirs = via_postfix(addr, to).await;
        let ours = rcpt(&rg, addr, "s@sender.example", to).await;
        compare(format!("{addr} {to}"), theirs, ours);
    }
    domains.stop();
    // New addresses: smtpd keeps the last 100 resolved addresses (smtpd_resolve's cache).
    for (addr, to) in [
        ("198.51.100.31", "y@relay.example"),
        ("198.51.100.31", "y@local.test"),
    ] {
        let theirs = via_postfix(addr, to).await;
        let ours = rcpt(&rg, addr, "s@sender.example", to).await;
        compare(
            format!("relay_domains server stopped, {addr} {to}"),
            theirs,
            ours,
        );
    }
    nets.stop();
    let theirs = via_postfix("198.51.100.31", "x@elsewhere.example").await;
    let ours = rcpt(
        &rg,
        "198.51.100.31",
        "s@sender.example",
        "x@elsewhere.example",
    )
    .await;
    compare("mynetworks server stopped".into(), theirs, ours);
    eprintln!("Postfix said:\n{}", seen.join("\n"));
}
