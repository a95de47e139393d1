//! The workloads, each bounded in count and time: smtp-source message rates, a body
//! throughput client, idle sessions held open, one large message, and one-session latency.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// One SMTP client connection that waits for each reply (no pipelining).
pub struct Conn {
    io: BufReader<TcpStream>,
    line: Vec<u8>,
}

const STEP: Duration = Duration::from_secs(60);

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let tcp = timeout(STEP, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timeout"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut c = Conn {
            io: BufReader::with_capacity(4096, tcp),
            line: Vec::new(),
        };
        c.expect("220").await?;
        Ok(c)
    }

    /// Reads one (possibly multi-line) reply and checks its code.
    pub async fn expect(&mut self, code: &str) -> Result<(), String> {
        loop {
            self.line.clear();
            let n = timeout(STEP, self.io.read_until(b'\n', &mut self.line))
                .await
                .map_err(|_| format!("no reply within {STEP:?}, wanted {code}"))?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!("closed, wanted {code}"));
            }
            if !self.line.starts_with(code.as_bytes()) {
                return Err(format!(
                    "wanted {code}, got {:?}",
                    String::from_utf8_lossy(&self.line)
                ));
            }
            if self.line.get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        timeout(STEP, self.io.get_mut().write_all(bytes))
            .await
            .map_err(|_| "write timeout".to_string())?
            .map_err(|e| format!("write: {e}"))
    }

    pub async fn cmd(&mut self, line: &[u8], code: &str) -> Result<(), String> {
        self.send(line).await?;
        self.expect(code).await
    }

    /// MAIL, RCPT, DATA, `body` (already dot-safe, ending in CRLF), dot: one message.
    pub async fn message(&mut self, body: &[u8]) -> Result<(), String> {
        self.cmd(b"MAIL FROM:<s@sender.example>\r\n", "250").await?;
        self.cmd(b"RCPT TO:<u@local.test>\r\n", "250").await?;
        self.cmd(b"DATA\r\n", "354").await?;
        self.send(body).await?;
        self.cmd(b".\r\n", "250").await
    }
}

/// A body of about `size` bytes: a header, then 78 `x` and CRLF per line (no dot starts a line).
pub fn body(size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(size + 100);
    b.extend_from_slice(b"Subject: load\r\n\r\n");
    let line = [&[b'x'; 78][..], b"\r\n"].concat();
    while b.len() < size {
        b.extend_from_slice(&line);
    }
    b
}

/// Runs smtp-source against `addr`; returns the wall time. `per_connection`: one message per
/// session (false adds `-d`, every session sends its share over one connection).
pub fn smtp_source(
    addr: SocketAddr,
    sessions: u32,
    messages: u32,
    per_connection: bool,
    limit: Duration,
) -> Result<Duration, String> {
    let mut cmd = Command::new("smtp-source");
    cmd.args([
        "-s",
        &sessions.to_string(),
        "-m",
        &messages.to_string(),
        "-l",
        "5120",
    ]);
    cmd.args([
        "-f",
        "s@sender.example",
        "-t",
        "u@local.test",
        "-M",
        "client.example",
    ]);
    if !per_connection {
        cmd.arg("-d");
    }
    cmd.arg(addr.to_string());
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("smtp-source: {e}"))?;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let elapsed = start.elapsed();
            if status.success() {
                return Ok(elapsed);
            }
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "smtp-source {status}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("smtp-source took over {limit:?}"));
        }
        sleep(Duration::from_millis(5));
    }
}

/// `sessions` parallel sessions each send `per_session` messages of `size` bytes; MiB/s.
pub async fn throughput(
    addr: SocketAddr,
    sessions: usize,
    per_session: usize,
    size: usize,
) -> Result<f64, String> {
    let payload = std::sync::Arc::new(body(size));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await?;
            c.cmd(b"EHLO client.example\r\n", "250").await?;
            for _ in 0..per_session {
                c.message(&payload).await?;
            }
            c.cmd(b"QUIT\r\n", "221").await
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let bytes = (payload.len() * sessions * per_session) as f64;
    Ok(bytes / (1024.0 * 1024.0) / start.elapsed().as_secs_f64())
}

/// Opens `n` sessions, each greeted and past EHLO, and calls `measure` while all are open.
pub async fn hold_idle<T>(
    addr: SocketAddr,
    n: usize,
    measure: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Conn::open(addr).await?;
        c.cmd(b"EHLO client.example\r\n", "250").await?;
        open.push(c);
    }
    // Let the proxies settle their per-session allocations before the kernel is asked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = measure();
    drop(open);
    result
}

/// One full session (connect, greeting, EHLO, one `size`-byte message, QUIT); its time in
/// microseconds.
pub async fn session_micros(addr: SocketAddr, size: usize) -> Result<f64, String> {
    let payload = body(size);
    let start = Instant::now();
    let mut c = Conn::open(addr).await?;
    c.cmd(b"EHLO client.example\r\n", "250").await?;
    c.message(&payload).await?;
    c.cmd(b"QUIT\r\n", "221").await?;
    Ok(start.elapsed().as_secs_f64() * 1e6)
}
