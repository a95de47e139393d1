//! Reads the HAProxy PROXY protocol header (v1 text or v2 binary) that a trusted load balancer
//! sends before the first SMTP byte, and says who the real client is.
//!
//! Parsing is ppp's; this module only frames the header on the stream, reading exactly its
//! bytes so the SMTP exchange that follows stays unread for the session. It does not write to
//! the client: on any error the caller writes [`ProxyHeaderError::reply`] (`421 4.3.0
//! {myhostname} Server local error`) and closes, as Postfix's `smtpd_upstream_proxy_protocol =
//! haproxy` does, and logs `warning: haproxy read: {error}`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::smtp::Reply;

/// The longest v1 header, CRLF included (proxy-protocol.txt section 2.1).
pub const V1_MAX_LEN: usize = 107;
/// The longest v2 header accepted, prefix included: 16 bytes, the 216 of two UNIX addresses,
/// and room for TLVs (HAProxy's own receive buffer for v2 is the same 536 bytes).
pub const V2_MAX_LEN: usize = 536;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_PREFIX_LEN: usize = 16;

/// Where a proxied connection really comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxiedAddrs {
    /// A `PROXY TCP4`/`TCP6` (v1) or v2 PROXY header: the client and the address it connected to.
    /// IPv4-mapped IPv6 addresses are given as IPv4.
    Proxied {
        client: SocketAddr,
        destination: SocketAddr,
    },
    /// A v2 LOCAL header (the proxy's own health check): the TCP peer is the client, as Postfix
    /// does. A listener that trusts the proxy's own address must think before accepting this.
    Local,
}

/// Why no usable header was read. `Display` follows Postfix's `haproxy read:` warnings where
/// there is one.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// Nothing complete arrived within the deadline (`smtpd_upstream_proxy_timeout`).
    #[error("timeout error")]
    Timeout,
    /// The peer closed the connection before the header was complete.
    #[error("lost connection after {read} bytes of header")]
    Closed { read: usize },
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[source] io::Error),
    /// The first bytes are neither `PROXY ` nor the v2 signature (e.g. the client spoke SMTP).
    #[error("unrecognized protocol header: {}", printable(.0))]
    Unrecognized(Vec<u8>),
    /// `PROXY UNKNOWN`, which Postfix 3.7 refuses.
    #[error("bad or missing protocol type: {}", printable(.0))]
    Unknown(Vec<u8>),
    /// A v1 header longer than 107 bytes without its CRLF.
    #[error("header too long: {}", printable(.0))]
    TooLong(Vec<u8>),
    /// A v1 header that ppp could not parse: bad address, port, protocol or line end.
    #[error("bad v1 header ({source}): {}", printable(.header))]
    V1 {
        header: Vec<u8>,
        source: ppp::v1::BinaryParseError,
    },
    /// A v2 header that ppp could not parse.
    #[error("bad v2 header: {0}")]
    V2(#[source] ppp::v2::ParseError),
    /// A v2 header announcing more than [`V2_MAX_LEN`] bytes.
    #[error("v2 header length {0} exceeds {V2_MAX_LEN}")]
    V2TooLong(usize),
    /// A v2 PROXY header for UNIX sockets, UDP or an unspecified family: nothing SMTP can use.
    #[error("unsupported v2 address family or protocol")]
    V2Unsupported,
}

impl ProxyHeaderError {
    /// What the client gets before the connection closes, whatever the error:
    /// `421 4.3.0 {myhostname} Server local error`, as from Postfix's smtpd.
    pub fn reply(&self, myhostname: &str) -> Reply {
        crate::smtp::replies::server_local_error(myhostname)
    }
}

