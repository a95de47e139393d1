//! A tiny DNS server for the two answers dnsmasq cannot be told to give: SERVFAIL, and an
//! answer that comes too late. dnsmasq forwards the fault domains to it (`--server=/d/addr`).
//!
//! Pure std, UDP and TCP on one loopback port. It reads only the header and the question and
//! never serves zone data: under [`SERVFAIL_DOMAIN`] every query gets RCODE 2; under
//! [`SLOW_DOMAIN`] an A query gets `127.0.0.2` and any other type an empty NOERROR, each after
//! the configured delay. Everything else is REFUSED (dnsmasq forwards nothing else here).
//! Threads poll a stop flag, so dropping the server ends them within [`TICK`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

// Not under `.invalid`: hickory answers NXDOMAIN for that TLD itself, without asking
// (RFC 6761 section 6.4), so relayguard would never see the fault.

/// Names under this domain answer SERVFAIL.
pub const SERVFAIL_DOMAIN: &str = "servfail.dnsworld";
/// Names under this domain answer after the world's slow delay.
pub const SLOW_DOMAIN: &str = "slow.dnsworld";

/// Where the server binds (on an ephemeral port). Not 127.0.0.1: dnsmasq ignores a
/// `--server` at an address it listens on itself ("local interface"), and a world on
/// [`Listen::FreePort`](super::dns::Listen::FreePort) listens on 127.0.0.1.
const ADDR: &str = "127.0.54.1";

/// How often the server's threads look at the stop flag.
const TICK: Duration = Duration::from_millis(50);

const RCODE_NOERROR: u8 = 0;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;
const TYPE_A: u16 = 1;

/// The running server; dropping it stops its threads.
pub struct FaultServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FaultServer {
    /// Binds UDP and TCP on one free port of [`ADDR`] and starts answering.
    pub fn start(slow_delay: Duration) -> FaultServer {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        udp.set_read_timeout(Some(TICK)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            spawn_udp(udp, slow_delay, stop.clone()),
            spawn_tcp(tcp, slow_delay, stop.clone()),
        ];
        FaultServer {
            addr,
            stop,
            threads,
        }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// UDP and TCP sockets on the same port: dnsmasq forwards both transports to one `#port`.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ADDR, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((ADDR, port)) {
            return (udp, tcp);
        }
    }
    panic!("no {ADDR} port free for both UDP and TCP in 50 tries");
}

fn spawn_udp(socket: UdpSocket, delay: Duration, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                continue; // the read timeout: look at the flag again
            };
            let Some((reply, late)) = answer(&buf[..len]) else {
                continue;
            };
            if !late {
                let _ = socket.send_to(&reply, peer);
                continue;
            }
            let socket = socket.try_clone().unwrap();
            let stop = stop.clone();
            thread::spawn(move || {
                if sleep_unless_stopped(delay, &stop) {
                    let _ = socket.send_to(&reply, peer);
                }
            });
        }
    })
}

fn spawn_tcp(listener: TcpListener, delay: Duration, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    let stop = stop.clone();
                    thread::spawn(move || serve_tcp(conn, delay, &stop));
                }
                Err(_) => thread::sleep(TICK),
            }
        }
    })
}

/// One TCP connection: two-octet length, message, answered in kind (RFC 1035 4.2.2), until
/// the peer closes or goes quiet.
fn serve_tcp(mut conn: TcpStream, delay: Duration, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if conn.read_exact(&mut query).is_err() {
            return;
        }
        let Some((reply, late)) = answer(&query) else {
            return;
        };
        if late && !sleep_unless_stopped(delay, stop) {
            return;
        }
        let mut framed = u16::try_from(reply.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if conn.write_all(&framed).is_err() {
            return;
        }
    }
}

/// Sleeps `delay` in ticks; false if the server was stopped meanwhile.
fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        thread::sleep(TICK.min(deadline - Instant::now()));
    }
    true
}

/// The reply to one query and whether it must wait for the delay; `None` for what is not a
/// query with one question (it is dropped, as a server drops garbage).
fn answer(query: &[u8]) -> Option<(Vec<u8>, bool)> {
    let question = Question::parse(query)?;
    let name = question.name.to_ascii_lowercase();
    let under = |domain: &str| name == domain || name.ends_with(&format!(".{domain}"));
    if under(SERVFAIL_DOMAIN) {
        Some((question.reply(query, RCODE_SERVFAIL, None), false))
    } else if under(SLOW_DOMAIN) {
        let a = (question.qtype == TYPE_A).then_some([127, 0, 0, 2]);
        Some((question.reply(query, RCODE_NOERROR, a), true))
    } else {
        Some((question.reply(query, RCODE_REFUSED, None), false))
    }
}

/// The question of a query: its name (dotted, no trailing dot), type, and where it ends.
struct Question {
    name: String,
    qtype: u16,
    end: usize,
}

impl Question {
    fn parse(msg: &[u8]) -> Option<Question> {
        let header = msg.get(..12)?;
        let is_query = header[2] & 0x80 == 0;
        let qdcount = u16::from_be_bytes([header[4], header[5]]);
        if !is_query || qdcount != 1 {
            return None;
        }
        let mut labels = Vec::new();
        let mut pos = 12;
        loop {
            let len = usize::from(*msg.get(pos)?);
            pos += 1;
            if len == 0 {
                break;
            }
            // A compression pointer cannot occur in the first name of a message.
            if len > 63 {
                return None;
            }
            labels.push(String::from_utf8_lossy(msg.get(pos..pos + len)?).into_owned());
            pos += len;
        }
        let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
        msg.get(pos + 3)?; // the class
        Some(Question {
            name: labels.join("."),
            qtype,
            end: pos + 4,
        })
    }

    /// A response with the query's ID, RD bit and question, RA set, and at most one A record
    /// (name compressed to the question, TTL 0).
    fn reply(&self, query: &[u8], rcode: u8, a: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.end + 16);
        out.extend_from_slice(&query[..2]);
        out.push(0x80 | (query[2] & 0x01)); // QR, opcode 0, RD copied
        out.push(0x80 | rcode); // RA
        out.extend_from_slice(&[0, 1, 0, u8::from(a.is_some()), 0, 0, 0, 0]);
        out.extend_from_slice(&query[12..self.end]);
        if let Some(addr) = a {
            out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
            out.extend_from_slice(&addr);
        }
        out
    }
}
