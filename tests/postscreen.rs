//! postscreen's front-line tests on a running relayguard: the pregreet test, weighted DNSBL
//! scores from a zone this test serves, the pass cache and the access list, with the replies
//! and log lines a Postfix 3.7.11 postscreen gives in the same cases. Those were taken from the
//! harness's main.cf with `127.0.0.1:PORT inet n - n - 1 postscreen`, `smtpd pass - - n - - smtpd`,
//! `dnsblog unix - - n - 0 dnsblog` and `tlsproxy unix - - n - 0 tlsproxy` in master.cf, resolving
//! an equivalent dnsmasq zone, with clients bound to 127.0.0.x; the deliberate differences are
//! that the session, not a dummy engine, answers an enforced client (DATA gets the same 554 but
//! the connection stays open) and that equal weights name whichever list answered first, there
//! as here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::client::Client;
use support::dns::DnsWorld;
use support::relayguard::{Relayguard, RelayguardBuilder, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(15);
const HOST: &str = "mx.relayguard.test";
const BANNER: &str = "mx.relayguard.test ESMTP relayguard";
/// postscreen_greet_wait in these tests: short, but long enough to tell from no wait.
const GREET_WAIT: Duration = Duration::from_secs(1);
const MESSAGE: &str = "Subject: screened\r\n\r\nhello\r\n";

/// relayguard with postscreen on the PROXY listener `name` (and any more listeners the caller
/// adds), delivering local.test into its Maildir, resolving through `dns`.
fn builder(dns: &DnsWorld, policy: &[(&str, &str)]) -> RelayguardBuilder {
    let mut b = Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .policy("mynetworks", "192.0.2.0/24")
        .policy("postscreen_greet_wait", "1s");
    for (k, v) in policy {
        b = b.policy(k, v);
    }
    b.upstream_maildir().extra_toml(&format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\n",
        dns.addr()
    ))
}

/// A listener of role smtp behind the trusted PROXY, with `overrides`.
fn lb(b: RelayguardBuilder, name: &str, overrides: &[(&str, &str)]) -> RelayguardBuilder {
    b.listener_with(name, Role::Smtp, overrides)
        .listener_toml(name, TRUST_LOOPBACK_PROXY)
}

/// A client that appears as `addr` on `listener`, its greeting read, and how long it took.
async fn arrive(rg: &Relayguard, listener: &str, addr: &str) -> (Client, Duration) {
    let started = Instant::now();
    let c = Client::connect_as(rg.addr(listener), addr).await;
    (c, started.elapsed())
}

/// The greeting a client that passes postscreen's tests sees: postscreen's teaser, then the
/// session's own 220.
fn screened_greeting() -> String {
    format!("220-{BANNER}\n220 {BANNER}")
}

/// EHLO, MAIL, RCPT to local.test; the RCPT reply (and the message sent when it was taken).
async fn try_deliver(c: &mut Client) -> String {
    c.ehlo("client.example").await;
    assert_eq!(c.cmd("MAIL FROM:<s@sender.example>").await, "250 2.1.0 Ok");
    let rcpt = c.cmd("RCPT TO:<u@local.test>").await;
    if rcpt.starts_with("250") {
        assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
        c.send_raw(format!("{MESSAGE}.\r\n").as_bytes()).await;
        let queued = c.read_reply().await;
        assert!(queued.starts_with("250 2.0.0 Ok"), "{queued}");
    }
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    rcpt
}

/// The PROXY header `Client::connect_as` sends, for clients that must talk before the greeting.
fn proxy_header(addr: &str) -> String {
    format!("PROXY TCP4 {addr} 127.0.0.1 40001 25\r\n")
}

/// A log line of `tag` ending in `text` (the syslog prefix and PID differ).
fn logged(rg: &Relayguard, tag: &str, text: &str) -> String {
    rg.wait_for_log(&format!("{tag}[{}]: {text}", rg.pid().unwrap()), WAIT)
}

