//! Tells the upstream MTA who the client really is: XCLIENT commands, or a PROXY v1/v2 header.
//!
//! Builds bytes only; the upstream leg writes them. Two rules from postfix-semantics 12 the
//! caller must keep: **never pipeline after XCLIENT or a PROXY header** (write it, wait for the
//! `220`, only then send EHLO; Postfix flags pipelining and may drop the session), and treat
//! any reply to XCLIENT other than `220` as fatal for that upstream session (after a 501 or 550
//! the upstream still sees relayguard itself as the client, which may relay).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::net::resolve::HostName;
use crate::observe::ip_text::IpText;
use crate::smtp::xtext;

/// Postfix refuses an XCLIENT value longer than this, counted after xtext encoding
/// (`501 5.5.4 Error: attribute value too long`).
pub const XCLIENT_VALUE_MAX: usize = 255;
/// The longest XCLIENT line we write, CRLF included (RFC 5321's command line limit).
pub const XCLIENT_LINE_MAX: usize = 512;

/// How the upstream learns the client's identity (`[upstream] identity` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityMode {
    /// XCLIENT after the upstream's greeting (`smtpd_authorized_xclient_hosts`).
    Xclient,
    /// A binary PROXY v2 header before the greeting (`smtpd_upstream_proxy_protocol = haproxy`).
    ProxyV2,
    /// A text PROXY v1 header before the greeting.
    ProxyV1,
    /// Nothing: the upstream sees relayguard as the client.
    None,
}

/// What relayguard knows about the client when it opens the upstream session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The client's address and port.
    pub addr: SocketAddr,
    /// relayguard's local address the client connected to (XCLIENT DESTADDR/DESTPORT).
    pub server: SocketAddr,
    /// The forward-confirmed name; not known is sent as `[UNAVAILABLE]` or `[TEMPUNAVAIL]`.
    pub name: HostName,
    /// The PTR name, sent likewise.
    pub reverse_name: HostName,
    /// The client's HELO/EHLO argument, once given.
    pub helo: Option<String>,
    /// The SASL login, once the upstream accepted AUTH or relayguard authenticated the client.
    pub login: Option<String>,
    /// True after EHLO (PROTO=ESMTP), false after HELO or none (PROTO=SMTP).
    pub esmtp: bool,
}

/// The XCLIENT command lines, CRLF-terminated, to send one at a time, each after the `220` to
/// the one before.
///
/// NAME and REVERSE_NAME are always sent, `[UNAVAILABLE]` when unknown, because Postfix keeps
/// omitted attributes from relayguard's own connection (`client=localhost[198.51.100.5]`).
/// When everything does not fit in one 512-byte line the sticky attributes (REVERSE_NAME,
/// PORT, DESTADDR, DESTPORT) go first, and the last command carries NAME and ADDR, which end
/// relayguard's XCLIENT authorization, together with HELO, PROTO and LOGIN, which Postfix resets
/// whenever an XCLIENT omits them. If even that last line is too long, HELO is left out (the
/// EHLO that follows sets it); only a NAME and a LOGIN both near 255 bytes can still make it
/// longer than 512, which Postfix accepts (its `line_length_limit` is 2048). A HELO or LOGIN
/// longer than 255 bytes once encoded is not sent: Postfix would refuse the whole command.
pub fn xclient_commands(id: &ClientIdentity) -> Vec<Vec<u8>> {
    // The numbers and addresses written once into one scratch string, sliced below: this runs
    // for every upstream connection, and a String per attribute was a dozen allocations.
    use std::fmt::Write as _;
    let mut numbers = String::with_capacity(96);
    let mut push = |args: std::fmt::Arguments<'_>| {
        let at = numbers.len();
        // Writing to a String cannot fail.
        let _ = numbers.write_fmt(args);
        at..numbers.len()
    };
    let port = push(format_args!("{}", id.addr.port()));
    let dest_addr = push(format_args!("{}", XclientAddr(id.server.ip())));
    let dest_port = push(format_args!("{}", id.server.port()));
    let addr = push(format_args!("{}", XclientAddr(id.addr.ip())));
    let sticky = [
        ("REVERSE_NAME", id.reverse_name.xclient_value()),
        ("PORT", &numbers[port]),
        ("DESTADDR", &numbers[dest_addr]),
        ("DESTPORT", &numbers[dest_port]),
    ];
    let last = |with_helo: bool| {
        [
            Some(("NAME", id.name.xclient_value())),
            id.helo
                .as_deref()
                .filter(|_| with_helo)
                .map(|helo| ("HELO", helo)),
            Some(("PROTO", if id.esmtp { "ESMTP" } else { "SMTP" })),
            id.login.as_deref().map(|login| ("LOGIN", login)),
            Some(("ADDR", &numbers[addr.clone()])),
        ]
    };
    let sticky = || sticky.iter().copied().map(Some);
    // Each line is built once and measured as built: the usual one fits.
    let whole = line(sticky().chain(last(true)));
    if whole.len() <= XCLIENT_LINE_MAX {
        return vec![whole];
    }
    let closing = line(last(true));
    if closing.len() <= XCLIENT_LINE_MAX {
        return vec![line(sticky()), closing];
    }
    vec![line(sticky()), line(last(false))]
}

