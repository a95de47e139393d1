//! Runs a private Postfix 3.7 on free loopback ports in a scratch directory, one per test.
//!
//! Two smtpd listeners: one trusts XCLIENT from 127.0.0.0/8, one expects a PROXY header
//! (`smtpd_upstream_proxy_protocol = haproxy`). Mail for `local.test` is delivered by
//! virtual(8) into one Maildir, so a test reads back the `Received:` header Postfix wrote.
//! SASL goes to the fake Dovecot server (alice/secret, bob/hunter2). Must run as root.
//! With [`PostfixBuilder::resolver`] it resolves through a test's [`DnsWorld`], from a mount
//! namespace of its own; otherwise through the host's resolver.
//! Stops with `postfix -c DIR stop` and kills the auth server by PID: nothing else is touched.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::dns::DnsWorld;
use super::maildir::Maildir;
use super::netns::NetNs;
use super::process::{self, POLL};
use super::tls::CertSet;

const MAIN_CF: &str = include_str!("postfix/main.cf");
const MASTER_CF: &str = include_str!("postfix/master.cf");
const FAKE_DOVECOT: &str = include_str!("postfix/fake_dovecot_auth.py");

/// How long start, reload and stop may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The SASL accounts the fake Dovecot server knows.
pub const USERS: [(&str, &str); 2] = [("alice", "secret"), ("bob", "hunter2")];

/// Options for [`Postfix`]; see [`Postfix::builder`].
#[derive(Clone, Debug)]
pub struct PostfixBuilder {
    params: Vec<(String, String)>,
    extra_main_cf: String,
    sasl: bool,
    /// More mechanisms for the fake Dovecot, `NAME:flag:flag` (Dovecot's property words).
    sasl_mechanisms: Vec<String>,
    starttls: bool,
    /// resolv.conf text for Postfix's own mount namespace; `None`: the host's resolver.
    resolv_conf: Option<String>,
    /// The namespace to run in (`ip netns exec`) and the address both smtpd listeners bind.
    netns: Option<(String, Ipv4Addr)>,
}

/// A running private Postfix instance. Dropping it stops it.
pub struct Postfix {
    dir: TempDir,
    port_xclient: u16,
    port_proxy: u16,
    certs: Option<CertSet>,
    auth: Option<Child>,
    stopped: bool,
    ip: Ipv4Addr,
    /// The namespace it runs in: postfix(1) checks `inet_interfaces` against the interfaces
    /// it sees, so stop and reload must run in there too.
    netns: Option<String>,
}

impl Default for PostfixBuilder {
    fn default() -> Self {
        PostfixBuilder {
            params: Vec::new(),
            extra_main_cf: String::new(),
            sasl: false,
            sasl_mechanisms: Vec::new(),
            starttls: true,
            resolv_conf: None,
            netns: None,
        }
    }
}

impl PostfixBuilder {
    /// `smtpd_authorized_xclient_hosts` (default `127.0.0.0/8`).
    pub fn xclient_hosts(self, value: &str) -> Self {
        self.param("smtpd_authorized_xclient_hosts", value)
    }

    /// `mynetworks` (default `192.0.2.1/32`: loopback is *not* trusted, so that relayguard's
    /// start-up open-relay check passes and relaying depends on the identity relayguard sends).
    pub fn mynetworks(self, value: &str) -> Self {
        self.param("mynetworks", value)
    }

    /// Sets any main.cf parameter, replacing the template's line if it has one.
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Raw main.cf text appended at the end (restrictions, tables). Prefer [`Self::param`] for
    /// parameters the template already sets: a repeated name makes Postfix warn.
    pub fn extra_main_cf(mut self, text: &str) -> Self {
        self.extra_main_cf.push_str(text);
        self.extra_main_cf.push('\n');
        self
    }

