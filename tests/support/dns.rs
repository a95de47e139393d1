//! [`DnsWorld`]: a zone a test composes, served by a private dnsmasq on loopback, which a
//! private Postfix and relayguard can both resolve against.
//!
//! A world serves forward records authoritatively (one `--auth-zone` per top-level domain,
//! records as `--dns-rr`): only in that mode does dnsmasq 2.90 answer NODATA, not NXDOMAIN,
//! for a type a name lacks. PTRs are `--ptr-record`s. What is configured nowhere is NXDOMAIN
//! (`--local=/#/`), never REFUSED. [`SLOW_DOMAIN`] and [`SERVFAIL_DOMAIN`] are forwarded to a
//! [`FaultServer`]. Both processes are stopped by PID on drop.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use super::dns_faults::FaultServer;
pub use super::dns_faults::{SERVFAIL_DOMAIN, SLOW_DOMAIN};
use super::dnsmasq::{normal, spawn, wire_name};
// tests/resolve.rs's fixed records, where they always were; test crates that do not use them
// would otherwise warn about the re-export.
#[allow(unused_imports)]
pub use super::dnsmasq::{start_dnsmasq, start_dnsmasq_with, Dnsmasq};
use super::process;

/// Where a [`DnsWorld`] listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// 127.0.0.1 on a free port: enough for relayguard, whose resolver takes any address.
    FreePort,
    /// Port 53 on an address of its own in 127.0.53.0/24, as a resolv.conf `nameserver` line
    /// needs (Postfix's resolver knows no port). Binding port 53 needs root.
    Port53,
}

/// The records of a [`DnsWorld`]; see [`DnsWorld::builder`].
pub struct DnsWorldBuilder {
    records: Vec<String>,
    zones: BTreeSet<String>,
    listen: Listen,
    slow_delay: Duration,
    /// The TTL of every answer; 0 (the default) keeps resolvers from caching them.
    ttl: u32,
    /// Where dnsmasq logs each query it is asked, when set.
    query_log: Option<std::path::PathBuf>,
}

/// A running world: dnsmasq plus the fault server it forwards to.
pub struct DnsWorld {
    dnsmasq: Dnsmasq,
    _faults: FaultServer,
    claimed: Option<Ipv4Addr>,
}

/// The 127.0.53.x addresses this test binary's worlds hold; tests run in parallel threads.
static CLAIMED: Mutex<BTreeSet<Ipv4Addr>> = Mutex::new(BTreeSet::new());

impl DnsWorldBuilder {
    /// An A record (no PTR: add one with [`Self::ptr`]).
    pub fn a(self, name: &str, addr: Ipv4Addr) -> Self {
        self.rr(name, 1, addr.octets().to_vec())
    }

    pub fn aaaa(self, name: &str, addr: Ipv6Addr) -> Self {
        self.rr(name, 28, addr.octets().to_vec())
    }

    /// An MX record; `exchange` `.` makes it a null MX (RFC 7505), see [`Self::null_mx`].
    pub fn mx(self, name: &str, preference: u16, exchange: &str) -> Self {
        let mut rdata = preference.to_be_bytes().to_vec();
        rdata.extend(wire_name(exchange));
        self.rr(name, 15, rdata)
    }

    /// `name MX 0 .`: the domain accepts no mail (RFC 7505).
    pub fn null_mx(self, name: &str) -> Self {
        self.mx(name, 0, ".")
    }

    /// An NS record, answered as data (dnsmasq does not make it a referral).
    pub fn ns(self, name: &str, host: &str) -> Self {
        self.rr(name, 2, wire_name(host))
    }

    /// A TXT record of one string (split into 255-octet pieces if longer).
    pub fn txt(self, name: &str, text: &str) -> Self {
        let mut rdata = Vec::new();
        for piece in text.as_bytes().chunks(255) {
            rdata.push(u8::try_from(piece.len()).unwrap());
            rdata.extend_from_slice(piece);
        }
        self.rr(name, 16, rdata)
    }

