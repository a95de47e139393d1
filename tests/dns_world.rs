//! The DNS world fixture answers as the DNS restrictions' tests need: every record kind,
//! NODATA and NXDOMAIN told apart, SERVFAIL and late answers on demand, on a free port or on
//! its own 127.0.53.x:53, and a private Postfix really resolves through it.
//!
//! Postfix's recorded answers against the reference world are in tests/dns_postfix.rs.

// Test helpers panic on setup failures; clippy only exempts `#[test]` bodies by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::TokioResolver;
use support::dns::{DnsWorld, Listen};
use support::dns_reference::*;
use support::flows::behind_lb;
use support::postfix::Postfix;
use support::probe::{ask_postfix, ask_proxied, Question};
use support::relayguard::Identity;

/// What one lookup gave, in the terms the restrictions care about.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The answer records' data, as hickory prints them, sorted.
    Records(Vec<String>),
    NoData,
    NxDomain,
    ServFail,
    Timeout,
}

async fn lookup(resolver: &TokioResolver, name: &str, rtype: RecordType) -> Outcome {
    let fqdn = Name::from_ascii(format!("{name}.")).unwrap();
    match resolver.lookup(fqdn, rtype).await {
        Ok(lookup) => {
            let mut data: Vec<String> = lookup
                .answers()
                .iter()
                .map(|r| r.data.to_string())
                .collect();
            data.sort();
            Outcome::Records(data)
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(no))) => match no.response_code {
            ResponseCode::NXDomain => Outcome::NxDomain,
            ResponseCode::NoError => Outcome::NoData,
            other => panic!("no records with {other:?}"),
        },
        Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))) => Outcome::ServFail,
        Err(NetError::Timeout) => Outcome::Timeout,
        Err(other) => panic!("{name} {rtype}: {other:?}"),
    }
}

fn records(data: &[&str]) -> Outcome {
    Outcome::Records(data.iter().map(|s| s.to_string()).collect())
}

/// The RCODE of a raw query over UDP or TCP (RFC 1035 4.2), to check both transports.
fn raw_rcode(server: SocketAddr, name: &str, qtype: u16, tcp: bool) -> u8 {
    let mut query = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&[0, 1]);
    let timeout = Some(Duration::from_secs(5));
    let reply = if tcp {
        let mut conn = TcpStream::connect_timeout(&server, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(timeout).unwrap();
        let mut framed = u16::try_from(query.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        conn.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut reply).unwrap();
        reply
    } else {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(timeout).unwrap();
        socket.send_to(&query, server).unwrap();
        let mut buf = [0u8; 1500];
        let len = socket.recv(&mut buf).unwrap();
        buf[..len].to_vec()
    };
    assert_eq!(reply[..2], [0xbe, 0xef], "reply to another query");
    reply[3] & 0x0f
}

#[tokio::test]
async fn every_record_kind_is_served() {
    let world = DnsWorld::reference().start();
    let r = world.resolver(Duration::from_secs(5));
    use RecordType::*;
    let cases: &[(&str, RecordType, Outcome)] = &[
        (DOMAIN_A_ONLY, A, records(&["198.51.100.20"])),
        (DOMAIN_A_ONLY, AAAA, Outcome::NoData),
        (DOMAIN_A_ONLY, MX, Outcome::NoData),
        (DOMAIN_AAAA_ONLY, AAAA, records(&["2001:db8::20"])),
        (DOMAIN_AAAA_ONLY, A, Outcome::NoData),
        (DOMAIN_MX_ONLY, MX, records(&["10 mail.mx-only.example."])),
        (DOMAIN_MX_ONLY, A, Outcome::NoData),
        ("mail.mx-only.example", A, records(&["198.51.100.25"])),
        (DOMAIN_NULL_MX, MX, records(&["0 ."])),
        (DOMAIN_NULL_MX, A, Outcome::NoData),
        (DOMAIN_NXDOMAIN, MX, Outcome::NxDomain),
        (DOMAIN_NXDOMAIN, A, Outcome::NxDomain),
        ("delegated.example", NS, records(&["ns1.a-only.example."])),
        // The NS is data, not a delegation: names below it do not exist.
        ("www.delegated.example", A, Outcome::NxDomain),
        ("txt.example", TXT, records(&["v=spf1 -all"])),
        ("client.example", A, records(&["198.51.100.7"])),
        ("client.example", AAAA, records(&["2001:db8::7"])),
        (
            "7.100.51.198.in-addr.arpa",
            PTR,
            records(&["client.example."]),
        ),
        ("9.100.51.198.in-addr.arpa", PTR, Outcome::NxDomain),
        ("2.0.0.127.zen.test", A, records(&["127.0.0.2"])),
        ("2.0.0.127.zen.test", TXT, records(&["listed"])),
        ("7.100.51.198.zen.test", A, Outcome::NxDomain),
        ("9.100.51.198.bl.test", A, records(&["127.0.0.4"])),
        ("9.100.51.198.bl.test", TXT, Outcome::NoData),
        ("10.100.51.198.bl.test", A, records(&["127.0.0.10"])),
        ("30.100.51.198.wl.test", A, records(&["127.0.0.2"])),
        ("bad.example.rhsbl.test", A, records(&["127.0.0.2"])),
        ("a-only.example.rhsbl.test", A, Outcome::NxDomain),
        // Outside every configured zone: NXDOMAIN, not REFUSED.
        ("nothing.org", A, Outcome::NxDomain),
    ];
    for (name, rtype, want) in cases {
        assert_eq!(&lookup(&r, name, *rtype).await, want, "{name} {rtype}");
    }
    let v6_ptr = r
        .reverse_lookup("2001:db8::7".parse::<IpAddr>().unwrap())
        .await;
    let names: Vec<String> = v6_ptr
        .unwrap()
        .answers()
        .iter()
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(names, ["client.example."]);
}

