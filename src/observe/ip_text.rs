//! IP addresses written as text in one piece, without the formatter's per-octet machinery.
//!
//! Every session writes its client's address several times (its log name, XCLIENT ADDR and
//! DESTADDR); std's `Ipv4Addr` display formats each octet as its own integer argument, which
//! on the one-message-per-connection path cost more than the rest of the XCLIENT line.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::stack_text::StackText;

/// Displays exactly as `IpAddr` does (width and alignment included); IPv4 is written from a
/// stack buffer, IPv6 by std.
#[derive(Clone, Copy)]
pub struct IpText(pub IpAddr);

impl fmt::Display for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => f.pad(dotted_quad(v4).as_str()),
            IpAddr::V6(v6) => fmt::Display::fmt(&v6, f),
        }
    }
}

/// `a.b.c.d`: at most 15 bytes.
fn dotted_quad(addr: Ipv4Addr) -> StackText<15> {
    let mut quad = StackText::new();
    for (i, octet) in addr.octets().into_iter().enumerate() {
        if i > 0 {
            quad.push(b'.');
        }
        quad.push_u32(u32::from(octet));
    }
    quad
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn writes_what_std_writes(bits: u32, v6: u128) {
            let v4 = IpAddr::V4(Ipv4Addr::from(bits));
            proptest::prop_assert_eq!(IpText(v4).to_string(), v4.to_string());
            let v6 = IpAddr::V6(v6.into());
            proptest::prop_assert_eq!(IpText(v6).to_string(), v6.to_string());
        }
    }

    #[test]
    fn edges_and_padding_as_std() {
        for addr in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "127.0.0.1",
            "::1",
        ] {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(IpText(ip).to_string(), addr);
            assert_eq!(format!("{:>17}|", IpText(ip)), format!("{ip:>17}|"));
        }
    }
}
