//! Postfix 3.7's answers to its DNS restrictions against the reference world, recorded as
//! assertions: the reference for relayguard's implementation of the same restrictions.
//!
//! Each test starts the reference world on its own 127.0.53.x:53 and a private Postfix that
//! resolves only through it (resolv.conf `options attempts:1 timeout:2`), then asks as a
//! client over XCLIENT. Postfix's defaults hold unless a test says otherwise, notably
//! `smtpd_delay_reject = yes`: HELO and sender restrictions answer at RCPT TO, so MAIL FROM
//! always gets `250 2.1.0 Ok` here.

// Test helpers panic on setup failures; clippy only exempts `#[test]` bodies by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::dns::{DnsWorld, Listen};
use support::dns_reference::*;
use support::postfix::Postfix;
use support::probe::{ask_postfix, Question};
use support::process;

/// A reference world and a Postfix resolving through it; dropped together.
struct Reference {
    pf: Postfix,
    _world: DnsWorld,
}

impl Reference {
    fn start(params: &[(&str, &str)]) -> Reference {
        let world = DnsWorld::reference().listen(Listen::Port53).start();
        let mut builder = Postfix::builder().starttls(false).resolver(&world);
        for (name, value) in params {
            builder = builder.param(name, value);
        }
        Reference {
            pf: builder.start(),
            _world: world,
        }
    }

    /// The RCPT TO reply; MAIL FROM must have been accepted (the verdicts are delayed).
    async fn rcpt(&self, q: Question) -> String {
        let answers = ask_postfix(&self.pf, &q).await;
        assert_eq!(answers.mail, "250 2.1.0 Ok", "{q:?}");
        answers.rcpt
    }