    /// SASL with more mechanisms than PLAIN and LOGIN: each `NAME:flag:flag`, announced
    /// with those Dovecot security properties (authentication with them always fails).
    pub fn sasl_mechanisms(mut self, mechs: &[&str]) -> Self {
        self.sasl = true;
        self.sasl_mechanisms = mechs.iter().map(|m| m.to_string()).collect();
        self
    }

    /// SASL through the fake Dovecot server (`smtpd_sasl_auth_enable = yes`). Default off.
    pub fn sasl(mut self, on: bool) -> Self {
        self.sasl = on;
        self
    }

    /// STARTTLS with a generated certificate (`smtpd_tls_security_level = may`). Default on.
    pub fn starttls(mut self, on: bool) -> Self {
        self.starttls = on;
        self
    }

    /// Resolves through `world` (which must listen on [`Listen::Port53`]): Postfix starts in a
    /// private mount namespace whose /etc/resolv.conf names only the world, one try of 2 s.
    /// Without it Postfix uses the host's resolver.
    ///
    /// [`Listen::Port53`]: super::dns::Listen::Port53
    pub fn resolver(mut self, world: &DnsWorld) -> Self {
        self.resolv_conf = Some(world.resolv_conf());
        self
    }

    /// Runs in the network namespace `netns` (`ip netns exec`), both smtpd listeners on `ip`
    /// instead of 127.0.0.1 (`inet_interfaces = ip`): an MTA on a private host of its own.
    pub fn in_netns(mut self, netns: &NetNs, ip: Ipv4Addr) -> Self {
        self.netns = Some((netns.name().to_owned(), ip));
        self
    }

