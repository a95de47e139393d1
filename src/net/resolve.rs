//! The client's hostname as Postfix determines it: the PTR name, confirmed by a forward lookup
//! of that name that must list the client's address.
//!
//! Follows smtpd_peer.c: a failed PTR lookup leaves both names `unknown`; a PTR name whose A
//! (or AAAA, for an IPv6 client) records do not include the address keeps the reverse name but
//! not the verified one. Temporary failures (timeouts, SERVFAIL) are told apart from permanent
//! ones, as Postfix's `[TEMPUNAVAIL]` and `[UNAVAILABLE]` are. Does not log: the caller does,
//! with the session's context.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::policy::hostname::valid_hostname;
use crate::policy::pending::{DnsAnswer, DnsRecord, RecordType as PolicyRecordType};
use crate::policy::NameStatus;

/// The value Postfix shows (and `check_client_access` looks up) for a name it does not have.
pub const UNKNOWN: &str = "unknown";

/// One of the two names Postfix keeps for a client (`client_name`, `reverse_client_name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostName {
    /// A name, without the trailing dot.
    Known(String),
    /// The lookup failed for good (no PTR, or the name does not resolve back to the address).
    Unavailable,
    /// The lookup failed for now (timeout, SERVFAIL): `reject_unknown_client_hostname` then
    /// answers 450 whatever its configured code.
    TempUnavailable,
}

impl HostName {
    /// The name, or `unknown`, as Postfix logs it and as policy lookups see it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(name) => name,
            Self::Unavailable | Self::TempUnavailable => UNKNOWN,
        }
    }

    /// The XCLIENT `NAME`/`REVERSE_NAME` value before xtext: the name, `[UNAVAILABLE]` or
    /// `[TEMPUNAVAIL]`.
    pub fn xclient_value(&self) -> &str {
        match self {
            Self::Known(name) => name,
            Self::Unavailable => "[UNAVAILABLE]",
            Self::TempUnavailable => "[TEMPUNAVAIL]",
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Self::Known(_))
    }

    /// How the lookup ended, as the policy sees it.
    pub fn status(&self) -> NameStatus {
        match self {
            Self::Known(_) => NameStatus::Ok,
            Self::Unavailable => NameStatus::Permanent,
            Self::TempUnavailable => NameStatus::Temporary,
        }
    }
}

impl From<Option<String>> for HostName {
    /// `None` is a permanent failure, as for a client whose name was never looked up.
    fn from(name: Option<String>) -> Self {
        name.map_or(Self::Unavailable, Self::Known)
    }
}

/// Both names of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientNames {
    /// The forward-confirmed name (Postfix's `client_name`).
    pub name: HostName,
    /// The PTR name, confirmed or not (Postfix's `reverse_client_name`).
    pub reverse_name: HostName,
}

impl ClientNames {
    pub fn failed(status: HostName) -> Self {
        Self {
            name: status.clone(),
            reverse_name: status,
        }
    }
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `/etc/resolv.conf` could not be read or holds no usable nameserver.
    #[error("cannot use the system resolver configuration: {0}")]
    SystemConfig(#[source] NetError),
    /// hickory refused the configuration.
    #[error("cannot build the DNS resolver: {0}")]
    Build(#[source] NetError),
}

/// Looks up client names, each lookup bounded by a deadline. Cheap to clone; share one.
#[derive(Clone)]
pub struct NameResolver {
    resolver: TokioResolver,
    deadline: Duration,
}

impl NameResolver {
    /// A resolver asking exactly these nameservers (UDP, TCP on truncation), ignoring
    /// `/etc/hosts` and `/etc/resolv.conf`. `deadline` bounds each whole `client_names` call.
    pub fn with_nameservers(
        nameservers: &[SocketAddr],
        deadline: Duration,
    ) -> Result<Self, ResolveError> {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = addr.port();
                        connection
                    })
                    .collect();
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        let mut options = ResolverOpts::default();
        options.use_hosts_file = ResolveHosts::Never;
        Self::build(
            ResolverConfig::from_name_servers(servers),
            options,
            deadline,
        )
    }

    /// The resolver `[dns]` asks for: its nameservers, or the system's.
    pub fn from_settings(dns: &crate::config::DnsSettings) -> Result<Self, ResolveError> {
        if dns.nameservers.is_empty() {
            Self::from_system_conf(dns.timeout)
        } else {
            Self::with_nameservers(&dns.nameservers, dns.timeout)
        }
    }

