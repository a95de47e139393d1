//! Starts the relayguard binary on free loopback ports with a generated config, for one test.
//!
//! The config follows the format in the README (`[policy]`, `[tls]`, `[[listener]]`,
//! `[upstream]`, `[limits]`). stderr (the log) goes to a file in the scratch directory; the
//! process is killed by PID on drop, and its log is printed if the test panicked.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::client::Client;
use super::maildir::Maildir;
use super::netns::NetNs;
use super::postfix::Postfix;
use super::process::{self, POLL};
use super::tls::CertSet;

/// A listener's PROXY setting that trusts (and requires) a header from loopback.
pub const TRUST_LOOPBACK_PROXY: &str =
    r#"proxy_protocol = { trusted = ["127.0.0.0/8"], required = true }"#;

/// How long relayguard may take to listen on every port.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Ten times relayguard's log batching delay (5 ms), for a loaded CI machine.
pub const LOG_DELAY: Duration = Duration::from_millis(50);

/// A listener's role, as `role = "..."` in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Smtp,
    Submission,
    Submissions,
}

/// How relayguard tells the upstream who the client is (`identity = "..."`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    Xclient,
    ProxyV1,
    ProxyV2,
    None,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Smtp => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }
}

impl Identity {
    fn as_str(self) -> &'static str {
        match self {
            Identity::Xclient => "xclient",
            Identity::ProxyV1 => "proxy-v1",
            Identity::ProxyV2 => "proxy-v2",
            Identity::None => "none",
        }
    }
}

#[derive(Clone, Debug)]
struct ListenerSpec {
    name: String,
    role: Role,
    policy: Vec<(String, String)>,
    toml: Vec<String>,
}

#[derive(Clone, Debug)]
enum UpstreamSpec {
    Smtp {
        address: SocketAddr,
        identity: Identity,
        ca: Option<PathBuf>,
    },
    Maildir,
}

/// Options for [`Relayguard`]; see [`Relayguard::builder`].
#[derive(Clone, Debug)]
pub struct RelayguardBuilder {
    policy: Vec<(String, String)>,
    listeners: Vec<ListenerSpec>,
    upstream: Option<UpstreamSpec>,
    upstream_toml: Vec<String>,
    extra_toml: String,
    binary: PathBuf,
    /// `[admin]` lines after `http = ...`, when the admin HTTP listener is on.
    admin_http: Option<String>,
    /// The namespace to run in (`ip netns exec`) and the address its listeners bind.
    netns: Option<(String, Ipv4Addr)>,
}

/// A running relayguard. Dropping it kills the process.
pub struct Relayguard {
    dir: TempDir,
    child: Option<Child>,
    ports: Vec<(String, u16)>,
    certs: CertSet,
    maildir: Option<PathBuf>,
    admin_http: Option<u16>,
    ip: Ipv4Addr,
}

