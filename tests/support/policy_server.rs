//! A Postfix policy server for tests, on a loopback TCP port or a UNIX socket: it reads
//! `name=value` requests up to the blank line and answers what the test's function says,
//! recording every request and counting connections. Threads, stopped on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `action=VALUE` and the blank line.
    Action(String),
    /// Waits, then answers.
    Slow(Duration, String),
    /// Writes half a reply and closes the connection.
    Cut,
}

pub type Request = HashMap<String, String>;
type Handler = dyn Fn(&Request) -> Answer + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<Request>>,
    connections: AtomicUsize,
    /// Connections the client closed (or the server ended).
    closed: AtomicUsize,
    stop: AtomicBool,
}

pub struct PolicyServer {
    shared: Arc<Shared>,
    wake: Wake,
}

enum Wake {
    Tcp(u16),
    Unix(PathBuf),
}

impl PolicyServer {
    /// Listens on a free 127.0.0.1 port.
    pub fn tcp(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = shared(handler);
        let s = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                let reader = stream.try_clone().unwrap();
                thread::spawn(move || serve(&s, BufReader::new(reader), stream));
            }
        });
        PolicyServer {
            shared,
            wake: Wake::Tcp(port),
        }
    }

    /// Listens on a UNIX socket at `path`.
    pub fn unix(path: &Path, handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let shared = shared(handler);
        let s = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                let reader = stream.try_clone().unwrap();
                thread::spawn(move || serve(&s, BufReader::new(reader), stream));
            }
        });
        PolicyServer {
            shared,
            wake: Wake::Unix(path.to_owned()),
        }
    }

    pub fn port(&self) -> u16 {
        match self.wake {
            Wake::Tcp(p) => p,
            Wake::Unix(_) => panic!("a UNIX-socket server has no port"),
        }
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn closed(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        match &self.wake {
            Wake::Tcp(port) => drop(TcpStream::connect(("127.0.0.1", *port))),
            Wake::Unix(path) => {
                drop(UnixStream::connect(path));
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn shared(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Arc<Shared> {
    Arc::new(Shared {
        handler: Box::new(handler),
        requests: Mutex::new(Vec::new()),
        connections: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    })
}

fn serve(s: &Shared, reader: impl BufRead, writer: impl Write) {
    converse(s, reader, writer);
    s.closed.fetch_add(1, Ordering::SeqCst);
}

fn converse(s: &Shared, mut reader: impl BufRead, mut writer: impl Write) {
    loop {
        let mut request = Request::new();
        let mut order = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            order.push(k.to_string());
            request.insert(k.to_string(), v.to_string());
        }
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        request.insert("@order".into(), order.join(","));
        s.requests.lock().unwrap().push(request.clone());
        match (s.handler)(&request) {
            Answer::Action(a) => {
                if writer
                    .write_all(format!("action={a}\n\n").as_bytes())
                    .is_err()
                {
                    return;
                }
            }
            Answer::Slow(wait, a) => {
                thread::sleep(wait);
                let _ = writer.write_all(format!("action={a}\n\n").as_bytes());
                return;
            }
            Answer::Cut => {
                let _ = writer.write_all(b"action=DU");
                return;
            }
        }
    }
}