fn not_logged(rg: &Relayguard, text: &str) {
    let lines = rg.log_lines();
    assert!(
        !lines.iter().any(|l| l.contains(text)),
        "unexpected `{text}` in:\n{}",
        lines.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pregreeting_client_is_refused_while_a_polite_one_delivers() {
    let dns = DnsWorld::builder().start();
    let b = builder(&dns, &[("postscreen_greet_action", "enforce")]);
    let b = lb(b, "mx", &[]);
    let b = lb(b, "drop", &[("postscreen_greet_action", "drop")]);
    let rg = lb(b, "lenient", &[("postscreen_greet_action", "ignore")]).start();

    // Polite: waits out postscreen_greet_wait, sees the teaser and the greeting, delivers.
    let (mut c, took) = arrive(&rg, "mx", "198.51.100.1").await;
    assert_eq!(c.greeting.as_deref(), Some(screened_greeting().as_str()));
    assert!(took >= GREET_WAIT, "no greet wait: {took:?}");
    assert_eq!(try_deliver(&mut c).await, "250 2.1.5 Ok");
    logged(
        &rg,
        "postfix/postscreen",
        "CONNECT from [198.51.100.1]:40001 to [127.0.0.1]:25",
    );
    logged(&rg, "postfix/postscreen", "PASS NEW [198.51.100.1]:40001");
    rg.maildir().wait_for(1, WAIT);

    // Pregreeting, enforced: no `220 ` after the teaser; postscreen's engine answers, and
    // refuses every recipient with the protocol error.
    let mut bot = Client::connect(rg.addr("mx")).await;
    bot.send_raw(format!("{}EHLO bot.example\r\n", proxy_header("198.51.100.2")).as_bytes())
        .await;
    let ehlo = bot.read_reply().await;
    assert!(
        ehlo.starts_with(&format!("220-{BANNER}\n250-{HOST}\n")),
        "{ehlo}"
    );
    assert_eq!(
        bot.cmd("MAIL FROM:<s@sender.example>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(
        bot.cmd("RCPT TO:<u@local.test>").await,
        "550 5.5.1 Protocol error"
    );
    assert_eq!(
        bot.cmd("DATA").await,
        "554 5.5.1 Error: no valid recipients"
    );
    assert_eq!(bot.cmd("QUIT").await, "221 2.0.0 Bye");
    let line = logged(&rg, "postfix/postscreen", "PREGREET 18 after ");
    assert!(
        line.ends_with(" from [198.51.100.2]:40001: EHLO bot.example\\r\\n"),
        "{line}"
    );
    logged(
        &rg,
        "postfix/postscreen",
        "NOQUEUE: reject: RCPT from [198.51.100.2]:40001: 550 5.5.1 Protocol error; from=<s@sender.example>, to=<u@local.test>, proto=ESMTP, helo=<bot.example>",
    );

    // Pregreeting, dropped: the teaser, the 521, the end.
    let mut bot = Client::connect(rg.addr("drop")).await;
    bot.send_raw(format!("{}EHLO bot.example\r\n", proxy_header("198.51.100.3")).as_bytes())
        .await;
    assert_eq!(
        bot.read_reply().await,
        format!("220-{BANNER}\n521 5.5.1 Protocol error")
    );
    bot.expect_closed().await;
    logged(&rg, "postfix/postscreen", "DISCONNECT [198.51.100.3]:40001");

    // Pregreeting, ignored: logged, then the session goes on as usual and delivers; the
    // test is not passed, so there is no PASS NEW and it runs again next time.
    let mut bot = Client::connect(rg.addr("lenient")).await;
    bot.send_raw(format!("{}EHLO bot.example\r\n", proxy_header("198.51.100.4")).as_bytes())
        .await;
    assert_eq!(bot.read_reply().await, screened_greeting());
    assert!(bot.read_reply().await.starts_with(&format!("250-{HOST}\n")));
    assert_eq!(try_deliver(&mut bot).await, "250 2.1.5 Ok");
    logged(&rg, "postfix/postscreen", "PREGREET 18 after ");
    rg.maildir().wait_for(2, WAIT);
    not_logged(&rg, "PASS NEW [198.51.100.4]");
    not_logged(&rg, "improper command pipelining after CONNECT");
    // The dropped client never reached the session proper: no smtpd line names it.
    not_logged(&rg, "unknown[198.51.100.3]");
    assert_eq!(
        rg.maildir().messages().len(),
        2,
        "the refused bot delivered nothing"
    );
}

/// bl1 (weight 2) alone is below the threshold of 4, bl1 and bl2 (weight 3, only for
/// 127.0.0.2-11) reach it, and the allow list (weight -3) cancels the pair.
fn weighted_zone() -> DnsWorld {
    let listed = Ipv4Addr::new(127, 0, 0, 2);
    let mut w = DnsWorld::builder();
    for client in [
        "198.51.100.10",
        "198.51.100.11",
        "198.51.100.12",
        "198.51.100.13",
        "198.51.100.14",
        "198.51.100.15",
    ] {
        w = w.dnsbl("bl1.test", client.parse().unwrap(), listed, None);
    }
    for client in [
        "198.51.100.11",
        "198.51.100.12",
        "198.51.100.14",
        "198.51.100.15",
    ] {
        w = w.dnsbl(
            "bl2.test",
            client.parse().unwrap(),
            Ipv4Addr::new(127, 0, 0, 4),
            None,
        );
    }
    // Listed, but with an answer outside bl2's filter.
    w = w.dnsbl(
        "bl2.test",
        "198.51.100.13".parse().unwrap(),
        Ipv4Addr::new(127, 0, 0, 12),
        None,
    );
    for client in ["198.51.100.12", "198.51.100.16"] {
        w = w.dnsbl(
            "wl.test",
            client.parse().unwrap(),
            Ipv4Addr::new(127, 0, 9, 2),
            None,
        );
    }
    w.start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dnsbl_listed_client_is_scored_out_by_weights() {
    let dns = weighted_zone();
    let b = builder(
        &dns,
        &[
            (
                "postscreen_dnsbl_sites",
                "bl1.test*2, bl2.test=127.0.0.[2..11]*3, wl.test=127.0.[0..255].[1..3]*-3",
            ),
            ("postscreen_dnsbl_threshold", "4"),
            ("postscreen_dnsbl_action", "enforce"),
        ],
    );
    let b = lb(b, "mx", &[]);
    let b = lb(b, "strict", &[("postscreen_dnsbl_action", "drop")]);
    let rg = lb(
        b,
        "trusting",
        &[("postscreen_dnsbl_allowlist_threshold", "-1")],
    )
    .start();

    // One list alone: 2 < 4, a pass.
    let (mut c, _) = arrive(&rg, "mx", "198.51.100.10").await;
    assert_eq!(c.greeting.as_deref(), Some(screened_greeting().as_str()));
    assert_eq!(try_deliver(&mut c).await, "250 2.1.5 Ok");
    logged(&rg, "postfix/postscreen", "PASS NEW [198.51.100.10]:40001");
    logged(
        &rg,
        "postfix/dnsblog",
        "addr 198.51.100.10 listed by domain bl1.test as 127.0.0.2",
    );

    // Both lists: 5, scored out; the heavier list names it.
    let (mut c, _) = arrive(&rg, "mx", "198.51.100.11").await;
    assert_eq!(c.greeting.as_deref(), Some(screened_greeting().as_str()));
    assert_eq!(
        try_deliver(&mut c).await,
        "550 5.7.1 Service unavailable; client [198.51.100.11] blocked using bl2.test"
    );
    logged(
        &rg,
        "postfix/postscreen",
        "DNSBL rank 5 for [198.51.100.11]:40001",
    );
    logged(
        &rg,
        "postfix/postscreen",
        "NOQUEUE: reject: RCPT from [198.51.100.11]:40001: 550 5.7.1 Service unavailable; client [198.51.100.11] blocked using bl2.test; from=<s@sender.example>, to=<u@local.test>, proto=ESMTP, helo=<client.example>",
    );
    not_logged(&rg, "PASS NEW [198.51.100.11]");

    // Both lists and the allow list: 2, a pass.
    let (mut c, _) = arrive(&rg, "mx", "198.51.100.12").await;
    assert_eq!(try_deliver(&mut c).await, "250 2.1.5 Ok");
    logged(&rg, "postfix/postscreen", "PASS NEW [198.51.100.12]:40001");

    // bl2's answer is outside its filter: only bl1 counts.
    let (mut c, _) = arrive(&rg, "mx", "198.51.100.13").await;
    assert_eq!(try_deliver(&mut c).await, "250 2.1.5 Ok");
    logged(&rg, "postfix/postscreen", "PASS NEW [198.51.100.13]:40001");

    // Listed and pregreeting, with the pregreet ignored: the banner comes (the ignored test
    // is forgotten), the listing is enforced.
    let mut bot = Client::connect(rg.addr("mx")).await;
    bot.send_raw(format!("{}EHLO bot.example\r\n", proxy_header("198.51.100.15")).as_bytes())
        .await;
    assert_eq!(bot.read_reply().await, screened_greeting());
    assert!(bot.read_reply().await.starts_with(&format!("250-{HOST}\n")));
    assert_eq!(
        bot.cmd("MAIL FROM:<s@sender.example>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(
        bot.cmd("RCPT TO:<u@local.test>").await,
        "550 5.7.1 Service unavailable; client [198.51.100.15] blocked using bl2.test"
    );
    logged(
        &rg,
        "postfix/postscreen",
        "DNSBL rank 5 for [198.51.100.15]:40001",
    );

    // With `drop`, the 521 follows the teaser and the connection closes.
    let (mut c, _) = arrive(&rg, "strict", "198.51.100.14").await;
    assert_eq!(
        c.greeting.as_deref(),
        Some(
            format!(
                "220-{BANNER}\n521 5.7.1 Service unavailable; client [198.51.100.14] blocked using bl2.test"
            )
            .as_str()
        )
    );
    c.expect_closed().await;
    logged(
        &rg,
        "postfix/postscreen",
        "DNSBL rank 5 for [198.51.100.14]:40001",
    );
    logged(
        &rg,
        "postfix/postscreen",
        "DISCONNECT [198.51.100.14]:40001",
    );

    // Allow-listed alone, at the allowlist threshold: the wait ends with the DNS answer,
    // and the pregreet test counts as passed, so the next session does not wait either.
    for age in ["NEW", "OLD"] {
        let (mut c, took) = arrive(&rg, "trusting", "198.51.100.16").await;
        assert!(took < GREET_WAIT, "{took:?}");
        let greeting = c.greeting.clone().unwrap();
        assert!(greeting.ends_with(&format!("220 {BANNER}")), "{greeting}");
        assert_eq!(try_deliver(&mut c).await, "250 2.1.5 Ok");
        logged(
            &rg,
            "postfix/postscreen",
            &format!("PASS {age} [198.51.100.16]:40001"),
        );
    }

    rg.maildir().wait_for(5, WAIT);
    assert_eq!(rg.maildir().messages().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_passed_skips_the_tests_next_time() {
    let dns = DnsWorld::builder().start();
    let b = builder(&dns, &[("postscreen_dnsbl_sites", "bl1.test")]);
    let rg = lb(b, "mx", &[]).start();

    let (mut c, took) = arrive(&rg, "mx", "198.51.100.20").await;
    assert!(took >= GREET_WAIT, "{took:?}");
    assert_eq!(c.greeting.as_deref(), Some(screened_greeting().as_str()));
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    logged(&rg, "postfix/postscreen", "PASS NEW [198.51.100.20]:40001");

    // Cached: no teaser, no wait.
    let (mut c, took) = arrive(&rg, "mx", "198.51.100.20").await;
    assert_eq!(
        c.greeting.as_deref(),
        Some(format!("220 {BANNER}").as_str())
    );
    assert!(took < GREET_WAIT, "{took:?}");
    assert_eq!(try_deliver(&mut c).await, "250 2.1.5 Ok");
    logged(&rg, "postfix/postscreen", "PASS OLD [198.51.100.20]:40001");

    // Another client still waits.
    let (_, took) = arrive(&rg, "mx", "198.51.100.21").await;
    assert!(took >= GREET_WAIT, "{took:?}");

    // One that hangs up while it waits is logged as postscreen logs it, and not cached.
    let mut c = Client::connect(rg.addr("mx")).await;
    c.send_raw(proxy_header("198.51.100.22").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c);
    let line = logged(&rg, "postfix/postscreen", "HANGUP after 0.");
    assert!(
        line.ends_with(" from [198.51.100.22]:40001 in tests before SMTP handshake"),
        "{line}"
    );
    logged(
        &rg,
        "postfix/postscreen",
        "DISCONNECT [198.51.100.22]:40001",
    );
    // smtpd never saw the client that hung up: no disconnect line of its own. Checked before
    // the next connection from the same address, whose own lines would match.
    not_logged(&rg, "disconnect from unknown[198.51.100.22]");
    let (_, took) = arrive(&rg, "mx", "198.51.100.22").await;
    assert!(took >= GREET_WAIT, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_list_allows_and_denies() {
    let dns = DnsWorld::builder().start();
    let b = builder(
        &dns,
        &[
            (
                "postscreen_access_list",
                "permit_mynetworks, cidr:{ {198.51.100.30 permit}, {198.51.100.31 reject}, {198.51.100.32 reject} }",
            ),
            ("postscreen_blacklist_action", "enforce"),
        ],
    );
    let b = lb(b, "mx", &[]);
    let rg = lb(b, "strict", &[("postscreen_denylist_action", "drop")]).start();

    // Permitted by the table, and by mynetworks: no tests, no wait.
    for (addr, who) in [
        ("198.51.100.30", "[198.51.100.30]:40001"),
        ("192.0.2.5", "[192.0.2.5]:40001"),
    ] {
        let (mut c, took) = arrive(&rg, "mx", addr).await;
        assert_eq!(
            c.greeting.as_deref(),
            Some(format!("220 {BANNER}").as_str())
        );
        assert!(took < GREET_WAIT, "{took:?}");
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
        logged(&rg, "postfix/postscreen", &format!("ALLOWLISTED {who}"));
    }

    // Denied, enforced (the old parameter name): the tests still run, every RCPT is refused.
    let (mut c, _) = arrive(&rg, "mx", "198.51.100.31").await;
    assert_eq!(c.greeting.as_deref(), Some(screened_greeting().as_str()));
    assert_eq!(
        try_deliver(&mut c).await,
        "550 5.3.2 Service currently unavailable"
    );
    logged(
        &rg,
        "postfix/postscreen",
        "DENYLISTED [198.51.100.31]:40001",
    );

    // Denied, dropped: the 521 instead of any greeting.
    let (mut c, _) = arrive(&rg, "strict", "198.51.100.32").await;
    assert_eq!(
        c.greeting.as_deref(),
        Some("521 5.3.2 Service currently unavailable")
    );
    c.expect_closed().await;
    logged(
        &rg,
        "postfix/postscreen",
        "DENYLISTED [198.51.100.32]:40001",
    );
    logged(
        &rg,
        "postfix/postscreen",
        "DISCONNECT [198.51.100.32]:40001",
    );
    assert!(rg.maildir().messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postscreen_runs_on_smtp_listeners_only() {
    let dns = DnsWorld::builder().start();
    let b = builder(&dns, &[("postscreen_greet_action", "drop")]);
    let b = lb(b, "mx", &[]);
    let rg = b.listener("sub", Role::Submission).start();
    let mut c = Client::connect(rg.addr("sub")).await;
    let started = Instant::now();
    assert_eq!(c.greeting().await, format!("220 {BANNER}"));
    assert!(started.elapsed() < GREET_WAIT);
    not_logged(&rg, "postfix/postscreen");
}
