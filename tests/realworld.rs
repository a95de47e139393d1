//! Real-world configs (issue 12, point 6): the main.cf and master.cf of the mail stacks people
//! deploy, copied from their public repositories into `tests/realworld/<project>/` (origin and
//! rendering in `tests/realworld/README.md`). Each is
//!
//! 1. imported with the real binary (`relayguard import-postfix main.cf master.cf`);
//! 2. adjusted only where a test machine must differ, by editing the generated TOML: every
//!    listener on a free loopback port behind a PROXY header from loopback (so that a test can
//!    be any client), the certificate pair from `certs/`, the upstream a private Postfix sink
//!    (SASL through the harness's fake Dovecot), names resolved in a private DNS world;
//! 3. loaded with `relayguard check-config` (a refusal fails the test, with its text);
//! 4. started, and driven with the same scenarios as a private Postfix 3.7 that runs the same
//!    main.cf (plus the master.cf `-o` overrides of the service) with only what cannot run
//!    here overridden (directories, listeners, milters, content filters, delivery, the SASL
//!    socket, certificates). The client is set with XCLIENT on Postfix and a PROXY header on
//!    relayguard; every reply's first line is compared (greeting and EHLO by code).
//!
//! Nothing here is skipped: a config that fails any step fails its test with the reason.
//! Needs root, Postfix 3.7, dnsmasq and python3 (like the other differential tests).

// Test code: a broken setup should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::client::{auth_plain, Client};
use support::dns::{DnsWorld, Listen};
use support::policy_server::{Answer, PolicyServer};
use support::postfix::Postfix;
use support::process::{self, free_port, POLL};
use support::tls::CertSet;

const BIN: &str = env!("CARGO_BIN_EXE_relayguard");
const START_TIMEOUT: Duration = Duration::from_secs(20);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The outside client: no PTR record, so `unknown` on both sides.
const OUTSIDE: &str = "203.0.113.5";
const HELO: &str = "mail.sender.example";
const SENDER: &str = "someone@sender.example";
const FOREIGN: &str = "x@elsewhere.example";
/// The SASL account of the harness's fake Dovecot.
const LOGIN: (&str, &str) = ("alice", "secret");

/// One gathered config and the addresses its tables know.
struct Project {
    /// The directory under tests/realworld/.
    dir: &'static str,
    /// A recipient the config accepts from anyone (its local or virtual domain).
    known: &'static str,
    /// A user its domain does not have.
    unknown: &'static str,
    /// A client address in its mynetworks.
    mynetworks_client: &'static str,
    /// The master.cf service where clients authenticate (None: the config has no SASL).
    submission: Option<&'static str>,
    /// A sender the login `alice` owns (smtpd_sender_login_maps).
    auth_sender: &'static str,
    /// Scenarios main.cf leaves to the MTA behind relayguard (an unset local_recipient_maps
    /// is the MTA host's passwd file): driven through a relayguard whose upstream is the
    /// reference Postfix itself, so the answer compared is the one a deployment gives.
    mta_decides: &'static [&'static str],
}

/// One session: which master.cf service, who, and what.
#[derive(Clone, Debug)]
struct Case {
    label: &'static str,
    service: &'static str,
    client: &'static str,
    tls: bool,
    auth: bool,
    from: &'static str,
    rcpt: &'static str,
}

