//! Who a limit counts: an IPv4 client by its address, an IPv6 client by its prefix, since one
//! host is routinely given a whole /64 and could otherwise walk through it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A client as the limiter and the ban list count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    V4(std::net::Ipv4Addr),
    /// The network address and its prefix length (128: one address).
    V6(Ipv6Addr, u8),
}

impl ClientKey {
    /// The key of `addr`, with IPv6 clients counted by their first `v6_prefix` bits. An
    /// IPv4-mapped IPv6 address counts as the IPv4 client it is.
    pub fn new(addr: IpAddr, v6_prefix: u8) -> ClientKey {
        match addr {
            IpAddr::V4(a) => ClientKey::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4),
                None => {
                    let bits = v6_prefix.min(128);
                    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                    ClientKey::V6(Ipv6Addr::from(u128::from(a) & mask), bits)
                }
            },
        }
    }

    /// Parses what [`fmt::Display`] writes (`192.0.2.1`, `2001:db8::/64`), or a bare IPv6
    /// address (taken as its /`v6_prefix`).
    pub fn parse(text: &str, v6_prefix: u8) -> Option<ClientKey> {
        let text = text.trim().trim_start_matches('[').trim_end_matches(']');
        if let Some((net, bits)) = text.split_once('/') {
            let addr: Ipv6Addr = net.parse().ok()?;
            let bits: u8 = bits.parse().ok().filter(|b| *b <= 128)?;
            return Some(ClientKey::new(IpAddr::V6(addr), bits));
        }
        Some(ClientKey::new(text.parse().ok()?, v6_prefix))
    }

    /// Whether `addr` is a client this key counts.
    pub fn covers(&self, addr: IpAddr, v6_prefix: u8) -> bool {
        ClientKey::new(addr, v6_prefix) == *self
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::V4(a) => write!(f, "{a}"),
            ClientKey::V6(a, 128) => write!(f, "{a}"),
            ClientKey::V6(a, bits) => write!(f, "{a}/{bits}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_prefix_and_ipv4_stands_alone() {
        let a = ClientKey::new("2001:db8:1:2:aaaa::1".parse().unwrap(), 64);
        let b = ClientKey::new("2001:db8:1:2:ffff::9".parse().unwrap(), 64);
        let c = ClientKey::new("2001:db8:1:3::1".parse().unwrap(), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(ClientKey::parse("2001:db8:1:2::/64", 64), Some(a));
        assert_eq!(ClientKey::parse("2001:db8:1:2::77", 64), Some(a));
        let v4 = ClientKey::new("192.0.2.7".parse().unwrap(), 64);
        assert_eq!(v4.to_string(), "192.0.2.7");
        assert_eq!(
            ClientKey::new("::ffff:192.0.2.7".parse().unwrap(), 64),
            v4,
            "a mapped address is the IPv4 client"
        );
        assert_eq!(ClientKey::parse("[192.0.2.7]", 64), Some(v4));
        let one = ClientKey::new("2001:db8::5".parse().unwrap(), 128);
        assert_eq!(one.to_string(), "2001:db8::5");
        assert_eq!(
            ClientKey::new("2001:db8::5".parse().unwrap(), 0).to_string(),
            "::/0"
        );
        assert!(a.covers("2001:db8:1:2::42".parse().unwrap(), 64));
        assert_eq!(ClientKey::parse("nonsense", 64), None);
    }
}
