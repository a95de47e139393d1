//! check_policy_service end to end: relayguard with a Maildir upstream and a policy server
//! written here (tests/support/policy_server.rs) that answers per recipient. Exact client
//! replies for each kind of action, the server down, slow past the timeout, or closing in the
//! middle of its reply, one connection for many requests, and a UNIX socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::client::Client;
use support::policy_server::{Answer, PolicyServer, Request};
use support::postfix::Postfix;
use support::process::free_port;
use support::relayguard::{Identity, Relayguard, Role};

const WAIT: Duration = Duration::from_secs(15);

/// The test server's answer for a recipient's local part.
fn by_recipient(r: &Request) -> Answer {
    let rcpt = r.get("recipient").cloned().unwrap_or_default();
    let local = rcpt.split('@').next().unwrap_or("");
    let a = |s: &str| Answer::Action(s.into());
    match local {
        "pdunno" => a("DUNNO"),
        "pok" => a("OK"),
        "preject" => a("REJECT policy says no"),
        "pdefer" => a("DEFER_IF_PERMIT policy says later"),
        "p550" => a("550 5.7.9 custom policy text"),
        "pfrob" => a("frobnicate"),
        "pempty" => a(""),
        "pslow" => Answer::Slow(Duration::from_secs(3), "OK".into()),
        "pcut" => Answer::Cut,
        "pprepend" => a("PREPEND X-Policy-Test: yes"),
        _ => a("DUNNO"),
    }
}

fn relayguard(restrictions: &str) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("smtpd_recipient_restrictions", restrictions)
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        // One worker: one pool, so connection reuse is visible as one connection.
        .extra_toml("[limits]\nworkers = 1\n")
        .start()
}

