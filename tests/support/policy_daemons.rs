//! Real Postfix policy daemons from Debian packages, each on a loopback port for one test:
//! postgrey (greylisting, its own database directory) and policyd-spf (SPF, a stdin/stdout
//! program run per connection by socat, as Postfix's spawn(8) would, in a private mount
//! namespace whose /etc/resolv.conf points at the test's own dnsmasq on 127.0.0.X:53).
//! Each runs in its own process group, stopped by that group's PID on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{self, free_port};

/// True when the packages' programs are here (and we may bind port 53), else the reason.
pub fn missing(programs: &[&str]) -> Option<String> {
    if !process::is_root() {
        return Some("needs root (port 53, mount namespaces, postgrey's user switch)".into());
    }
    for p in programs {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(p).exists()))
            .unwrap_or(false);
        if !found {
            return Some(format!("`{p}` is not installed"));
        }
    }
    None
}

/// A process group started for the test; killed as a group on drop.
pub struct Daemon {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The group this test started (socat forks a child per connection), by its PID.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

fn spawn(mut command: Command, dir: TempDir, port: u16, what: &str) -> Daemon {
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let up = process::wait_listening(port, Duration::from_secs(15), || {
        child.try_wait().map(|s| s.is_none()).unwrap_or(false)
    });
    let daemon = Daemon { child, port, dir };
    assert!(up, "{what} did not listen on {port}:\n{}", daemon.log());
    daemon
}

/// postgrey on a free port, greylisting for `delay` seconds, whitelisting nobody.
pub fn postgrey(delay: u32) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = Command::new("postgrey");
    c.arg(format!("--inet=127.0.0.1:{port}"))
        .arg(format!("--dbdir={}", dir.path().display()))
        .arg(format!("--pidfile={}", dir.path().join("pid").display()))
        .arg(format!("--delay={delay}"))
        .args(["--user=root", "--group=root"])
        .args([
            "--whitelist-clients=/dev/null",
            "--whitelist-recipients=/dev/null",
        ]);
    spawn(c, dir, port, "postgrey")
}

/// A dnsmasq on 127.0.0.X:53 (the resolver library has no port setting) answering only the
/// TXT records given, NXDOMAIN for the rest of `.example`.
pub struct SpfDns {
    child: Child,
    pub addr: Ipv4Addr,
}

impl Drop for SpfDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spf_dns(txt: &[(&str, &str)]) -> SpfDns {
    // A loopback address of our own, free on port 53 for UDP and TCP.
    let addr = (100..250u8)
        .map(|x| Ipv4Addr::new(127, 0, 0, x))
        .find(|a| {
            let s = SocketAddr::from((*a, 53));
            UdpSocket::bind(s).is_ok() && TcpListener::bind(s).is_ok()
        })
        .expect("no 127.0.0.X with port 53 free");
    let mut c = Command::new("dnsmasq");
    c.args(["--no-daemon", "--conf-file=/dev/null", "--pid-file="])
        .args(["--port=53", "--bind-interfaces"])
        .arg(format!("--listen-address={addr}"))
        .args(["--no-resolv", "--no-hosts", "--cache-size=0"])
        .args([
            "--local=/example/",
            "--local=/test/",
            "--local=/in-addr.arpa/",
        ]);
    for (name, text) in txt {
        c.arg(format!("--txt-record={name},{text}"));
    }
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Dropped (killed and waited for) on every path from here.
    let dns = SpfDns { child, addr };
    // Up once it answers on TCP.
    for _ in 0..100 {
        if std::net::TcpStream::connect((addr, 53)).is_ok() {
            return dns;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("dnsmasq did not start on {addr}:53");
}

/// policyd-spf behind `socat TCP-LISTEN:...,fork EXEC:policyd-spf CONF`, in a mount namespace
/// where /etc/resolv.conf names `dns` only; the host's resolv.conf is never touched.
pub fn policyd_spf(dns: &SpfDns) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", dns.addr)).unwrap();
    let conf = dir.path().join("policyd-spf.conf");
    // Debian's defaults, but skip_addresses would skip loopback clients and an empty one
    // crashes policyd-spf 3.0.4: name a documentation address nobody uses.
    std::fs::write(
        &conf,
        "debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\nMail_From_reject = Fail\n\
PermError_reject = False\nTempError_Defer = False\nskip_addresses = 192.0.2.254/32\n",
    )
    .unwrap();
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork EXEC:'policyd-spf {}'",
        shell(&resolv),
        shell(&conf)
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    spawn(c, dir, port, "policyd-spf")
}

fn shell(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}