/// Reads one PROXY header from `stream`, v1 or v2, within `deadline`.
///
/// Exactly the header's bytes are consumed: v1 is read up to its LF, v2 as its 16-byte
/// prefix then the length it announces, so whatever the client sent next is still in the
/// stream. On error an unknown number of bytes has been consumed; close the connection.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Duration,
) -> Result<ProxiedAddrs, ProxyHeaderError> {
    tokio::time::timeout(deadline, read_header(stream))
        .await
        .unwrap_or(Err(ProxyHeaderError::Timeout))
}

async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<ProxiedAddrs, ProxyHeaderError> {
    let mut buf = Vec::with_capacity(V2_PREFIX_LEN);
    let first = read_byte(stream, buf.len()).await?;
    buf.push(first);
    match first {
        b'P' => read_v1(stream, buf).await,
        b'\r' => read_v2(stream, buf).await,
        _ => Err(ProxyHeaderError::Unrecognized(buf)),
    }
}

async fn read_v1<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: Vec<u8>,
) -> Result<ProxiedAddrs, ProxyHeaderError> {
    // Byte by byte: the header has no length field, and reading past its LF would take the
    // client's first command away from the session. At most 107 small reads per connection.
    while buf.last() != Some(&b'\n') {
        if buf.len() < V1_PREFIX.len() && !V1_PREFIX.starts_with(&buf)
            || buf.len() >= V1_PREFIX.len() && !buf.starts_with(V1_PREFIX)
        {
            return Err(ProxyHeaderError::Unrecognized(buf));
        }
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyHeaderError::TooLong(buf));
        }
        let byte = read_byte(stream, buf.len()).await?;
        buf.push(byte);
    }
    let parsed = ppp::v1::Header::try_from(buf.as_slice());
    let addresses = match parsed {
        Ok(header) => header.addresses,
        Err(source) => {
            return Err(ProxyHeaderError::V1 {
                header: buf,
                source,
            })
        }
    };
    match addresses {
        ppp::v1::Addresses::Tcp4(a) => Ok(proxied(
            (a.source_address.into(), a.source_port),
            (a.destination_address.into(), a.destination_port),
        )),
        ppp::v1::Addresses::Tcp6(a) => Ok(proxied(
            (a.source_address.into(), a.source_port),
            (a.destination_address.into(), a.destination_port),
        )),
        ppp::v1::Addresses::Unknown => Err(ProxyHeaderError::Unknown(buf)),
    }
}

async fn read_v2<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: Vec<u8>,
) -> Result<ProxiedAddrs, ProxyHeaderError> {
    buf.resize(V2_PREFIX_LEN, 0);
    read_exact(stream, &mut buf[1..], 1).await?;
    if !buf.starts_with(ppp::v2::PROTOCOL_PREFIX) {
        return Err(ProxyHeaderError::Unrecognized(buf));
    }
    let announced = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = V2_PREFIX_LEN + announced;
    if total > V2_MAX_LEN {
        return Err(ProxyHeaderError::V2TooLong(total));
    }
    buf.resize(total, 0);
    read_exact(stream, &mut buf[V2_PREFIX_LEN..], V2_PREFIX_LEN).await?;
    let header = ppp::v2::Header::try_from(buf.as_slice()).map_err(ProxyHeaderError::V2)?;
    match (header.command, header.protocol, header.addresses) {
        (ppp::v2::Command::Local, _, _) => Ok(ProxiedAddrs::Local),
        (ppp::v2::Command::Proxy, ppp::v2::Protocol::Stream, ppp::v2::Addresses::IPv4(a)) => {
            Ok(proxied(
                (a.source_address.into(), a.source_port),
                (a.destination_address.into(), a.destination_port),
            ))
        }
        (ppp::v2::Command::Proxy, ppp::v2::Protocol::Stream, ppp::v2::Addresses::IPv6(a)) => {
            Ok(proxied(
                (a.source_address.into(), a.source_port),
                (a.destination_address.into(), a.destination_port),
            ))
        }
        _ => Err(ProxyHeaderError::V2Unsupported),
    }
}