async fn in_transaction(rg: &Relayguard) -> Client {
    let mut c = Client::connect(rg.addr("smtp")).await;
    c.greeting().await;
    c.ehlo("client.example").await;
    assert_eq!(c.cmd("MAIL FROM:<s@sender.example>").await, "250 2.1.0 Ok");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_give_postfix_s_replies_over_one_connection() {
    let server = PolicyServer::tcp(by_recipient);
    let rg = relayguard(&format!(
        "check_policy_service inet:127.0.0.1:{}",
        server.port()
    ));
    let mut c = in_transaction(&rg).await;
    let cases = [
        ("pdunno@local.test", "250 2.1.5 Ok"),
        ("pok@local.test", "250 2.1.5 Ok"),
        (
            "preject@local.test",
            "554 5.7.1 <preject@local.test>: Recipient address rejected: policy says no",
        ),
        (
            "pdefer@local.test",
            "450 4.7.1 <pdefer@local.test>: Recipient address rejected: policy says later",
        ),
        (
            "p550@local.test",
            "550 5.7.9 <p550@local.test>: Recipient address rejected: custom policy text",
        ),
        ("pfrob@local.test", "451 4.3.5 Server configuration error"),
        ("pempty@local.test", "250 2.1.5 Ok"),
    ];
    for (rcpt, want) in cases {
        assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")).await, want, "{rcpt}");
    }
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    // A second session reuses the same connection, as one smtpd process does.
    let mut c = in_transaction(&rg).await;
    assert_eq!(c.cmd("RCPT TO:<pok@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(server.connections(), 1, "one connection for every request");

    let requests = server.requests();
    assert_eq!(requests.len(), cases.len() + 1);
    let first = &requests[0];
    assert_eq!(
        first["@order"],
        "request,protocol_state,protocol_name,client_address,client_name,client_port,\
reverse_client_name,server_address,server_port,helo_name,sender,recipient,recipient_count,\
queue_id,instance,size,etrn_domain,stress,sasl_method,sasl_username,sasl_sender,\
ccert_subject,ccert_issuer,ccert_fingerprint,ccert_pubkey_fingerprint,encryption_protocol,\
encryption_cipher,encryption_keysize,policy_context"
    );
    assert_eq!(first["protocol_state"], "RCPT");
    assert_eq!(first["protocol_name"], "ESMTP");
    assert_eq!(first["client_address"], "127.0.0.1");
    assert_eq!(first["server_address"], "127.0.0.1");
    assert_eq!(first["server_port"], rg.port("smtp").to_string());
    assert_eq!(first["helo_name"], "client.example");
    assert_eq!(first["sender"], "s@sender.example");
    assert_eq!(first["recipient"], "pdunno@local.test");
    assert!(!first["instance"].is_empty());
    // One instance per transaction.
    assert_eq!(requests[1]["instance"], first["instance"]);
    assert_ne!(requests[cases.len()]["instance"], first["instance"]);
    rg.wait_for_log("unknown smtpd restriction: \"frobnicate\"", WAIT);
    rg.wait_for_log(
        &format!(
            "access table inet:127.0.0.1:{} entry  has empty value",
            server.port()
        ),
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_two_attempts_then_the_default_action() {
    let port = free_port();
    let rg = relayguard(&format!(
        "check_policy_service inet:127.0.0.1:{port}, check_policy_service {{ inet:127.0.0.1:{port}, default_action=DUNNO }}"
    ));
    let mut c = in_transaction(&rg).await;
    let started = Instant::now();
    assert_eq!(
        c.cmd("RCPT TO:<user@local.test>").await,
        "451 4.3.5 <user@local.test>: Recipient address rejected: Server configuration problem"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "retry_delay 1s between the two attempts: {took:?}"
    );
    let refused = format!("warning: connect to 127.0.0.1:{port}: Connection refused");
    let problem =
        format!("warning: problem talking to server 127.0.0.1:{port}: Connection refused");
    rg.wait_for_log(&problem, WAIT);
    let lines = rg.log_lines();
    assert_eq!(lines.iter().filter(|l| l.contains(&refused)).count(), 2);
    assert_eq!(lines.iter().filter(|l| l.contains(&problem)).count(), 2);
    rg.wait_for_log(
        // The client's name is whatever this host calls 127.0.0.1.
        "[127.0.0.1]: 451 4.3.5 <user@local.test>: Recipient address rejected: Server configuration problem; from=<s@sender.example> to=<user@local.test> proto=ESMTP helo=<client.example>",
        WAIT,
    );
    // default_action=DUNNO alone: the same warnings, and the recipient passes.
    let rg = relayguard(&format!(
        "check_policy_service {{ inet:127.0.0.1:{port}, default_action=DUNNO, retry_delay=1s }}"
    ));
    let mut c = in_transaction(&rg).await;
    assert_eq!(c.cmd("RCPT TO:<user@local.test>").await, "250 2.1.5 Ok");
    rg.wait_for_log(&problem, WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_cut_answers_fail_like_a_dead_server() {
    let server = PolicyServer::tcp(by_recipient);
    let port = server.port();
    let rg = relayguard(&format!(
        "check_policy_service {{ inet:127.0.0.1:{port}, timeout=1s }}"
    ));
    let mut c = in_transaction(&rg).await;
    let started = Instant::now();
    assert_eq!(
        c.cmd("RCPT TO:<pslow@local.test>").await,
        "451 4.3.5 <pslow@local.test>: Recipient address rejected: Server configuration problem"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "two 1s timeouts and a 1s pause: {took:?}"
    );
    rg.wait_for_log(
        &format!("warning: problem talking to server 127.0.0.1:{port}: Connection timed out"),
        WAIT,
    );
    assert_eq!(
        c.cmd("RCPT TO:<pcut@local.test>").await,
        "451 4.3.5 <pcut@local.test>: Recipient address rejected: Server configuration problem"
    );
    // No errno for a closed connection: Postfix's %m says "Success", on the last attempt only.
    rg.wait_for_log(
        &format!("warning: problem talking to server 127.0.0.1:{port}: Success"),
        WAIT,
    );
    // After the failures a new connection serves the next request.
    assert_eq!(c.cmd("RCPT TO:<pok@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(server.requests().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.sock");
    let server = PolicyServer::unix(&path, by_recipient);
    let rg = relayguard(&format!("check_policy_service unix:{}", path.display()));
    let mut c = in_transaction(&rg).await;
    assert_eq!(
        c.cmd("RCPT TO:<preject@local.test>").await,
        "554 5.7.1 <preject@local.test>: Recipient address rejected: policy says no"
    );
    assert_eq!(c.cmd("RCPT TO:<pok@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limit_closes_the_connection() {
    let server = PolicyServer::tcp(by_recipient);
    let rg = relayguard(&format!(
        "check_policy_service {{ inet:127.0.0.1:{}, request_limit=2 }}",
        server.port()
    ));
    let mut c = in_transaction(&rg).await;
    for _ in 0..5 {
        assert_eq!(c.cmd("RCPT TO:<pok@local.test>").await, "250 2.1.5 Ok");
    }
    assert_eq!(server.connections(), 3, "2 + 2 + 1 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepend_puts_the_header_in_front_of_the_message() {
    let server = PolicyServer::tcp(by_recipient);
    let rg = relayguard(&format!(
        "check_policy_service inet:127.0.0.1:{}",
        server.port()
    ));
    let mut c = Client::connect(rg.addr("smtp")).await;
    c.greeting().await;
    c.ehlo("client.example").await;
    let reply = c
        .send_mail(
            "s@sender.example",
            &["pprepend@local.test"],
            "Subject: hi\r\n\r\nbody\r\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    let message = rg.maildir().wait_for(1, WAIT).remove(0);
    assert_eq!(message.header("X-Policy-Test").as_deref(), Some("yes"));
    let text = message.text();
    assert!(
        text.find("X-Policy-Test: yes").unwrap() < text.find("Subject: hi").unwrap(),
        "{text}"
    );
    // PREPEND is not logged, as in Postfix.
    assert!(!rg.log_lines().iter().any(|l| l.contains("prepend:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_policy_lookup() {
    let server = PolicyServer::tcp(by_recipient);
    let rg = relayguard(&format!(
        "check_policy_service inet:127.0.0.1:{}",
        server.port()
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .arg("check")
        .arg("--config")
        .arg(rg.config_path())
        .args(["--client", "203.0.113.9", "--helo", "c.example"])
        .args(["--from", "a@b.example", "--rcpt", "preject@local.test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.contains(&format!(
            "lookup policy 127.0.0.1:{} RCPT -> action=REJECT policy says no",
            server.port()
        ))),
        "{text}"
    );
    assert!(
        text.contains(
            "-> 554 5.7.1 <preject@local.test>: Recipient address rejected: policy says no"
        ),
        "{text}"
    );
    let asked = server.requests();
    assert_eq!(asked.last().unwrap()["client_address"], "203.0.113.9");
}

/// BDAT needs an upstream that offers CHUNKING: a private Postfix (root only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepend_leads_a_chunked_message_too() {
    if !support::process::is_root() {
        eprintln!("skipped: a private Postfix needs root");
        return;
    }
    let server = PolicyServer::tcp(by_recipient);
    let pf = Postfix::builder().start();
    let rg = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy(
            "smtpd_recipient_restrictions",
            &format!("check_policy_service inet:127.0.0.1:{}", server.port()),
        )
        .listener("smtp", Role::Smtp)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    let mut c = in_transaction(&rg).await;
    assert_eq!(c.cmd("RCPT TO:<pprepend@local.test>").await, "250 2.1.5 Ok");
    let body = "Subject: chunked\r\n\r\nbody\r\n";
    c.send_raw(format!("BDAT {} LAST\r\n{body}", body.len()).as_bytes())
        .await;
    let reply = c.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    let message = pf.maildir().wait_for(1, WAIT).remove(0);
    let text = message.text();
    assert!(
        text.find("X-Policy-Test: yes").unwrap() < text.find("Subject: chunked").unwrap(),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_max_idle() {
    let server = PolicyServer::tcp(by_recipient);
    let rg = relayguard(&format!(
        "check_policy_service {{ inet:127.0.0.1:{}, max_idle=1s }}",
        server.port()
    ));
    let mut c = in_transaction(&rg).await;
    assert_eq!(c.cmd("RCPT TO:<pok@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(server.closed(), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.closed() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.closed(), 1, "closed by relayguard after 1s idle");
    // The next request opens a new one.
    assert_eq!(c.cmd("RCPT TO:<pok@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(server.connections(), 2);
}

/// Counts log lines containing `needle`.
fn count(rg: &Relayguard, needle: &str) -> usize {
    rg.log_lines().iter().filter(|l| l.contains(needle)).count()
}

/// Rewrites the config and sends HUP; waits for one more `reloaded ` line.
fn reload(rg: &Relayguard, text: &str) {
    let before = count(rg, "reloaded ");
    rg.write_config(text);
    rg.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while count(rg, "reloaded ") == before {
        assert!(
            Instant::now() < deadline,
            "no reload:\n{}",
            rg.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_connection_unless_the_service_changed() {
    let server = PolicyServer::tcp(by_recipient);
    let rg = relayguard(&format!(
        "check_policy_service inet:127.0.0.1:{}",
        server.port()
    ));
    let ask = || async {
        let mut c = in_transaction(&rg).await;
        assert_eq!(c.cmd("RCPT TO:<pok@local.test>").await, "250 2.1.5 Ok");
    };
    ask().await;
    let original = std::fs::read_to_string(rg.config_path()).unwrap();
    // Same service, another unrelated setting: the pooled connection serves on.
    reload(
        &rg,
        &original.replace(
            "myhostname = \"relayguard.test\"",
            "myhostname = \"other.test\"",
        ),
    );
    ask().await;
    assert_eq!(server.connections(), 1);
    // A changed setting is another pool: a new connection.
    reload(
        &rg,
        &original.replace(
            &format!("check_policy_service inet:127.0.0.1:{}", server.port()),
            &format!(
                "check_policy_service {{ inet:127.0.0.1:{}, timeout=50s }}",
                server.port()
            ),
        ),
    );
    ask().await;
    assert_eq!(server.connections(), 2);
}
