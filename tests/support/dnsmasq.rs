//! Starts a dnsmasq that answers only from its command line, on a loopback address, and waits
//! until it (not another server that holds the address) answers. Also the fixed client-name
//! records tests/resolve.rs uses.
//!
//! Stopped by PID on drop. [`super::dns::DnsWorld`] builds the command lines for a zone.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A dnsmasq answering only from its command line, stopped by its PID on drop.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Dnsmasq {
    pub(super) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

const RECORDS: &[&str] = &[
    // Forward and reverse agree, for IPv4 and IPv6.
    "--host-record=client.example,198.51.100.7,2001:db8::7",
    // The PTR names a host whose address is another one.
    "--ptr-record=8.100.51.198.in-addr.arpa,forged.example",
    "--host-record=forged.example,198.51.100.99",
    // The PTR names a host that does not exist.
    "--ptr-record=10.100.51.198.in-addr.arpa,nowhere.example",
    // The PTR names a host with only an IPv6 address: an IPv4 client is not confirmed by it.
    "--ptr-record=11.100.51.198.in-addr.arpa,v6only.example",
    "--host-record=v6only.example,2001:db8::11",
    // A PTR that is not a hostname.
    "--ptr-record=12.100.51.198.in-addr.arpa,bad-.example",
    "--host-record=bad-.example,198.51.100.12",
    // 198.51.100.9 has no PTR at all.
];

pub fn start_dnsmasq() -> Dnsmasq {
    start_dnsmasq_with(&[])
}

/// [`start_dnsmasq`] with more records, e.g. `--host-record=name,addr` (forward and reverse).
pub fn start_dnsmasq_with(extra: &[String]) -> Dnsmasq {
    let mut args: Vec<String> = [
        "--local=/example/",
        "--local=/in-addr.arpa/",
        "--local=/ip6.arpa/",
    ]
    .iter()
    .chain(RECORDS)
    .map(|s| s.to_string())
    .collect();
    args.extend_from_slice(extra);
    for port in 25100..25200u16 {
        if let Some(dnsmasq) = spawn(SocketAddr::from(([127, 0, 0, 1], port)), &args) {
            return dnsmasq;
        }
    }
    panic!("no free port for dnsmasq in 25100-25199");
}

/// Starts dnsmasq on `addr` and waits until it answers; `None` if it exits first (the address
/// was taken) or never answers. A unique TXT record tells its answers from another server's.
pub(super) fn spawn(addr: SocketAddr, args: &[String]) -> Option<Dnsmasq> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Both must be free; dnsmasq serves UDP and TCP on the same port.
    if UdpSocket::bind(addr).is_err() || TcpListener::bind(addr).is_err() {
        return None;
    }
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let child = Command::new("dnsmasq")
        .args(["--no-daemon", "--conf-file=/dev/null", "--pid-file="])
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--listen-address={}", addr.ip()))
        .args([
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--cache-size=0",
        ])
        .arg(format!("--txt-record=nonce.dnsworld,{nonce}"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq must be installed for the DNS tests (apt-get install dnsmasq-base)");
    let mut dnsmasq = Dnsmasq { child, addr };
    if wait_until_serving(&mut dnsmasq, &nonce) {
        Some(dnsmasq)
    } else {
        None // dropping it kills it
    }
}

/// Polls with a raw TXT query for `nonce.dnsworld` until our dnsmasq answers (at most 5 s).
fn wait_until_serving(dnsmasq: &mut Dnsmasq, nonce: &str) -> bool {
    let mut query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
    query.extend(wire_name("nonce.dnsworld"));
    query.extend_from_slice(&[0, 16, 0, 1]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for _ in 0..50 {
        if dnsmasq.child.try_wait().unwrap().is_some() {
            return false; // lost the address race, or refused its arguments
        }
        socket.send_to(&query, dnsmasq.addr).unwrap();
        let mut reply = [0u8; 512];
        if let Ok(len) = socket.recv(&mut reply) {
            if reply[..len]
                .windows(nonce.len())
                .any(|w| w == nonce.as_bytes())
            {
                return true;
            }
        }
    }
    false
}

/// A name in wire form, uncompressed (RFC 1035 3.1); `.` or `` is the root.
pub(super) fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in normal(name).split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).ok().filter(|&n| n <= 63).unwrap());
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Lower case, no trailing dot.
pub(super) fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
