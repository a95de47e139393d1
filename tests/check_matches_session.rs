//! `relayguard check` and the live session answer alike, because both drive the same parser,
//! the same phase rules (`session::phase`) and the same policy: for each scenario the same
//! config runs once as a server, driven by a client, and once through `check`, and every
//! command's reply must be the same line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::client::Client;
use support::relayguard::{Relayguard, Role};

struct Scenario {
    name: &'static str,
    policy: &'static [(&'static str, &'static str)],
    listener: Role,
    helo: Option<&'static str>,
    from: &'static str,
    rcpts: &'static [&'static str],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "HELO required, none given",
        policy: &[("smtpd_helo_required", "yes")],
        listener: Role::Smtp,
        helo: None,
        from: "a@sender.example",
        rcpts: &["u@local.test"],
    },
    Scenario {
        name: "empty recipient",
        policy: &[],
        listener: Role::Smtp,
        helo: Some("c.example"),
        from: "a@sender.example",
        rcpts: &["", "u@local.test"],
    },
    Scenario {
        name: "recipient limit",
        policy: &[("smtpd_recipient_limit", "1")],
        listener: Role::Smtp,
        helo: Some("c.example"),
        from: "a@sender.example",
        rcpts: &["u@local.test", "v@local.test", "x@elsewhere.example"],
    },
    Scenario {
        name: "TLS required first",
        policy: &[],
        listener: Role::Submission,
        helo: Some("c.example"),
        from: "a@sender.example",
        rcpts: &["u@local.test"],
    },
    Scenario {
        name: "relay refused, postmaster taken",
        policy: &[("smtpd_helo_restrictions", "reject_invalid_helo_hostname")],
        listener: Role::Smtp,
        helo: Some("c.example"),
        from: "<>",
        rcpts: &["x@elsewhere.example", "postmaster"],
    },
];

/// The replies `check` gives, by stage, for the scenario's script.
fn replies_of_check(rg: &Relayguard, s: &Scenario) -> Vec<(String, String)> {
    let config = rg.config_path();
    let mut args = vec![
        "check".to_owned(),
        "--config".into(),
        config.to_str().unwrap().into(),
        "--client".into(),
        "127.0.0.1".into(),
        "--from".into(),
        s.from.trim_matches(['<', '>']).into(),
        "--json".into(),
    ];
    if let Some(h) = s.helo {
        args.extend(["--helo".into(), h.into()]);
    }
    for r in s.rcpts {
        args.extend(["--rcpt".into(), (*r).into()]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .args(&args)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["stage"].as_str().unwrap().to_owned(),
                step["reply"]["line"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The replies the live session gives to the same commands.
async fn replies_of_session(rg: &Relayguard, s: &Scenario) -> Vec<(String, String)> {
    let mut c = Client::connect(rg.addr("live")).await;
    let mut seen = vec![("CONNECT".to_owned(), c.greeting().await)];
    if let Some(h) = s.helo {
        // A multi-line EHLO reply here, the one-line HELO form in `check`: the code is compared.
        let reply = c.ehlo(h).await;
        seen.push(("EHLO".into(), reply[..3].to_owned()));
    }
    let from = s.from.trim_matches(['<', '>']);
    seen.push(("MAIL".into(), c.cmd(&format!("MAIL FROM:<{from}>")).await));
    for r in s.rcpts {
        seen.push(("RCPT".into(), c.cmd(&format!("RCPT TO:<{r}>")).await));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_every_command_as_the_session_does() {
    for s in SCENARIOS {
        let mut b = Relayguard::builder()
            .policy("myhostname", "relayguard.test")
            .policy("mydestination", "local.test")
            .listener("live", s.listener)
            .upstream_maildir();
        for (k, v) in s.policy {
            b = b.policy(k, v);
        }
        let rg = b.start();
        let mut offline = replies_of_check(&rg, s);
        for (stage, line) in offline.iter_mut() {
            if stage == "EHLO" {
                line.truncate(3);
            }
        }
        let live = replies_of_session(&rg, s).await;
        assert_eq!(offline, live, "{}", s.name);
    }
}
