//! Small process and port chores shared by the Postfix and relayguard starters.
//!
//! Bounded waits only: every loop here gives up after its timeout and says what it waited for.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How often the bounded waits look again.
pub const POLL: Duration = Duration::from_millis(25);

/// A loopback port that was free a moment ago: bind 127.0.0.1:0, note the port, release it.
///
/// Another process may take it before the caller binds; with the kernel's sequential
/// ephemeral allocation that is rare enough for tests.
pub fn free_port() -> u16 {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Whether some socket listens on 127.0.0.1:`port` (or 0.0.0.0:`port`), read from
/// /proc/net/tcp so that checking does not open an SMTP session that would show up in logs.
pub fn is_listening(port: u16) -> bool {
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    listening_in(Path::new("/proc/net/tcp"), |local| {
        want.iter().any(|w| w == local)
    })
}

/// Whether some socket listens on `port` (any address) in the network namespace of process
/// `pid`: its /proc/PID/net/tcp, for a process started with `ip netns exec`.
pub fn is_listening_in(pid: u32, port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    listening_in(Path::new(&format!("/proc/{pid}/net/tcp")), |local| {
        local.ends_with(&suffix)
    })
}

/// Whether a LISTEN row of the TCP table at `table` has a local address `wanted` accepts.
fn listening_in(table: &Path, wanted: impl Fn(&str) -> bool) -> bool {
    let Ok(table) = fs::read_to_string(table) else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        let mut f = line.split_whitespace();
        let local = f.nth(1).unwrap_or("");
        let state = f.nth(1).unwrap_or("");
        state == "0A" && wanted(local)
    })
}

/// Waits until 127.0.0.1:`port` listens; `alive` is asked on each round so that a process that
/// died is reported at once instead of after the timeout. Returns false on timeout or death.
pub fn wait_listening(port: u16, timeout: Duration, alive: impl FnMut() -> bool) -> bool {
    wait_until(|| is_listening(port), timeout, alive)
}

/// [`wait_listening`] for a port in the network namespace of process `pid`.
pub fn wait_listening_in(
    pid: u32,
    port: u16,
    timeout: Duration,
    alive: impl FnMut() -> bool,
) -> bool {
    wait_until(|| is_listening_in(pid, port), timeout, alive)
}

fn wait_until(
    listening: impl Fn() -> bool,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if listening() {
            return true;
        }
        if !alive() {
            return false;
        }
        sleep(POLL);
    }
    false
}

/// Whether a PID still names a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends a signal by name (`TERM`, `HUP`) to one PID with kill(1): no libc dependency needed.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -s {name} {pid} failed");
}

/// A command that runs `program args` in a private mount namespace where `resolv_conf` is
/// bind-mounted over /etc/resolv.conf, so its resolver (and its children's, daemons
/// included: the namespace lives as long as a process in it) asks the nameserver that file
/// names. The real /etc/resolv.conf is not touched. Needs root (CAP_SYS_ADMIN).
pub fn with_resolv_conf(resolv_conf: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    // `--propagation private`: the bind mount must not leak back to the host's namespace.
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
        .arg(resolv_conf)
        .arg(program)
        .args(args);
    cmd
}

/// Whether this process runs as root (Postfix's master must be started by root).
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Reads a file's lines, or none if it does not exist yet.
pub fn read_lines(path: &Path) -> Vec<String> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Polls `lines()` until one contains `needle`; panics with the last lines on timeout.
pub fn wait_for_line(
    what: &str,
    needle: &str,
    timeout: Duration,
    mut lines: impl FnMut() -> Vec<String>,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let now = lines();
        if let Some(hit) = now.iter().find(|l| l.contains(needle)) {
            return hit.clone();
        }
        if Instant::now() >= deadline {
            let tail = now.len().saturating_sub(30);
            panic!(
                "{what}: no line containing {needle:?} within {timeout:?}; last lines:\n{}",
                now[tail..].join("\n")
            );
        }
        sleep(POLL);
    }
}