impl RelayguardBuilder {
    /// A `[policy]` parameter (Postfix name and syntax).
    pub fn policy(mut self, name: &str, value: &str) -> Self {
        self.policy.retain(|(n, _)| n != name);
        self.policy.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A listener on a free 127.0.0.1 port.
    pub fn listener(self, name: &str, role: Role) -> Self {
        self.listener_with(name, role, &[])
    }

    /// A listener with `[listener.policy]` overrides (like master.cf `-o name=value`).
    pub fn listener_with(mut self, name: &str, role: Role, overrides: &[(&str, &str)]) -> Self {
        self.listeners.push(ListenerSpec {
            name: name.to_owned(),
            role,
            policy: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            toml: Vec::new(),
        });
        self
    }

    /// Raw `key = value` TOML lines for a listener already added, e.g.
    /// `proxy_protocol = { trusted = ["127.0.0.0/8"], required = true }` or `max_connections = 5`.
    pub fn listener_toml(mut self, name: &str, line: &str) -> Self {
        let l = self
            .listeners
            .iter_mut()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no listener {name:?} yet"));
        l.toml.push(line.to_owned());
        self
    }

    /// Upstream = the Postfix's XCLIENT listener (identity `xclient` or `none`) or its PROXY
    /// listener (`proxy-v1`, `proxy-v2`). STARTTLS to the upstream stays off; see
    /// [`Self::upstream_toml`] for `starttls = true` (the CA is filled in).
    pub fn upstream_postfix(mut self, pf: &Postfix, identity: Identity) -> Self {
        let address = match identity {
            Identity::Xclient | Identity::None => pf.addr_xclient(),
            Identity::ProxyV1 | Identity::ProxyV2 => pf.addr_proxy(),
        };
        let ca = pf.ca_path().map(Path::to_owned);
        self.upstream = Some(UpstreamSpec::Smtp {
            address,
            identity,
            ca,
        });
        self
    }

    /// Upstream = any SMTP server (a sink in the load bench, a fake upstream in a test).
    pub fn upstream_smtp(mut self, address: SocketAddr, identity: Identity) -> Self {
        self.upstream = Some(UpstreamSpec::Smtp {
            address,
            identity,
            ca: None,
        });
        self
    }

    /// Upstream = a Maildir in the scratch directory (see [`Relayguard::maildir`]).
    pub fn upstream_maildir(mut self) -> Self {
        self.upstream = Some(UpstreamSpec::Maildir);
        self
    }

    /// Raw lines for `[upstream]` (`starttls = true`, `reply_timeout = "5s"`, ...).
    pub fn upstream_toml(mut self, line: &str) -> Self {
        self.upstream_toml.push(line.to_owned());
        self
    }

    /// Raw TOML appended at the end (`[limits]` and other tables).
    pub fn extra_toml(mut self, text: &str) -> Self {
        self.extra_toml.push_str(text);
        self.extra_toml.push('\n');
        self
    }

    /// Turns the admin HTTP listener on, on a free loopback port, with more `[admin]` lines
    /// (e.g. `ready_window = "1s"`); see [`Relayguard::admin_url`].
    pub fn admin_http(mut self, extra: &str) -> Self {
        self.admin_http = Some(extra.to_owned());
        self
    }

    /// Runs in the network namespace `netns` (`ip netns exec`), every listener on `ip` instead
    /// of 127.0.0.1: a placement rehearsal with the client and the MTA in namespaces of their own.
    pub fn in_netns(mut self, netns: &NetNs, ip: Ipv4Addr) -> Self {
        self.netns = Some((netns.name().to_owned(), ip));
        self
    }

    /// Another relayguard binary (the load bench uses the release build).
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = path.to_owned();
        self
    }

