//! In front of a legacy MTA: a private Postfix that trusts neither XCLIENT nor PROXY from
//! relayguard (`smtpd_authorized_xclient_hosts` empty, its plain listener), relayguard with
//! `identity = "none"` in front. Clients connect from 127.0.0.7, not relayguard's 127.0.0.1,
//! so the message read back from Postfix's Maildir shows who named whom: relayguard's own
//! Received: (the real client, right under Postfix's), Postfix's (relayguard).
//!
//! Needs root, Postfix and swaks (see tests/support/postfix.rs and .ci/run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use support::client::{auth_plain, dot_stuff, Client};
use support::external::Swaks;
use support::maildir::Message;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

const WAIT: Duration = Duration::from_secs(20);
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
const HELO: &str = "legacy-client.test";

fn legacy_postfix() -> Postfix {
    Postfix::builder().xclient_hosts("").sasl(true).start()
}

/// Listener `mx` with Postfix's defaults (no TLS or AUTH facts), `facts` with both on, `lb`
/// behind a PROXY-speaking load balancer on loopback (for IPv6 clients).
fn relayguard(pf: &Postfix, identity: Identity, upstream: &[&str]) -> Relayguard {
    let mut b = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .listener_with("mx", Role::Smtp, &[("smtpd_sasl_auth_enable", "yes")])
        .listener_with(
            "facts",
            Role::Smtp,
            &[
                ("smtpd_sasl_auth_enable", "yes"),
                ("smtpd_tls_received_header", "yes"),
                ("smtpd_sasl_authenticated_header", "yes"),
            ],
        )
        .listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(pf, identity);
    for line in upstream {
        b = b.upstream_toml(line);
    }
    b.start()
}

/// swaks from 127.0.0.7 with HELO [`HELO`], a Subject of `tag` to find the message by.
fn swaks(rg: &Relayguard, listener: &str, tag: &str) -> Swaks {
    Swaks::new(rg.addr(listener))
        .arg("--local-interface")
        .arg(&CLIENT.to_string())
        .arg("--helo")
        .arg(HELO)
        .arg("--header")
        .arg(&format!("Subject: {tag}"))
}

fn deliver(pf: &Postfix, swaks: Swaks, tag: &str) -> Message {
    let t = swaks.run();
    assert!(t.success(), "{}", t.output);
    pf.maildir()
        .wait_for_containing(&format!("Subject: {tag}"), WAIT)
}

