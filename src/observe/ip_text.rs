//! IP addresses written as text in one piece, without the formatter's per-octet machinery.
//!
//! Every session writes its client's address several times (its log name, XCLIENT ADDR and
//! DESTADDR); std's `Ipv4Addr` display formats each octet as its own integer argument, which
//! on the one-message-per-connection path cost more than the rest of the XCLIENT line.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// Displays exactly as `IpAddr` does (width and alignment included); IPv4 is written from a
/// stack buffer, IPv6 by std.
#[derive(Clone, Copy)]
pub struct IpText(pub IpAddr);

impl fmt::Display for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => f.pad(DottedQuad::new(v4).as_str()),
            IpAddr::V6(v6) => fmt::Display::fmt(&v6, f),
        }
    }
}

/// `a.b.c.d`, at most 15 bytes.
struct DottedQuad {
    text: [u8; 15],
    len: usize,
}

impl DottedQuad {
    fn new(addr: Ipv4Addr) -> Self {
        let mut quad = DottedQuad {
            text: [0; 15],
            len: 0,
        };
        for (i, octet) in addr.octets().into_iter().enumerate() {
            if i > 0 {
                quad.push(b'.');
            }
            if octet >= 100 {
                quad.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                quad.push(b'0' + octet / 10 % 10);
            }
            quad.push(b'0' + octet % 10);
        }
        quad
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.text.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        // Digits and dots only: always one str.
        std::str::from_utf8(self.text.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
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
