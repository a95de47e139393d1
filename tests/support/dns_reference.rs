//! The reference world: the zone tests/dns_world.rs recorded Postfix 3.7's answers against,
//! so that relayguard's DNS restrictions are tested on the same names and can be compared.
//!
//! Changing a record here changes what those recorded answers mean: rerun tests/dns_world.rs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::dns::{DnsWorld, DnsWorldBuilder};

/// Forward-confirmed (`client.example`, A and PTR agree), listed nowhere.
pub const CLIENT_CONFIRMED: &str = "198.51.100.7";
/// Listed in `zen.test` with 127.0.0.2 and TXT `listed` (the conventional DNSBL test entry).
pub const CLIENT_ZEN_LISTED: &str = "127.0.0.2";
/// Listed in `bl.test` with 127.0.0.4, inside `bl.test=127.0.0.[2..4]`.
pub const CLIENT_BL_IN_RANGE: &str = "198.51.100.9";
/// Listed in `bl.test` with 127.0.0.10, outside `bl.test=127.0.0.[2..4]`.
pub const CLIENT_BL_OUT_OF_RANGE: &str = "198.51.100.10";
/// Listed in the allow list `wl.test` with 127.0.0.2 (for `permit_dnswl_client`).
pub const CLIENT_WL_LISTED: &str = "198.51.100.30";

/// A domain with an A record and nothing else.
pub const DOMAIN_A_ONLY: &str = "a-only.example";
/// A domain with an AAAA record and nothing else.
pub const DOMAIN_AAAA_ONLY: &str = "aaaa-only.example";
/// A domain with an MX (`10 mail.mx-only.example`, which has an A) and no address.
pub const DOMAIN_MX_ONLY: &str = "mx-only.example";
/// A domain whose only record is `MX 0 .` (RFC 7505).
pub const DOMAIN_NULL_MX: &str = "null-mx.example";
/// A domain that does not exist (NXDOMAIN).
pub const DOMAIN_NXDOMAIN: &str = "nx.example";
/// A domain whose MX host is in 10.0.0.0/8 (for `check_sender_mx_access` with a cidr table).
pub const DOMAIN_PRIVATE_MX: &str = "private-mx.example";
/// A domain listed in `rhsbl.test` with 127.0.0.2 and no TXT.
pub const DOMAIN_RHSBL_LISTED: &str = "bad.example";
/// A domain whose every lookup answers SERVFAIL.
pub const DOMAIN_SERVFAIL: &str = "x.servfail.dnsworld";
/// A domain whose every lookup answers after the world's slow delay.
pub const DOMAIN_SLOW: &str = "x.slow.dnsworld";

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

impl DnsWorld {
    /// The reference records (see the constants above), not yet started.
    pub fn reference() -> DnsWorldBuilder {
        let client: IpAddr = CLIENT_CONFIRMED.parse().unwrap();
        let client6: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let code2 = v4("127.0.0.2");
        DnsWorld::builder()
            .host("client.example", client)
            .host("client.example", IpAddr::V6(client6))
            .a(DOMAIN_A_ONLY, v4("198.51.100.20"))
            .aaaa(DOMAIN_AAAA_ONLY, "2001:db8::20".parse().unwrap())
            .mx(DOMAIN_MX_ONLY, 10, "mail.mx-only.example")
            .a("mail.mx-only.example", v4("198.51.100.25"))
            .null_mx(DOMAIN_NULL_MX)
            .mx(DOMAIN_PRIVATE_MX, 10, "mx.private-mx.example")
            .a("mx.private-mx.example", v4("10.1.2.3"))
            .ns("delegated.example", "ns1.a-only.example")
            .txt("txt.example", "v=spf1 -all")
            .dnsbl(
                "zen.test",
                v4(CLIENT_ZEN_LISTED).into(),
                code2,
                Some("listed"),
            )
            .dnsbl(
                "bl.test",
                v4(CLIENT_BL_IN_RANGE).into(),
                v4("127.0.0.4"),
                None,
            )
            .dnsbl(
                "bl.test",
                v4(CLIENT_BL_OUT_OF_RANGE).into(),
                v4("127.0.0.10"),
                None,
            )
            .dnsbl("wl.test", v4(CLIENT_WL_LISTED).into(), code2, None)
            .rhsbl("rhsbl.test", DOMAIN_RHSBL_LISTED, code2, None)
    }
}