/// The two Received: fields, Postfix's on top and relayguard's right under it; and relayguard's
/// id, which its log line for the message must carry too.
fn ours(rg: &Relayguard, m: &Message) -> String {
    let received = m.received();
    assert_eq!(received.len(), 2, "{}", m.text());
    let (postfix, ours) = (&received[0], &received[1]);
    // relayguard passes the client's EHLO name on; the address is its own.
    assert!(
        postfix.contains(" [127.0.0.1]) by ") && !postfix.contains("127.0.0.7"),
        "Postfix's Received: names relayguard: {postfix}"
    );
    assert!(postfix.contains("(Postfix)"), "{postfix}");
    assert!(ours.contains("(relayguard)"), "{ours}");
    let id = ours
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .expect("an id")
        .trim_end_matches(';');
    assert!(
        id.len() >= 13 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ours}"
    );
    let line = rg.wait_for_log(&format!("received_id={id}"), WAIT);
    assert!(line.contains("client=unknown[127.0.0.7]"), "{line}");
    ours.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_data_puts_the_real_client_on_record() {
    let pf = legacy_postfix();
    let rg = relayguard(&pf, Identity::None, &[]);
    let m = deliver(&pf, swaks(&rg, "mx", "plain"), "plain");
    let first = ours(&rg, &m);
    assert!(
        first.starts_with(&format!(
            "from {HELO} (unknown [127.0.0.7]) by relayguard.test (relayguard) with ESMTP id "
        )),
        "{first}"
    );
    assert!(first.contains(" for <u@local.test>; "), "{first}");
    // The date is RFC 5322's: `Thu, 3 Dec 2026 05:30:11 +0000`.
    let date = first.rsplit_once("; ").unwrap().1;
    assert!(
        date.ends_with(" +0000") && date.split(' ').count() == 6,
        "{date}"
    );
    // Postfix saw relayguard, not the client: XCLIENT and PROXY are off.
    let log = pf.wait_for_log("client=", WAIT);
    assert!(
        log.contains("[127.0.0.1]") && !log.contains("127.0.0.7"),
        "{log}"
    );

    // No HELO at all: the name stands in for it, as in Postfix's header, and the protocol is
    // plain SMTP.
    let mut c = Client::connect_from(rg.addr("mx"), CLIENT).await;
    c.greeting().await;
    let r = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            "Subject: no helo\n\nhi\n",
        )
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let m = pf.maildir().wait_for_containing("Subject: no helo", WAIT);
    let header = ours(&rg, &m);
    assert!(
        header.starts_with(
            "from unknown (unknown [127.0.0.7]) by relayguard.test (relayguard) with SMTP id "
        ),
        "{header}"
    );

    // An IPv6 client (named by a load balancer's PROXY header), as Postfix writes one.
    let mut c = Client::connect_as(rg.addr("lb"), "2001:db8::7").await;
    assert!(c.ehlo("v6.client.test").await.starts_with("250"));
    let r = c
        .send_mail("s@sender.example", &["u@local.test"], "Subject: v6\n\nhi\n")
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let m = pf.maildir().wait_for_containing("Subject: v6", WAIT);
    let v6 = &m.received()[1];
    assert!(
        v6.starts_with("from v6.client.test (unknown [IPv6:2001:db8::7]) by relayguard.test"),
        "{v6}"
    );
    let id = v6.split(" id ").nth(1).unwrap().split(' ').next().unwrap();
    let line = rg.wait_for_log(&format!("received_id={id}"), WAIT);
    assert!(line.contains("client=unknown[2001:db8::7]"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_auth_facts_follow_the_postfix_switches() {
    let pf = legacy_postfix();
    let rg = relayguard(&pf, Identity::None, &[]);
    // Postfix's defaults: the protocol says TLS and AUTH, the login name and cipher stay out.
    let m = deliver(
        &pf,
        swaks(&rg, "mx", "quiet").tls().auth("alice", "secret"),
        "quiet",
    );
    let quiet = ours(&rg, &m);
    assert!(quiet.contains(" with ESMTPSA id "), "{quiet}");
    assert!(
        !quiet.contains("using") && !quiet.contains("alice"),
        "{quiet}"
    );
    // smtpd_tls_received_header and smtpd_sasl_authenticated_header on.
    let m = deliver(
        &pf,
        swaks(&rg, "facts", "facts").tls().auth("alice", "secret"),
        "facts",
    );
    let facts = ours(&rg, &m);
    let tls = regex::Regex::new(
        r"\(unknown \[127\.0\.0\.7\]\) \(using TLSv1\.[23] with cipher [A-Z0-9_-]+ \((128|256)/(128|256) bits\)\) \(Authenticated sender: alice\) by relayguard\.test \(relayguard\) with ESMTPSA id ",
    )
    .unwrap();
    assert!(tls.is_match(&facts), "{facts}");
    // TLS without AUTH, and AUTH without TLS.
    let m = deliver(&pf, swaks(&rg, "facts", "tls-only").tls(), "tls-only");
    let tls_only = ours(&rg, &m);
    assert!(tls_only.contains(" with ESMTPS id ") && tls_only.contains("(using TLSv1."));
    let m = deliver(
        &pf,
        swaks(&rg, "facts", "auth-only").auth("bob", "hunter2"),
        "auth-only",
    );
    let auth_only = ours(&rg, &m);
    assert!(
        auth_only.contains(
            "(Authenticated sender: bob) by relayguard.test (relayguard) with ESMTPA id "
        ),
        "{auth_only}"
    );
}

/// One client from 127.0.0.7, greeted and past EHLO, MAIL and RCPT.
async fn in_transaction(rg: &Relayguard, helo: &str, rcpts: &[&str]) -> Client {
    let mut c = Client::connect_from(rg.addr("mx"), CLIENT).await;
    c.greeting().await;
    let ehlo = c.ehlo(helo).await;
    assert!(ehlo.starts_with("250"), "{ehlo}");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.example>").await, "250 2.1.0 Ok");
    for rcpt in rcpts {
        assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")).await, "250 2.1.5 Ok");
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_and_awkward_first_lines_keep_the_header_and_the_body() {
    let pf = legacy_postfix();
    let rg = relayguard(&pf, Identity::None, &[]);
    // BDAT: relayguard's header goes ahead of the first chunk, in a BDAT of the right size
    // (Postfix would refuse or misread a wrong one), and two recipients name none.
    let mut c = in_transaction(&rg, HELO, &["u@local.test", "v@local.test"]).await;
    assert!(c.capabilities.iter().any(|k| k == "CHUNKING"));
    let first = b"Subject: chunked\r\n\r\nfirst ";
    c.send_raw(format!("BDAT {}\r\n", first.len()).as_bytes())
        .await;
    c.send_raw(first).await;
    assert_eq!(
        c.read_reply().await,
        format!("250 2.0.0 Ok: {} bytes", first.len())
    );
    let second = b"second\r\n.not a terminator\r\n";
    c.send_raw(format!("BDAT {} LAST\r\n", second.len()).as_bytes())
        .await;
    c.send_raw(second).await;
    // Postfix's own BDAT wording: `250 2.0.0 Ok: N bytes queued as ID`.
    let r = c.read_reply().await;
    assert!(
        r.starts_with("250 2.0.0 Ok: ") && r.contains(" queued as "),
        "{r}"
    );
    let m = pf.maildir().wait_for_containing("Subject: chunked", WAIT);
    let header = ours(&rg, &m);
    assert!(
        !header.contains(" for <"),
        "two recipients: none named: {header}"
    );
    assert_eq!(m.body(), b"first second\n.not a terminator\n");

    // DATA whose first line starts with a dot (sent stuffed): the dot line stays the client's
    // first body line, unstuffed once, never part of a header.
    let r = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            ".dot first\nSubject: no\n",
        )
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let m = pf.maildir().wait_for_containing(".dot first", WAIT);
    ours(&rg, &m);
    assert!(m.header("Subject").is_none(), "{}", m.text());
    assert!(
        m.text().contains("\n.dot first\nSubject: no\n"),
        "{}",
        m.text()
    );

    // A body that starts with a blank line: no headers of its own; relayguard's Received:
    // and the client's blank line must not fuse into anything else.
    let r = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            "\nbody after blank\n",
        )
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let m = pf.maildir().wait_for_containing("body after blank", WAIT);
    ours(&rg, &m);
    assert!(
        String::from_utf8_lossy(m.body()).contains("body after blank\n"),
        "{}",
        m.text()
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    // An upstream leg without CHUNKING: the chunks go as one DATA body (dot-stuffed by
    // relayguard), the header still ahead of them. The client is offered CHUNKING from the
    // upstream as last seen; its leg, opened at MAIL, is the first to lack it.
    pf.postconf(&[("smtpd_discard_ehlo_keywords", "chunking")]);
    pf.reload();
    let mut c = in_transaction(&rg, HELO, &["u@local.test"]).await;
    assert!(c.capabilities.iter().any(|k| k == "CHUNKING"));
    let only = b"Subject: as data\r\n\r\n.starts with a dot\r\n";
    c.send_raw(format!("BDAT {} LAST\r\n", only.len()).as_bytes())
        .await;
    c.send_raw(only).await;
    let r = c.read_reply().await;
    assert!(
        r.starts_with("250 2.0.0 Ok: queued as "),
        "DATA's wording: {r}"
    );
    let m = pf.maildir().wait_for_containing("Subject: as data", WAIT);
    assert!(ours(&rg, &m).contains(" for <u@local.test>; "));
    assert_eq!(m.body(), b".starts with a dot\n");
}

/// A body of `n` bytes as relayguard counts them (CRLFs included, terminator not).
fn message_of(n: usize) -> String {
    let head = "Subject: size\n\n";
    let mut m = String::from(head);
    let mut left = n - head.len() - 2;
    while left > 100 {
        m.push_str(&"x".repeat(98));
        m.push('\n');
        left -= 100;
    }
    m.push_str(&"y".repeat(left));
    m.push('\n');
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_count_the_header_at_the_mta_only() {
    let pf = legacy_postfix();
    let rg = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("message_size_limit", "2000")
        .listener("mx", Role::Smtp)
        .upstream_postfix(&pf, Identity::None)
        .start();
    let send = |n: usize| {
        let rg = &rg;
        async move {
            let mut c = Client::connect_from(rg.addr("mx"), CLIENT).await;
            c.greeting().await;
            assert!(c.ehlo(HELO).await.starts_with("250"));
            c.send_mail("s@sender.example", &["u@local.test"], &message_of(n))
                .await
        }
    };
    // relayguard's own limit holds the client's bytes only: 1950 of them plus its header of
    // some 170 pass a limit of 2000 ...
    let r = send(1950).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let m = pf.maildir().wait_for_containing("Subject: size", WAIT);
    let header = ours(&rg, &m);
    assert!(header.len() > 50, "{header}");
    // ... and 2001 do not.
    assert_eq!(send(2001).await, "552 5.3.4 Error: message file too big");
    // The MTA counts what it receives, header included: with its limit at 2000 as well, the
    // same 1950 bytes are refused there, and relayguard passes the refusal on.
    pf.postconf(&[("message_size_limit", "2000")]);
    pf.reload();
    assert_eq!(send(1950).await, "552 5.3.4 Error: message file too big");
    pf.wait_for_log("queue file size limit exceeded", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_helo_and_login_give_one_clean_header() {
    let pf = legacy_postfix();
    let rg = relayguard(&pf, Identity::None, &[]);
    // Control bytes other than a tab, and bytes that are not UTF-8, are refused at EHLO
    // (src/smtp/command): they never become the session's HELO.
    let mut c = Client::connect_from(rg.addr("mx"), CLIENT).await;
    c.greeting().await;
    c.send_raw(b"EHLO evil\0\x01\x7f\r\n").await;
    assert_eq!(c.read_reply().await, "500 5.5.2 Error: bad syntax");
    c.send_raw(b"EHLO evil\xff\xfe\r\n").await;
    assert_eq!(c.read_reply().await, "500 5.5.2 Error: bad UTF-8 syntax");
    // What is accepted: a tab, 8-bit UTF-8, comment and separator characters, and more than
    // the 255 characters kept.
    let helo = format!("evil\t(x);<y>\\\u{e9}\u{85}{}", "h".repeat(400));
    let mut c = in_transaction(&rg, &helo, &["u@local.test"]).await;
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    c.send_raw(&dot_stuff("Subject: hostile\n\nhi\n")).await;
    let r = c.read_reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let m = pf.maildir().wait_for_containing("Subject: hostile", WAIT);
    let header = ours(&rg, &m);
    let token = header.split_whitespace().nth(1).unwrap();
    assert!(token.starts_with("evil?"), "{header}");
    assert!(token.ends_with("hhh...") && token.len() == 255, "{header}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"();<>\\".contains(&b)),
        "{token}"
    );
    // Raw: every line of relayguard's field is printable and under 998 octets, each after the
    // first begins with a tab.
    let text = m.text();
    // (Postfix's own field, on top, writes the 8-bit HELO relayguard passed on as it is.)
    let start = text.match_indices("Received: ").nth(1).unwrap().0;
    let field: Vec<&str> = text[start..]
        .lines()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with('\t'))
        .map(|(_, l)| l)
        .collect();
    assert!(field.len() >= 2, "{field:?}");
    for line in &field {
        assert!(
            line.len() < 998
                && line
                    .bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
            "{line:?}"
        );
    }
    assert!(field.last().unwrap().ends_with(" +0000"), "{field:?}");

    // A login that authenticated (PLAIN with a hostile authorization identity is refused by
    // the SASL server, so the name is one it accepts) is written as it was accepted.
    let mut c = Client::connect_from(rg.addr("facts"), CLIENT).await;
    c.greeting().await;
    assert!(c.ehlo(HELO).await.starts_with("250"));
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("bob", "hunter2")))
            .await,
        "235 2.7.0 Authentication successful"
    );
    let r = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            "Subject: login\n\nhi\n",
        )
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let m = pf.maildir().wait_for_containing("Subject: login", WAIT);
    assert!(ours(&rg, &m).contains("(Authenticated sender: bob)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_or_with_xclient_there_is_no_extra_header() {
    // This Postfix trusts XCLIENT from loopback, for the second relayguard.
    let pf = Postfix::builder().start();
    let off = relayguard(&pf, Identity::None, &["received_header = false"]);
    let m = deliver(&pf, swaks(&off, "mx", "off"), "off");
    let received = m.received();
    assert_eq!(received.len(), 1, "{}", m.text());
    assert!(received[0].contains("[127.0.0.1]"), "{received:?}");
    let line = off.wait_for_log("client=unknown[127.0.0.7]", WAIT);
    assert!(!line.contains("received_id="), "{line}");

    let xclient = relayguard(&pf, Identity::Xclient, &[]);
    let m = deliver(&pf, swaks(&xclient, "mx", "xclient"), "xclient");
    let received = m.received();
    assert_eq!(received.len(), 1, "{}", m.text());
    assert!(
        received[0].starts_with(&format!("from {HELO} (")) && received[0].contains("[127.0.0.7]"),
        "Postfix itself names the client over XCLIENT: {received:?}"
    );
}
