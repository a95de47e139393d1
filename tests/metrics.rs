//! The admin HTTP listener: scripted sessions against a real Postfix (SASL on) move exactly
//! the counters they should, with exactly the labels they should, in a `/metrics` scrape read
//! by curl and parsed by the Prometheus project's own OpenMetrics parser
//! (python3-prometheus-client); a stock Prometheus server (Debian's `prometheus`) scrapes and
//! stores them; the Grafana dashboard uses only metric names that scrape has; `/healthz` and
//! `/readyz` follow the upstream and the drain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use support::client::{auth_plain, Client};
use support::external::Swaks;
use support::postfix::Postfix;
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};
use support::scrape::{get, moved, scrape, Scrape};

const WAIT: Duration = Duration::from_secs(20);

fn cidr_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "10.0.0.0/8 OK\n192.0.2.0/24 REJECT blocked by test").unwrap();
    f
}

/// `mx` is plain (swaks talks to it from 127.0.0.1, in mynetworks); `auth` trusts PROXY
/// headers from loopback so each client can speak from an outside address; `limited` allows
/// one MAIL per client per time unit and exempts nobody.
fn setup(pf: &Postfix, cidr: &std::path::Path) -> Relayguard {
    let cidr = format!("check_client_access cidr:{}", cidr.display());
    Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy(
            "smtpd_relay_restrictions",
            "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
        )
        .listener("mx", Role::Smtp)
        .listener_with(
            "auth",
            Role::Smtp,
            &[
                ("smtpd_sasl_auth_enable", "yes"),
                ("smtpd_sasl_exceptions_networks", "203.0.113.0/24"),
                ("smtpd_client_restrictions", &cidr),
            ],
        )
        .listener_toml("auth", TRUST_LOOPBACK_PROXY)
        .listener_with(
            "limited",
            Role::Smtp,
            &[
                ("smtpd_client_message_rate_limit", "1"),
                ("smtpd_client_event_limit_exceptions", ""),
            ],
        )
        .upstream_postfix(pf, Identity::Xclient)
        .extra_toml(
            "[bans]\ntriggers = { auth = 1, auth_gate = 0, relay = 0, limit = 0, protocol = 0, unknown_command = 0 }",
        )
        .admin_http("")
        .start()
}

