//! Network namespaces and veth links a test creates for itself, removed when dropped.
//!
//! Names carry the test process's PID and a counter, so tests running at once never share
//! one; interface names stay within the kernel's 15 characters. Deleting a namespace takes
//! its ends of the veth pairs with it (the peer end goes too), so nothing outlives the test,
//! even when it panics. Only `ip(8)` is driven; needs root.
//!
//! A namespace has no DNS server, and the host's resolv.conf names one it cannot reach, so
//! every lookup (swaks and Postfix ask for their own host name) would wait out its timeout:
//! each namespace gets `/etc/netns/NAME/resolv.conf` (which `ip netns exec` mounts over
//! /etc/resolv.conf) naming 127.0.0.1, where nothing listens, so lookups fail at once.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), with its loopback up. Dropping it deletes it.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// A fresh namespace named `rg-ROLE-PID-N`.
    pub fn new(role: &str) -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("rg-{role}-{}-{n}", std::process::id());
        let etc = etc_dir(&name);
        fs::create_dir_all(&etc).unwrap();
        fs::write(
            etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ns.run("ip", &["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`: a command whose process (and its children) live in here.
    /// ip(8) execs the program, so the child's PID is the program's.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` in here and panics with its output if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {program}: {e}", self.name));
        assert!(
            out.status.success(),
            "in {}: {program} {args:?} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `sysctl -w KEY=VALUE` inside (per-namespace keys such as `net.ipv4.ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    }

    /// A default route via `gateway`.
    pub fn default_route(&self, gateway: &str) {
        self.run("ip", &["route", "add", "default", "via", gateway]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
        let _ = fs::remove_dir_all(etc_dir(&self.name));
    }
}

/// The files `ip netns exec NAME` mounts over /etc for processes in that namespace.
fn etc_dir(name: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(name)
}

impl fmt::Debug for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Joins `a` and `b` with a veth pair: `a` gets `a_cidr` (e.g. `10.201.1.1/24`), `b` gets
/// `b_cidr`, both ends up. The pair lives as long as the namespaces.
pub fn link(a: &NetNs, a_cidr: &str, b: &NetNs, b_cidr: &str) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // "rgv" + up to 7 PID digits + counter + a/b: within IFNAMSIZ (15) for any Linux PID.
    let base = format!("rgv{}{n}", std::process::id());
    let (ea, eb) = (format!("{base}a"), format!("{base}b"));
    ip(&[
        "link", "add", &ea, "netns", &a.name, "type", "veth", "peer", "name", &eb, "netns", &b.name,
    ]);
    for (ns, dev, cidr) in [(a, &ea, a_cidr), (b, &eb, b_cidr)] {
        ns.run("ip", &["addr", "add", cidr, "dev", dev]);
        ns.run("ip", &["link", "set", dev, "up"]);
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip(8)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