    /// The smtpd lines that carry a verdict or a complaint (`NOQUEUE: reject: ...`,
    /// `warning: ...`), once there are `count` of them (10 s at most: postlogd writes late).
    fn verdict_log(&self, count: usize) -> Vec<String> {
        let lines = || -> Vec<String> {
            self.pf
                .smtpd_log()
                .into_iter()
                .filter(|l| l.starts_with("NOQUEUE: ") || l.starts_with("warning: "))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines().len() < count && Instant::now() < deadline {
            std::thread::sleep(process::POLL);
        }
        lines()
    }
}

fn confirmed() -> Question {
    Question::from(CLIENT_CONFIRMED).name("client.example")
}

/// `from=<..> to=<u@local.test> proto=ESMTP helo=<..>`, the tail of every NOQUEUE line here.
fn envelope(sender: &str, helo: &str) -> String {
    format!("from=<{sender}> to=<u@local.test> proto=ESMTP helo=<{helo}>")
}

#[tokio::test]
async fn reject_unknown_sender_domain() {
    let r = Reference::start(&[("smtpd_sender_restrictions", "reject_unknown_sender_domain")]);
    let ask = |domain: &str| r.rcpt(confirmed().sender(&format!("s@{domain}")));
    assert_eq!(ask(DOMAIN_A_ONLY).await, "250 2.1.5 Ok");
    assert_eq!(ask(DOMAIN_AAAA_ONLY).await, "250 2.1.5 Ok");
    assert_eq!(ask(DOMAIN_MX_ONLY).await, "250 2.1.5 Ok");
    let null_mx = "550 5.7.27 <s@null-mx.example>: Sender address rejected: \
                   Domain null-mx.example does not accept mail (nullMX)";
    assert_eq!(ask(DOMAIN_NULL_MX).await, null_mx);
    // unknown_address_reject_code defaults to 450, so NXDOMAIN and SERVFAIL read the same.
    let not_found =
        |d: &str| format!("450 4.1.8 <s@{d}>: Sender address rejected: Domain not found");
    assert_eq!(ask(DOMAIN_NXDOMAIN).await, not_found(DOMAIN_NXDOMAIN));
    assert_eq!(ask(DOMAIN_SERVFAIL).await, not_found(DOMAIN_SERVFAIL));
    // MX, A and AAAA each time out after resolv.conf's 2 s.
    let started = Instant::now();
    assert_eq!(ask(DOMAIN_SLOW).await, not_found(DOMAIN_SLOW));
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    let reject = |reply: &str, d: &str| {
        format!(
            "NOQUEUE: reject: RCPT from client.example[198.51.100.7]: {reply}; {}",
            envelope(&format!("s@{d}"), "client.example")
        )
    };
    assert_eq!(
        r.verdict_log(4),
        [
            reject(null_mx, DOMAIN_NULL_MX),
            reject(&not_found(DOMAIN_NXDOMAIN), DOMAIN_NXDOMAIN),
            reject(&not_found(DOMAIN_SERVFAIL), DOMAIN_SERVFAIL),
            reject(&not_found(DOMAIN_SLOW), DOMAIN_SLOW),
        ]
    );

    // With a permanent code the two part: NXDOMAIN takes it, a lookup that failed for now
    // stays 450 (unknown_address_tempfail_action = defer_if_permit).
    r.pf.postconf(&[("unknown_address_reject_code", "550")]);
    r.pf.reload();
    assert_eq!(
        ask(DOMAIN_NXDOMAIN).await,
        "550 5.1.8 <s@nx.example>: Sender address rejected: Domain not found"
    );
    assert_eq!(ask(DOMAIN_SERVFAIL).await, not_found(DOMAIN_SERVFAIL));
    assert_eq!(ask(DOMAIN_NULL_MX).await, null_mx);
}

#[tokio::test]
async fn reject_rbl_client_and_reject_rhsbl_sender() {
    let r = Reference::start(&[(
        "smtpd_recipient_restrictions",
        "reject_rbl_client zen.test, reject_rhsbl_sender rhsbl.test, permit",
    )]);
    let zen =
        "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.test; listed";
    let listed = Question::from(CLIENT_ZEN_LISTED);
    assert_eq!(r.rcpt(listed.clone()).await, zen);
    assert_eq!(r.rcpt(confirmed()).await, "250 2.1.5 Ok");
    assert_eq!(r.rcpt(Question::from("2001:db8::7")).await, "250 2.1.5 Ok");
    // No TXT record: no reason after the domain.
    let rhsbl =
        "554 5.7.1 Service unavailable; Sender address [s@bad.example] blocked using rhsbl.test";
    assert_eq!(r.rcpt(confirmed().sender("s@bad.example")).await, rhsbl);
    // The client is checked first; the null sender has no domain to look up.
    assert_eq!(r.rcpt(listed.sender("s@bad.example")).await, zen);
    assert_eq!(r.rcpt(confirmed().sender("")).await, "250 2.1.5 Ok");
    assert_eq!(
        r.verdict_log(3),
        [
            format!(
                "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: {zen}; {}",
                envelope("sender@a-only.example", "client.example")
            ),
            format!(
                "NOQUEUE: reject: RCPT from client.example[198.51.100.7]: {rhsbl}; {}",
                envelope("s@bad.example", "client.example")
            ),
            format!(
                "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: {zen}; {}",
                envelope("s@bad.example", "client.example")
            ),
        ]
    );
}

/// A list that fails to answer is skipped with a warning: the mail is accepted.
#[tokio::test]
async fn rbl_lookup_errors_are_warnings() {
    let r = Reference::start(&[(
        "smtpd_recipient_restrictions",
        "reject_rbl_client servfail.dnsworld, reject_rbl_client slow.dnsworld, \
         reject_rhsbl_sender servfail.dnsworld, reject_rhsbl_sender slow.dnsworld, permit",
    )]);
    let started = Instant::now();
    assert_eq!(r.rcpt(confirmed()).await, "250 2.1.5 Ok");
    // Two slow lookups (client, sender), 2 s each.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let error = |name: &str| {
        format!(
            "warning: {name}: RBL lookup error: Host or domain name not found. \
             Name service error for name={name} type=A: Host not found, try again"
        )
    };
    assert_eq!(
        r.verdict_log(4),
        [
            error("7.100.51.198.servfail.dnsworld"),
            error("7.100.51.198.slow.dnsworld"),
            error("a-only.example.servfail.dnsworld"),
            error("a-only.example.slow.dnsworld"),
        ]
    );
}

#[tokio::test]
async fn reject_rbl_client_with_a_reply_code_range() {
    let r = Reference::start(&[(
        "smtpd_recipient_restrictions",
        "reject_rbl_client bl.test=127.0.0.[2..4], permit",
    )]);
    let blocked = "554 5.7.1 Service unavailable; Client host [198.51.100.9] blocked using bl.test";
    assert_eq!(r.rcpt(Question::from(CLIENT_BL_IN_RANGE)).await, blocked);
    // Listed with 127.0.0.10: outside the range, so not listed for this restriction.
    let out = Question::from(CLIENT_BL_OUT_OF_RANGE);
    assert_eq!(r.rcpt(out).await, "250 2.1.5 Ok");
    assert_eq!(r.rcpt(confirmed()).await, "250 2.1.5 Ok");
    assert_eq!(
        r.verdict_log(1),
        [format!(
            "NOQUEUE: reject: RCPT from unknown[198.51.100.9]: {blocked}; {}",
            envelope("sender@a-only.example", "client.example")
        )]
    );
}

