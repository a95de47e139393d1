//! `[log] format`: `json` writes one JSON object per line that a log shipper can index (the
//! message, the Postfix tag, the level), `text` is tracing's plain format, and an unknown
//! format is a load error at its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::client::Client;
use support::relayguard::{Relayguard, Role};

fn relayguard(format: &str) -> Relayguard {
    Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .extra_toml(&format!("[log]\nformat = \"{format}\"\n"))
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_message_and_the_postfix_tag() {
    let rg = relayguard("json");
    let mut c = Client::after_ehlo(rg.addr("smtp")).await;
    let reply = c
        .send_mail("a@sender.example", &["u@local.test"], "Subject: j\n\nx\n")
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    c.cmd("QUIT").await;
    rg.wait_for_log("disconnect from", Duration::from_secs(10));

    let lines = rg.log_lines();
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let connect = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("connect from "))
        })
        .unwrap_or_else(|| panic!("no connect event in {lines:#?}"));
    assert_eq!(connect["tag"], "postfix/smtpd", "{connect}");
    assert_eq!(connect["level"], "INFO", "{connect}");
    assert!(connect["timestamp"].is_string(), "{connect}");
    assert!(
        connect["message"].as_str().unwrap().contains("[127.0.0.1]"),
        "{connect}"
    );
    // The delivery line, as fail2ban-style tools would search for it, is a field too.
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("disconnect from"))),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_tracings_plain_format() {
    let rg = relayguard("text");
    let _c = Client::after_ehlo(rg.addr("smtp")).await;
    let line = rg.wait_for_log("connect from", Duration::from_secs(10));
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("tag=postfix/smtpd"), "{line}");
    assert!(!line.contains('\x1b'), "colour codes in a file: {line:?}");
    assert!(!line.contains("postfix/smtpd["), "{line}");
    assert!(serde_json::from_str::<serde_json::Value>(&line).is_err());
}

#[test]
fn an_unknown_format_is_a_load_error_at_its_line() {
    let rg = relayguard("postfix");
    let text = std::fs::read_to_string(rg.config_path()).unwrap();
    let bad = text.replace("format = \"postfix\"", "format = \"xml\"");
    let line = bad.lines().position(|l| l == "format = \"xml\"").unwrap() + 1;
    rg.write_config(&bad);
    let (code, out) = rg.cli(&["check-config"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!("relayguard.toml:{line}")) && out.contains("xml"),
        "{out}"
    );
}
