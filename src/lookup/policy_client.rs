//! Talks to Postfix policy servers (check_policy_service) the way Postfix's attr_clnt and
//! auto_clnt do: `name=value` lines and a blank line out, `action=...` and a blank line back,
//! over TCP or a UNIX socket, with the connection kept for later requests.
//!
//! Connections live in a small pool per worker thread and per service (the whole
//! [`PolicyService`], settings included), closed after `max_idle` unused or `max_ttl` of age
//! (by a task per pool that sleeps until the next expiry) or after `request_limit` requests. A request gets `try_limit` attempts `retry_delay`
//! apart, each connecting afresh after a failure, each step under `timeout`. Failures are
//! answered, never raised: the engine applies the service's default_action.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use crate::net::stream::BoxStream;
use crate::policy::pending::PolicyAnswer;
use crate::policy::policy_service::{Endpoint, PolicyService};

/// Idle connections kept per service and worker; more concurrent requests open more, and
/// those beyond this are closed when done.
const IDLE_PER_SERVICE: usize = 8;

/// A reply longer than this is not a policy answer (Postfix's attribute values are bounded
/// by its line limit too).
const MAX_REPLY: usize = 64 * 1024;

/// The pools of every policy service this process has talked to.
#[derive(Default)]
pub struct PolicyClients {
    // Keyed by thread as well: each worker runs its own runtime, and a socket is served by
    // the runtime that opened it. One connection per worker per service is what Postfix has
    // with one per smtpd process.
    idle: Arc<Mutex<HashMap<Key, Idle>>>,
}

type Key = (ThreadId, PolicyService);

/// One service's idle connections on one worker, and whether a task closes them on time.
#[derive(Default)]
struct Idle {
    conns: Vec<Conn>,
    reaper: bool,
}

struct Conn {
    stream: BufReader<BoxStream>,
    opened: Instant,
    used: Instant,
    requests: u32,
}

/// Why one attempt failed, with the errno text Postfix's `%m` would print.
#[derive(Debug)]
enum Failure {
    Io(io::Error),
    Timeout,
    /// The server closed the connection or answered without `action=`: no errno, which
    /// Postfix prints as "Success".
    NoAnswer,
}

impl Failure {
    fn text(&self) -> String {
        match self {
            Failure::Io(e) => errno_text(e),
            Failure::Timeout => "Connection timed out".into(),
            Failure::NoAnswer => "Success".into(),
        }
    }

    /// attr_clnt_request warns on every attempt that failed with an errno other than EPIPE,
    /// ENOENT or ECONNRESET, and on the last attempt whatever the cause.
    fn warns_early(&self) -> bool {
        match self {
            Failure::Io(e) => !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::NotFound
                    | io::ErrorKind::ConnectionReset
            ),
            Failure::Timeout => true,
            Failure::NoAnswer => false,
        }
    }
}

/// `Connection refused`, not `Connection refused (os error 111)`.
fn errno_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl PolicyClients {
    /// Asks `service`, retrying as its settings say. `request` is the attribute lines
    /// without the blank line that ends them.
    pub async fn ask(&self, service: &PolicyService, request: &str) -> PolicyAnswer {
        let s = &service.settings;
        let mut warnings = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.take(service) {
                Some(conn) => Ok(conn),
                None => connect(service).await.inspect_err(|f| {
                    warnings.push(format!("connect to {}: {}", service.endpoint, f.text()).into());
                }),
            };
            let result = match result {
                Ok(mut conn) => match exchange(&mut conn, request, s.timeout).await {
                    Ok(action) => Ok((conn, action)),
                    Err(f) => Err(f),
                },
                Err(f) => Err(f),
            };
            match result {
                Ok((mut conn, action)) => {
                    conn.requests += 1;
                    conn.used = Instant::now();
                    if s.request_limit == 0 || conn.requests < s.request_limit {
                        self.put(service, conn);
                    }
                    return PolicyAnswer {
                        action: Some(action.into()),
                        warnings,
                    };
                }
                Err(f) => {
                    let last = attempt >= s.try_limit.max(1);
                    if last || f.warns_early() {
                        warnings.push(
                            format!(
                                "problem talking to server {}: {}",
                                service.endpoint,
                                f.text()
                            )
                            .into(),
                        );
                    }
                    if last {
                        return PolicyAnswer {
                            action: None,
                            warnings,
                        };
                    }
                    tokio::time::sleep(s.retry_delay).await;
                }
            }
        }
    }

    /// An idle connection that is still fit for a request: not past max_idle or max_ttl, and
    /// not readable, which means the server closed it or said something unasked (Postfix's
    /// `readable()` test before it writes).
    fn take(&self, service: &PolicyService) -> Option<Conn> {
        let key = (std::thread::current().id(), service.clone());
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let entry = idle.get_mut(&key)?;
        let now = Instant::now();
        entry.conns.retain(|c| c.is_fresh(&service.settings, now));
        while let Some(mut conn) = entry.conns.pop() {
            let mut probe = [0u8; 1];
            if conn.stream.read(&mut probe).now_or_never().is_some() {
                continue;
            }
            return Some(conn);
        }
        None
    }

    fn put(&self, service: &PolicyService, conn: Conn) {
        let key = (std::thread::current().id(), service.clone());
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let entry = idle.entry(key.clone()).or_default();
        if entry.conns.len() < IDLE_PER_SERVICE {
            entry.conns.push(conn);
        }
        if !entry.reaper {
            entry.reaper = true;
            tokio::spawn(reap(self.idle.clone(), key));
        }
    }
}

