//! relayguard's DNS restrictions against Postfix 3.7's, both resolving through one private
//! DNS world: for each policy, every question gets the same MAIL and RCPT replies from a
//! private Postfix (asked over XCLIENT) and from relayguard (asked through a PROXY header,
//! with a Maildir upstream, so that the verdict is relayguard's own), and `relayguard check`
//! predicts the same RCPT reply.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::dns::{DnsWorld, Listen};
use support::dns_reference::*;
use support::postfix::Postfix;
use support::probe::{ask_postfix, ask_proxied, Question};
use support::relayguard::{Relayguard, Role, TRUST_LOOPBACK_PROXY};

/// One policy and the questions asked under it.
struct Scenario {
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    questions: Vec<Question>,
}

fn confirmed() -> Question {
    Question::from(CLIENT_CONFIRMED).name("client.example")
}

fn senders(domains: &[&str]) -> Vec<Question> {
    domains
        .iter()
        .map(|d| confirmed().sender(&format!("s@{d}")))
        .collect()
}

/// A cidr table both servers read: the MX and NS host addresses of the reference world.
fn server_table() -> &'static str {
    let path = std::env::temp_dir().join(format!("rg-dnsdiff-{}.cidr", std::process::id()));
    std::fs::write(
        &path,
        "10.0.0.0/8 REJECT MX in a private network\n198.51.100.20 REJECT implicit MX\n198.51.100.25 OK\n",
    )
    .unwrap();
    Box::leak(format!("check_sender_mx_access cidr:{}", path.display()).into_boxed_str())
}

fn scenarios() -> Vec<Scenario> {
    let mx_access: &'static [(&'static str, &'static str)] =
        Box::leak(Box::new([("smtpd_sender_restrictions", server_table())]));
    vec![
        Scenario {
            name: "reverse client hostname access",
            params: &[(
                "smtpd_client_restrictions",
                "check_reverse_client_hostname_access inline:{ client.example=REJECT, 198.51.100.9=OK }",
            )],
            questions: vec![
                confirmed(),
                Question::from(CLIENT_BL_IN_RANGE),
                Question::from(CLIENT_BL_OUT_OF_RANGE),
            ],
        },
        Scenario {
            name: "MX access",
            params: mx_access,
            questions: senders(&[
                DOMAIN_PRIVATE_MX,
                DOMAIN_A_ONLY,
                DOMAIN_MX_ONLY,
                DOMAIN_NULL_MX,
                DOMAIN_NXDOMAIN,
                DOMAIN_SERVFAIL,
            ]),
        },
        Scenario {
            name: "unknown sender domain",
            params: &[("smtpd_sender_restrictions", "reject_unknown_sender_domain")],
            questions: senders(&[
                DOMAIN_A_ONLY,
                DOMAIN_AAAA_ONLY,
                DOMAIN_MX_ONLY,
                DOMAIN_NULL_MX,
                DOMAIN_NXDOMAIN,
                DOMAIN_SERVFAIL,
                DOMAIN_SLOW,
            ]),
        },
        Scenario {
            name: "unknown sender domain, code 550",
            params: &[
                ("smtpd_sender_restrictions", "reject_unknown_sender_domain"),
                ("unknown_address_reject_code", "550"),
            ],
            questions: senders(&[DOMAIN_NXDOMAIN, DOMAIN_SERVFAIL]),
        },
        Scenario {
            name: "DNSBL and RHSBL",
            params: &[(
                "smtpd_recipient_restrictions",
                "reject_rbl_client zen.test, reject_rhsbl_sender rhsbl.test, permit",
            )],
            questions: vec![
                Question::from(CLIENT_ZEN_LISTED),
                confirmed(),
                confirmed().sender(&format!("s@{DOMAIN_RHSBL_LISTED}")),
                Question::from(CLIENT_ZEN_LISTED).sender(&format!("s@{DOMAIN_RHSBL_LISTED}")),
                confirmed().sender(""),
                confirmed().sender(&format!("s@{DOMAIN_SERVFAIL}")),
            ],
        },
        Scenario {
            name: "DNSBL result filter",
            params: &[(
                "smtpd_recipient_restrictions",
                "reject_rbl_client bl.test=127.0.0.[2..4], permit",
            )],
            questions: vec![
                Question::from(CLIENT_BL_IN_RANGE),
                Question::from(CLIENT_BL_OUT_OF_RANGE),
                confirmed(),
            ],
        },
        Scenario {
            name: "unknown helo hostname",
            params: &[("smtpd_helo_restrictions", "reject_unknown_helo_hostname")],
            questions: [
                DOMAIN_A_ONLY,
                DOMAIN_AAAA_ONLY,
                DOMAIN_MX_ONLY,
                DOMAIN_NULL_MX,
                DOMAIN_NXDOMAIN,
                "nodots",
                "[198.51.100.7]",
                DOMAIN_SERVFAIL,
            ]
            .iter()
            .map(|h| confirmed().helo(h))
            .collect(),
        },
    ]
}

/// relayguard with the scenario's policy, deciding itself (Maildir upstream), its client
/// names and lookups from the world.
fn relayguard(sc: &Scenario, world: &DnsWorld) -> Relayguard {
    let mut b = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("mynetworks", "192.0.2.1/32");
    for (k, v) in sc.params {
        b = b.policy(k, v);
    }
    b.listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .extra_toml(&world.relayguard_toml("2s"))
        .start()
}

/// What `relayguard check` says RCPT gets for `q`, with the running relayguard's config (it
/// makes the same lookups, through the same world).
fn check_rcpt(rg: &Relayguard, q: &Question) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_relayguard"));
    cmd.args(["check", "--config", rg.config_path().to_str().unwrap()])
        .args(["--listener", "lb", "--client", &q.addr.to_string()])
        .args([
            "--helo",
            &q.helo,
            "--from",
            &q.sender,
            "--rcpt",
            &q.recipient,
            "--json",
        ]);
    if !q.name.starts_with('[') {
        cmd.args(["--client-name", &q.name]);
    }
    let out = cmd.output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "RCPT")
        .map(|s| s["reply"]["line"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_restrictions_answer_as_postfix() {
    let world = DnsWorld::reference().listen(Listen::Port53).start();
    let mut diffs = Vec::new();
    let mut asked = 0;
    for sc in scenarios() {
        let mut pf = Postfix::builder().starttls(false).resolver(&world);
        for (k, v) in sc.params {
            pf = pf.param(k, v);
        }
        let pf = pf.start();
        let rg = relayguard(&sc, &world);
        for q in &sc.questions {
            let want = ask_postfix(&pf, q).await;
            let got = ask_proxied(rg.addr("lb"), q).await;
            let checked = check_rcpt(&rg, q);
            asked += 1;
            if (&got.mail, &got.rcpt) != (&want.mail, &want.rcpt) || checked != want.rcpt {
                diffs.push(format!(
                    "[{}] {} helo={} from=<{}>:\n  postfix:    {} / {}\n  relayguard: {} / {}\n  check:      {checked}",
                    sc.name, q.addr, q.helo, q.sender, want.mail, want.rcpt, got.mail, got.rcpt
                ));
            }
        }
    }
    assert!(asked >= 33, "{asked}");
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