async fn outside(rg: &Relayguard, addr: &str) -> Client {
    let mut c = Client::connect_as(rg.addr("auth"), addr).await;
    c.ehlo("client.example").await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_sessions_move_exactly_their_counters() {
    let pf = Postfix::builder().sasl(true).start();
    let cidr = cidr_file();
    let rg = setup(&pf, cidr.path());
    let before = scrape(&rg);

    // A delivered message, by swaks.
    let t = Swaks::new(rg.addr("mx"))
        .arg("--header")
        .arg("Subject: counted")
        .run();
    assert!(t.success(), "{}", t.output);
    let delivered = pf.maildir().wait_for_containing("Subject: counted", WAIT);
    drop(delivered);

    // A relay attempt from outside, refused by reject_unauth_destination.
    let mut c = outside(&rg, "198.51.100.20").await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    let reply = c.cmd("RCPT TO:<u@elsewhere.example>").await;
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    // An AUTH the upstream's SASL server accepts.
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    let reply = c
        .cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "secret")))
        .await;
    assert_eq!(reply, "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    // A client the cidr table's 192.0.2.0/24 entry rejects (at RCPT: smtpd_delay_reject).
    let mut c = outside(&rg, "192.0.2.7").await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    let reply = c.cmd("RCPT TO:<u@local.test>").await;
    assert!(reply.contains("blocked by test"), "{reply}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    // A wrong password, which (auth = 1) also bans the client; its next connection is refused.
    let mut c = outside(&rg, "198.51.100.66").await;
    let reply = c
        .cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "wrong")))
        .await;
    assert!(reply.starts_with("535 5.7.8"), "{reply}");
    drop(c);
    let c = Client::connect_as(rg.addr("auth"), "198.51.100.66").await;
    let reply = c.greeting.clone().unwrap();
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    drop(c);

    // AUTH from a network smtpd_sasl_exceptions_networks keeps AUTH from.
    let mut c = outside(&rg, "203.0.113.5").await;
    let reply = c
        .cmd(&format!("AUTH PLAIN {}", auth_plain("alice", "secret")))
        .await;
    assert_eq!(reply, "503 5.5.1 Error: authentication not enabled");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    // One MAIL allowed per time unit: the second is over smtpd_client_message_rate_limit.
    let mut c = Client::after_ehlo(rg.addr("limited")).await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok");
    let reply = c.cmd("MAIL FROM:<a@sender.example>").await;
    assert!(reply.starts_with("450 4.7.1"), "{reply}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    drop(c);

    // Every session above has ended once the current gauges are back where they were.
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let s = scrape(&rg);
        let open: f64 = ["mx", "auth", "limited"]
            .iter()
            .map(|l| s.get("relayguard_sessions_current", &[("listener", l)]))
            .sum();
        if open == 0.0 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let d = |name: &str, labels: &[(&str, &str)]| moved(&before, &after, name, labels);

    for (listener, sessions) in [("mx", 1.0), ("auth", 5.0), ("limited", 1.0)] {
        assert_eq!(
            d(
                "relayguard_sessions_opened_total",
                &[("listener", listener)]
            ),
            sessions,
            "{listener}"
        );
        assert_eq!(
            after.get("relayguard_sessions_current", &[("listener", listener)]),
            0.0
        );
    }
    let cmd = |l: &str, v: &str| d("relayguard_commands_total", &[("listener", l), ("verb", v)]);
    assert_eq!(cmd("mx", "ehlo"), 1.0);
    assert_eq!(cmd("mx", "mail"), 1.0);
    assert_eq!(cmd("mx", "data"), 1.0);
    assert_eq!(cmd("auth", "auth"), 3.0);
    assert_eq!(cmd("auth", "rcpt"), 2.0);
    assert_eq!(cmd("limited", "mail"), 2.0);
    assert_eq!(cmd("limited", "rset"), 1.0);

    // The message swaks sent, forwarded once; its bytes are what the upstream stored, at least.
    assert_eq!(
        d("relayguard_messages_forwarded_total", &[("listener", "mx")]),
        1.0
    );
    let bytes = d("relayguard_forwarded_bytes_total", &[("listener", "mx")]);
    assert!((100.0..10_000.0).contains(&bytes), "{bytes}");
    assert_eq!(
        d(
            "relayguard_messages_forwarded_total",
            &[("listener", "auth")]
        ),
        0.0
    );

    let table = format!("cidr:{}", cidr.path().display());
    let rejected = |restriction: &str, parameter: &str, table: &str, key: &str| {
        d(
            "relayguard_rejections_total",
            &[
                ("listener", "auth"),
                ("stage", "RCPT"),
                ("parameter", parameter),
                ("restriction", restriction),
                ("table", table),
                ("table_key", key),
            ],
        )
    };
    assert_eq!(
        rejected(
            "reject_unauth_destination",
            "smtpd_relay_restrictions",
            "",
            ""
        ),
        1.0
    );
    // The entry's key, not the client's 192.0.2.7.
    assert_eq!(
        rejected(
            "check_client_access",
            "smtpd_client_restrictions",
            &table,
            "192.0.2.0/24"
        ),
        1.0,
        "{:?}",
        after.series("relayguard_rejections_total", &[])
    );
    assert!(
        after
            .series("relayguard_rejections_total", &[])
            .iter()
            .all(|(l, _)| !l.values().any(|v| v.contains("192.0.2.7"))),
        "a client's address became a label"
    );

    let auth = |result: &str, gate: &str| {
        d(
            "relayguard_auth_total",
            &[("listener", "auth"), ("result", result), ("gate", gate)],
        )
    };
    assert_eq!(auth("success", ""), 1.0);
    assert_eq!(auth("failure", ""), 1.0);
    assert_eq!(auth("refused", "smtpd_sasl_exceptions_networks"), 1.0);

    assert_eq!(
        d(
            "relayguard_limit_exceeded_total",
            &[
                ("listener", "limited"),
                ("limit", "smtpd_client_message_rate_limit")
            ]
        ),
        1.0
    );
    let ban = |event: &str, trigger: &str| {
        d(
            "relayguard_ban_events_total",
            &[("listener", "auth"), ("event", event), ("trigger", trigger)],
        )
    };
    assert_eq!(ban("imposed", "auth"), 1.0);
    assert_eq!(ban("refused_at_connect", ""), 1.0);

    // Each upstream reply was timed: the histogram's count grew by at least the commands
    // that went upstream (swaks' EHLO, MAIL, RCPT, DATA, end of data), and all within 30 s.
    let count = d("relayguard_upstream_reply_duration_seconds_count", &[]);
    assert!(count >= 5.0, "{count}");
    assert_eq!(
        d(
            "relayguard_upstream_reply_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        count
    );
    assert_eq!(
        d(
            "relayguard_upstream_reply_duration_seconds_bucket",
            &[("le", "30.0")]
        ),
        count
    );

    dashboard_uses_only_scraped_names(&after);
}

/// Every `relayguard_*` name in the dashboard's PromQL is a family of the scrape, or one of
/// its samples (`_total`, `_bucket`, `_count`, `_sum`).
fn dashboard_uses_only_scraped_names(scrape: &Scrape) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/relayguard-dashboard.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        json["__inputs"][0]["type"] == "datasource",
        "no datasource input"
    );
    let templating = json["templating"]["list"].as_array().unwrap();
    assert!(templating.iter().any(|v| v["name"] == "listener"));
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let names = regex::Regex::new(r"relayguard_[a-z_]+").unwrap();
    let mut used = 0;
    for expr in &exprs {
        for m in names.find_iter(expr) {
            let name = m.as_str();
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            let known = scrape
                .families
                .get(family)
                .is_some_and(|t| match t.as_str() {
                    "counter" => name.ends_with("_total"),
                    "histogram" => name != family,
                    _ => name == family,
                });
            assert!(
                known,
                "the dashboard uses {name}, which /metrics does not have: {expr}"
            );
            used += 1;
        }
    }
    // Every family is on the dashboard.
    for family in scrape.families.keys() {
        assert!(
            exprs.iter().any(|e| e.contains(family.as_str())),
            "{family} has no panel"
        );
    }
    assert!(used >= scrape.families.len());
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_upstream() {
    let pf = Postfix::builder().start();
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("mx", Role::Smtp)
        .upstream_postfix(&pf, Identity::Xclient)
        .admin_http("ready_window = \"1s\"")
        .start();
    assert_eq!(
        get(&rg.admin_url("/healthz")),
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );
    let (code, _, body) = get(&rg.admin_url("/readyz"));
    assert_eq!((code, body.as_str()), (200, "ready\n"));
    // Past the window, with no session: /readyz asks the upstream itself, which is up.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (code, _, body) = get(&rg.admin_url("/readyz"));
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    let before = scrape(&rg);
    drop(pf);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (code, _, body) = get(&rg.admin_url("/readyz"));
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("not ready: upstream: "), "{body}");
    assert_eq!(get(&rg.admin_url("/healthz")).0, 200);

    // A session that needs the upstream now fails to reach it, counted by kind.
    let mut c = Client::after_ehlo(rg.addr("mx")).await;
    // The MAIL is answered while the leg opens behind it (open_ahead = "mail"); the RCPT
    // that needs the leg hears that it could not be opened.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await, "250 2.1.0 Ok");
    let reply = c.cmd("RCPT TO:<u@local.test>").await;
    assert!(reply.starts_with('4'), "{reply}");
    drop(c);
    let after = scrape(&rg);
    assert_eq!(
        moved(
            &before,
            &after,
            "relayguard_upstream_errors_total",
            &[("kind", "connect")]
        ),
        1.0,
        "{:?}",
        after.series("relayguard_upstream_errors_total", &[])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_503_while_draining_and_maildir_stays_ready() {
    let mut rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .admin_http("ready_window = \"1s\"")
        .start();
    // The built-in Maildir upstream answers the fresh check too.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (code, _, body) = get(&rg.admin_url("/readyz"));
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    // A message in flight keeps the drain going while /readyz is asked.
    let mut busy = Client::after_ehlo(rg.addr("smtp")).await;
    busy.open_data("a@sender.example", "u@local.test").await;
    busy.send_raw(b"Subject: drained\r\n\r\nbody\r\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    rg.signal("TERM");
    let deadline = Instant::now() + WAIT;
    let (code, body) = loop {
        let (code, _, body) = get(&rg.admin_url("/readyz"));
        if code != 200 || Instant::now() > deadline {
            break (code, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((code, body.as_str()), (503, "not ready: draining\n"));
    assert_eq!(get(&rg.admin_url("/healthz")).0, 200);

    busy.send_raw(b".\r\n").await;
    let reply = busy.read_reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let status = rg
        .stop_gracefully(Duration::from_secs(10))
        .expect("relayguard exits after draining");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_bad_admin_http_address_is_a_load_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relayguard.toml");
    std::fs::write(
        &path,
        "[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:2525\"\nrole = \"smtp\"\n\
         [upstream]\nkind = \"maildir\"\npath = \"md\"\n[admin]\nhttp = \"localhost:nine\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    // check-config prints its findings on stdout.
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{:?} {err}", out.status);
    assert!(
        err.contains("relayguard.toml:9: [admin] http `localhost:nine` is not an address"),
        "{err}"
    );
}

/// A Prometheus server of our own (Debian's `prometheus`), scraping relayguard every 500 ms;
/// killed by PID when dropped.
struct PrometheusServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    fn scraping(target: &str) -> PrometheusServer {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n\
                 scrape_configs:\n  - job_name: relayguard\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = support::process::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run /usr/bin/prometheus");
        PrometheusServer {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query's one series, once it has one (within `WAIT`).
    async fn value_of(&self, query: &str) -> Option<f64> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
            let out = Command::new("curl")
                .args(["-s", "-m", "5", "-G", "--data-urlencode"])
                .arg(format!("query={query}"))
                .arg(&url)
                .output()
                .unwrap();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                if let Some(s) = v["data"]["result"][0]["value"][1].as_str() {
                    return s.parse().ok();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_prometheus_scrapes_and_stores_the_counters() {
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .listener("smtp", Role::Smtp)
        .upstream_maildir()
        .admin_http("")
        .start();
    let t = Swaks::new(rg.addr("smtp")).run();
    assert!(t.success(), "{}", t.output);
    let target = rg.admin_url("").trim_start_matches("http://").to_owned();
    let prom = PrometheusServer::scraping(&target);
    // The target is up (Prometheus parsed the scrape) and the message is in its store.
    assert_eq!(prom.value_of("up{job=\"relayguard\"}").await, Some(1.0));
    assert_eq!(
        prom.value_of("relayguard_messages_forwarded_total{listener=\"smtp\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        prom.value_of("relayguard_commands_total{listener=\"smtp\",verb=\"rcpt\"}")
            .await,
        Some(1.0)
    );
    // A histogram Prometheus can compute a quantile of.
    let p99 = prom
        .value_of("histogram_quantile(0.99, relayguard_upstream_reply_duration_seconds_bucket)")
        .await
        .expect("a quantile");
    assert!(p99 > 0.0 && p99 <= 30.0, "{p99}");
}
