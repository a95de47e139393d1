//! Client name lookups against a private dnsmasq on loopback: forward-confirmed names, forged
//! PTRs, missing PTRs, and a silent server.

// Test helpers panic on setup failures; clippy only exempts `#[test]` bodies by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relayguard::net::resolve::{ClientNames, HostName, NameResolver};

/// A dnsmasq answering only from its command line, stopped by its PID on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
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

fn start_dnsmasq() -> Dnsmasq {
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "dnsmasq must be installed for tests/resolve.rs (apt-get install dnsmasq-base)",
            );
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

fn known(name: &str) -> HostName {
    HostName::Known(name.to_owned())
}

async fn names_of(resolver: &NameResolver, addr: &str) -> ClientNames {
    resolver.client_names(addr.parse::<IpAddr>().unwrap()).await
}

#[tokio::test]
async fn names_as_postfix_determines_them() {
    let dnsmasq = start_dnsmasq();
    let resolver = NameResolver::with_nameservers(&[dnsmasq.addr], Duration::from_secs(5)).unwrap();

    let confirmed = ClientNames {
        name: known("client.example"),
        reverse_name: known("client.example"),
    };
    assert_eq!(names_of(&resolver, "198.51.100.7").await, confirmed);
    assert_eq!(names_of(&resolver, "2001:db8::7").await, confirmed);
    assert_eq!(names_of(&resolver, "::ffff:198.51.100.7").await, confirmed);

    // Postfix: "hostname forged.example does not resolve to address 198.51.100.8".
    assert_eq!(
        names_of(&resolver, "198.51.100.8").await,
        ClientNames {
            name: HostName::Unavailable,
            reverse_name: known("forged.example"),
        }
    );
    assert_eq!(
        names_of(&resolver, "198.51.100.10").await,
        ClientNames {
            name: HostName::Unavailable,
            reverse_name: known("nowhere.example"),
        }
    );
    assert_eq!(
        names_of(&resolver, "198.51.100.11").await,
        ClientNames {
            name: HostName::Unavailable,
            reverse_name: known("v6only.example"),
        }
    );
    // No PTR: both unknown, for good.
    let unavailable = ClientNames {
        name: HostName::Unavailable,
        reverse_name: HostName::Unavailable,
    };
    assert_eq!(names_of(&resolver, "198.51.100.9").await, unavailable);
    assert_eq!(names_of(&resolver, "2001:db8::9").await, unavailable);
    // A PTR that is not a valid hostname is no name.
    assert_eq!(names_of(&resolver, "198.51.100.12").await, unavailable);
}

#[tokio::test]
async fn a_silent_server_is_a_temporary_failure() {
    // Bound but never read: queries go unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let resolver = NameResolver::with_nameservers(&[addr], Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let names = resolver.client_names("198.51.100.7".parse().unwrap()).await;
    assert_eq!(
        names,
        ClientNames {
            name: HostName::TempUnavailable,
            reverse_name: HostName::TempUnavailable,
        }
    );
    assert_eq!(names.name.xclient_value(), "[TEMPUNAVAIL]");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
