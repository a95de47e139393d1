//! Reload and drain while mail flows, against a real Postfix upstream: `relayguard reload`
//! answers with the outcome (file:line when it keeps the running config), reloads in the
//! middle of a stream of sessions lose no session and no message, and SIGTERM in the middle of
//! one loses no message: every 250 a client heard is a message in Postfix's Maildir, and a
//! message whose DATA had begun is finished and delivered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::client::{dot_stuff, Client};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role};
use support::scrape::scrape;

const WAIT: Duration = Duration::from_secs(20);
/// Concurrent clients in the load tests.
const CLIENTS: usize = 4;
/// Messages per session: a reload or a drain lands between messages too, not only sessions.
const PER_SESSION: usize = 2;

fn relayguard(pf: &Postfix) -> Relayguard {
    Relayguard::builder()
        .policy("myhostname", "one.test")
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_postfix(pf, Identity::Xclient)
        .admin_http("socket = \"admin.sock\"")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayguard_reload_says_what_happened() {
    let pf = Postfix::builder().start();
    let rg = relayguard(&pf);
    let original = std::fs::read_to_string(rg.config_path()).unwrap();

    rg.write_config(&original.replace("\"one.test\"", "\"two.test\""));
    let (code, out) = rg.cli(&["reload"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reloaded "), "{out}");
    let c = Client::greeted(rg.addr("smtp")).await;
    assert_eq!(c.greeting.as_deref(), Some("220 two.test ESMTP relayguard"));

    // A typo: the CLI names the file and line, and the running config stays.
    let typo = original.replace("mydestination =", "mydestinaton =");
    let line = typo
        .lines()
        .position(|l| l.starts_with("mydestinaton"))
        .unwrap()
        + 1;
    rg.write_config(&typo);
    let (code, out) = rg.cli(&["reload"]);
    assert_eq!(code, 1, "{out}");
    let at = format!("relayguard.toml:{line}");
    assert!(out.contains(&at) && out.contains("mydestinaton"), "{out}");
    let c = Client::greeted(rg.addr("smtp")).await;
    assert_eq!(c.greeting.as_deref(), Some("220 two.test ESMTP relayguard"));

    // A change only a restart can make is refused by the running process, through the socket.
    let other_port = support::process::free_port();
    let moved = original.replace(
        &format!("127.0.0.1:{}", rg.port("smtp")),
        &format!("127.0.0.1:{other_port}"),
    );
    assert_ne!(moved, original);
    rg.write_config(&moved);
    let (code, out) = rg.cli(&["reload"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("needs a restart"), "{out}");
    assert!(out.contains("the running config was kept"), "{out}");
    let c = Client::greeted(rg.addr("smtp")).await;
    assert_eq!(c.greeting.as_deref(), Some("220 two.test ESMTP relayguard"));

    // The typo never reached the running process (the CLI refused to ask); the restart-only
    // change did, and was counted as a failed reload.
    let metrics = scrape(&rg);
    let reloads = |result| metrics.get("relayguard_reloads_total", &[("result", result)]);
    assert_eq!((reloads("ok"), reloads("failed")), (1.0, 1.0));
}

/// What one client saw: messages that got 250, and any session that went wrong.
#[derive(Default)]
struct Tally {
    accepted: Vec<String>,
    failures: Vec<String>,
}

/// One session: greeting, EHLO, [`PER_SESSION`] messages, QUIT. Each message carries a unique
/// subject. The greeting's host and the EHLO reply's must agree: a session runs on one
/// snapshot from start to end.
async fn session(rg_addr: std::net::SocketAddr, tag: &str, tally: &mut Tally) {
    let mut c = Client::greeted(rg_addr).await;
    let greeting = c.greeting.clone().unwrap_or_default();
    let host = greeting
        .strip_prefix("220 ")
        .and_then(|g| g.split(' ').next())
        .unwrap_or("")
        .to_owned();
    let ehlo = c.ehlo("load.example").await;
    if !ehlo.starts_with(&format!("250-{host}\n")) {
        tally
            .failures
            .push(format!("{tag}: greeted as {host:?}, EHLO said {ehlo:?}"));
        return;
    }
    for m in 0..PER_SESSION {
        let subject = format!("{tag}-{m}");
        let reply = c
            .send_mail(
                "load@sender.example",
                &["u@local.test"],
                &format!("Subject: {subject}\n\nbody of {subject}\n"),
            )
            .await;
        if reply.starts_with("250 ") {
            tally.accepted.push(subject);
        } else {
            tally.failures.push(format!("{subject}: {reply}"));
        }
    }
    let bye = c.cmd("QUIT").await;
    if !bye.starts_with("221 ") {
        tally.failures.push(format!("{tag}: QUIT got {bye:?}"));
    }
}

/// Every accepted subject is in Postfix's Maildir, exactly once.
fn assert_all_delivered(pf: &Postfix, accepted: &[String]) {
    let messages = pf.maildir().wait_for(accepted.len(), WAIT);
    let subjects: Vec<String> = messages.iter().filter_map(|m| m.subject()).collect();
    for s in accepted {
        let n = subjects.iter().filter(|x| *x == s).count();
        assert_eq!(n, 1, "{s} delivered {n} times; delivered: {subjects:?}");
    }
    assert_eq!(subjects.len(), accepted.len(), "{subjects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_session_and_no_message() {
    let pf = Postfix::builder().start();
    let rg = relayguard(&pf);
    let original = std::fs::read_to_string(rg.config_path()).unwrap();
    let addr = rg.addr("smtp");
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let give_up = Instant::now() + Duration::from_secs(60);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < give_up && n < 200 {
                session(addr, &format!("c{i}s{n}"), &mut tally).await;
                n += 1;
            }
            tally
        }));
    }
    // Ten reloads, alternating two configs, half by SIGHUP and half by `relayguard reload`.
    let mut reloads = 0;
    for r in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let host = if r % 2 == 0 { "two.test" } else { "one.test" };
        rg.write_config(&original.replace("\"one.test\"", &format!("\"{host}\"")));
        if r % 2 == 0 {
            let (code, out) = rg.cli(&["reload"]);
            assert_eq!(code, 0, "{out}");
        } else {
            rg.signal("HUP");
        }
        reloads += 1;
    }
    let wanted = reloads;
    let deadline = Instant::now() + WAIT;
    while rg
        .log_lines()
        .iter()
        .filter(|l| l.contains("reloaded "))
        .count()
        < wanted
    {
        assert!(Instant::now() < deadline, "not every reload was logged");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for c in clients {
        let t = c.await.unwrap();
        all.accepted.extend(t.accepted);
        all.failures.extend(t.failures);
    }
    assert!(all.failures.is_empty(), "{:#?}", all.failures);
    assert!(
        all.accepted.len() >= CLIENTS * PER_SESSION * 2,
        "too little traffic to prove anything: {}",
        all.accepted.len()
    );
    eprintln!(
        "{} messages accepted and delivered across {reloads} reloads",
        all.accepted.len()
    );
    assert_all_delivered(&pf, &all.accepted);
    assert!(!rg.log_lines().iter().any(|l| l.contains("reload failed")));
}

/// Sends MAIL, RCPT, DATA and the first half of a message; the rest comes after the TERM.
async fn half_sent(addr: std::net::SocketAddr, subject: &str) -> Client {
    let mut c = Client::after_ehlo(addr).await;
    c.open_data("a@sender.example", "u@local.test").await;
    c.send_raw(format!("Subject: {subject}\r\n\r\nfirst half\r\n").as_bytes())
        .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_load_loses_no_message() {
    let pf = Postfix::builder().start();
    let mut rg = relayguard(&pf);
    let addr = rg.addr("smtp");
    let stop = Arc::new(AtomicBool::new(false));
    // A stream of sessions; once the drain starts each must end in a 250 or a 421 (or a
    // refused connect), never in a message the client cannot account for.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 200 {
                match stream_session(addr, &format!("d{i}s{n}")).await {
                    Ok(Some(mut got)) => accepted.append(&mut got),
                    Ok(None) => break, // no longer accepting
                    Err(e) => return Err(e),
                }
                n += 1;
            }
            Ok(accepted)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut in_flight = Vec::new();
    for k in 0..3 {
        in_flight.push(half_sent(addr, &format!("inflight-{k}")).await);
    }
    rg.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut accepted = Vec::new();
    for (k, c) in in_flight.iter_mut().enumerate() {
        c.send_raw(b"second half\r\n.\r\n").await;
        let reply = c.read_reply().await;
        assert!(reply.starts_with("250 2.0.0 Ok"), "inflight-{k}: {reply}");
        accepted.push(format!("inflight-{k}"));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        accepted.extend(c.await.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(accepted.len() > 3, "no traffic before the drain");
    eprintln!("{} messages accepted around the drain", accepted.len());
    assert_all_delivered(&pf, &accepted);
    let status = rg
        .stop_gracefully(WAIT)
        .expect("relayguard exits after draining");
    assert!(status.success(), "{status:?}");
}

/// One session of the drain test, by hand so that a 421 or a close is an answer, not a panic.
/// `Ok(Some)` lists the subjects that got 250, `Ok(None)` is a refused connect; `Err` is an
/// outcome that would lose a message: a final dot that got no reply, or a reply that is
/// neither a success nor 421.
async fn stream_session(
    addr: std::net::SocketAddr,
    tag: &str,
) -> Result<Option<Vec<String>>, String> {
    let Ok(mut c) = Client::try_connect(addr).await else {
        return Ok(None);
    };
    let mut accepted = Vec::new();
    // The greeting (no command), EHLO once, then each message's commands.
    let mut commands = vec!["", "EHLO load.example"];
    for m in 0..PER_SESSION {
        let subject = format!("{tag}-{m}");
        commands.extend([
            "MAIL FROM:<a@sender.example>",
            "RCPT TO:<u@local.test>",
            "DATA",
        ]);
        for line in commands.drain(..) {
            if !line.is_empty() && c.try_send(format!("{line}\r\n").as_bytes()).await.is_err() {
                return Ok(Some(accepted));
            }
            match c.try_read_reply().await {
                Ok(Some(r)) if r.starts_with("421 ") => return Ok(Some(accepted)),
                Ok(Some(r)) if r.starts_with('2') || r.starts_with("354") => {}
                Ok(Some(r)) => return Err(format!("{subject}: {line:?} got {r:?}")),
                // Closed before answering a command, not a message: nothing was accepted.
                Ok(None) | Err(_) => return Ok(Some(accepted)),
            }
        }
        let body = dot_stuff(&format!("Subject: {subject}\n\nbody of {subject}\n"));
        if c.try_send(&body).await.is_err() {
            return Err(format!("{subject}: the drain cut the message mid-DATA"));
        }
        match c.try_read_reply().await {
            Ok(Some(r)) if r.starts_with("250 ") => accepted.push(subject),
            other => return Err(format!("{subject}: final dot answered {other:?}")),
        }
    }
    Ok(Some(accepted))
}