    /// A resolver configured from `/etc/resolv.conf`, as Postfix's own lookups would be
    /// (including `/etc/hosts`, as the C library's `hosts: files dns` does).
    pub fn from_system_conf(deadline: Duration) -> Result<Self, ResolveError> {
        let (config, mut options) = hickory_resolver::system_conf::read_system_conf()
            .map_err(ResolveError::SystemConfig)?;
        options.use_hosts_file = ResolveHosts::Always;
        Self::build(config, options, deadline)
    }

    fn build(
        config: ResolverConfig,
        mut options: ResolverOpts,
        deadline: Duration,
    ) -> Result<Self, ResolveError> {
        // One try per server within the deadline; the deadline itself is enforced around the
        // whole lookup, so a slow server cannot stretch a session's greeting.
        options.timeout = deadline;
        options.attempts = 1;
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = options;
        let resolver = builder.build().map_err(ResolveError::Build)?;
        Ok(Self { resolver, deadline })
    }

    /// The client's names: PTR lookup, then a forward lookup of the PTR name in the client's
    /// address family that must include `addr`. Never fails: failures are the names' values.
    pub async fn client_names(&self, addr: IpAddr) -> ClientNames {
        let addr = addr.to_canonical();
        match tokio::time::timeout(self.deadline, self.lookup(addr)).await {
            Ok(names) => names,
            Err(_elapsed) => ClientNames::failed(HostName::TempUnavailable),
        }
    }

    async fn lookup(&self, addr: IpAddr) -> ClientNames {
        let reverse_name = match self.reverse(addr).await {
            Ok(name) => name,
            Err(status) => return ClientNames::failed(status),
        };
        let name = match self.confirms(&reverse_name, addr).await {
            Ok(true) => HostName::Known(reverse_name.clone()),
            Ok(false) => HostName::Unavailable,
            Err(status) => status,
        };
        ClientNames {
            name,
            reverse_name: HostName::Known(reverse_name),
        }
    }

    /// The first PTR name, if it is a valid hostname (Postfix uses the one name getnameinfo
    /// returns, and calls a numeric or malformed one unknown).
    async fn reverse(&self, addr: IpAddr) -> Result<String, HostName> {
        let lookup = self
            .resolver
            .reverse_lookup(Name::from(addr))
            .await
            .map_err(|err| failure(&err))?;
        let name = lookup
            .answers()
            .iter()
            .find_map(|record| match &record.data {
                RData::PTR(ptr) => Some(ptr.0.to_ascii()),
                _ => None,
            })
            .ok_or(HostName::Unavailable)?;
        let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
        if valid_hostname(&name) {
            Ok(name)
        } else {
            Err(HostName::Unavailable)
        }
    }

    /// Whether `name`'s A (IPv4 client) or AAAA (IPv6 client) records include `addr`.
    async fn confirms(&self, name: &str, addr: IpAddr) -> Result<bool, HostName> {
        // The trailing dot makes the name absolute, so no search domain is tried.
        let fqdn = format!("{name}.");
        let lookup = match addr {
            IpAddr::V4(_) => self.resolver.ipv4_lookup(fqdn).await,
            IpAddr::V6(_) => self.resolver.ipv6_lookup(fqdn).await,
        }
        .map_err(|err| failure(&err))?;
        Ok(lookup.answers().iter().any(|record| match &record.data {
            RData::A(a) => IpAddr::V4(a.0) == addr,
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0) == addr,
            _ => false,
        }))
    }
}

impl NameResolver {
    /// The records of one type for an absolute name, as the policy's DNS restrictions ask
    /// for them, bounded by the deadline. Never fails: failures are the answer's value.
    pub async fn records(&self, name: &str, rtype: PolicyRecordType) -> DnsAnswer {
        self.records_with_ttl(name, rtype).await.0
    }