fn cases(p: &Project) -> Vec<Case> {
    let smtp = |label, client, from, rcpt| Case {
        label,
        service: "smtp",
        client,
        tls: false,
        auth: false,
        from,
        rcpt,
    };
    let mut out = vec![
        smtp("outside client to a local user", OUTSIDE, SENDER, p.known),
        smtp("outside client relaying", OUTSIDE, SENDER, FOREIGN),
        smtp(
            "mynetworks client relaying",
            p.mynetworks_client,
            SENDER,
            FOREIGN,
        ),
        smtp(
            "outside client to an unknown user",
            OUTSIDE,
            SENDER,
            p.unknown,
        ),
        smtp("null sender to a local user", OUTSIDE, "", p.known),
    ];
    if let Some(service) = p.submission {
        out.push(Case {
            label: "authenticated client relaying",
            service,
            client: OUTSIDE,
            tls: true,
            auth: true,
            from: p.auth_sender,
            rcpt: FOREIGN,
        });
        out.push(Case {
            label: "unauthenticated client on the submission port",
            service,
            client: OUTSIDE,
            tls: true,
            auth: false,
            from: p.auth_sender,
            rcpt: FOREIGN,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The configs
// ---------------------------------------------------------------------------------------------

/// A virtual-domain stack: example.test's user and alias, SASL on `submission`.
const fn stack(dir: &'static str) -> Project {
    Project {
        dir,
        known: "user@example.test",
        unknown: "nobody@example.test",
        mynetworks_client: "127.0.0.1",
        submission: Some("submission"),
        auth_sender: "user@example.test",
        mta_decides: &[],
    }
}

/// Debian's packaged main.cf: local users of `domain` only, no SASL, local recipients left
/// to the MTA (its passwd file).
const fn debian(dir: &'static str, known: &'static str, unknown: &'static str) -> Project {
    Project {
        dir,
        known,
        unknown,
        mynetworks_client: "127.0.0.1",
        submission: None,
        auth_sender: known,
        mta_decides: &["outside client to an unknown user"],
    }
}

#[test]
fn docker_mailserver() {
    run(&Project {
        known: "alias@example.test",
        ..stack("docker-mailserver")
    });
}

#[test]
fn mailcow() {
    run(&stack("mailcow"));
}

#[test]
fn iredmail() {
    run(&stack("iredmail"));
}

#[test]
fn mailu() {
    // Mailu's master.cf has no submission service: its front container speaks it.
    run(&Project {
        submission: None,
        ..stack("mailu")
    });
}

#[test]
fn modoboa() {
    run(&stack("modoboa"));
}

#[test]
fn sovereign() {
    run(&stack("sovereign"));
}

#[test]
fn ispmail() {
    run(&stack("ispmail"));
}

#[test]
fn mailinabox() {
    run(&stack("mailinabox"));
}

#[test]
fn debian_internet_site() {
    run(&debian(
        "debian-internet-site",
        "root@mail.example.test",
        "nobody-here@mail.example.test",
    ));
}

#[test]
fn debian_default() {
    run(&debian(
        "debian-default",
        "root@localhost",
        "nobody-here@localhost",
    ));
}

// ---------------------------------------------------------------------------------------------
// One config, end to end
// ---------------------------------------------------------------------------------------------

fn run(p: &Project) {
    assert!(process::is_root(), "the private Postfix needs root");
    let work = tempfile::Builder::new()
        .prefix(&format!("rg-realworld-{}-", p.dir))
        .tempdir()
        .unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let conf = work.path().join("conf");
    // Policy services the configs name (iredapd, quota status, modoboa's policy daemon) are
    // the network-lookup issue's; both sides ask one loopback server that answers DUNNO.
    let policy = PolicyServer::tcp(|_| Answer::Action("DUNNO".into()));
    copy_config(&realworld_dir().join(p.dir), &conf, policy.port());
    let world = dns_world();

    // (1) import
    let imported = relayguard_cmd(&[
        "import-postfix",
        conf.join("main.cf").to_str().unwrap(),
        conf.join("master.cf").to_str().unwrap(),
    ]);
    fs::write(work.path().join("import.stderr"), &imported.stderr).unwrap();
    assert!(
        imported.status.success(),
        "{}: import-postfix refused:\n{}",
        p.dir,
        String::from_utf8_lossy(&imported.stderr)
    );
    let text = String::from_utf8(imported.stdout).unwrap();
    fs::write(work.path().join("imported.toml"), &text).unwrap();

    // (2) only what a test machine needs changed
    let sink = Postfix::builder()
        .sasl(true)
        .starttls(false)
        // Every client relays: the decisions compared are relayguard's (Postfix refuses a
        // relay list with no reject in it, so the open door is mynetworks).
        .mynetworks("0.0.0.0/0")
        .param("smtpd_relay_restrictions", "permit_mynetworks, reject")
        .param("smtpd_sasl_authenticated_header", "no")
        .start();
    let (toml_text, listeners) = adjust(&text, sink.addr_xclient(), &world);
    let config = work.path().join("relayguard.toml");
    fs::write(&config, &toml_text).unwrap();

    // (3) load
    let check = relayguard_cmd(&["check-config", "--config", config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}: check-config refused the imported config:\n{}{}\n--- config:\n{toml_text}",
        p.dir,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // (4) start both and compare
    let rg = Running::start(work.path(), &config, &listeners);
    let reference = Reference::start(work.path(), &conf, &world, p.submission);
    // relayguard in front of the reference, for what main.cf leaves to the MTA.
    let chain = (!p.mta_decides.is_empty()).then(|| {
        let dir = work.path().join("chain");
        fs::create_dir_all(&dir).unwrap();
        let upstream = (std::net::Ipv4Addr::LOCALHOST, reference.port("smtp")).into();
        let (toml_text, listeners) = adjust(&text, upstream, &world);
        let config = dir.join("relayguard.toml");
        fs::write(&config, &toml_text).unwrap();
        (Running::start(&dir, &config, &listeners), listeners)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut report = String::new();
    let mut failed = 0;
    for case in cases(p) {
        let expected = rt.block_on(reference.ask(&case));
        let in_front = chain
            .as_ref()
            .filter(|_| p.mta_decides.contains(&case.label))
            .map(|(_, ls)| ls);
        let got = match in_front
            .unwrap_or(&listeners)
            .iter()
            .find(|l| l.service == case.service)
        {
            Some(l) => rt.block_on(ask_relayguard(l.port, &case)),
            None => vec![format!(
                "no relayguard listener for master.cf service {:?} (imported: {:?})",
                case.service,
                listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
            )],
        };
        let same = expected == got;
        failed += usize::from(!same);
        writeln!(
            report,
            "{} {}: {} {} -> {}{}{}\n    postfix:    {}\n    relayguard: {}",
            if same { "ok  " } else { "DIFF" },
            case.label,
            case.service,
            case.client,
            case.rcpt,
            if case.auth { " (AUTH)" } else { "" },
            if in_front.is_some() {
                " (the MTA decides: relayguard in front of it)"
            } else {
                ""
            },
            expected.join(" | "),
            got.join(" | ")
        )
        .unwrap();
    }
    eprintln!("{}:\n{report}", p.dir);
    if failed > 0 {
        eprintln!("--- relayguard log:\n{}", rg.log().join("\n"));
    }
    assert_eq!(
        failed, 0,
        "{}: {failed} scenario(s) differ:\n{report}",
        p.dir
    );
    drop(sink);
}

fn realworld_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/realworld")
}

fn repo_path(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// Copies a project's directory, with `@DIR@` made the copy's path and the policy services
/// pointed at the loopback server.
fn copy_config(from: &Path, to: &Path, policy_port: u16) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_config(&entry.path(), &dest, policy_port);
            continue;
        }
        let text = fs::read_to_string(entry.path()).unwrap();
        let mut text = text
            .replace("@DIR@", to.to_str().unwrap())
            // Dovecot's quota-status socket under the queue directory (ISPmail): neither side
            // has one, and a failed service would answer every local recipient with 451.
            .replace(
                "unix:private/quota-status",
                &format!("inet:127.0.0.1:{policy_port}"),
            );
        for port in POLICY_PORTS {
            text = text.replace(
                &format!("inet:127.0.0.1:{port}"),
                &format!("inet:127.0.0.1:{policy_port}"),
            );
        }
        fs::write(&dest, text).unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// The policy-service ports the configs name on 127.0.0.1 (iredapd, Dovecot's quota status,
/// modoboa's policy daemon, Mail-in-a-Box's postgrey).
const POLICY_PORTS: [u16; 4] = [7777, 12340, 9999, 10023];

/// The DNS both sides ask: the sender's and the recipients' domains exist, the outside client
/// has no PTR.
fn dns_world() -> DnsWorld {
    let mx = std::net::Ipv4Addr::new(192, 0, 2, 25);
    let mut b = DnsWorld::builder().listen(Listen::Port53);
    for domain in [
        "sender.example",
        "elsewhere.example",
        "example.test",
        "mail.example.test",
    ] {
        b = b
            .mx(domain, 10, &format!("mx.{domain}"))
            .a(&format!("mx.{domain}"), mx);
    }
    b.a(HELO, "203.0.113.5".parse().unwrap())
        .a("mail.example.test", mx)
        .start()
}

fn relayguard_cmd(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run relayguard")
}

// ---------------------------------------------------------------------------------------------
// The generated TOML, adjusted for this machine
// ---------------------------------------------------------------------------------------------

/// A relayguard listener after adjustment.
#[derive(Clone, Debug)]
struct Listener {
    name: String,
    /// The master.cf service it came from (`smtp` for the port-25 listener).
    service: String,
    port: u16,
}

/// Listeners on free loopback ports behind a loopback PROXY header, the dev certificate, the
/// sink as upstream, the DNS world. Returns the text and the listeners.
fn adjust(text: &str, upstream: std::net::SocketAddr, world: &DnsWorld) -> (String, Vec<Listener>) {
    let mut doc: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("import-postfix printed TOML that does not parse: {e}\n{text}"));
    let cert = repo_path("certs/dev-cert.pem");
    let key = repo_path("certs/dev-key.pem");
    let mut listeners = Vec::new();
    if let Some(toml::Value::Array(ls)) = doc.get_mut("listener") {
        for l in ls.iter_mut() {
            let t = l.as_table_mut().expect("[[listener]] is a table");
            let name = t
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            let old = t
                .get("address")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            let mut port = free_port();
            while listeners.iter().any(|x: &Listener| x.port == port) {
                port = free_port();
            }
            t.insert(
                "address".into(),
                toml::Value::String(format!("127.0.0.1:{port}")),
            );
            let proxy: toml::Value = toml::from_str::<toml::Table>(
                r#"p = { trusted = ["127.0.0.0/8"], required = true }"#,
            )
            .unwrap()["p"]
                .clone();
            t.insert("proxy_protocol".into(), proxy);
            if let Some(toml::Value::Table(pol)) = t.get_mut("policy") {
                fix_tls_params(pol, &cert, &key);
            }
            if let Some(toml::Value::Table(tls)) = t.get_mut("tls") {
                fix_tls_table(tls, &cert, &key);
            }
            listeners.push(Listener {
                service: service_of(&name, &old),
                name,
                port,
            });
        }
    }
    if let Some(toml::Value::Table(pol)) = doc.get_mut("policy") {
        fix_tls_params(pol, &cert, &key);
    }
    if let Some(toml::Value::Table(tls)) = doc.get_mut("tls") {
        fix_tls_table(tls, &cert, &key);
    }
    let mut up = toml::Table::new();
    up.insert("kind".into(), "smtp".into());
    up.insert("address".into(), upstream.to_string().into());
    up.insert("identity".into(), "xclient".into());
    // The sink accepts everything (the decisions compared are relayguard's); the reference
    // relays for loopback when its mynetworks has it.
    up.insert("allow_open_relay".into(), true.into());
    doc.insert("upstream".into(), toml::Value::Table(up));
    let dns: toml::Table = world.relayguard_toml("2s").parse().unwrap();
    doc.insert("dns".into(), dns["dns"].clone());
    (toml::to_string(&doc).unwrap(), listeners)
}

/// The master.cf service a listener stands for: `smtp` for port 25, else its name.
fn service_of(name: &str, address: &str) -> String {
    if address.ends_with(":25") || name == "smtp" {
        "smtp".into()
    } else {
        name.into()
    }
}

fn fix_tls_params(pol: &mut toml::Table, cert: &str, key: &str) {
    for (name, value) in [
        ("smtpd_tls_cert_file", cert.to_owned()),
        ("smtpd_tls_key_file", key.to_owned()),
        ("smtpd_tls_chain_files", format!("{key} {cert}")),
    ] {
        if pol.contains_key(name) {
            pol.insert(name.into(), value.into());
        }
    }
    for name in [
        "smtpd_tls_CAfile",
        "smtpd_tls_CApath",
        "smtpd_tls_dh1024_param_file",
    ] {
        pol.remove(name);
    }
}

fn fix_tls_table(tls: &mut toml::Table, cert: &str, key: &str) {
    for (k, v) in tls.iter_mut() {
        if k.contains("cert") {
            *v = cert.into();
        } else if k.contains("key") {
            *v = key.into();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// relayguard, running
// ---------------------------------------------------------------------------------------------

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(dir: &Path, config: &Path, listeners: &[Listener]) -> Running {
        let log = dir.join("relayguard.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config", config.to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start relayguard");
        let mut rg = Running { child, log };
        for l in listeners {
            let ok = process::wait_listening(l.port, START_TIMEOUT, || {
                matches!(rg.child.try_wait(), Ok(None))
            });
            assert!(
                ok,
                "relayguard did not listen on {} (listener {}):\n{}",
                l.port,
                l.name,
                rg.log().join("\n")
            );
        }
        rg
    }

    fn log(&self) -> Vec<String> {
        process::read_lines(&self.log)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The reference: a private Postfix 3.7 on the same main.cf
// ---------------------------------------------------------------------------------------------

/// What cannot run on a test machine, set after the config's own lines (the last wins).
const OVERRIDES: &str = "
# --- realworld.rs: what must differ on a test machine ---
queue_directory = @REF@/queue
data_directory = @REF@/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
maillog_file = @REF@/maillog
maillog_file_prefixes = /var, /dev/stdout, @REF@
inet_interfaces = loopback-only
inet_protocols = ipv4
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_milters =
non_smtpd_milters =
content_filter =
smtpd_proxy_filter =
smtpd_tls_cert_file = @REF@/tls/cert.pem
smtpd_tls_key_file = @REF@/tls/key.pem
smtpd_tls_chain_files =
smtpd_tls_CAfile =
smtpd_tls_dh1024_param_file =
smtpd_tls_dh512_param_file =
smtpd_tls_session_cache_database =
smtpd_sasl_type = dovecot
smtpd_sasl_path = @REF@/auth
default_transport = discard:
local_transport = discard:
relay_transport = discard:
virtual_transport = discard:
";

/// master.cf `-o` names that only make sense on the MTA that delivers (or cannot run here).
const DROPPED_OPTIONS: [&str; 9] = [
    "cleanup_service_name",
    "content_filter",
    "smtpd_proxy_filter",
    "smtpd_proxy_options",
    "smtpd_milters",
    "non_smtpd_milters",
    "milter_macro_daemon_name",
    "smtpd_upstream_proxy_protocol",
    "receive_override_options",
];

/// The internal services every instance needs: the harness's own master.cf, without its
/// listeners.
fn internal_services() -> String {
    include_str!("support/postfix/master.cf")
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|ty| ty == "unix" || ty == "unix-dgram")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

struct Reference {
    dir: PathBuf,
    /// (master.cf service, port)
    ports: Vec<(String, u16)>,
    ca: PathBuf,
    auth: Child,
}

impl Reference {
    fn start(work: &Path, conf: &Path, world: &DnsWorld, submission: Option<&str>) -> Reference {
        let dir = work.join("ref");
        for sub in ["etc", "queue", "data", "tls"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let _ = Command::new("chown")
            .arg("postfix")
            .arg(dir.join("data"))
            .status();
        let certs = CertSet::generate(&dir.join("tls"));
        let r = dir.to_str().unwrap();
        let main = fs::read_to_string(conf.join("main.cf")).unwrap();
        fs::write(dir.join("etc/main.cf"), &main).unwrap();
        // Replaced in place (postconf -e), not appended: every Postfix daemon warns of each
        // duplicate entry, and that burst fills postlogd's socket until it blocks on its own.
        let overrides: Vec<String> = OVERRIDES
            .replace("@REF@", r)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| format!("{}={}", k.trim(), v.trim()))
            .collect();
        let etc = dir.join("etc");
        let out = Command::new("postconf")
            .arg("-c")
            .arg(&etc)
            .arg("-e")
            .args(&overrides)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postconf -e: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let main = fs::read_to_string(etc.join("main.cf")).unwrap();

        let project_master = fs::read_to_string(conf.join("master.cf")).unwrap_or_default();
        let services = master_services(&project_master);
        let mut master = String::new();
        let mut ports = Vec::new();
        for service in std::iter::once("smtp").chain(submission) {
            let options = front_options(&services, service)
                .unwrap_or_else(|| panic!("master.cf has no service {service:?}"));
            let port = free_port();
            writeln!(master, "127.0.0.1:{port} inet n - n - - smtpd").unwrap();
            for (k, v) in options {
                if !DROPPED_OPTIONS.contains(&k.as_str()) {
                    writeln!(master, "  -o {k}={v}").unwrap();
                }
            }
            ports.push((service.to_owned(), port));
        }
        master.push_str(&internal_services());
        fs::write(dir.join("etc/master.cf"), &master).unwrap();

        // Postfix reads hash: and lmdb: tables compiled; relayguard reads their source.
        for word in main
            .split(|c: char| c.is_whitespace() || c == ',')
            .chain(master.split(|c: char| c.is_whitespace() || c == ','))
        {
            let word = word.trim_start_matches("-o").trim();
            let word = word.split_once('=').map_or(word, |(_, v)| v);
            for ty in ["hash:", "lmdb:"] {
                if let Some(path) = word.strip_prefix(ty) {
                    if path.starts_with(conf.to_str().unwrap()) && Path::new(path).exists() {
                        let out = Command::new("postmap")
                            .arg(format!("{ty}{path}"))
                            .output()
                            .unwrap();
                        assert!(
                            out.status.success(),
                            "postmap {ty}{path}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
            }
        }

        let auth = start_fake_dovecot(&dir);
        let resolv = dir.join("etc/resolv.conf");
        fs::write(&resolv, world.resolv_conf()).unwrap();
        let out =
            process::with_resolv_conf(&resolv, "postfix", &["-c", etc.to_str().unwrap(), "start"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
        let reference = Reference {
            dir: dir.clone(),
            ports,
            ca: certs.ca.clone(),
            auth,
        };
        assert!(
            out.status.success(),
            "the reference Postfix did not start:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            reference.maillog()
        );
        for (service, port) in &reference.ports {
            assert!(
                process::wait_listening(*port, START_TIMEOUT, || true),
                "reference Postfix: {service} did not listen on {port}\n{}",
                reference.maillog()
            );
        }
        reference
    }

    fn maillog(&self) -> String {
        process::read_lines(&self.dir.join("maillog")).join("\n")
    }

    fn port(&self, service: &str) -> u16 {
        self.ports
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, p)| *p)
            .unwrap()
    }

    /// Greeting, EHLO, [STARTTLS, EHLO], XCLIENT, EHLO, [AUTH], MAIL, RCPT, QUIT.
    async fn ask(&self, case: &Case) -> Vec<String> {
        let mut c =
            Client::connect((std::net::Ipv4Addr::LOCALHOST, self.port(case.service)).into())
                .await
                .with_ca(&self.ca)
                .with_timeout(REPLY_TIMEOUT);
        let mut seen = Vec::new();
        let Some(_) = step(&mut c, None).await else {
            return vec!["closed before the greeting".into()];
        };
        let Some(e) = step(&mut c, Some("EHLO probe.relayguard.test")).await else {
            return vec!["closed at EHLO".into()];
        };
        if case.tls && e.iter().any(|l| l.get(4..) == Some("STARTTLS")) {
            let Some(r) = step(&mut c, Some("STARTTLS")).await else {
                return vec!["closed at STARTTLS".into()];
            };
            if r[0].starts_with("220") {
                c.tls_handshake("localhost").await;
                step(&mut c, Some("EHLO probe.relayguard.test")).await;
            }
        }
        let xclient = format!(
            "XCLIENT ADDR={} NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] HELO={HELO}",
            case.client
        );
        let Some(r) = step(&mut c, Some(&xclient)).await else {
            return vec!["closed at XCLIENT".into()];
        };
        assert!(
            r[0].starts_with("220"),
            "reference Postfix refused {xclient}: {r:?}\n{}",
            self.maillog()
        );
        seen.push(code_of(&r));
        rest(&mut c, case, &mut seen).await;
        seen
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let pid = fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.join("etc"))
            .arg("stop")
            .output();
        let deadline = Instant::now() + START_TIMEOUT;
        while pid.is_some_and(process::pid_alive) && Instant::now() < deadline {
            sleep(POLL);
        }
        let _ = self.auth.kill();
        let _ = self.auth.wait();
    }
}

/// The harness's fake Dovecot auth server (alice/secret) on `dir/auth`.
fn start_fake_dovecot(dir: &Path) -> Child {
    let socket = dir.join("auth");
    let log = fs::File::create(dir.join("fake_dovecot.log")).unwrap();
    let mut child = Command::new("python3")
        .arg(repo_path("tests/support/postfix/fake_dovecot_auth.py"))
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run python3");
    let deadline = Instant::now() + START_TIMEOUT;
    while !fs::metadata(&socket).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o666) {
        assert!(matches!(child.try_wait(), Ok(None)), "fake Dovecot exited");
        assert!(
            Instant::now() < deadline,
            "fake Dovecot socket did not appear"
        );
        sleep(POLL);
    }
    child
}

/// master.cf services: (name, type, command, `-o` options).
type Service = (String, String, String, Vec<(String, String)>);

fn master_services(text: &str) -> Vec<Service> {
    let mut entries: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(last) = entries.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            entries.push(line.trim().to_owned());
        }
    }
    entries
        .iter()
        .filter_map(|e| {
            let f: Vec<&str> = e.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let mut options = Vec::new();
            let mut i = 8;
            while i < f.len() {
                let opt = if f[i] == "-o" {
                    i += 1;
                    f.get(i).copied()
                } else {
                    f[i].strip_prefix("-o")
                };
                if let Some((k, v)) = opt.and_then(|o| o.split_once('=')) {
                    options.push((k.to_owned(), v.to_owned()));
                }
                i += 1;
            }
            Some((f[0].to_owned(), f[1].to_owned(), f[7].to_owned(), options))
        })
        .collect()
}

/// The `-o` options smtpd runs with for a front service: the port-25 `smtp` service's own, or
/// those of the `pass` service behind it when it is postscreen.
fn front_options(services: &[Service], name: &str) -> Option<Vec<(String, String)>> {
    let (_, _, command, options) = services
        .iter()
        .find(|(n, ty, _, _)| n == name && ty == "inet")?;
    if command == "postscreen" {
        return services
            .iter()
            .find(|(_, ty, cmd, _)| ty == "pass" && cmd == "smtpd")
            .map(|s| s.3.clone());
    }
    Some(options.clone())
}

// ---------------------------------------------------------------------------------------------
// The sessions
// ---------------------------------------------------------------------------------------------

/// PROXY header, greeting, EHLO, [STARTTLS, EHLO], [AUTH], MAIL, RCPT, QUIT.
async fn ask_relayguard(port: u16, case: &Case) -> Vec<String> {
    let mut c = Client::connect((std::net::Ipv4Addr::LOCALHOST, port).into())
        .await
        .with_timeout(REPLY_TIMEOUT);
    c.send_raw(format!("PROXY TCP4 {} 127.0.0.1 40000 25\r\n", case.client).as_bytes())
        .await;
    let mut seen = Vec::new();
    let Some(g) = step(&mut c, None).await else {
        return vec!["closed before the greeting".into()];
    };
    seen.push(code_of(&g));
    if case.tls {
        let Some(e) = step(&mut c, Some(&format!("EHLO {HELO}"))).await else {
            seen.push("closed at EHLO".into());
            return seen;
        };
        if e.iter().any(|l| l.get(4..) == Some("STARTTLS")) {
            let Some(r) = step(&mut c, Some("STARTTLS")).await else {
                seen.push("closed at STARTTLS".into());
                return seen;
            };
            if r[0].starts_with("220") {
                c.tls_handshake("localhost").await;
            }
        }
    }
    rest(&mut c, case, &mut seen).await;
    seen
}

/// EHLO, [AUTH], MAIL, RCPT, QUIT: the part both sides share after the client is set.
async fn rest(c: &mut Client, case: &Case, seen: &mut Vec<String>) {
    let Some(e) = step(c, Some(&format!("EHLO {HELO}"))).await else {
        seen.push("closed at EHLO".into());
        return;
    };
    let auth_offered = e
        .iter()
        .any(|l| l.get(4..).is_some_and(|k| k.starts_with("AUTH")));
    seen.push(format!(
        "{} (AUTH {})",
        code_of(&e),
        if auth_offered {
            "offered"
        } else {
            "not offered"
        }
    ));
    let mut commands = Vec::new();
    if case.auth {
        commands.push(format!("AUTH PLAIN {}", auth_plain(LOGIN.0, LOGIN.1)));
    }
    commands.push(format!("MAIL FROM:<{}>", case.from));
    commands.push(format!("RCPT TO:<{}>", case.rcpt));
    for cmd in commands {
        match step(c, Some(&cmd)).await {
            Some(r) => seen.push(r[0].clone()),
            None => {
                seen.push("closed".into());
                return;
            }
        }
    }
    let _ = step(c, Some("QUIT")).await;
}

/// Sends `line` (if any) and reads one reply as its lines; None if the server closed.
async fn step(c: &mut Client, line: Option<&str>) -> Option<Vec<String>> {
    if let Some(line) = line {
        c.send_raw(format!("{line}\r\n").as_bytes()).await;
    }
    match c.try_read_reply().await {
        Ok(Some(r)) => Some(r.lines().map(str::to_owned).collect()),
        Ok(None) => None,
        Err(e) if e.contains("read failed") || e.contains("closed") => None,
        Err(e) => panic!("{e}"),
    }
}

fn code_of(reply: &[String]) -> String {
    reply[0].get(..3).unwrap_or("???").to_owned()
}