    /// The config text for `ports` (listener name -> port) and the scratch directory.
    fn render(
        &self,
        dir: &Path,
        ports: &[(String, u16)],
        certs: &CertSet,
        admin: Option<u16>,
    ) -> String {
        let ip = self.listen_ip();
        let mut t = String::new();
        t.push_str("[policy]\n");
        for (k, v) in &self.policy {
            writeln!(t, "{k} = {}", quote(v)).unwrap();
        }
        writeln!(
            t,
            "\n[tls]\ncert = {}\nkey = {}",
            quote_path(&certs.cert),
            quote_path(&certs.key)
        )
        .unwrap();
        for (l, (_, port)) in self.listeners.iter().zip(ports) {
            writeln!(t, "\n[[listener]]\nname = {}", quote(&l.name)).unwrap();
            writeln!(
                t,
                "address = \"{ip}:{port}\"\nrole = \"{}\"",
                l.role.as_str()
            )
            .unwrap();
            for line in &l.toml {
                writeln!(t, "{line}").unwrap();
            }
            if !l.policy.is_empty() {
                t.push_str("[listener.policy]\n");
                for (k, v) in &l.policy {
                    writeln!(t, "{k} = {}", quote(v)).unwrap();
                }
            }
        }
        t.push_str("\n[upstream]\n");
        match self
            .upstream
            .as_ref()
            .expect("no upstream: call upstream_postfix/upstream_maildir")
        {
            UpstreamSpec::Smtp {
                address,
                identity,
                ca,
            } => {
                writeln!(
                    t,
                    "kind = \"smtp\"\naddress = \"{address}\"\nidentity = \"{}\"",
                    identity.as_str()
                )
                .unwrap();
                let wants_tls = self
                    .upstream_toml
                    .iter()
                    .any(|l| l.replace(' ', "") == "starttls=true");
                if let (true, Some(ca)) = (wants_tls, ca) {
                    writeln!(
                        t,
                        "ca_file = {}\nserver_name = \"localhost\"",
                        quote_path(ca)
                    )
                    .unwrap();
                }
            }
            UpstreamSpec::Maildir => {
                writeln!(
                    t,
                    "kind = \"maildir\"\npath = {}",
                    quote_path(&dir.join("maildir"))
                )
                .unwrap();
            }
        }
        for line in &self.upstream_toml {
            writeln!(t, "{line}").unwrap();
        }
        t.push('\n');
        t.push_str(&self.extra_toml);
        if let (Some(port), Some(extra)) = (admin, &self.admin_http) {
            writeln!(t, "\n[admin]\nhttp = \"127.0.0.1:{port}\"\n{extra}").unwrap();
        }
        t
    }