/// An XCLIENT attribute, `(NAME, value)` before xtext encoding; `None` is left out.
type Attribute<'a> = Option<(&'static str, &'a str)>;

/// One XCLIENT line of `attributes`. A value over 255 bytes once encoded would make Postfix
/// refuse the whole command, so such an attribute is encoded, found too long and taken back.
fn line<'a>(attributes: impl IntoIterator<Item = Attribute<'a>>) -> Vec<u8> {
    let mut out = String::with_capacity(XCLIENT_LINE_MAX);
    out.push_str("XCLIENT");
    for (name, value) in attributes.into_iter().flatten() {
        let attribute = out.len();
        out.push(' ');
        out.push_str(name);
        out.push('=');
        let encoded = out.len();
        xtext::encode_into(value.as_bytes(), &mut out);
        if out.len() - encoded > XCLIENT_VALUE_MAX {
            out.truncate(attribute);
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// ADDR/DESTADDR syntax: a dotted quad, or `IPV6:` and the address (a bare IPv6 address is
/// `501 5.5.4 Bad ADDR syntax`).
struct XclientAddr(IpAddr);

impl std::fmt::Display for XclientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.to_canonical() {
            IpAddr::V4(v4) => std::fmt::Display::fmt(&IpText(v4.into()), f),
            IpAddr::V6(v6) => write!(f, "IPV6:{v6}"),
        }
    }
}

/// The client and server addresses in one family, as both PROXY versions need: IPv4-mapped
/// addresses become IPv4, and if only one side is IPv6 the other is written IPv4-mapped.
fn same_family(id: &ClientIdentity) -> (SocketAddr, SocketAddr) {
    let client = SocketAddr::new(id.addr.ip().to_canonical(), id.addr.port());
    let server = SocketAddr::new(id.server.ip().to_canonical(), id.server.port());
    let as_v6 = |addr: SocketAddr| match addr.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port()),
        IpAddr::V6(_) => addr,
    };
    if client.is_ipv4() == server.is_ipv4() {
        (client, server)
    } else {
        (as_v6(client), as_v6(server))
    }
}

/// A PROXY v1 header: `PROXY TCP4|TCP6 client server cport sport\r\n`. Never `UNKNOWN`,
/// which Postfix refuses.
pub fn proxy_header_v1(id: &ClientIdentity) -> Vec<u8> {
    ppp::v1::Addresses::from(same_family(id))
        .to_string()
        .into_bytes()
}

