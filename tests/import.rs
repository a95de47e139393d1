//! `import-postfix` end to end (issue 12): realistic main.cf/master.cf pairs (postscreen on 25,
//! an amavis content filter, a PROXY-protocol port, an access table with HOLD entries) are
//! imported by the real binary, loaded with `check-config`, started on loopback in front of a
//! private Postfix 3.7, and driven through one SMTP scenario each. Only the listen addresses,
//! the certificate paths and the upstream's address are changed, as an admin deploying on a
//! test box would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use support::client::Client;
use support::flows::send_queued;
use support::postfix::Postfix;
use support::process;

const WAIT: Duration = Duration::from_secs(20);

fn relayguard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// main.cf and master.cf (with `@DIR@` for the scratch directory) written and imported.
struct Imported {
    dir: TempDir,
    toml: String,
}

fn import(main_cf: &str, master_cf: &str, files: &[(&str, &str)]) -> Imported {
    let dir = TempDir::new().unwrap();
    // The private Postfix's smtpd runs as `postfix` and reads the tables here too.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let at = |t: &str| t.replace("@DIR@", dir.path().to_str().unwrap());
    std::fs::write(dir.path().join("main.cf"), at(main_cf)).unwrap();
    std::fs::write(dir.path().join("master.cf"), at(master_cf)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), at(text)).unwrap();
    }
    let out = relayguard(dir.path(), &["import-postfix", "main.cf", "master.cf"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Imported {
        toml: stdout(&out),
        dir,
    }
}

impl Imported {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn json(&self) -> serde_json::Value {
        let out = relayguard(
            self.dir.path(),
            &["import-postfix", "--json", "main.cf", "master.cf"],
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The config as deployed on this box: each `from` listen address on a free loopback
    /// port, the dev certificate, the private Postfix as upstream, and no DNS.
    fn deploy(&self, listeners: &[&str], upstream: SocketAddr) -> (PathBuf, Vec<u16>) {
        let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let mut text = self
            .toml
            .replace(
                "cert = \"/etc/ssl/certs/ssl-cert-snakeoil.pem\"",
                &format!("cert = \"{}\"", certs.join("dev-cert.pem").display()),
            )
            .replace(
                "key = \"/etc/ssl/private/ssl-cert-snakeoil.key\"",
                &format!("key = \"{}\"", certs.join("dev-key.pem").display()),
            );
        let mut ports = Vec::new();
        for from in listeners {
            let port = process::free_port();
            let before = format!("address = \"{from}\"");
            assert!(text.contains(&before), "no listener on {from}:\n{text}");
            text = text.replace(&before, &format!("address = \"127.0.0.1:{port}\""));
            ports.push(port);
        }
        let (head, tail) = text.split_once("[upstream]").unwrap();
        let tail = tail.replacen(
            "address = \"127.0.0.1:",
            &format!("address = \"{upstream}\" # was 127.0.0.1:"),
            1,
        );
        let text = format!("{head}[upstream]{tail}\n[dns]\nlookups = \"never\"\n");
        let path = self.path("relayguard.toml");
        std::fs::write(&path, text).unwrap();
        (path, ports)
    }
}

/// `check-config` on `path` must say OK.
fn check_ok(path: &Path) {
    let out = relayguard(
        path.parent().unwrap(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(": OK ("), "{text}");
}

/// relayguard started on a config; killed by PID when dropped, its log shown if a test failed.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(config: &Path, ports: &[u16]) -> Running {
        let log = config.with_file_name("relayguard.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_relayguard"))
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        for port in ports {
            let up =
                process::wait_listening(*port, WAIT, || child.try_wait().ok().flatten().is_none());
            assert!(
                up,
                "relayguard did not listen on {port}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Running { child, log }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- relayguard log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

async fn greeted(port: u16) -> Client {
    let mut c = Client::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    c.greeting().await;
    c
}

const MAIN_BASE: &str = "smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
compatibility_level = 3.6
smtpd_tls_cert_file = /etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_key_file = /etc/ssl/private/ssl-cert-snakeoil.key
smtpd_tls_security_level = may
smtp_tls_security_level = may
myhostname = mx.example.com
alias_maps = hash:/etc/aliases
mydestination = $myhostname, local.test, localhost
relayhost =
mynetworks = 127.0.0.0/8 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
";

/// postscreen on port 25 becomes the port-25 listener with its pass service's `-o`
/// (smtpd_helo_required here), and its tests are carried to relayguard's own postscreen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postscreen_setup() {
    let main = format!(
        "{MAIN_BASE}postscreen_access_list = permit_mynetworks, cidr:@DIR@/postscreen_access.cidr
postscreen_dnsbl_sites = zen.spamhaus.org*3 bl.spamcop.net*1
postscreen_dnsbl_threshold = 3
postscreen_dnsbl_action = enforce
postscreen_greet_action = enforce
postscreen_cache_map = btree:$data_directory/postscreen_cache
"
    );
    let master = "smtp      inet  n       -       y       -       1       postscreen
smtpd     pass  -       -       y       -       -       smtpd
  -o smtpd_helo_required=yes
  -o smtpd_helo_restrictions=reject_non_fqdn_helo_hostname
dnsblog   unix  -       -       y       -       0       dnsblog
tlsproxy  unix  -       -       y       -       0       tlsproxy
pickup    unix  n       -       y       60      1       pickup
";
    let imp = import(
        &main,
        master,
        &[("postscreen_access.cidr", "198.51.100.0/24 reject\n")],
    );
    let toml = &imp.toml;
    let policy = toml.find("[policy]").unwrap();
    let dnsbl = toml
        .find("\npostscreen_dnsbl_sites = \"zen.spamhaus.org*3 bl.spamcop.net*1\"\n")
        .unwrap();
    assert!(policy < dnsbl, "{toml}");
    assert!(
        toml.contains("\npostscreen_greet_action = \"enforce\"\n"),
        "{toml}"
    );
    assert!(
        !toml.contains("# WARNING: Postfix enforces these at the front"),
        "{toml}"
    );
    assert!(toml.contains("# master.cf line 1: smtp (postscreen), with the -o of its smtpd pass service `smtpd` (line 2)"), "{toml}");
    assert!(
        toml.contains("[[listener]]\nname = \"smtp\"\naddress = \"0.0.0.0:25\"\nrole = \"smtp\"\n[listener.policy]\nsmtpd_helo_required = \"yes\"\nsmtpd_helo_restrictions = \"reject_non_fqdn_helo_hostname\"\n"),
        "{toml}"
    );
    let json = imp.json();
    let cache = json["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "postscreen_cache_map")
        .unwrap();
    assert_eq!(cache["class"], "not_front_proxy");
    assert_eq!(cache["line"], 22);
    let dnsbl = json["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "postscreen_dnsbl_sites")
        .unwrap();
    assert_eq!(dnsbl["class"], "carried");

    let pf = Postfix::builder().start();
    let (config, ports) = imp.deploy(&["0.0.0.0:25"], pf.addr_xclient());
    check_ok(&config);
    let _rg = Running::start(&config, &ports);
    let mut c = greeted(ports[0]).await;
    // The pass service's -o: HELO first, and a fully-qualified one.
    assert_eq!(
        c.cmd("MAIL FROM:<s@sender.example>").await,
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    c.ehlo("nodots").await;
    c.cmd("MAIL FROM:<s@sender.example>").await;
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "504 5.5.2 <nodots>: Helo command rejected: need fully-qualified hostname"
    );
    c.cmd("RSET").await;
    c.ehlo("client.example").await;
    send_queued(&mut c, "through the postscreen port").await;
    pf.maildir()
        .wait_for_containing("Subject: through the postscreen port", WAIT);
}

/// An amavis setup: the re-injection port stays the MTA's (and the MTA's new port avoids it
/// and amavis's), content_filter and reject_unverified_recipient stay on the MTA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amavis_content_filter_setup() {
    let main = format!(
        "{MAIN_BASE}content_filter = smtp-amavis:[127.0.0.1]:10024
smtpd_milters = inet:localhost:11332
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, reject_unverified_recipient
"
    );
    let master = "smtp      inet  n       -       y       -       -       smtpd
smtp-amavis unix -      -       n       -       2       smtp
  -o smtp_data_done_timeout=1200
  -o smtp_send_xforward_command=yes
127.0.0.1:10025 inet n  -       n       -       -       smtpd
  -o content_filter=
  -o local_recipient_maps=
  -o smtpd_restriction_classes=
  -o smtpd_client_restrictions=
  -o mynetworks=127.0.0.0/8
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks
";
    let imp = import(&main, master, &[]);
    let toml = &imp.toml;
    assert!(toml.contains("# master.cf line 5: 127.0.0.1:10025 is not a listener here: the content filter's re-injection port"), "{toml}");
    assert!(!toml.contains("address = \"127.0.0.1:10025\""), "{toml}");
    assert!(
        toml.contains("kind = \"smtp\"\naddress = \"127.0.0.1:10026\""),
        "{toml}"
    );
    assert!(
        toml.contains("#   master.cf: 127.0.0.1:10026 inet n - n - - smtpd"),
        "{toml}"
    );
    assert!(
        toml.contains(
            "\nsmtpd_recipient_restrictions = \"permit_mynetworks, reject_unauth_destination\"\n"
        ),
        "{toml}"
    );
    let json = imp.json();
    let lines = json["lines"].as_array().unwrap();
    let filter = lines
        .iter()
        .find(|l| l["name"] == "content_filter")
        .unwrap();
    assert_eq!(filter["class"], "upstream");
    assert_eq!(
        filter["keep_on_mta"],
        "content_filter = smtp-amavis:[127.0.0.1]:10024"
    );
    let unverified = lines
        .iter()
        .find(|l| l["restriction"] == "reject_unverified_recipient")
        .unwrap();
    assert_eq!(unverified["class"], "upstream");
    assert_eq!(unverified["line"], 19);
    assert!(json["warnings"].as_array().unwrap().is_empty(), "{json}");

    let pf = Postfix::builder().start();
    let (config, ports) = imp.deploy(&["0.0.0.0:25"], pf.addr_xclient());
    check_ok(&config);
    let _rg = Running::start(&config, &ports);
    let mut c = greeted(ports[0]).await;
    c.ehlo("client.example").await;
    // From 127.0.0.1, in the imported mynetworks: relayguard lets it relay and the MTA
    // (mynetworks 192.0.2.1/32, which is what import tells it to drop loopback for) refuses.
    c.cmd("MAIL FROM:<s@sender.example>").await;
    assert_eq!(
        c.cmd("RCPT TO:<u@elsewhere.example>").await,
        "454 4.7.1 <u@elsewhere.example>: Relay access denied"
    );
    c.cmd("RSET").await;
    send_queued(&mut c, "amavis setup").await;
    pf.maildir()
        .wait_for_containing("Subject: amavis setup", WAIT);
}

/// `-o smtpd_upstream_proxy_protocol=haproxy` becomes the listener's proxy_protocol: the
/// client the header names is the one the policy judges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_setup() {
    let main = format!(
        "{MAIN_BASE}smtpd_client_restrictions = check_client_access inline:{{{{198.51.100.7 = REJECT proxied client refused}}}}
smtpd_upstream_proxy_timeout = 5s
"
    );
    let master = "smtp      inet  n       -       y       -       -       smtpd
  -o smtpd_upstream_proxy_protocol=haproxy
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
";
    let imp = import(&main, master, &[]);
    let toml = &imp.toml;
    assert!(
        toml.contains(
            "address = \"0.0.0.0:25\"\nrole = \"smtp\"\n# smtpd_upstream_proxy_protocol = haproxy"
        ),
        "{toml}"
    );
    assert_eq!(
        toml.matches("proxy_protocol = { trusted").count(),
        1,
        "only port 25 takes the header:\n{toml}"
    );
    let pf = Postfix::builder().start();
    let (config, ports) = imp.deploy(&["0.0.0.0:25", "0.0.0.0:587"], pf.addr_xclient());
    check_ok(&config);
    let _rg = Running::start(&config, &ports);
    let addr = SocketAddr::from(([127, 0, 0, 1], ports[0]));
    let mut c = Client::connect(addr).await;
    c.send_raw(b"PROXY TCP4 198.51.100.7 192.0.2.25 40001 25\r\n")
        .await;
    c.greeting().await;
    c.ehlo("client.example").await;
    c.cmd("MAIL FROM:<s@sender.example>").await;
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "554 5.7.1 <unknown[198.51.100.7]>: Client host rejected: proxied client refused"
    );
    let mut c = Client::connect(addr).await;
    c.send_raw(b"PROXY TCP4 198.51.100.8 192.0.2.25 40002 25\r\n")
        .await;
    c.greeting().await;
    c.ehlo("client.example").await;
    send_queued(&mut c, "through the proxy port").await;
    let msg = pf
        .maildir()
        .wait_for_containing("Subject: through the proxy port", WAIT);
    assert!(
        msg.received()[0].starts_with("from client.example (unknown [198.51.100.8])"),
        "{:?}",
        msg.received()
    );
}

/// An access table with HOLD entries: import carries the table and lists it in
/// `[tables] mta_actions`; relayguard answers DUNNO for the HOLD entry (Postfix's verdict)
/// and its REJECT entry as usual; the MTA, which keeps the restriction, holds the message.
/// Without mta_actions, check-config refuses the entry by key, action and line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_table_with_hold_entries() {
    let table = "# senders we look at by hand\nheld@sender.example HOLD quarantined for review\nbad@sender.example REJECT not you\n";
    let main = format!(
        "{MAIN_BASE}smtpd_sender_restrictions = check_sender_access texthash:$config_directory/sender_access
"
    );
    let master = "smtp      inet  n       -       y       -       -       smtpd\n";
    let imp = import(&main, master, &[("sender_access", table)]);
    let toml = &imp.toml;
    let spec = format!("texthash:{}", imp.path("sender_access").display());
    assert!(
        toml.contains(&format!("#   {}:2: held@sender.example HOLD quarantined for review    (smtpd_sender_restrictions)\nmta_actions = [\"{spec}\"]\n", imp.path("sender_access").display())),
        "{toml}"
    );

    let pf = Postfix::builder()
        .extra_main_cf(&format!(
            "smtpd_sender_restrictions = check_sender_access {spec}"
        ))
        .start();
    let (config, ports) = imp.deploy(&["0.0.0.0:25"], pf.addr_xclient());
    check_ok(&config);
    // Without the table listed, the entry is refused where it would decide, by name.
    let refused = std::fs::read_to_string(&config)
        .unwrap()
        .replace("mta_actions = ", "# mta_actions = ");
    let bare = imp.path("bare.toml");
    std::fs::write(&bare, refused).unwrap();
    let out = relayguard(
        imp.dir.path(),
        &["check-config", "--config", bare.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with(&format!("{}:2: table `{spec}`: entry `held@sender.example HOLD quarantined for review`: action HOLD acts on the queued message", imp.path("sender_access").display())),
        "{}",
        stdout(&out)
    );

    let _rg = Running::start(&config, &ports);
    let mut c = greeted(ports[0]).await;
    c.ehlo("client.example").await;
    c.cmd("MAIL FROM:<bad@sender.example>").await;
    assert_eq!(
        c.cmd("RCPT TO:<u@local.test>").await,
        "554 5.7.1 <bad@sender.example>: Sender address rejected: not you"
    );
    c.cmd("RSET").await;
    let reply = c
        .send_mail(
            "held@sender.example",
            &["u@local.test"],
            "Subject: held\n\nhi\n",
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let line = pf.wait_for_log(
        "<held@sender.example>: Sender address quarantined for review",
        WAIT,
    );
    assert!(line.contains("hold: RCPT from "), "{line}");
}

/// A bad value in an imported config is reported at the main.cf or master.cf line it came
/// from, a `-o` at its own line.
#[test]
fn load_errors_name_the_main_cf_line() {
    let main = format!("{MAIN_BASE}smtpd_delay_reject = maybe\n");
    let imp = import(
        &main,
        "smtp inet n - y - - smtpd\n  -o syslog_name=postfix/smtp\n  -o smtpd_helo_required=perhaps\n",
        &[],
    );
    let path = imp.path("imported.toml");
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let text = imp
        .toml
        .replace(
            "/etc/ssl/certs/ssl-cert-snakeoil.pem",
            certs.join("dev-cert.pem").to_str().unwrap(),
        )
        .replace(
            "/etc/ssl/private/ssl-cert-snakeoil.key",
            certs.join("dev-key.pem").to_str().unwrap(),
        );
    std::fs::write(&path, text).unwrap();
    let out = relayguard(
        imp.dir.path(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!(
                "{}:17: bad value for `smtpd_delay_reject`: \"maybe\" is not yes or no",
                imp.path("main.cf").display()
            ),
            format!(
                "{}:3: bad value for `smtpd_helo_required`: `perhaps` is not yes or no",
                imp.path("master.cf").display()
            ),
        ]
    );
}
