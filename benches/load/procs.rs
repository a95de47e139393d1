//! The processes a load run compares: HAProxy in TCP mode and relayguard in front of the sink;
//! and their memory as the kernel accounts it. Every process is started here, on 127.0.0.1,
//! and killed by its PID on drop.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::policy::PolicyFixture;
use crate::support::process::{free_port, wait_listening};
use crate::support::relayguard::{Identity, Relayguard, Role};

const START: Duration = Duration::from_secs(10);

/// A child process killed by PID when dropped.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    _dir: Option<TempDir>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_listening(
    mut cmd: Command,
    port: u16,
    what: &str,
    dir: Option<TempDir>,
) -> Result<Proc, String> {
    // stderr goes to a file in the scratch directory, quoted if the process fails to listen.
    let log_path = dir.as_ref().map(|d| d.path().join("stderr.log"));
    let stderr = match &log_path {
        Some(p) => Stdio::from(fs::File::create(p).map_err(|e| e.to_string())?),
        None => Stdio::null(),
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let mut p = Proc {
        child,
        addr: (Ipv4Addr::LOCALHOST, port).into(),
        _dir: dir,
    };
    let ok = wait_listening(port, START, || matches!(p.child.try_wait(), Ok(None)));
    if ok {
        Ok(p)
    } else {
        let log = log_path
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default();
        Err(format!(
            "{what} did not listen on 127.0.0.1:{port}: {}",
            log.trim()
        ))
    }
}

/// HAProxy in TCP mode in front of `upstream`: the L4 splice relayguard is compared with.
/// `maxconn` covers the idle-session workload; HAProxy needs two descriptors per connection and
/// refuses to start if it cannot raise its limit that far.
/// `threads`: `nbthread` (HAProxy's default is one per core).
pub fn haproxy(
    upstream: SocketAddr,
    maxconn: usize,
    threads: Option<usize>,
) -> Result<Proc, String> {
    let dir = tempfile::Builder::new()
        .prefix("rg-haproxy-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let port = free_port();
    let nbthread = threads.map_or(String::new(), |n| format!("    nbthread {n}\n"));
    let cfg = format!(
        "global\n    maxconn {maxconn}\n{nbthread}    tune.bufsize 65536\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 300s\n    timeout server 300s\n\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\n\
         backend be\n    server sink {upstream}\n"
    );
    let path = dir.path().join("haproxy.cfg");
    fs::write(&path, cfg).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(&path);
    spawn_listening(cmd, port, "haproxy", Some(dir))
}

/// relayguard (the binary this bench was built with) relaying to `upstream`, telling it the
/// client by `identity` (the bench's sink answers XCLIENT; the splice sends nothing).
/// `warm`: `[upstream] warm_connections`; `policy`: restrictions in place of
/// `permit_mynetworks` for 127.0.0.0/8; `workers`: `[limits] workers` (default: one per core).
pub fn relayguard(
    binary: &Path,
    upstream: SocketAddr,
    warm: usize,
    identity: Identity,
    policy: Option<&PolicyFixture>,
    workers: Option<usize>,
) -> Result<Relayguard, String> {
    let builder = Relayguard::builder()
        .binary(binary)
        .policy("mynetworks", "127.0.0.0/8")
        .policy("message_size_limit", "209715200")
        .listener("smtp", Role::Smtp)
        .listener_toml("smtp", "max_connections = 30000")
        .upstream_smtp(upstream, identity)
        // The sinks accept any recipient: relayguard's open-relay check would refuse them.
        .upstream_toml("allow_open_relay = true")
        .upstream_toml(&format!("warm_connections = {warm}"));
    // LOAD_UPSTREAM: more `[upstream]` lines for every relayguard of the run (an A/B of a
    // setting, e.g. `open_ahead = "ehlo"`), separated by `;`.
    let extra = std::env::var("LOAD_UPSTREAM").unwrap_or_default();
    let builder = extra
        .split(';')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .fold(builder, |b, line| b.upstream_toml(line));
    let builder = match policy {
        Some(p) => p
            .params
            .iter()
            .fold(builder, |b, (name, value)| b.policy(name, value))
            .extra_toml(&p.toml),
        None => builder,
    };
    let builder = match workers {
        Some(n) => builder.extra_toml(&format!("\n[limits]\nworkers = {n}\n")),
        None => builder,
    };
    builder.try_start()
}

/// Open files this run asks for: 10,000 busy sessions cost each proxy two descriptors apiece,
/// and the bench process holds a client and a sink end of each.
const NOFILE_WANTED: u64 = 65_536;

/// Raises this process's open-files limit (children inherit it): to [`NOFILE_WANTED`] where
/// the user may raise the hard limit (root), else the soft limit to the hard one. util-linux
/// prlimit(1) does it without a libc binding. Returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    let pid = std::process::id().to_string();
    let limit = |what: &str| -> Option<u64> {
        let out = Command::new("prlimit")
            .args(["--pid", &pid, "--nofile", "--noheadings", "--output", what])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let set = |n: u64| {
        Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={n}:{n}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(hard) = limit("HARD") {
        let raised = hard < NOFILE_WANTED && set(NOFILE_WANTED);
        if !raised {
            set(hard);
        }
    }
    limit("SOFT").unwrap_or(1024)
}

/// CPU time a process has used, all its threads, in microseconds: the first field of each
/// /proc/PID/task/TID/schedstat (nanoseconds on a CPU).
pub fn cpu_micros(pid: u32) -> Result<f64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut ns = 0u64;
    for task in fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = task.map_err(|e| e.to_string())?.path().join("schedstat");
        // A thread that ended since the listing has no file any more; its time is lost.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("{}: no run time", path.display()))?;
    }
    Ok(ns as f64 / 1000.0)
}

/// Proportional set size of a process in KiB (/proc/PID/smaps_rollup).
pub fn pss_kib(pid: u32) -> Result<u64, String> {
    field_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// Peak resident set size in KiB (/proc/PID/status VmHWM).
pub fn hwm_kib(pid: u32) -> Result<u64, String> {
    field_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

fn field_kib(path: &str, name: &str) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path}: no {name}"))
}