fn proxied(client: (IpAddr, u16), destination: (IpAddr, u16)) -> ProxiedAddrs {
    ProxiedAddrs::Proxied {
        client: SocketAddr::new(client.0.to_canonical(), client.1),
        destination: SocketAddr::new(destination.0.to_canonical(), destination.1),
    }
}

async fn read_byte<S: AsyncRead + Unpin>(
    stream: &mut S,
    read_so_far: usize,
) -> Result<u8, ProxyHeaderError> {
    let mut byte = [0u8; 1];
    read_exact(stream, &mut byte, read_so_far).await?;
    Ok(byte[0])
}

async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    read_so_far: usize,
) -> Result<(), ProxyHeaderError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            Err(ProxyHeaderError::Closed { read: read_so_far })
        }
        Err(err) => Err(ProxyHeaderError::Io(err)),
    }
}

/// Header bytes as Postfix logs them: printable ASCII kept, CR and LF as `\r` and `\n`,
/// anything else as `\xHH`.
fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// True when `first_bytes` begin with a PROXY header (`PROXY ` or the v2 signature) or are a
/// non-empty beginning of one. A session on a listener that does not trust its peer uses this
/// to refuse a header instead of reading it as an SMTP command.
pub fn looks_like_proxy_header(first_bytes: &[u8]) -> bool {
    [V1_PREFIX, ppp::v2::PROTOCOL_PREFIX].iter().any(|prefix| {
        first_bytes.starts_with(prefix)
            || !first_bytes.is_empty() && prefix.starts_with(first_bytes)
    })
}

/// The peers a listener accepts a PROXY header from (`proxy_protocol.trusted` in the config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNetwork>,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNetwork>) -> Self {
        Self { networks }
    }

    /// True when `peer` is inside one of the networks. An IPv4-mapped IPv6 peer (what a
    /// dual-stack `[::]` listener reports for an IPv4 client) is matched as IPv4.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.networks.iter().any(|net| net.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_header_beginnings() {
        assert!(looks_like_proxy_header(
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
        ));
        assert!(looks_like_proxy_header(b"PROXY UNKNOWN\r\n"));
        assert!(looks_like_proxy_header(b"PRO"));
        assert!(looks_like_proxy_header(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"));
        assert!(looks_like_proxy_header(b"\r\n"));
        assert!(!looks_like_proxy_header(b""));
        assert!(!looks_like_proxy_header(b"EHLO client.example\r\n"));
        assert!(!looks_like_proxy_header(b"PROXYX"));
        assert!(!looks_like_proxy_header(b"proxy TCP4"));
        assert!(!looks_like_proxy_header(b"\r\nQUIT\r\n"));
    }

    #[test]
    fn trusts_networks_and_mapped_addresses() {
        let trusted = TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        assert!(trusted.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(trusted.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
        assert!(trusted.is_trusted("2001:db8::1".parse().unwrap()));
        assert!(!trusted.is_trusted("11.0.0.1".parse().unwrap()));
        assert!(!trusted.is_trusted("2001:db9::1".parse().unwrap()));
        assert!(!TrustedProxies::default().is_trusted("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn errors_print_like_postfix() {
        let err = ProxyHeaderError::Unknown(b"PROXY UNKNOWN\r\n".to_vec());
        assert_eq!(
            err.to_string(),
            "bad or missing protocol type: PROXY UNKNOWN\\r\\n"
        );
        assert_eq!(ProxyHeaderError::Timeout.to_string(), "timeout error");
        let err = ProxyHeaderError::Unrecognized(b"E".to_vec());
        assert_eq!(err.to_string(), "unrecognized protocol header: E");
    }

    #[test]
    fn every_error_gets_postfix_421() {
        let mut out = Vec::new();
        ProxyHeaderError::Timeout
            .reply("mx.relayguard.test")
            .write_to(&mut out);
        assert_eq!(out, b"421 4.3.0 mx.relayguard.test Server local error\r\n");
    }
}