    /// [`NameResolver::records`] with the lowest TTL of the answer, or for a negative answer
    /// the SOA's negative-caching TTL; `None` when the reply carried none or there was no
    /// reply (dnsblog(8)'s TTL, which postscreen caches its DNSBL results by).
    pub async fn records_with_ttl(
        &self,
        name: &str,
        rtype: PolicyRecordType,
    ) -> (DnsAnswer, Option<u32>) {
        let Ok(mut fqdn) = Name::from_ascii(name) else {
            return (DnsAnswer::Refused("not a valid domain name".into()), None);
        };
        fqdn.set_fqdn(true);
        let wanted = match rtype {
            PolicyRecordType::A => RecordType::A,
            PolicyRecordType::Aaaa => RecordType::AAAA,
            PolicyRecordType::Mx => RecordType::MX,
            PolicyRecordType::Ns => RecordType::NS,
            PolicyRecordType::Txt => RecordType::TXT,
        };
        let lookup =
            match tokio::time::timeout(self.deadline, self.resolver.lookup(fqdn, wanted)).await {
                Err(_elapsed) => return (DnsAnswer::TryAgain("timed out".into()), None),
                Ok(Err(err)) => return (dns_failure(&err), negative_ttl(&err)),
                Ok(Ok(lookup)) => lookup,
            };
        let mut ttl: Option<u32> = None;
        let host = |n: &Name| {
            n.to_ascii()
                .trim_end_matches('.')
                .to_owned()
                .into_boxed_str()
        };
        let mut records = Vec::new();
        for record in lookup.answers() {
            let found = match &record.data {
                RData::A(a) if wanted == RecordType::A => DnsRecord::Addr(IpAddr::V4(a.0)),
                RData::AAAA(a) if wanted == RecordType::AAAA => DnsRecord::Addr(IpAddr::V6(a.0)),
                RData::MX(mx) if wanted == RecordType::MX => {
                    if mx.exchange.is_root() {
                        return (DnsAnswer::NullMx, None);
                    }
                    DnsRecord::Host {
                        preference: mx.preference,
                        name: host(&mx.exchange),
                    }
                }
                RData::NS(ns) if wanted == RecordType::NS => DnsRecord::Host {
                    preference: 0,
                    name: host(&ns.0),
                },
                RData::TXT(txt) if wanted == RecordType::TXT => {
                    let text: String = txt
                        .txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect();
                    DnsRecord::Text(text.into())
                }
                _ => continue,
            };
            ttl = Some(ttl.map_or(record.ttl, |t| t.min(record.ttl)));
            records.push(found);
        }
        if records.is_empty() {
            (DnsAnswer::NoData, None)
        } else {
            (DnsAnswer::Records(records), ttl)
        }
    }
}

/// The negative-caching TTL of a "no such name or record" answer that carried an SOA.
fn negative_ttl(err: &NetError) -> Option<u32> {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(none)) => none.negative_ttl,
        _ => None,
    }
}

/// Postfix's dns_query() categories: NXDOMAIN and NODATA are "not found", SERVFAIL and
/// timeouts "try again", any other error code a hard failure.
fn dns_failure(err: &NetError) -> DnsAnswer {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(none)) => {
            if none.response_code == ResponseCode::NXDomain {
                DnsAnswer::NxDomain
            } else {
                DnsAnswer::NoData
            }
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => {
            DnsAnswer::TryAgain("SERVFAIL".into())
        }
        NetError::Dns(DnsError::ResponseCode(code)) => DnsAnswer::Refused(code.to_string().into()),
        other => DnsAnswer::TryAgain(other.to_string().into()),
    }
}

/// NXDOMAIN and "no such record" are answers; everything else (timeout, SERVFAIL, REFUSED,
/// network errors) may pass, as getaddrinfo's EAI_AGAIN does for Postfix.
fn failure(err: &NetError) -> HostName {
    if err.is_no_records_found() {
        HostName::Unavailable
    } else {
        HostName::TempUnavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_as_postfix_shows_them() {
        let known = HostName::Known("client.example".into());
        assert_eq!(known.as_str(), "client.example");
        assert_eq!(known.xclient_value(), "client.example");
        assert_eq!(HostName::Unavailable.as_str(), "unknown");
        assert_eq!(HostName::Unavailable.xclient_value(), "[UNAVAILABLE]");
        assert_eq!(HostName::TempUnavailable.as_str(), "unknown");
        assert_eq!(HostName::TempUnavailable.xclient_value(), "[TEMPUNAVAIL]");
        assert_eq!(HostName::from(None), HostName::Unavailable);
    }
}