    /// Writes the configuration, starts the auth server if asked, then Postfix, and waits until
    /// both listeners listen. Panics with Postfix's output and log on failure.
    pub fn start(self) -> Postfix {
        assert!(
            process::is_root(),
            "a private Postfix must be started by root"
        );
        let dir = tempfile::Builder::new()
            .prefix("rg-postfix-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_owned();
        // smtpd runs as `postfix` and must reach data/, the auth socket and the Maildir.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["etc", "queue", "data", "mail", "tls"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        let (uid, gid) = postfix_ids();
        for sub in ["data", "mail"] {
            std::os::unix::fs::chown(root.join(sub), Some(uid), Some(gid)).unwrap();
        }

        let port_xclient = process::free_port();
        let mut port_proxy = process::free_port();
        while port_proxy == port_xclient {
            port_proxy = process::free_port();
        }
        let certs = self.starttls.then(|| CertSet::generate(&root.join("tls")));

        let mut main_cf = MAIN_CF
            .replace("@PFROOT@", &root.display().to_string())
            .replace("@UID@", &uid.to_string())
            .replace("@GID@", &gid.to_string());
        if let Some(c) = &certs {
            set_param(
                &mut main_cf,
                "smtpd_tls_cert_file",
                &c.cert.display().to_string(),
            );
            set_param(
                &mut main_cf,
                "smtpd_tls_key_file",
                &c.key.display().to_string(),
            );
        } else {
            set_param(&mut main_cf, "smtpd_tls_security_level", "none");
        }
        let mut auth = None;
        if self.sasl {
            let socket = root.join("auth");
            set_param(&mut main_cf, "smtpd_sasl_auth_enable", "yes");
            set_param(&mut main_cf, "smtpd_sasl_type", "dovecot");
            set_param(
                &mut main_cf,
                "smtpd_sasl_path",
                &socket.display().to_string(),
            );
            auth = Some(start_fake_dovecot(&root, &socket, &self.sasl_mechanisms));
        }
        let ip = self
            .netns
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |(_, ip)| *ip);
        if self.netns.is_some() {
            set_param(&mut main_cf, "inet_interfaces", &ip.to_string());
        }
        for (name, value) in &self.params {
            set_param(&mut main_cf, name, value);
        }
        main_cf.push_str(&self.extra_main_cf);
        fs::write(root.join("etc/main.cf"), main_cf).unwrap();
        let master_cf = MASTER_CF
            .replace("127.0.0.1:", &format!("{ip}:"))
            .replace("@XCLIENT_PORT@", &port_xclient.to_string())
            .replace("@PROXY_PORT@", &port_proxy.to_string());
        fs::write(root.join("etc/master.cf"), master_cf).unwrap();

        let resolv_conf = self.resolv_conf.map(|text| {
            let path = root.join("etc/resolv.conf");
            fs::write(&path, text).unwrap();
            path
        });

        let mut pf = Postfix {
            dir,
            port_xclient,
            port_proxy,
            certs,
            auth,
            stopped: true,
            ip,
            netns: self.netns.as_ref().map(|(ns, _)| ns.clone()),
        };
        let out = match &resolv_conf {
            // In a namespace, the master and the daemons it forks stay in there.
            None => pf.postfix(&["start"]),
            Some(file) => {
                let etc = root.join("etc");
                process::with_resolv_conf(file, "postfix", &["-c", &etc.to_string_lossy(), "start"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("run unshare(1)")
            }
        };
        assert!(
            out.status.success(),
            "postfix start failed:\n{}{}\nmaillog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.maillog_lines().join("\n")
        );
        assert!(
            resolv_conf.is_none() || self.netns.is_none(),
            "resolver() and in_netns() together are not supported"
        );
        pf.stopped = false;
        for port in [port_xclient, port_proxy] {
            assert!(
                pf.wait_listening(port),
                "Postfix did not listen on {ip}:{port}; maillog:\n{}",
                pf.maillog_lines().join("\n")
            );
        }
        pf
    }
}

impl Postfix {
    /// Defaults: XCLIENT from 127.0.0.0/8, `mynetworks = 192.0.2.1/32`, STARTTLS, no SASL.
    pub fn builder() -> PostfixBuilder {
        PostfixBuilder::default()
    }

    /// The listener that trusts XCLIENT from loopback.
    pub fn port_xclient(&self) -> u16 {
        self.port_xclient
    }

    /// The listener that requires a PROXY v1/v2 header.
    pub fn port_proxy(&self) -> u16 {
        self.port_proxy
    }

    pub fn addr_xclient(&self) -> SocketAddr {
        (self.ip, self.port_xclient).into()
    }

    pub fn addr_proxy(&self) -> SocketAddr {
        (self.ip, self.port_proxy).into()
    }

    /// Waits until `port` listens, in Postfix's namespace if it runs in one.
    fn wait_listening(&self, port: u16) -> bool {
        if self.netns.is_none() {
            return process::wait_listening(port, START_TIMEOUT, || true);
        }
        // The master writes its PID file a moment after `postfix start` returns.
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self
                .master_pid()
                .is_some_and(|pid| process::is_listening_in(pid, port))
            {
                return true;
            }
            sleep(POLL);
        }
        false
    }

    /// The scratch directory (etc/, queue/, maillog, mail/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA that signed Postfix's STARTTLS certificate (valid for `localhost`), if TLS is on.
    pub fn ca_path(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.ca.as_path())
    }

    /// Where virtual(8) delivers everything for `local.test`.
    pub fn maildir(&self) -> Maildir {
        Maildir::new(self.dir.path().join("mail/maildir"))
    }

    /// Every maillog line so far, as written (`Nov 23 16:42:32 mx postfix/smtpd[1]: connect from ...`).
    pub fn maillog_lines(&self) -> Vec<String> {
        process::read_lines(&self.dir.path().join("maillog"))
    }

    /// The text after `postfix/<service>[PID]: ` of every smtpd line: what section 10 of the
    /// Postfix notes quotes, ready for exact comparison.
    pub fn smtpd_log(&self) -> Vec<String> {
        self.maillog_lines()
            .iter()
            .filter_map(|l| smtpd_text(l).map(str::to_owned))
            .collect()
    }

