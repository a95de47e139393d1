//! When the upstream fails, the client hears a 4xx, never a 250: an upstream that drops the
//! connection mid-message, one that refuses at the end, one that goes silent, and one that is
//! gone when the session needs it; and an upstream whose answers to the start-up open-relay
//! check decide nothing. The upstream here is a scripted SMTP server in the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use support::client::Client;
use support::relayguard::{Identity, Relayguard, Role};
use support::scripted::{Answer, ScriptedUpstream};

const HOST: &str = "relayguard.test";

#[derive(Clone, Copy)]
enum AtBody {
    /// Close the connection after this many body bytes.
    DropAfter(usize),
    /// Read the whole body, then answer this.
    Answer(&'static str),
    /// Read the whole body and never answer.
    Silent,
}

/// A scripted upstream: serves connections until the returned handle is aborted.
async fn fake_upstream(at_body: AtBody) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 fake.upstream ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-fake.upstream\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                    } else if upper.contains("RELAY-CHECK.INVALID") {
                        b"554 5.7.1 Relay access denied\r\n"
                    } else if upper.starts_with("MAIL")
                        && (upper.contains("SIZE=") || upper.contains("AUTH="))
                    {
                        // It offers neither SIZE nor AUTH, so it refuses their parameters.
                        b"555 5.5.4 Unsupported option\r\n"
                    } else if upper.starts_with("MAIL") {
                        b"250 2.1.0 Ok\r\n"
                    } else if upper.starts_with("RCPT") {
                        b"250 2.1.5 Ok\r\n"
                    } else if upper.starts_with("DATA") {
                        w.write_all(b"354 go ahead\r\n").await.unwrap();
                        match at_body {
                            AtBody::DropAfter(n) => {
                                let mut buf = vec![0u8; n];
                                let _ = r.read_exact(&mut buf).await;
                                return;
                            }
                            AtBody::Answer(text) => {
                                read_to_end_of_data(&mut r).await;
                                w.write_all(format!("{text}\r\n").as_bytes()).await.unwrap();
                                continue;
                            }
                            AtBody::Silent => {
                                read_to_end_of_data(&mut r).await;
                                tokio::time::sleep(Duration::from_secs(60)).await;
                                return;
                            }
                        }
                    } else if upper.starts_with("QUIT") {
                        let _ = w.write_all(b"221 2.0.0 Bye\r\n").await;
                        return;
                    } else {
                        b"250 2.0.0 Ok\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (addr, task)
}

async fn read_to_end_of_data(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 || line == ".\r\n" {
            return;
        }
    }
}

fn relayguard(upstream: SocketAddr) -> Relayguard {
    relayguard_with(upstream, "")
}

/// relayguard with one more `[upstream]` line.
fn relayguard_with(upstream: SocketAddr, line: &str) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", HOST)
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_smtp(upstream, Identity::None)
        .upstream_toml("reply_timeout = \"2s\"")
        .upstream_toml(line)
        .start()
}

