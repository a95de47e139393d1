//! A private dnsmasq on loopback that answers only from its command line: the client names
//! the DNS tests resolve (forward-confirmed, forged, missing, not a hostname).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A dnsmasq answering only from its command line, stopped by its PID on drop.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    for port in 25100..25200u16 {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Both must be free; dnsmasq serves UDP and TCP on the same port.
        if UdpSocket::bind(addr).is_err() || TcpListener::bind(addr).is_err() {
            continue;
        }
        let child = Command::new("dnsmasq")
            .args(["--no-daemon", "--conf-file=/dev/null", "--pid-file="])
            .arg(format!("--port={port}"))
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .args(["--no-resolv", "--no-hosts", "--cache-size=0"])
            // Answer NXDOMAIN, not REFUSED, for what is not configured.
            .args([
                "--local=/example/",
                "--local=/in-addr.arpa/",
                "--local=/ip6.arpa/",
            ])
            .args(RECORDS)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq must be installed for the DNS tests (apt-get install dnsmasq-base)");
        let mut dnsmasq = Dnsmasq { child, addr };
        if wait_until_serving(&mut dnsmasq) {
            return dnsmasq;
        }
    }
    panic!("no free port for dnsmasq in 25100-25199");
}

/// Polls with a raw query for `client.example` until dnsmasq answers (at most 5 s).
fn wait_until_serving(dnsmasq: &mut Dnsmasq) -> bool {
    let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06client\x07example\x00\x00\x01\x00\x01";
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for _ in 0..50 {
        if dnsmasq.child.try_wait().unwrap().is_some() {
            return false; // lost the port race, or refused its arguments
        }
        socket.send_to(query, dnsmasq.addr).unwrap();
        let mut reply = [0u8; 512];
        if socket.recv(&mut reply).is_ok() {
            return true;
        }
    }
    false
}