/// A PROXY v2 header with the PROXY command over TCP, no TLVs (Postfix ignores them). Never
/// LOCAL, which would make the upstream treat relayguard itself as the client.
#[allow(
    clippy::expect_used,
    reason = "ppp fails only for payloads over 64 KiB; two socket addresses are 36 bytes at most"
)]
pub fn proxy_header_v2(id: &ClientIdentity) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        same_family(id),
    )
    .build()
    .expect("two socket addresses always fit in a PROXY v2 header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_client() -> ClientIdentity {
        ClientIdentity {
            addr: "198.51.100.7:40001".parse().unwrap(),
            server: "192.0.2.25:587".parse().unwrap(),
            name: HostName::Known("client.example".into()),
            reverse_name: HostName::Known("client.example".into()),
            helo: Some("client.example".into()),
            login: None,
            esmtp: true,
        }
    }

    fn ipv6_client() -> ClientIdentity {
        ClientIdentity {
            addr: "[2001:db8::7]:40002".parse().unwrap(),
            server: "[2001:db8::25]:25".parse().unwrap(),
            name: HostName::Unavailable,
            reverse_name: HostName::TempUnavailable,
            helo: Some("h x".into()),
            login: Some("alice+x=y@example.com".into()),
            esmtp: false,
        }
    }

    fn text(lines: Vec<Vec<u8>>) -> Vec<String> {
        lines
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn xclient_for_an_ipv4_client() {
        assert_eq!(
            text(xclient_commands(&ipv4_client())),
            [
                "XCLIENT REVERSE_NAME=client.example PORT=40001 DESTADDR=192.0.2.25 DESTPORT=587 \
              NAME=client.example HELO=client.example PROTO=ESMTP ADDR=198.51.100.7\r\n"
            ]
        );
    }

    #[test]
    fn xclient_for_an_ipv6_client_with_login_and_unknown_names() {
        assert_eq!(
            text(xclient_commands(&ipv6_client())),
            [
                "XCLIENT REVERSE_NAME=[TEMPUNAVAIL] PORT=40002 DESTADDR=IPV6:2001:db8::25 \
              DESTPORT=25 NAME=[UNAVAILABLE] HELO=h+20x PROTO=SMTP \
              LOGIN=alice+2Bx+3Dy@example.com ADDR=IPV6:2001:db8::7\r\n"
            ]
        );
    }

    #[test]
    fn xclient_without_helo_and_with_mapped_addresses() {
        let id = ClientIdentity {
            addr: "[::ffff:198.51.100.7]:1".parse().unwrap(),
            server: "[::ffff:127.0.0.1]:2525".parse().unwrap(),
            helo: None,
            esmtp: false,
            ..ipv4_client()
        };
        assert_eq!(
            text(xclient_commands(&id)),
            [
                "XCLIENT REVERSE_NAME=client.example PORT=1 DESTADDR=127.0.0.1 DESTPORT=2525 \
              NAME=client.example PROTO=SMTP ADDR=198.51.100.7\r\n"
            ]
        );
    }

    fn long_name(len: usize) -> String {
        let mut name = "a".repeat(len - ".example".len());
        for i in (60..name.len()).step_by(61) {
            name.replace_range(i..=i, ".");
        }
        name + ".example"
    }

    #[test]
    fn long_values_split_with_addr_last() {
        let name = long_name(200);
        let id = ClientIdentity {
            name: HostName::Known(name.clone()),
            reverse_name: HostName::Known(name.clone()),
            ..ipv6_client()
        };
        let lines = text(xclient_commands(&id));
        assert_eq!(
            lines,
            [
                format!(
                    "XCLIENT REVERSE_NAME={name} PORT=40002 DESTADDR=IPV6:2001:db8::25 \
                     DESTPORT=25\r\n"
                ),
                format!(
                    "XCLIENT NAME={name} HELO=h+20x PROTO=SMTP \
                     LOGIN=alice+2Bx+3Dy@example.com ADDR=IPV6:2001:db8::7\r\n"
                ),
            ]
        );
        assert!(lines.iter().all(|l| l.len() <= XCLIENT_LINE_MAX));
    }

    #[test]
    fn helo_is_dropped_when_the_last_line_would_be_too_long() {
        let name = long_name(250);
        let id = ClientIdentity {
            name: HostName::Known(name.clone()),
            reverse_name: HostName::Known(name.clone()),
            helo: Some(long_name(240)),
            login: Some("alice".into()),
            ..ipv6_client()
        };
        let lines = text(xclient_commands(&id));
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[1],
            format!("XCLIENT NAME={name} PROTO=SMTP LOGIN=alice ADDR=IPV6:2001:db8::7\r\n")
        );
        assert!(lines.iter().all(|l| l.len() <= XCLIENT_LINE_MAX));
    }

    #[test]
    fn values_over_255_encoded_bytes_are_not_sent() {
        let id = ClientIdentity {
            // 86 spaces encode to 258 bytes.
            helo: Some(" ".repeat(86)),
            login: Some("x".repeat(256)),
            ..ipv4_client()
        };
        let lines = text(xclient_commands(&id));
        assert_eq!(
            lines,
            [
                "XCLIENT REVERSE_NAME=client.example PORT=40001 DESTADDR=192.0.2.25 DESTPORT=587 \
              NAME=client.example PROTO=ESMTP ADDR=198.51.100.7\r\n"
            ]
        );
        // 85 spaces (255 bytes) still go.
        let id = ClientIdentity {
            helo: Some(" ".repeat(85)),
            ..ipv4_client()
        };
        assert!(text(xclient_commands(&id))
            .concat()
            .contains(&format!("HELO={} ", "+20".repeat(85))));
    }

    #[test]
    fn proxy_v1_headers() {
        assert_eq!(
            proxy_header_v1(&ipv4_client()),
            b"PROXY TCP4 198.51.100.7 192.0.2.25 40001 587\r\n"
        );
        assert_eq!(
            proxy_header_v1(&ipv6_client()),
            b"PROXY TCP6 2001:db8::7 2001:db8::25 40002 25\r\n"
        );
        let mixed = ClientIdentity {
            server: "[2001:db8::25]:25".parse().unwrap(),
            ..ipv4_client()
        };
        assert_eq!(
            proxy_header_v1(&mixed),
            b"PROXY TCP6 ::ffff:198.51.100.7 2001:db8::25 40001 25\r\n"
        );
        let mapped = ClientIdentity {
            addr: "[::ffff:198.51.100.7]:40001".parse().unwrap(),
            ..ipv4_client()
        };
        assert_eq!(
            proxy_header_v1(&mapped),
            b"PROXY TCP4 198.51.100.7 192.0.2.25 40001 587\r\n"
        );
    }

    #[test]
    fn proxy_v2_headers() {
        let signature = b"\r\n\r\n\x00\r\nQUIT\n";
        let mut v4 = signature.to_vec();
        v4.extend_from_slice(&[0x21, 0x11, 0, 12]);
        v4.extend_from_slice(&[198, 51, 100, 7, 192, 0, 2, 25]);
        v4.extend_from_slice(&40001u16.to_be_bytes());
        v4.extend_from_slice(&587u16.to_be_bytes());
        assert_eq!(proxy_header_v2(&ipv4_client()), v4);

        let mut v6 = signature.to_vec();
        v6.extend_from_slice(&[0x21, 0x21, 0, 36]);
        v6.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend_from_slice(
            &"2001:db8::25"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend_from_slice(&40002u16.to_be_bytes());
        v6.extend_from_slice(&25u16.to_be_bytes());
        assert_eq!(proxy_header_v2(&ipv6_client()), v6);
    }

    #[test]
    fn identity_modes_from_config_text() {
        #[derive(Deserialize)]
        struct Upstream {
            identity: IdentityMode,
        }
        for (text, mode) in [
            ("xclient", IdentityMode::Xclient),
            ("proxy-v2", IdentityMode::ProxyV2),
            ("proxy-v1", IdentityMode::ProxyV1),
            ("none", IdentityMode::None),
        ] {
            let parsed: Upstream = toml::from_str(&format!("identity = \"{text}\"")).unwrap();
            assert_eq!(parsed.identity, mode);
        }
        assert!(toml::from_str::<Upstream>("identity = \"proxy\"").is_err());
        assert!(toml::from_str::<Upstream>("identity = \"XCLIENT\"").is_err());
    }
}