async fn send_body(c: &mut Client, body_len: usize) -> String {
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA").await, "354 End data with <CR><LF>.<CR><LF>");
    let mut body = String::from("Subject: x\r\n\r\n");
    while body.len() < body_len {
        body.push_str(&"z".repeat(70));
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    c.send_raw(body.as_bytes()).await;
    c.read_reply().await
}

/// The upstream drops after `drop_after` body bytes of a `body_len` message: the client hears
/// 451 after its own end of data, and its session goes on.
async fn assert_drop_gives_451(drop_after: usize, body_len: usize) {
    let (addr, _task) = fake_upstream(AtBody::DropAfter(drop_after)).await;
    let rg = relayguard(addr);
    let mut c = Client::after_ehlo(rg.addr("smtp"))
        .await
        .with_timeout(Duration::from_secs(30));
    assert_eq!(
        send_body(&mut c, body_len).await,
        "451 4.3.0 Error: queue file write error"
    );
    assert_eq!(
        c.cmd("NOOP").await,
        "250 2.0.0 Ok",
        "the client session goes on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dropping_mid_message_gives_451() {
    assert_drop_gives_451(1000, 300_000).await;
}

/// The same deep in a large body, with the client still sending megabytes after the upstream went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dropping_deep_in_a_large_body_gives_451() {
    assert_drop_gives_451(2 << 20, 8 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_reply_is_the_upstreams() {
    let (addr, _task) = fake_upstream(AtBody::Answer("550 5.7.1 No thanks")).await;
    let rg = relayguard(addr);
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(send_body(&mut c, 100).await, "550 5.7.1 No thanks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_times_out_with_451() {
    let (addr, _task) = fake_upstream(AtBody::Silent).await;
    let rg = relayguard(addr);
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(
        send_body(&mut c, 100).await,
        "451 4.3.0 Error: queue file write error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_gives_421() {
    let (addr, task) = fake_upstream(AtBody::Answer("250 2.0.0 Ok: queued as X")).await;
    let rg = relayguard(addr);
    task.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    // open_ahead = "mail" (the default): the MAIL is answered while the leg opens behind it,
    // and the RCPT that needs the leg hears that it could not be opened.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        format!("421 4.3.0 {HOST} Error: upstream server unavailable")
    );
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_open_ahead_off_an_unreachable_upstream_gives_421_at_mail() {
    let (addr, task) = fake_upstream(AtBody::Answer("250 2.0.0 Ok: queued as X")).await;
    let rg = relayguard_with(addr, "open_ahead = \"no\"");
    task.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@sender.example>").await,
        format!("421 4.3.0 {HOST} Error: upstream server unavailable")
    );
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_the_upstream_does_not_offer_are_not_forwarded() {
    let (addr, _task) = fake_upstream(AtBody::Answer("250 2.0.0 Ok: queued as P")).await;
    let rg = relayguard(addr);
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    assert!(
        c.capabilities.iter().any(|k| k.starts_with("SIZE")),
        "relayguard offers SIZE itself"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@sender.example> SIZE=100 AUTH=<a@sender.example>")
            .await,
        "250 2.1.0 Ok"
    );
}

/// A 451 at MAIL is no refusal of the relay test: the check is tried three times, then
/// start-up stops and says what the upstream answered (issue 10, item 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_at_mail_does_not_pass_the_open_relay_check() {
    let up = ScriptedUpstream::start(&["PIPELINING"], |_, line| {
        if line.starts_with("MAIL") {
            Answer::reply("451 4.3.0 <>: Temporary lookup failure")
        } else {
            Answer::reply("250 2.0.0 Ok")
        }
    })
    .await;
    let err = Relayguard::builder()
        .policy("myhostname", HOST)
        .listener("smtp", Role::Smtp)
        .upstream_smtp(up.addr, Identity::Xclient)
        .try_start()
        .err()
        .expect("relayguard must not start");
    assert!(err.contains("exited with exit status: 3"), "{err}");
    assert!(
        err.contains(
            "the open-relay check did not pass: after 3 attempts the upstream still answered \
             MAIL FROM:<> with \"451 4.3.0 <>: Temporary lookup failure\", which is no refusal \
             of RCPT TO:<relayguard-open-relay-probe@relay-check.invalid> from relayguard's own \
             address. Make the upstream accept MAIL FROM:<> and refuse that recipient, or set \
             [upstream] allow_open_relay = true to start without the check"
        ),
        "{err}"
    );
    assert!(!err.contains("open-relay check passed"), "{err}");
    let mails = (0..up.connections())
        .flat_map(|c| up.lines(c))
        .filter(|l| l.starts_with("MAIL"))
        .count();
    assert_eq!(mails, 3, "{err}");
}

/// The scripted upstream of the other tests refuses the relay test with a 5xx at RCPT: that
/// passes, and start-up says which reply passed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_names_the_refusal_that_passed_the_open_relay_check() {
    let (addr, _task) = fake_upstream(AtBody::Answer("250 2.0.0 Ok")).await;
    let rg = relayguard(addr);
    rg.wait_for_log(
        "open-relay check passed: the upstream refused \
         RCPT TO:<relayguard-open-relay-probe@relay-check.invalid> from relayguard's own address: \
         \"554 5.7.1 Relay access denied\"",
        Duration::from_secs(5),
    );
}
