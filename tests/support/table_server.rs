//! A socketmap or tcp_table server for the tests, on loopback, in threads: it answers from a
//! fixed map, records every key asked, and can be made slow, garbled or stopped mid-run. Every
//! thread ends within a fraction of a second of `stop()` or drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Socketmap,
    Tcp,
}

/// How the server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Wait this long before each reply.
    Slow(Duration),
    /// Reply with bytes that are not the protocol (a bad netstring, a bad status line).
    Garbage,
    /// Reply with this raw payload (socketmap) or line (tcp) to every key.
    Raw(String),
}

struct Shared {
    entries: HashMap<String, String>,
    behaviour: Mutex<Behaviour>,
    keys: Mutex<Vec<String>>,
    stop: AtomicBool,
}

pub struct TableServer {
    protocol: Protocol,
    map: String,
    port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl TableServer {
    /// A socketmap server for map `name`: a key in `entries` is `OK value`, others `NOTFOUND `.
    pub fn socketmap(name: &str, entries: &[(&str, &str)]) -> TableServer {
        Self::start(Protocol::Socketmap, name, entries)
    }

    /// A tcp_table server: a key in `entries` is `200 value`, others `500 not found`.
    pub fn tcp(entries: &[(&str, &str)]) -> TableServer {
        Self::start(Protocol::Tcp, "", entries)
    }

    fn start(protocol: Protocol, map: &str, entries: &[(&str, &str)]) -> TableServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            entries: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            behaviour: Mutex::new(Behaviour::Normal),
            keys: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let map_name = map.to_string();
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        let map_name = map_name.clone();
                        conns.push(std::thread::spawn(move || {
                            serve(protocol, &map_name, stream, &s)
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(listener);
            for c in conns {
                let _ = c.join();
            }
        });
        TableServer {
            protocol,
            map: map.to_string(),
            port,
            shared,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The table as a Postfix parameter names it.
    pub fn spec(&self) -> String {
        match self.protocol {
            Protocol::Socketmap => format!("socketmap:inet:127.0.0.1:{}:{}", self.port, self.map),
            Protocol::Tcp => format!("tcp:127.0.0.1:{}", self.port),
        }
    }

    pub fn set(&self, b: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = b;
    }

    /// Every key asked so far, in order.
    pub fn keys(&self) -> Vec<String> {
        self.shared.keys.lock().unwrap().clone()
    }

    pub fn clear_keys(&self) {
        self.shared.keys.lock().unwrap().clear();
    }

    /// Closes the listening socket and every connection.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TableServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(protocol: Protocol, map: &str, stream: TcpStream, s: &Shared) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    while !s.stop.load(Ordering::SeqCst) {
        let key = match protocol {
            Protocol::Socketmap => read_netstring(&mut r, s).map(|req| {
                req.strip_prefix(&format!("{map} "))
                    .unwrap_or(&req)
                    .to_string()
            }),
            Protocol::Tcp => read_line(&mut r, s).map(|l| {
                let k = l.strip_prefix("get ").unwrap_or(&l).to_string();
                unquote(&k)
            }),
        };
        let Some(key) = key else { return };
        s.keys.lock().unwrap().push(key.clone());
        let behaviour = s.behaviour.lock().unwrap().clone();
        if let Behaviour::Slow(d) = behaviour {
            std::thread::sleep(d);
        }
        let reply = match (protocol, &behaviour, s.entries.get(&key)) {
            (Protocol::Socketmap, Behaviour::Garbage, _) => b"7:OK yes;".to_vec(),
            (Protocol::Tcp, Behaviour::Garbage, _) => b"2x0 yes\n".to_vec(),
            (Protocol::Socketmap, Behaviour::Raw(p), _) => netstring(p),
            (Protocol::Tcp, Behaviour::Raw(l), _) => format!("{l}\n").into_bytes(),
            (Protocol::Socketmap, _, Some(v)) => netstring(&format!("OK {v}")),
            (Protocol::Socketmap, _, None) => netstring("NOTFOUND "),
            (Protocol::Tcp, _, Some(v)) => format!("200 {}\n", quote(v)).into_bytes(),
            (Protocol::Tcp, _, None) => b"500 not found\n".to_vec(),
        };
        if out.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Reads until a whole netstring is in or the server stops; `None` at EOF or stop.
fn read_netstring(r: &mut BufReader<TcpStream>, s: &Shared) -> Option<String> {
    let mut len = Vec::new();
    loop {
        let mut b = [0u8];
        match r.read(&mut b) {
            Ok(0) => return None,
            Ok(_) if b[0] == b':' => break,
            Ok(_) => len.push(b[0]),
            Err(_) if s.stop.load(Ordering::SeqCst) => return None,
            Err(_) => continue,
        }
    }
    let n: usize = String::from_utf8(len).ok()?.parse().ok()?;
    let mut data = vec![0u8; n + 1];
    let mut got = 0;
    while got < data.len() {
        match r.read(&mut data[got..]) {
            Ok(0) => return None,
            Ok(k) => got += k,
            Err(_) if s.stop.load(Ordering::SeqCst) => return None,
            Err(_) => continue,
        }
    }
    data.pop();
    String::from_utf8(data).ok()
}

fn read_line(r: &mut BufReader<TcpStream>, s: &Shared) -> Option<String> {
    let mut line = String::new();
    loop {
        match r.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with('\n') => return Some(line.trim_end_matches('\n').into()),
            Ok(_) => continue,
            Err(_) if s.stop.load(Ordering::SeqCst) => return None,
            Err(_) => continue,
        }
    }
}

fn netstring(payload: &str) -> Vec<u8> {
    format!("{}:{payload},", payload.len()).into_bytes()
}

fn quote(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_graphic() && b != b'%' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unquote(k: &str) -> String {
    let b = k.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&k[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