    /// Waits until a maillog line contains `needle` and returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        process::wait_for_line("Postfix maillog", needle, timeout, || self.maillog_lines())
    }

    /// Sets main.cf parameters with `postconf -e` (call [`Self::reload`] afterwards).
    pub fn postconf(&self, settings: &[(&str, &str)]) {
        for (name, value) in settings {
            let out = Command::new("postconf")
                .arg("-c")
                .arg(self.dir.path().join("etc"))
                .arg("-e")
                .arg(format!("{name}={value}"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "postconf -e {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// `postfix reload`, then waits for the master's `reload` log line and for fresh smtpd
    /// processes (about a second, as observed with Postfix 3.7).
    pub fn reload(&self) {
        let count = || {
            self.maillog_lines()
                .iter()
                .filter(|l| l.contains("reload -- version"))
                .count()
        };
        let before = count();
        let out = self.postfix(&["reload"]);
        assert!(
            out.status.success(),
            "postfix reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + START_TIMEOUT;
        while count() == before {
            assert!(Instant::now() < deadline, "no reload line in the maillog");
            sleep(POLL);
        }
        // Old idle smtpd processes exit on their next wake-up; give them that moment.
        sleep(Duration::from_millis(1000));
        for port in [self.port_xclient, self.port_proxy] {
            assert!(self.wait_listening(port));
        }
    }

    fn postfix(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = match &self.netns {
            None => Command::new("postfix"),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "postfix"]);
                c
            }
        };
        cmd.arg("-c")
            .arg(self.dir.path().join("etc"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run postfix(1)")
    }

    fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.path().join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.maillog_lines();
            let tail = lines.len().saturating_sub(40);
            eprintln!(
                "--- Postfix maillog ({}), last lines:\n{}",
                self.dir.path().display(),
                lines[tail..].join("\n")
            );
        }
        if !self.stopped {
            let pid = self.master_pid();
            let _ = self.postfix(&["stop"]);
            // Wait for the master to go, so the scratch directory is not pulled from under it.
            let deadline = Instant::now() + START_TIMEOUT;
            while pid.is_some_and(process::pid_alive) && Instant::now() < deadline {
                sleep(POLL);
            }
        }
        if let Some(mut child) = self.auth.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The text of an smtpd maillog line after its `postfix/.../smtpd[PID]: ` tag.
pub fn smtpd_text(line: &str) -> Option<&str> {
    let at = line.find("/smtpd[")?;
    let rest = &line[at..];
    Some(&rest[rest.find("]: ")? + 3..])
}

/// Replaces `name = ...` in a main.cf text, or appends it.
fn set_param(text: &mut String, name: &str, value: &str) {
    let mut found = false;
    let mut out = String::with_capacity(text.len() + name.len() + value.len() + 4);
    for line in text.lines() {
        let is_it = line
            .strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_it && !found {
            out.push_str(&format!("{name} = {value}\n"));
            found = true;
        } else if !is_it {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&format!("{name} = {value}\n"));
    }
    *text = out;
}

/// The `postfix` user's uid and gid, from /etc/passwd (the Debian package creates the user).
fn postfix_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postfix:"))
        .expect("no postfix user: install the postfix package");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// Starts fake_dovecot_auth.py on `socket` and waits until the socket exists.
fn start_fake_dovecot(root: &Path, socket: &PathBuf, mechanisms: &[String]) -> Child {
    let script = root.join("fake_dovecot_auth.py");
    fs::write(&script, FAKE_DOVECOT).unwrap();
    let log = fs::File::create(root.join("fake_dovecot.log")).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(socket)
        .args(mechanisms)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run python3");
    let deadline = Instant::now() + START_TIMEOUT;
    // The server binds, then opens the socket to everyone; smtpd (user postfix) needs the latter.
    let ready = || fs::metadata(socket).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o666);
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "fake Dovecot exited with {status}: {}",
                fs::read_to_string(root.join("fake_dovecot.log")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "fake Dovecot socket did not appear"
        );
        sleep(POLL);
    }
    child
}
