//! SIGHUP reload: new sessions get the new config (policy and listener overrides), a session
//! opened before the reload finishes on the config it started with, and a broken file keeps the
//! running config and says why in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::relayguard::{Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(15);

fn relayguard() -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "old.test")
        .policy("mydestination", "local.test")
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .listener_with("smtp", Role::Smtp, &[("disable_vrfy_command", "no")])
        .upstream_maildir()
        .start()
}

/// A client from outside mynetworks (through the trusted PROXY listener), after EHLO and MAIL.
async fn outside(rg: &Relayguard, host: &str) -> Client {
    let mut c = Client::connect_as(rg.addr("lb"), "192.0.2.7").await;
    assert_eq!(
        c.greeting.as_deref(),
        Some(format!("220 {host} ESMTP relayguard").as_str())
    );
    assert!(c
        .ehlo("c.example")
        .await
        .starts_with(&format!("250-{host}\n")));
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    c
}

fn denied(rcpt: &str) -> String {
    format!("454 4.7.1 <{rcpt}>: Relay access denied")
}

/// Replaces the config file's text and sends HUP; waits for the `reloaded` or failure line.
fn reload(rg: &Relayguard, text: &str, expect: &str) {
    let before = count(rg, expect);
    rg.write_config(text);
    rg.signal("HUP");
    let deadline = std::time::Instant::now() + WAIT;
    while count(rg, expect) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no new {expect:?} line after HUP:\n{}",
            rg.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn count(rg: &Relayguard, needle: &str) -> usize {
    rg.log_lines().iter().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_see_the_new_policy_old_ones_keep_theirs() {
    let rg = relayguard();
    let original = std::fs::read_to_string(rg.config_path()).unwrap();
    let mut old = outside(&rg, "old.test").await;
    let mut old_smtp = Client::after_ehlo(rg.addr("smtp")).await;

    let changed = original
        .replace("\"old.test\"", "\"new.test\"")
        .replace(
            "mydestination = \"local.test\"",
            "mydestination = \"other.test\"",
        )
        .replace(
            "disable_vrfy_command = \"no\"",
            "disable_vrfy_command = \"yes\"",
        );
    assert_ne!(changed, original);
    reload(&rg, &changed, "reloaded ");

    let mut new = outside(&rg, "new.test").await;
    assert_eq!(
        new.cmd("RCPT TO:<u@local.test>").await,
        denied("u@local.test")
    );
    assert_eq!(new.cmd("RCPT TO:<u@other.test>").await, "250 2.1.5 Ok");
    let mut new_smtp = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(!new_smtp.capabilities.iter().any(|k| k == "VRFY"));
    assert_eq!(
        new_smtp.cmd("VRFY u@local.test").await,
        "502 5.5.1 VRFY command is disabled"
    );

    // The sessions opened before the HUP still run on the old snapshot.
    assert_eq!(old.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(
        old.cmd("RCPT TO:<u@other.test>").await,
        denied("u@other.test")
    );
    assert_eq!(old.cmd("HELO c.example").await, "250 old.test");
    assert_eq!(
        old_smtp.cmd("VRFY u@local.test").await,
        "252 2.0.0 u@local.test"
    );
    // And both deliver.
    for c in [&mut old, &mut new] {
        assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    }
    let r = old
        .send_mail("a@b.example", &["u@local.test"], "Subject: old\n\nx\n")
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let r = new
        .send_mail("a@b.example", &["u@other.test"], "Subject: new\n\nx\n")
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(rg.maildir().wait_for(2, WAIT).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_keeps_the_running_config() {
    let mut rg = relayguard();
    let original = std::fs::read_to_string(rg.config_path()).unwrap();

    // Not TOML at all.
    reload(
        &rg,
        &original.replace("[policy]", "[policy"),
        "reload failed, keeping the running config: ",
    );
    assert!(rg.is_running());
    let mut c = outside(&rg, "old.test").await;
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");

    // Valid TOML, an unknown parameter: named with its file and line.
    let typo = original.replace(
        "mydestination = \"local.test\"",
        "mydestination = \"other.test\"\nmydestinaton = \"x\"",
    );
    reload(&rg, &typo, "unknown parameter `mydestinaton`");
    let line = rg.wait_for_log("unknown parameter `mydestinaton`", WAIT);
    assert!(
        line.contains("reload failed, keeping the running config: ")
            && line.contains(&format!("{}:4:", rg.config_path().display())),
        "{line}"
    );
    assert!(rg.is_running());
    // mydestination = other.test from the same file was not half-applied.
    let mut c = outside(&rg, "old.test").await;
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<u@other.test>").await,
        denied("u@other.test")
    );

    // A good file afterwards is taken.
    reload(
        &rg,
        &original.replace("\"old.test\"", "\"fixed.test\""),
        "reloaded ",
    );
    outside(&rg, "fixed.test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_and_upstream_changes_need_a_restart() {
    let mut rg = relayguard();
    let original = std::fs::read_to_string(rg.config_path()).unwrap();
    let port = rg.port("lb").to_string();
    let moved = original.replacen(&format!("127.0.0.1:{port}"), "127.0.0.1:1", 1);
    assert_ne!(moved, original);
    reload(
        &rg,
        &moved,
        "a change to the [[listener]] names, addresses or roles needs a restart",
    );
    let upstream = original.replace(
        "kind = \"maildir\"",
        "kind = \"maildir\"\nidentity = \"none\"",
    );
    assert_ne!(upstream, original);
    reload(
        &rg,
        &upstream,
        "a change to [upstream] kind, address, TLS, identity or warm_connections needs a restart",
    );
    // The admin listeners are bound at start too: a new /metrics address would be ignored.
    let admin = format!("{original}\n[admin]\nhttp = \"127.0.0.1:1\"\n");
    reload(
        &rg,
        &admin,
        "a change to [admin] socket or http needs a restart",
    );
    assert!(rg.is_running());
    outside(&rg, "old.test").await;
}

/// What a new connection to `addr` hears first: the greeting or the 421 of a full listener.
async fn first_reply(addr: std::net::SocketAddr) -> (Client, String) {
    let mut c = Client::connect(addr).await;
    let reply = c.read_reply().await;
    (c, reply)
}

/// The first reply a new connection hears once the slots of closed sessions are free again:
/// a session gives its slot back when its task ends, just after its client saw 221.
async fn greeted_when_a_slot_is_free(addr: std::net::SocketAddr) -> Client {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (c, reply) = first_reply(addr).await;
        if reply == "220 relayguard.test ESMTP relayguard" {
            return c;
        }
        assert_eq!(reply, FULL);
        assert!(std::time::Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const FULL: &str = "421 4.7.0 relayguard.test Error: too many connections";

/// max_connections is applied by a reload, both ways, while sessions are open: a larger limit
/// lets the next client in at once, a smaller one turns new clients away until enough of the
/// sessions already running have ended, and none of those is cut (issue 10, item 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_max_connections() {
    let rg = Relayguard::builder()
        .listener("smtp", Role::Smtp)
        .listener_toml("smtp", "max_connections = 1")
        .upstream_maildir()
        .extra_toml("[limits]\nworkers = 2")
        .start();
    let addr = rg.addr("smtp");
    let original = std::fs::read_to_string(rg.config_path()).unwrap();
    let mut a = Client::greeted(addr).await;
    assert_eq!(first_reply(addr).await.1, FULL);

    reload(
        &rg,
        &original.replace("max_connections = 1", "max_connections = 3"),
        "reloaded ",
    );
    let mut b = Client::greeted(addr).await;
    let mut c = Client::greeted(addr).await;
    assert_eq!(first_reply(addr).await.1, FULL);
    rg.wait_for_log(
        "warning: Connection concurrency limit exceeded: 4 from unknown[127.0.0.1] for service smtp",
        WAIT,
    );

    reload(&rg, &original, "reloaded ");
    assert_eq!(first_reply(addr).await.1, FULL);
    // The three sessions opened under the larger limit go on.
    for s in [&mut a, &mut b, &mut c] {
        assert_eq!(s.cmd("NOOP").await, "250 2.0.0 Ok");
    }
    for s in [&mut a, &mut b] {
        assert_eq!(s.cmd("QUIT").await, "221 2.0.0 Bye");
        s.expect_closed().await;
    }
    // One session left and a limit of one: still full.
    assert_eq!(first_reply(addr).await.1, FULL);
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    c.expect_closed().await;
    let mut d = greeted_when_a_slot_is_free(addr).await;
    assert_eq!(first_reply(addr).await.1, FULL);
    assert_eq!(d.cmd("QUIT").await, "221 2.0.0 Bye");
}

/// The worker threads and their accept sockets are made at start: a reload that changes
/// `workers` is refused as a whole, and the running config stays, other changes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_workers_needs_a_restart() {
    let mut rg = Relayguard::builder()
        .policy("myhostname", "old.test")
        .policy("mydestination", "local.test")
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .extra_toml("[limits]\nworkers = 2")
        .start();
    let original = std::fs::read_to_string(rg.config_path()).unwrap();
    let changed = original
        .replace("workers = 2", "workers = 1")
        .replace("\"old.test\"", "\"new.test\"");
    assert_ne!(changed, original);
    reload(
        &rg,
        &changed,
        "a change to [limits] workers (2 to 1) needs a restart",
    );
    assert!(rg.is_running());
    outside(&rg, "old.test").await;
}

/// A reload may bring the first DNS restriction: the resolver is there for it even though
/// the policy relayguard started with asked the DNS nothing (and `[dns] lookups = "auto"`
/// needed no client names).
#[tokio::test]
async fn a_reload_that_adds_a_dnsbl_has_a_resolver() {
    let dns = support::dns::start_dnsmasq_with(&[
        "--address=/2.0.0.127.zen.example/127.0.0.2".to_string()
    ]);
    let dns_toml = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\n",
        dns.addr
    );
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .extra_toml(&dns_toml)
        .start();
    let rcpt = |rg: &Relayguard| {
        let addr = rg.addr("lb");
        async move {
            let mut c = Client::connect_as(addr, "127.0.0.2").await;
            c.ehlo("c.example").await;
            c.cmd("MAIL FROM:<a@b.example>").await;
            c.cmd("RCPT TO:<u@local.test>").await
        }
    };
    assert_eq!(rcpt(&rg).await, "250 2.1.5 Ok");
    let text = std::fs::read_to_string(rg.config_path()).unwrap().replace(
        "[policy]\n",
        "[policy]\nsmtpd_recipient_restrictions = \"reject_rbl_client zen.example, permit\"\n",
    );
    reload(&rg, &text, "reloaded ");
    assert_eq!(
        rcpt(&rg).await,
        "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example"
    );
}
