//! `[upstream] warm_connections`: connections dialled (and past STARTTLS) before a client needs
//! one, against a private Postfix 3.7. A session takes one and still names its client by XCLIENT;
//! with identity `none` it skips the upstream greeting and EHLO too; a warm connection the
//! upstream timed out is replaced, never handed to a client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::flows::{behind_lb, deliver_as};
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard};

const WAIT: Duration = Duration::from_secs(20);

/// One worker, so there is exactly one warm connection to watch (each worker keeps its own).
fn relayguard(pf: &Postfix, identity: Identity) -> Relayguard {
    behind_lb(pf, identity)
        .upstream_toml("warm_connections = 1")
        .extra_toml("[limits]\nworkers = 1")
        .start()
}

/// The PID in `postfix/smtpd[PID]: ...`.
fn smtpd_pid(line: &str) -> Option<&str> {
    let rest = &line[line.find("/smtpd[")? + "/smtpd[".len()..];
    rest.split(']').next()
}

/// The smtpd process holding relayguard's warm connection: one that logged a connect from
/// 127.0.0.1 and no disconnect after it.
fn warm_connection(pf: &Postfix) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = pf.maillog_lines();
        let open = lines.iter().enumerate().rev().find_map(|(i, l)| {
            let pid = smtpd_pid(l)?;
            let connect = l.contains("]: connect from ") && l.contains("[127.0.0.1]");
            let ended = lines[i..]
                .iter()
                .any(|later| smtpd_pid(later) == Some(pid) && later.contains("disconnect from"));
            (connect && !ended).then(|| pid.to_owned())
        });
        if let Some(pid) = open {
            return pid;
        }
        assert!(Instant::now() < deadline, "no warm connection:\n{lines:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_connection_still_names_the_client_by_xclient() {
    let pf = Postfix::builder().start();
    let rg = relayguard(&pf, Identity::Xclient);
    let warm = warm_connection(&pf);
    let before = pf.maillog_lines().len();
    let r = deliver_as(
        &rg,
        &pf,
        "PROXY TCP4 198.51.100.7 127.0.0.1 40001 25\r\n",
        "warm xclient",
    )
    .await;
    assert!(
        r.starts_with("from client.example (unknown [198.51.100.7]) by mx.relayguard.test"),
        "{r}"
    );
    // The message went over the connection that was open before the client came.
    pf.wait_for_log("client=unknown[198.51.100.7]", WAIT);
    let lines = pf.maillog_lines();
    let after = &lines[before..];
    let at = after
        .iter()
        .position(|l| l.contains("client=unknown[198.51.100.7]"))
        .unwrap();
    assert_eq!(smtpd_pid(&after[at]), Some(warm.as_str()), "{after:#?}");
    assert!(
        !after[..at]
            .iter()
            .any(|l| smtpd_pid(l) == Some(warm.as_str())
                && l.contains("]: connect from ")
                && l.contains("[127.0.0.1]")),
        "the warm process took a new connection first: {after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_identity_none_the_warm_connection_has_already_said_ehlo() {
    let pf = Postfix::builder().start();
    let rg = relayguard(&pf, Identity::None);
    warm_connection(&pf);
    let r = deliver_as(
        &rg,
        &pf,
        "PROXY TCP4 198.51.100.8 127.0.0.1 40002 25\r\n",
        "warm none",
    )
    .await;
    // relayguard's own EHLO, said before the client came, not the client's.
    assert!(r.starts_with("from relayguard.test ("), "{r}");
    assert!(r.contains("[127.0.0.1]"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_connection_the_upstream_timed_out_is_replaced() {
    let pf = Postfix::builder().param("smtpd_timeout", "2s").start();
    let rg = relayguard(&pf, Identity::Xclient);
    let warm = warm_connection(&pf);
    // Postfix gives up on the idle connection and says 421.
    let line = pf.wait_for_log("timeout after", WAIT);
    assert_eq!(smtpd_pid(&line), Some(warm.as_str()), "{line}");
    let r = deliver_as(
        &rg,
        &pf,
        "PROXY TCP4 198.51.100.9 127.0.0.1 40003 25\r\n",
        "after timeout",
    )
    .await;
    assert!(
        r.starts_with("from client.example (unknown [198.51.100.9])"),
        "{r}"
    );
}
