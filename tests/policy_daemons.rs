//! check_policy_service against real policy daemons from Debian packages: postgrey greylists
//! the first attempt and passes the retry after its delay (with its X-Greylist header), and
//! policyd-spf passes, fails or says none for senders whose SPF records come from the test's
//! own dnsmasq. Clients appear from documentation addresses through a PROXY listener.
//!
//! Needs root and the packages postgrey, postfix-policyd-spf-python, socat and dnsmasq;
//! skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::client::Client;
use support::policy_daemons::{missing, policyd_spf, postgrey, spf_dns};
use support::relayguard::{Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(15);

fn relayguard(restrictions: &str) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("smtpd_recipient_restrictions", restrictions)
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .start()
}

async fn session(rg: &Relayguard, client: &str, from: &str) -> Client {
    let mut c = Client::connect_as(rg.addr("lb"), client).await;
    c.ehlo("client.example").await;
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await, "250 2.1.0 Ok");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrey_greylists_then_passes_the_retry() {
    if let Some(why) = missing(&["postgrey"]) {
        eprintln!("skipped: {why}");
        return;
    }
    let grey = postgrey(2);
    let rg = relayguard(&format!(
        "check_policy_service inet:127.0.0.1:{}",
        grey.port
    ));
    let mut c = session(&rg, "198.51.100.20", "s@sender.example").await;
    let first = Instant::now();
    assert_eq!(
        c.cmd("RCPT TO:<user@local.test>").await,
        "450 4.2.0 <user@local.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/local.test.html"
    );
    rg.wait_for_log(
        "NOQUEUE: reject: RCPT from unknown[198.51.100.20]: 450 4.2.0 <user@local.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/local.test.html; from=<s@sender.example> to=<user@local.test> proto=ESMTP helo=<client.example>",
        WAIT,
    );
    // Too early: still greylisted.
    assert!(c
        .cmd("RCPT TO:<user@local.test>")
        .await
        .starts_with("450 4.2.0 "));
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    // The retry after the delay passes, and the message carries postgrey's header.
    let wait = Duration::from_secs(3).saturating_sub(first.elapsed());
    tokio::time::sleep(wait).await;
    let mut c = Client::connect_as(rg.addr("lb"), "198.51.100.20").await;
    c.ehlo("client.example").await;
    let reply = c
        .send_mail(
            "s@sender.example",
            &["user@local.test"],
            "Subject: retry\r\n\r\nbody\r\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    let message = rg.maildir().wait_for(1, WAIT).remove(0);
    let header = message.header("X-Greylist").expect("X-Greylist header");
    assert!(
        header.starts_with("delayed ") && header.contains(" seconds by postgrey-1.37 at "),
        "{header}"
    );
    let log = grey.log();
    assert!(log.contains("action=greylist, reason=new, client_name=unknown, client_address=198.51.100.20, sender=s@sender.example, recipient=user@local.test"), "{log}");
    assert!(log.contains("action=pass, reason=triplet found"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policyd_spf_pass_fail_and_none() {
    if let Some(why) = missing(&["policyd-spf", "socat", "dnsmasq", "unshare"]) {
        eprintln!("skipped: {why}");
        return;
    }
    let dns = spf_dns(&[
        ("spf-pass.example", "v=spf1 ip4:198.51.100.30 -all"),
        ("spf-fail.example", "v=spf1 -all"),
    ]);
    let spf = policyd_spf(&dns);
    let rg = relayguard(&format!(
        "check_policy_service {{ inet:127.0.0.1:{}, timeout=20s }}",
        spf.port
    ));

    let mut c = session(&rg, "198.51.100.30", "a@spf-fail.example").await;
    assert_eq!(
        c.cmd("RCPT TO:<user@local.test>").await,
        "550 5.7.23 <user@local.test>: Recipient address rejected: Message rejected due to: SPF fail - not authorized. Please see http://www.openspf.net/Why?s=mfrom;id=a@spf-fail.example;ip=198.51.100.30;r=local.test"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    let mut c = Client::connect_as(rg.addr("lb"), "198.51.100.30").await;
    c.ehlo("client.example").await;
    let reply = c
        .send_mail(
            "a@spf-pass.example",
            &["user@local.test"],
            "Subject: spf\r\n\r\nbody\r\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    let message = rg.maildir().wait_for(1, WAIT).remove(0);
    assert_eq!(
        message.header("Received-SPF").as_deref().map(str::trim_end),
        Some("Pass (mailfrom) identity=mailfrom; client-ip=198.51.100.30; helo=client.example; envelope-from=a@spf-pass.example; receiver=local.test")
    );

    // No SPF record: none, and the mail passes.
    let mut c = session(&rg, "198.51.100.30", "a@nospf.example").await;
    assert_eq!(c.cmd("RCPT TO:<user@local.test>").await, "250 2.1.5 Ok");
}