#[tokio::test]
async fn servfail_domain_answers_servfail_over_udp_and_tcp() {
    let world = DnsWorld::reference().start();
    let r = world.resolver(Duration::from_secs(5));
    for rtype in [RecordType::A, RecordType::MX, RecordType::TXT] {
        assert_eq!(lookup(&r, DOMAIN_SERVFAIL, rtype).await, Outcome::ServFail);
    }
    assert_eq!(
        lookup(&r, "2.0.0.127.servfail.dnsworld", RecordType::A).await,
        Outcome::ServFail
    );
    for tcp in [false, true] {
        assert_eq!(
            raw_rcode(world.addr(), DOMAIN_SERVFAIL, 15, tcp),
            2,
            "tcp {tcp}"
        );
        assert_eq!(
            raw_rcode(world.addr(), DOMAIN_NXDOMAIN, 15, tcp),
            3,
            "tcp {tcp}"
        );
        assert_eq!(
            raw_rcode(world.addr(), DOMAIN_MX_ONLY, 15, tcp),
            0,
            "tcp {tcp}"
        );
    }
}

#[tokio::test]
async fn slow_domain_outlasts_a_one_second_deadline_then_answers() {
    let world = DnsWorld::reference()
        .slow_delay(Duration::from_millis(1500))
        .start();
    let r = world.resolver(Duration::from_secs(5));
    let started = Instant::now();
    let cut = tokio::time::timeout(
        Duration::from_secs(1),
        lookup(&r, DOMAIN_SLOW, RecordType::A),
    );
    assert!(cut.await.is_err(), "answered within 1 s");
    assert!(started.elapsed() < Duration::from_millis(1500));

    // The answer does come, late: A 127.0.0.2, and NODATA for other types. Each name is new,
    // because dnsmasq joins a repeated question to the forward still pending for it.
    let started = Instant::now();
    assert_eq!(
        lookup(&r, "late.slow.dnsworld", RecordType::A).await,
        records(&["127.0.0.2"])
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(
        lookup(&r, "other.slow.dnsworld", RecordType::MX).await,
        Outcome::NoData
    );
}

/// hickory's own `timeout` is per transport: after the UDP try times out it asks again over
/// TCP, so a 1 s timeout gives up after about 2 s (and would take an answer that arrives in
/// between). relayguard bounds each lookup with a deadline of its own for that reason.
#[tokio::test]
async fn hickory_alone_gives_up_after_a_udp_and_a_tcp_try() {
    let world = DnsWorld::reference().start();
    let r = world.resolver(Duration::from_secs(1));
    let started = Instant::now();
    assert_eq!(
        lookup(&r, DOMAIN_SLOW, RecordType::A).await,
        Outcome::Timeout
    );
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(4)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test]
async fn port_53_worlds_each_get_their_own_address() {
    let one = DnsWorld::reference().listen(Listen::Port53).start();
    let two = DnsWorld::builder()
        .a("only.example", "192.0.2.9".parse().unwrap())
        .listen(Listen::Port53)
        .start();
    assert_eq!((one.addr().port(), two.addr().port()), (53, 53));
    assert_ne!(one.addr().ip(), two.addr().ip());
    let (r1, r2) = (
        one.resolver(Duration::from_secs(5)),
        two.resolver(Duration::from_secs(5)),
    );
    assert_eq!(
        lookup(&r1, DOMAIN_A_ONLY, RecordType::A).await,
        records(&["198.51.100.20"])
    );
    assert_eq!(
        lookup(&r2, DOMAIN_A_ONLY, RecordType::A).await,
        Outcome::NxDomain
    );
    assert_eq!(
        lookup(&r2, "only.example", RecordType::A).await,
        records(&["192.0.2.9"])
    );
    assert_eq!(
        one.resolv_conf(),
        format!(
            "nameserver {}\noptions attempts:1 timeout:2\n",
            one.addr().ip()
        )
    );
}

/// Postfix's resolver asks the world, not the host's nameserver: a sender domain the world
/// has passes `reject_unknown_sender_domain`, one it lacks does not, and the host's
/// /etc/resolv.conf is the same before and after.
#[tokio::test]
async fn private_postfix_resolves_through_the_world() {
    let host_resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    let world = DnsWorld::reference().listen(Listen::Port53).start();
    let pf = Postfix::builder()
        .starttls(false)
        .resolver(&world)
        .param("smtpd_sender_restrictions", "reject_unknown_sender_domain")
        .start();
    let client = Question::from(CLIENT_CONFIRMED).name("client.example");
    let known = ask_postfix(&pf, &client.clone().sender("s@mx-only.example")).await;
    assert_eq!(known.rcpt, "250 2.1.5 Ok");
    let unknown = ask_postfix(&pf, &client.sender("s@nx.example")).await;
    assert_eq!(
        unknown.rcpt,
        "450 4.1.8 <s@nx.example>: Sender address rejected: Domain not found"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/resolv.conf").unwrap(),
        host_resolv_conf
    );
    assert!(!host_resolv_conf.contains(&world.addr().ip().to_string()));
    // The master (and so every smtpd) sees the world's file over /etc/resolv.conf.
    let master = std::fs::read_to_string(pf.dir().join("queue/pid/master.pid")).unwrap();
    let seen = std::fs::read_to_string(format!("/proc/{}/root/etc/resolv.conf", master.trim()));
    assert_eq!(seen.unwrap(), world.resolv_conf());
}

/// One question, two servers, one world: Postfix asked directly over XCLIENT, and relayguard
/// (which finds the client's name in the world itself) in front of the same Postfix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayguard_and_postfix_ask_the_same_world() {
    let world = DnsWorld::reference().listen(Listen::Port53).start();
    let pf = Postfix::builder()
        .starttls(false)
        .resolver(&world)
        .param("smtpd_sender_restrictions", "reject_unknown_sender_domain")
        .start();
    let rg = behind_lb(&pf, Identity::Xclient)
        .extra_toml(&world.relayguard_toml("2s"))
        .start();
    let q = Question::from(CLIENT_CONFIRMED)
        .name("client.example")
        .sender("s@nx.example");
    let direct = ask_postfix(&pf, &q).await;
    let proxied = ask_proxied(rg.addr("lb"), &q).await;
    assert_eq!((&proxied.mail, &proxied.rcpt), (&direct.mail, &direct.rcpt));
    let reject = "NOQUEUE: reject: RCPT from client.example[198.51.100.7]: 450 4.1.8 \
                  <s@nx.example>: Sender address rejected: Domain not found; \
                  from=<s@nx.example> to=<u@local.test> proto=ESMTP helo=<client.example>";
    // relayguard's own lookup (PTR, then A) confirmed the name.
    rg.wait_for_log(
        "connect from client.example[198.51.100.7]",
        Duration::from_secs(10),
    );
    // Not relayguard's start-up open-relay probe, which Postfix also rejected.
    let rejects = || -> Vec<String> {
        let lines = pf.smtpd_log().into_iter();
        lines
            .filter(|l| l.contains("[198.51.100.7]: 450"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while rejects().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(rejects(), [reject, reject]);
}
