//! Tests of the test harness itself against a real Postfix: if these fail, no integration test
//! that uses `tests/support` can be trusted.

mod support;

use std::time::Duration;

use support::client::{auth_plain, Client};
use support::external::{Smtplib, SmtplibMode, Swaks};
use support::maildir::Maildir;
use support::postfix::Postfix;

const GREETING: &str = "220 mx.relayguard.test ESMTP Postfix";
const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_sets_the_client_that_received_records() {
    let pf = Postfix::builder().start();
    let mut c = Client::connect(pf.addr_xclient()).await;
    assert_eq!(c.greeting().await, GREETING);
    let ehlo = c.ehlo("proxy.example").await;
    assert!(
        ehlo.lines()
            .any(|l| l
                == "250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT"),
        "{ehlo}"
    );
    // Postfix answers a successful XCLIENT with a fresh greeting.
    assert_eq!(
        c.cmd("XCLIENT NAME=mail.example.com ADDR=198.51.100.7 PORT=40001")
            .await,
        GREETING
    );
    assert!(c
        .ehlo("client.example")
        .await
        .starts_with("250-mx.relayguard.test\n"));
    let reply = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            "Subject: via xclient\n\nhello\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    let msg = pf
        .maildir()
        .wait_for_containing("Subject: via xclient", WAIT);
    let received = msg.received();
    assert!(
        received[0].starts_with("from client.example (mail.example.com [198.51.100.7]) by mx.relayguard.test (Postfix) with ESMTP id "),
        "{received:?}"
    );
    assert_eq!(msg.subject().as_deref(), Some("via xclient"));
    assert_eq!(msg.header("Delivered-To").as_deref(), Some("u@local.test"));
    assert_eq!(msg.body(), b"hello\n");
    pf.wait_for_log("client=mail.example.com[198.51.100.7]", WAIT);
    // The TCP peer is only in the connect line.
    assert!(pf
        .smtpd_log()
        .iter()
        .any(|l| l == "connect from localhost[127.0.0.1]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_header_sets_the_client() {
    let pf = Postfix::builder().start();
    let mut c = Client::connect(pf.addr_proxy()).await;
    c.send_raw(b"PROXY TCP4 198.51.100.9 192.0.2.25 40001 25\r\n")
        .await;
    assert_eq!(c.greeting().await, GREETING);
    c.ehlo("proxied.example").await;
    let reply = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            "Subject: via proxy\n\n.leading dot\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    c.cmd("QUIT").await;

    let msg = pf.maildir().wait_for_containing("Subject: via proxy", WAIT);
    assert!(
        msg.received()[0]
            .starts_with("from proxied.example (unknown [198.51.100.9]) by mx.relayguard.test"),
        "{:?}",
        msg.received()
    );
    // dot_stuff doubled the dot and Postfix removed it again.
    assert_eq!(msg.body(), b".leading dot\n");
    pf.wait_for_log("connect from unknown[198.51.100.9]", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_not_in_mynetworks_so_relaying_is_denied() {
    let pf = Postfix::builder().start();
    let mut c = Client::after_ehlo(pf.addr_xclient()).await;
    assert_eq!(c.cmd("MAIL FROM:<s@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<x@elsewhere.example>").await,
        "454 4.7.1 <x@elsewhere.example>: Relay access denied"
    );
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    pf.wait_for_log(
        "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 454 4.7.1 <x@elsewhere.example>: Relay access denied; from=<s@sender.example> to=<x@elsewhere.example> proto=ESMTP helo=<client.example>",
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_through_the_fake_dovecot() {
    let pf = Postfix::builder().sasl(true).start();
    let mut c = Client::after_ehlo(pf.addr_xclient()).await;
    assert!(
        c.capabilities.iter().any(|l| l == "AUTH PLAIN LOGIN"),
        "{:?}",
        c.capabilities
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "wrong")))
            .await,
        "535 5.7.8 Error: authentication failed: (reason unavailable)"
    );
    drop(c);
    let mut c = Client::authenticated(pf.addr_xclient(), "bob", "hunter2").await;
    // Authenticated clients may relay (permit_sasl_authenticated in the default relay rules).
    assert_eq!(
        c.cmd("MAIL FROM:<bob@sender.example>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(c.cmd("RCPT TO:<x@elsewhere.example>").await, "250 2.1.5 Ok");
    pf.wait_for_log("sasl_method=PLAIN, sasl_username=bob", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_the_generated_certificate() {
    let pf = Postfix::builder().start();
    let mut c = Client::after_ehlo(pf.addr_xclient())
        .await
        .with_ca(pf.ca_path().unwrap());
    assert!(c.capabilities.iter().any(|l| l == "STARTTLS"));
    assert_eq!(
        c.starttls("localhost").await,
        "220 2.0.0 Ready to start TLS"
    );
    assert!(c.is_tls());
    let ehlo = c.ehlo("client.example").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let reply = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            "Subject: over tls\n\nx\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let msg = pf.maildir().wait_for_containing("Subject: over tls", WAIT);
    assert!(
        msg.received()[0].contains("with ESMTPS id "),
        "{:?}",
        msg.received()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_get_replies_in_order() {
    let pf = Postfix::builder().start();
    let mut c = Client::after_ehlo(pf.addr_xclient()).await;
    c.send_raw(b"MAIL FROM:<s@sender.example>\r\nRCPT TO:<u@local.test>\r\nRCPT TO:<x@elsewhere.example>\r\nNOOP\r\n")
        .await;
    assert_eq!(c.read_reply().await, "250 2.1.0 Ok");
    assert_eq!(c.read_reply().await, "250 2.1.5 Ok");
    assert_eq!(
        c.read_reply().await,
        "454 4.7.1 <x@elsewhere.example>: Relay access denied"
    );
    assert_eq!(c.read_reply().await, "250 2.0.0 Ok");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    c.expect_closed().await;
}

#[test]
fn swaks_and_smtplib_deliver_through_postfix() {
    let pf = Postfix::builder().sasl(true).start();
    let t = Swaks::new(pf.addr_xclient())
        .tls()
        .pipeline()
        .arg("--header")
        .arg("Subject: by swaks")
        .run();
    assert!(t.success(), "{}", t.output);
    assert!(
        t.server_lines()
            .iter()
            .any(|l| l.starts_with("250 2.0.0 Ok: queued as ")),
        "{}",
        t.output
    );

    let t = Smtplib::new(pf.addr_xclient())
        .mode(SmtplibMode::Starttls)
        .auth("alice", "secret")
        .envelope(
            "alice@sender.example",
            &["u@local.test", "x@elsewhere.example"],
        )
        .message("Subject: by smtplib\r\n\r\nhi\r\n")
        .run();
    assert!(t.success(), "{}", t.output);
    assert!(t.output.contains("REFUSED {}"), "{}", t.output);

    let t = Smtplib::new(pf.addr_xclient())
        .envelope("s@sender.example", &["x@elsewhere.example"])
        .run();
    assert_eq!(t.code, Some(1), "{}", t.output);
    assert!(
        t.output.contains("ERROR SMTPRecipientsRefused {'x@elsewhere.example': (454, '4.7.1 <x@elsewhere.example>: Relay access denied')}"),
        "{}",
        t.output
    );

    let md = pf.maildir();
    md.wait_for_containing("Subject: by swaks", WAIT);
    md.wait_for_containing("Subject: by smtplib", WAIT);
    assert_eq!(md.messages().len(), 2);
}

#[test]
fn reload_applies_a_changed_parameter() {
    let pf = Postfix::builder().start();
    pf.postconf(&[("smtpd_banner", "$myhostname ESMTP reloaded")]);
    pf.reload();
    let greeting = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { Client::connect(pf.addr_xclient()).await.greeting().await });
    assert_eq!(greeting, "220 mx.relayguard.test ESMTP reloaded");
}

#[test]
fn maildir_headers_unfold_and_body_splits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("new")).unwrap();
    std::fs::write(
        dir.path().join("new/1.x"),
        "Received: from a (b [192.0.2.1])\n\tby c; Mon, 1 Jan 2024\nSubject: one\n  two\n\nbody\n\nmore\n",
    )
    .unwrap();
    let md = Maildir::new(dir.path());
    let msgs = md.wait_for(1, WAIT);
    assert_eq!(
        msgs[0].received(),
        vec!["from a (b [192.0.2.1]) by c; Mon, 1 Jan 2024".to_string()]
    );
    assert_eq!(msgs[0].subject().as_deref(), Some("one two"));
    assert_eq!(msgs[0].body(), b"body\n\nmore\n");
}

/// Stands in for the relayguard binary to test the harness's side of the contract: it reads
/// `--config` as TOML (the format in the README), listens on every `[[listener]]` address,
/// and logs what it understood to stderr.
const STAND_IN: &str = r#"
import socket, sys, time, tomllib
assert sys.argv[1] == "--config", sys.argv
cfg = tomllib.load(open(sys.argv[2], "rb"))
socks = []
for l in cfg["listener"]:
    host, port = l["address"].rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen()
    socks.append(s)
    print(f"listener {l['name']} role={l['role']} policy={l.get('policy', {})}", file=sys.stderr, flush=True)
u = cfg["upstream"]
print(f"upstream kind={u['kind']} address={u.get('address')} identity={u.get('identity')} path={u.get('path')}", file=sys.stderr, flush=True)
print(f"policy {cfg['policy']} tls={sorted(cfg['tls'])}", file=sys.stderr, flush=True)
time.sleep(60)
"#;

#[test]
fn relayguard_harness_writes_the_config_and_manages_the_process() {
    use support::relayguard::{Identity, Relayguard, Role};
    let dir = tempfile::tempdir().unwrap();
    let stand_in = dir.path().join("relayguard");
    std::fs::write(&stand_in, format!("#!/usr/bin/env python3\n{STAND_IN}")).unwrap();
    std::fs::set_permissions(
        &stand_in,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let pf = Postfix::builder().starttls(false).start();
    let mut rg = Relayguard::builder()
        .binary(&stand_in)
        .policy("mynetworks", "127.0.0.0/8 [::1]/128")
        .listener("smtp", Role::Smtp)
        .listener_with(
            "sub",
            Role::Submission,
            &[(
                "smtpd_relay_restrictions",
                "permit_sasl_authenticated, reject",
            )],
        )
        .listener_toml("sub", "max_connections = 5")
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    assert_ne!(rg.port("smtp"), rg.port("sub"));
    rg.wait_for_log("listener sub role=submission policy={'smtpd_relay_restrictions': 'permit_sasl_authenticated, reject'}", WAIT);
    assert!(
        rg.log_lines()
            .contains(&"listener smtp role=smtp policy={}".to_string()),
        "{:?}",
        rg.log_lines()
    );
    rg.wait_for_log(
        &format!(
            "upstream kind=smtp address=127.0.0.1:{} identity=xclient path=None",
            pf.port_xclient()
        ),
        WAIT,
    );
    rg.wait_for_log(
        "policy {'myhostname': 'relayguard.test', 'mynetworks': '127.0.0.0/8 [::1]/128'} tls=['cert', 'key']",
        WAIT,
    );
    let pid = rg.pid().unwrap();
    assert!(rg.is_running());
    drop(rg);
    assert!(
        !support::process::pid_alive(pid),
        "the stand-in outlived its Relayguard"
    );

    // A binary that exits at once is reported, not waited for.
    let started = std::time::Instant::now();
    let err = Relayguard::builder()
        .binary(std::path::Path::new("/bin/false"))
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .try_start()
        .err()
        .expect("/bin/false must not count as started");
    assert!(
        err.starts_with("relayguard exited with exit status: 1 (listener smtp"),
        "{err}"
    );
    assert!(err.contains("kind = \"maildir\""), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The real binary in front of the real Postfix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayguard_in_front_of_postfix_delivers_with_the_real_client() {
    use support::relayguard::{Identity, Relayguard, Role};
    let pf = Postfix::builder().start();
    let rg = Relayguard::builder()
        .policy("mynetworks", "127.0.0.0/8")
        .listener("smtp", Role::Smtp)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    let reply = c
        .send_mail(
            "s@sender.example",
            &["u@local.test"],
            "Subject: through relayguard\n\nhi\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let msg = pf
        .maildir()
        .wait_for_containing("Subject: through relayguard", WAIT);
    assert!(
        msg.received()[0].starts_with("from client.example ("),
        "{:?}",
        msg.received()
    );
    assert!(
        msg.received()[0].contains(" [127.0.0.1]) by mx.relayguard.test"),
        "{:?}",
        msg.received()
    );
}