/// A HELO name passes with an A, AAAA or MX record (a null MX counts); an NS alone does not.
#[tokio::test]
async fn reject_unknown_helo_hostname() {
    let r = Reference::start(&[("smtpd_helo_restrictions", "reject_unknown_helo_hostname")]);
    let ask = |helo: &str| r.rcpt(confirmed().helo(helo));
    for helo in [
        DOMAIN_A_ONLY,
        DOMAIN_AAAA_ONLY,
        DOMAIN_MX_ONLY,
        DOMAIN_NULL_MX,
        "[198.51.100.7]",
    ] {
        assert_eq!(ask(helo).await, "250 2.1.5 Ok", "HELO {helo}");
    }
    let not_found = |h: &str| format!("450 4.7.1 <{h}>: Helo command rejected: Host not found");
    let rejected = [
        DOMAIN_NXDOMAIN,
        "delegated.example",
        "nodots",
        DOMAIN_SERVFAIL,
        DOMAIN_SLOW,
    ];
    for helo in rejected {
        assert_eq!(ask(helo).await, not_found(helo), "HELO {helo}");
    }
    let log: Vec<String> = rejected
        .iter()
        .map(|h| {
            format!(
                "NOQUEUE: reject: RCPT from client.example[198.51.100.7]: {}; {}",
                not_found(h),
                envelope("sender@a-only.example", h)
            )
        })
        .collect();
    assert_eq!(r.verdict_log(rejected.len()), log);

    r.pf.postconf(&[("unknown_hostname_reject_code", "550")]);
    r.pf.reload();
    assert_eq!(
        ask(DOMAIN_NXDOMAIN).await,
        "550 5.7.1 <nx.example>: Helo command rejected: Host not found"
    );
    assert_eq!(ask(DOMAIN_SERVFAIL).await, not_found(DOMAIN_SERVFAIL));
}

/// The MX hosts' addresses are looked up in the table; a domain without MX is its own MX
/// host (even one that does not exist), a null MX is skipped, a lookup failure is a warning.
#[tokio::test]
async fn check_sender_mx_access_with_a_cidr_table() {
    let tables = tempfile::tempdir().unwrap();
    let table = tables.path().join("mx.cidr");
    std::fs::write(
        &table,
        "10.0.0.0/8 REJECT MX in a private network\n\
         198.51.100.20 REJECT implicit MX\n\
         198.51.100.25 OK\n",
    )
    .unwrap();
    // smtpd opens the table while still root, but do not depend on that.
    std::fs::set_permissions(tables.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let restriction = format!("check_sender_mx_access cidr:{}", table.display());
    let r = Reference::start(&[("smtpd_sender_restrictions", &restriction)]);
    let ask = |domain: &str| r.rcpt(confirmed().sender(&format!("s@{domain}")));
    let private =
        "554 5.7.1 <s@private-mx.example>: Sender address rejected: MX in a private network";
    assert_eq!(ask(DOMAIN_PRIVATE_MX).await, private);
    let implicit = "554 5.7.1 <s@a-only.example>: Sender address rejected: implicit MX";
    assert_eq!(ask(DOMAIN_A_ONLY).await, implicit);
    // OK from a check_*_mx_access table is refused as unsafe.
    let config_error = "451 4.3.5 Server configuration error";
    assert_eq!(ask(DOMAIN_MX_ONLY).await, config_error);
    for domain in [DOMAIN_NULL_MX, DOMAIN_NXDOMAIN, DOMAIN_SERVFAIL] {
        assert_eq!(ask(domain).await, "250 2.1.5 Ok", "s@{domain}");
    }
    let reject = |reply: &str, d: &str| {
        format!(
            "NOQUEUE: reject: RCPT from client.example[198.51.100.7]: {reply}; {}",
            envelope(&format!("s@{d}"), "client.example")
        )
    };
    assert_eq!(
        r.verdict_log(8),
        [
            reject(private, DOMAIN_PRIVATE_MX),
            reject(implicit, DOMAIN_A_ONLY),
            "warning: restriction check_sender_mx_access returns OK for s@mx-only.example".into(),
            "warning: this is not allowed for security reasons".into(),
            "warning: use DUNNO instead of OK if you want to make an exception".into(),
            reject(config_error, DOMAIN_MX_ONLY),
            "warning: Unable to look up MX host nx.example for Sender address s@nx.example: \
             Name or service not known"
                .into(),
            "warning: Unable to look up MX host for x.servfail.dnsworld: Host not found, try again"
                .into(),
        ]
    );
}