    /// The PTR record of `addr` (IPv4 or IPv6).
    pub fn ptr(mut self, addr: IpAddr, name: &str) -> Self {
        let reverse = match addr {
            IpAddr::V4(_) => format!("{}.in-addr.arpa", reversed(addr)),
            IpAddr::V6(_) => format!("{}.ip6.arpa", reversed(addr)),
        };
        self.records
            .push(format!("--ptr-record={reverse},{}", normal(name)));
        self
    }

    /// Forward-confirmed: `name` A/AAAA `addr`, and `addr` PTR `name`.
    pub fn host(self, name: &str, addr: IpAddr) -> Self {
        let this = match addr {
            IpAddr::V4(v4) => self.a(name, v4),
            IpAddr::V6(v6) => self.aaaa(name, v6),
        };
        this.ptr(addr, name)
    }

    /// A DNSBL listing: `<client reversed>.<zone>` A `code`, and TXT `reason` if given, as
    /// `reject_rbl_client <zone>` looks it up.
    pub fn dnsbl(self, zone: &str, client: IpAddr, code: Ipv4Addr, reason: Option<&str>) -> Self {
        self.listing(
            &format!("{}.{}", reversed(client), normal(zone)),
            code,
            reason,
        )
    }

    /// An RHSBL listing: `<domain>.<zone>` A `code`, and TXT `reason` if given.
    pub fn rhsbl(self, zone: &str, domain: &str, code: Ipv4Addr, reason: Option<&str>) -> Self {
        self.listing(
            &format!("{}.{}", normal(domain), normal(zone)),
            code,
            reason,
        )
    }

    /// How late names under [`SLOW_DOMAIN`] are answered (default 10 s).
    pub fn slow_delay(mut self, delay: Duration) -> Self {
        self.slow_delay = delay;
        self
    }

    /// Answers carry this TTL instead of 0, so a caching resolver may reuse them.
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.ttl = seconds;
        self
    }

    /// dnsmasq logs every query it receives to `path` (`--log-queries`).
    pub fn log_queries(mut self, path: &std::path::Path) -> Self {
        self.query_log = Some(path.to_owned());
        self
    }

    /// Where to listen (default [`Listen::FreePort`]).
    pub fn listen(mut self, listen: Listen) -> Self {
        self.listen = listen;
        self
    }

    /// Starts the fault server and dnsmasq, and waits until dnsmasq answers (5 s at most per
    /// address tried). Panics if no address could be bound.
    pub fn start(self) -> DnsWorld {
        let faults = FaultServer::start(self.slow_delay);
        let mut args = vec![
            "--local=/#/".to_owned(),
            format!(
                "--server=/{SLOW_DOMAIN}/{}#{}",
                faults.addr.ip(),
                faults.addr.port()
            ),
            format!(
                "--server=/{SERVFAIL_DOMAIN}/{}#{}",
                faults.addr.ip(),
                faults.addr.port()
            ),
            // No address: the zones are served by the ordinary (recursive) service, which
            // then still answers PTRs and NXDOMAIN. Queries to an auth-server address get
            // REFUSED for any name outside the auth zones.
            "--auth-server=ns.dnsworld".to_owned(),
            format!("--auth-ttl={}", self.ttl),
        ];
        if let Some(path) = &self.query_log {
            args.push("--log-queries".to_owned());
            args.push(format!("--log-facility={}", path.display()));
        }
        args.extend(self.zones.iter().map(|z| format!("--auth-zone={z}")));
        args.extend(self.records.iter().cloned());
        let world = |dnsmasq, claimed| DnsWorld {
            dnsmasq,
            _faults: faults,
            claimed,
        };
        match self.listen {
            Listen::FreePort => {
                for _ in 0..50 {
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()));
                    if let Some(d) = spawn(addr, &args) {
                        return world(d, None);
                    }
                }
                panic!("dnsmasq: no free 127.0.0.1 port in 50 tries");
            }
            Listen::Port53 => {
                for last in 1..=254u8 {
                    let ip = Ipv4Addr::new(127, 0, 53, last);
                    if !CLAIMED.lock().unwrap().insert(ip) {
                        continue;
                    }
                    let addr = SocketAddr::from((ip, 53));
                    if let Some(d) = spawn(addr, &args) {
                        return world(d, Some(ip));
                    }
                    CLAIMED.lock().unwrap().remove(&ip);
                }
                panic!("dnsmasq: no 127.0.53.x:53 free (binding port 53 needs root)");
            }
        }
    }

    fn listing(self, name: &str, code: Ipv4Addr, reason: Option<&str>) -> Self {
        let this = self.a(name, code);
        match reason {
            Some(text) => this.txt(name, text),
            None => this,
        }
    }

    /// One `--dns-rr` record, and the auth zone of its top-level domain.
    fn rr(mut self, name: &str, rtype: u16, rdata: Vec<u8>) -> Self {
        let name = normal(name);
        let tld = name.rsplit('.').next().unwrap_or_default().to_owned();
        assert!(
            !["dnsworld", "arpa", ""].contains(&tld.as_str()),
            "{name}: .dnsworld is the fixture's own, .arpa is for ptr()"
        );
        let hex: String = rdata.iter().map(|b| format!("{b:02X}")).collect();
        self.records.push(format!("--dns-rr={name},{rtype},{hex}"));
        self.zones.insert(tld);
        self
    }
}