    /// Writes the config, starts the binary, and waits until every listener listens.
    /// Panics with the log if the process exits or a port stays closed.
    pub fn start(self) -> Relayguard {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::start`], but a failure is returned (with the log) instead of panicking.
    pub fn try_start(self) -> Result<Relayguard, String> {
        assert!(
            !self.listeners.is_empty(),
            "relayguard needs at least one listener"
        );
        let dir = tempfile::Builder::new()
            .prefix("rg-relayguard-")
            .tempdir()
            .unwrap();
        let certs = CertSet::dev().unwrap_or_else(|| {
            fs::create_dir(dir.path().join("tls")).unwrap();
            CertSet::generate(&dir.path().join("tls"))
        });
        let mut ports: Vec<(String, u16)> = Vec::new();
        for l in &self.listeners {
            let mut p = process::free_port();
            while ports.iter().any(|(_, q)| *q == p) {
                p = process::free_port();
            }
            ports.push((l.name.clone(), p));
        }
        let admin_http = self.admin_http.as_ref().map(|_| {
            let mut p = process::free_port();
            while ports.iter().any(|(_, q)| *q == p) {
                p = process::free_port();
            }
            p
        });
        let config = dir.path().join("relayguard.toml");
        fs::write(&config, self.render(dir.path(), &ports, &certs, admin_http)).unwrap();
        let maildir = matches!(self.upstream, Some(UpstreamSpec::Maildir))
            .then(|| dir.path().join("maildir"));
        let log = fs::File::create(dir.path().join("relayguard.log")).unwrap();
        let mut cmd = match &self.netns {
            None => Command::new(&self.binary),
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.binary);
                c
            }
        };
        let child = cmd
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary.display()));
        let mut rg = Relayguard {
            dir,
            child: Some(child),
            ports,
            certs,
            maildir,
            admin_http,
            ip: self.listen_ip(),
        };
        let admin = admin_http.map(|p| ("[admin] http".to_string(), p));
        for (name, port) in rg.ports.clone().into_iter().chain(admin) {
            let ok = match rg.pid().filter(|_| self.netns.is_some()) {
                Some(pid) => {
                    process::wait_listening_in(pid, port, START_TIMEOUT, || rg.is_running())
                }
                None => process::wait_listening(port, START_TIMEOUT, || rg.is_running()),
            };
            if !ok {
                let state = match rg.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    Some(status) => format!("exited with {status}"),
                    None => format!("did not listen within {START_TIMEOUT:?}"),
                };
                let config = fs::read_to_string(rg.config_path()).unwrap_or_default();
                return Err(format!(
                    "relayguard {state} (listener {name}, {}:{port})\n--- config:\n{config}\n--- log:\n{}",
                    rg.ip,
                    rg.log_lines().join("\n")
                ));
            }
        }
        Ok(rg)
    }

    fn listen_ip(&self) -> Ipv4Addr {
        self.netns
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |(_, ip)| *ip)
    }
}

impl Relayguard {
    /// No listeners, no upstream yet; `myhostname = "relayguard.test"` so greetings are fixed.
    pub fn builder() -> RelayguardBuilder {
        RelayguardBuilder {
            policy: vec![("myhostname".into(), "relayguard.test".into())],
            listeners: Vec::new(),
            upstream: None,
            upstream_toml: Vec::new(),
            extra_toml: String::new(),
            binary: PathBuf::from(env!("CARGO_BIN_EXE_relayguard")),
            admin_http: None,
            netns: None,
        }
    }

    /// `http://127.0.0.1:PORT{path}` on the admin HTTP listener ([`RelayguardBuilder::admin_http`]).
    pub fn admin_url(&self, path: &str) -> String {
        let port = self.admin_http.expect("admin_http() was not called");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// The port of the listener named `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no listener {name:?}"))
    }

    /// Where listener `name` listens (127.0.0.1 unless [`RelayguardBuilder::in_netns`]).
    pub fn addr(&self, name: &str) -> SocketAddr {
        (self.ip, self.port(name)).into()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A client of `listener` (one trusting loopback's PROXY header, [`TRUST_LOOPBACK_PROXY`])
    /// that appears as `addr`, greeted and past EHLO.
    pub async fn client_as(&self, listener: &str, addr: &str) -> Client {
        let mut c = Client::connect_as(self.addr(listener), addr).await;
        c.ehlo("client.example").await;
        c
    }

    /// `relayguard --config THIS_CONFIG ARGS` (e.g. `bans list`) against the running instance:
    /// the exit code and the output, stdout then stderr.
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_relayguard"))
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("relayguard.toml")
    }

    /// The CA that signed relayguard's certificate (valid for `localhost`, 127.0.0.1, ::1).
    pub fn ca_path(&self) -> &Path {
        &self.certs.ca
    }

    /// The Maildir of `upstream_maildir()`.
    pub fn maildir_path(&self) -> &Path {
        self.maildir.as_deref().expect("upstream is not a maildir")
    }

    pub fn maildir(&self) -> Maildir {
        Maildir::new(self.maildir_path())
    }

    /// Everything relayguard wrote to stderr and stdout so far. A worker writes its lines a
    /// few milliseconds after they happen (observe::log_batch gathers them for one write), so
    /// this first waits [`LOG_DELAY`]: a line for something the test just did is in the file.
    pub fn log_lines(&self) -> Vec<String> {
        sleep(LOG_DELAY);
        process::read_lines(&self.dir.path().join("relayguard.log"))
    }

    /// Waits until a log line contains `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        process::wait_for_line("relayguard log", needle, timeout, || self.log_lines())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends a signal by name (`HUP` to reload, `TERM` to drain).
    pub fn signal(&self, name: &str) {
        process::signal(self.pid().expect("not running"), name);
    }

    /// Replaces the config file (for reload tests; follow with `signal("HUP")`).
    pub fn write_config(&self, text: &str) {
        fs::write(self.config_path(), text).unwrap();
    }

    /// SIGTERM, then waits up to `timeout` for the exit; SIGKILL if it does not come.
    pub fn stop_gracefully(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        process::signal(child.id(), "TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Relayguard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let lines = self.log_lines();
            let tail = lines.len().saturating_sub(60);
            eprintln!(
                "--- relayguard log ({}), last lines:\n{}",
                self.dir.path().display(),
                lines[tail..].join("\n")
            );
        }
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn quote_path(p: &Path) -> String {
    quote(&p.display().to_string())
}
