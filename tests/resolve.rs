//! Client name lookups against a private dnsmasq on loopback: forward-confirmed names, forged
//! PTRs, missing PTRs, and a silent server.

// Test helpers panic on setup failures; clippy only exempts `#[test]` bodies by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use relayguard::net::resolve::{ClientNames, HostName, NameResolver};
use support::dns::start_dnsmasq;

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