impl DnsWorld {
    /// An empty world: every name NXDOMAIN except the fault domains.
    pub fn builder() -> DnsWorldBuilder {
        DnsWorldBuilder {
            records: Vec::new(),
            zones: BTreeSet::new(),
            listen: Listen::FreePort,
            slow_delay: Duration::from_secs(10),
            ttl: 0,
            query_log: None,
        }
    }

    /// Where dnsmasq answers, UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.dnsmasq.addr
    }

    /// A resolv.conf naming this world only, one try of 2 s: what a private Postfix gets.
    /// Panics unless the world listens on port 53.
    pub fn resolv_conf(&self) -> String {
        let addr = self.addr();
        assert_eq!(
            addr.port(),
            53,
            "resolv.conf needs a world on Listen::Port53"
        );
        format!("nameserver {}\noptions attempts:1 timeout:2\n", addr.ip())
    }

    /// The `[dns]` table that makes relayguard look client names up in this world, each
    /// lookup bounded by `timeout` (e.g. `"2s"`). For [`RelayguardBuilder::extra_toml`].
    ///
    /// [`RelayguardBuilder::extra_toml`]: super::relayguard::RelayguardBuilder::extra_toml
    pub fn relayguard_toml(&self, timeout: &str) -> String {
        format!(
            "[dns]\nlookups = \"always\"\nnameservers = [\"{}\"]\ntimeout = \"{timeout}\"\n",
            self.addr()
        )
    }

    /// A hickory resolver asking only this world (UDP, then TCP), one try of `timeout` per
    /// transport, no hosts file: built as relayguard's `NameResolver::with_nameservers`
    /// builds its own, but without a cache, so that every lookup reaches dnsmasq.
    pub fn resolver(&self, timeout: Duration) -> TokioResolver {
        let addr = self.addr();
        let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
            .into_iter()
            .map(|mut c| {
                c.port = addr.port();
                c
            })
            .collect();
        let server = NameServerConfig::new(addr.ip(), true, connections);
        let mut options = ResolverOpts::default();
        options.use_hosts_file = ResolveHosts::Never;
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        let config = ResolverConfig::from_name_servers(vec![server]);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = options;
        builder.build().unwrap()
    }
}

impl Drop for DnsWorld {
    fn drop(&mut self) {
        // The address is free for another world only once this dnsmasq is gone.
        self.dnsmasq.stop();
        if let Some(ip) = self.claimed {
            CLAIMED.lock().unwrap().remove(&ip);
        }
    }
}

/// The labels of a reverse or DNSBL name: `7.100.51.198`, or 32 nibbles for IPv6.
fn reversed(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
            let nibbles: Vec<String> = hex.chars().rev().map(String::from).collect();
            nibbles.join(".")
        }
    }
}