impl Conn {
    /// Not past max_idle unused nor max_ttl old (auto_clnt's two timers).
    fn is_fresh(&self, s: &crate::policy::policy_service::PolicySettings, now: Instant) -> bool {
        now.duration_since(self.used) < s.max_idle && now.duration_since(self.opened) < s.max_ttl
    }
}

/// Closes one service's idle connections on this worker once they pass max_idle or max_ttl,
/// as auto_clnt's timers do, so a server that runs a process per connection (spawn(8),
/// socat) gets it back; ends when none is left.
async fn reap(idle: Arc<Mutex<HashMap<Key, Idle>>>, key: Key) {
    let s = &key.1.settings;
    loop {
        let wake = {
            let mut map = idle.lock().unwrap_or_else(|p| p.into_inner());
            let Some(entry) = map.get_mut(&key) else {
                return;
            };
            let now = Instant::now();
            entry.conns.retain(|c| c.is_fresh(s, now));
            if entry.conns.is_empty() {
                entry.reaper = false;
                return;
            }
            entry
                .conns
                .iter()
                .map(|c| (c.used + s.max_idle).min(c.opened + s.max_ttl))
                .min()
                .unwrap_or(now)
        };
        tokio::time::sleep_until(wake.into()).await;
    }
}

async fn connect(service: &PolicyService) -> Result<Conn, Failure> {
    let timeout = service.settings.timeout;
    let stream: BoxStream = match &service.endpoint {
        Endpoint::Inet { host, port } => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let s = within(timeout, TcpStream::connect((host, *port))).await?;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
        Endpoint::Unix(path) => Box::new(within(timeout, UnixStream::connect(&**path)).await?),
    };
    let now = Instant::now();
    Ok(Conn {
        stream: BufReader::new(stream),
        opened: now,
        used: now,
        requests: 0,
    })
}

async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Io(e)),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Sends the request and reads the reply's attributes up to the blank line; the value of
/// `action` is the answer (other attributes are read past).
async fn exchange(conn: &mut Conn, request: &str, timeout: Duration) -> Result<String, Failure> {
    let mut out = Vec::with_capacity(request.len() + 1);
    out.extend_from_slice(request.as_bytes());
    if !request.is_empty() && !request.ends_with('\n') {
        out.push(b'\n');
    }
    out.push(b'\n');
    within(timeout, async {
        conn.stream.get_mut().write_all(&out).await?;
        conn.stream.get_mut().flush().await
    })
    .await?;
    let mut action = None;
    let mut line = Vec::new();
    let mut total = 0usize;
    loop {
        line.clear();
        let n = within(timeout, conn.stream.read_until(b'\n', &mut line)).await?;
        total += n;
        if n == 0 || !line.ends_with(b"\n") || total > MAX_REPLY {
            return Err(Failure::NoAnswer);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return action.ok_or(Failure::NoAnswer);
        }
        if let Some(value) = text.strip_prefix("action=") {
            action = Some(value.to_string());
        }
    }
}
