//! The policies the cost-of-policy rows run relayguard with: an MX as admins write one (a
//! 10,000-entry cidr client table that ends in a restriction class, regexp HELO and sender
//! tables), and the same with a DNSBL lookup the resolver answers from its cache. The tables
//! live in a scratch directory the fixture owns; the DNS zone in a private dnsmasq.

use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use tempfile::TempDir;

use crate::support::dns::DnsWorld;

/// Entries in the client table; the client's own network is the last.
pub const CIDR_ENTRIES: usize = 10_000;
/// The DNSBL zone. The client is listed with a PBL-like code that the filter skips, as
/// `reject_rbl_client zen.spamhaus.org=127.0.0.[2..11]` setups skip 127.0.0.10 (dnsmasq
/// answers NXDOMAIN without the SOA a resolver needs to cache a negative answer).
const DNSBL: &str = "zen.test";

/// `[policy]` lines, extra TOML, and what they need kept running.
pub struct PolicyFixture {
    pub params: Vec<(&'static str, String)>,
    pub toml: String,
    query_log: Option<PathBuf>,
    _dns: Option<DnsWorld>,
    _dir: TempDir,
}

impl PolicyFixture {
    /// How many A queries for the client's DNSBL name dnsmasq was asked; `None` without DNS.
    pub fn dnsbl_queries(&self) -> Option<usize> {
        let log = fs::read_to_string(self.query_log.as_ref()?).unwrap_or_default();
        let name = format!("query[A] 1.0.0.127.{DNSBL}");
        Some(log.lines().filter(|l| l.contains(&name)).count())
    }
}

/// The MX policy: clients from the whole internet, recipients in local.test only.
pub fn mx() -> Result<PolicyFixture, String> {
    let dir = tempfile::Builder::new()
        .prefix("rg-load-policy-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let path = |name: &str| dir.path().join(name).display().to_string();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text);
    write("clients.cidr", &client_table()).map_err(|e| e.to_string())?;
    write("helo.regexp", &helo_table()).map_err(|e| e.to_string())?;
    write("senders.regexp", &sender_table()).map_err(|e| e.to_string())?;
    write("local_domains", "local.test OK\n").map_err(|e| e.to_string())?;
    let params = vec![
        // The bench's client, 127.0.0.1, is not in mynetworks: it is an internet client.
        ("mynetworks", "192.0.2.0/24".to_owned()),
        ("mydestination", "local.test".to_owned()),
        ("smtpd_helo_required", "yes".to_owned()),
        ("smtpd_restriction_classes", "mx_inbound".to_owned()),
        (
            "mx_inbound",
            format!(
                "check_recipient_access texthash:{}, reject",
                path("local_domains")
            ),
        ),
        (
            "smtpd_helo_restrictions",
            format!(
                "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, \
                 check_helo_access regexp:{}",
                path("helo.regexp")
            ),
        ),
        (
            "smtpd_sender_restrictions",
            format!(
                "reject_non_fqdn_sender, check_sender_access regexp:{}",
                path("senders.regexp")
            ),
        ),
        (
            "smtpd_recipient_restrictions",
            format!(
                "reject_non_fqdn_recipient, permit_mynetworks, reject_unauth_destination, \
                 check_client_access cidr:{}, permit",
                path("clients.cidr")
            ),
        ),
    ];
    Ok(PolicyFixture {
        params,
        toml: String::new(),
        query_log: None,
        _dns: None,
        _dir: dir,
    })
}

/// The MX policy with `reject_rbl_client` before the client table, its zone served by a
/// private dnsmasq with an hour's TTL; dnsmasq logs each query so the run can show that the
/// resolver's cache answered.
pub fn mx_with_dnsbl() -> Result<PolicyFixture, String> {
    let mut fixture = mx()?;
    let log = fixture._dir.path().join("dnsmasq-queries.log");
    let dns = DnsWorld::builder()
        .ttl(3600)
        .log_queries(&log)
        .dnsbl(
            DNSBL,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Ipv4Addr::new(127, 0, 0, 10),
            None,
        )
        .start();
    for (name, value) in &mut fixture.params {
        if *name == "smtpd_recipient_restrictions" {
            *value = value.replace(
                "reject_unauth_destination,",
                &format!("reject_unauth_destination, reject_rbl_client {DNSBL}=127.0.0.[2..4],"),
            );
        }
    }
    fixture.toml = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\n",
        dns.addr()
    );
    fixture.query_log = Some(log);
    fixture._dns = Some(dns);
    Ok(fixture)
}

/// 10,000 /24s refused, then the loopback network sent to the `mx_inbound` class.
fn client_table() -> String {
    let mut t = String::with_capacity(CIDR_ENTRIES * 32);
    for i in 0..CIDR_ENTRIES - 1 {
        // 100.64.0.0/10 has room for 16,384 /24s.
        let _ = writeln!(
            t,
            "100.{}.{}.0/24 REJECT listed locally",
            64 + i / 256,
            i % 256
        );
    }
    t.push_str("127.0.0.0/8 mx_inbound\n");
    t
}

/// HELO patterns of the kind MX admins collect: bare addresses, dynamic pools, names that
/// are not names; 40 in all, none matching the bench client's `client.example`.
fn helo_table() -> String {
    let mut t = String::from(
        "/^\\[?[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+\\]?$/ REJECT bare IP address in HELO\n\
         /(^|\\.)localhost(\\.localdomain)?$/ REJECT you are not me\n\
         /\\.(local|lan|home|internal|localdomain)$/ REJECT private name in HELO\n\
         /^(dsl|dhcp|pool|dyn|dynamic|ppp|cable|adsl)[-.0-9]/ REJECT dynamic pool\n\
         /[0-9]+[-.][0-9]+[-.][0-9]+[-.][0-9]+/ REJECT address-like name\n",
    );
    for i in 0..35 {
        let _ = writeln!(t, "/(^|\\.)spam-host-{i}\\.example$/ REJECT known spammer");
    }
    t
}

/// Sender domains refused by pattern; 40 in all, none matching `s@sender.example`.
fn sender_table() -> String {
    let mut t = String::from("/^<>$/ DUNNO\n/@(.+\\.)?bad-sender\\.example$/ REJECT\n");
    for i in 0..38 {
        let _ = writeln!(
            t,
            "/@(.+\\.)?spam-domain-{i}\\.example$/ REJECT known spammer"
        );
    }
    t
}
