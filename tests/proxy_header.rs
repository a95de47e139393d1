//! The inbound PROXY header reader over real loopback sockets: v1 and v2, refusals, splits,
//! the deadline, and the first SMTP bytes left unread for the session.

// Test helpers panic on setup failures; clippy only exempts `#[test]` bodies by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use relayguard::net::proxy_header::{read_proxy_header, ProxiedAddrs, ProxyHeaderError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(5);
const EHLO: &[u8] = b"EHLO client.example\r\n";

/// What the listener side saw: the header result and every byte left after it.
async fn serve(
    chunks: Vec<Vec<u8>>,
    deadline: Duration,
) -> (Result<ProxiedAddrs, ProxyHeaderError>, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        for chunk in chunks {
            tcp.write_all(&chunk).await.unwrap();
            tcp.flush().await.unwrap();
            // Give each chunk its own segment, so the reader really sees a split.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tcp
    });
    let (mut tcp, _) = listener.accept().await.unwrap();
    let result = read_proxy_header(&mut tcp, deadline).await;
    let client_tcp = client.await.unwrap();
    drop(client_tcp);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    (result, rest)
}

async fn serve_whole(bytes: &[u8]) -> (Result<ProxiedAddrs, ProxyHeaderError>, Vec<u8>) {
    serve(vec![bytes.to_vec()], DEADLINE).await
}

fn proxied(client: &str, destination: &str) -> ProxiedAddrs {
    ProxiedAddrs::Proxied {
        client: client.parse::<SocketAddr>().unwrap(),
        destination: destination.parse::<SocketAddr>().unwrap(),
    }
}

fn with_ehlo(header: &[u8]) -> Vec<u8> {
    [header, EHLO].concat()
}

/// A v2 header written by hand from proxy-protocol.txt section 2.2, independent of ppp.
fn v2(command: u8, family_protocol: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    out.push(0x20 | command);
    out.push(family_protocol);
    let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(addresses);
    out.extend_from_slice(tlvs);
    out
}

fn v2_ipv4() -> Vec<u8> {
    let mut addrs = vec![198, 51, 100, 7, 192, 0, 2, 25];
    addrs.extend_from_slice(&40001u16.to_be_bytes());
    addrs.extend_from_slice(&25u16.to_be_bytes());
    // A NOOP TLV and an authority TLV: Postfix ignores TLVs, so do we, but they must be consumed.
    v2(
        0x1,
        0x11,
        &addrs,
        b"\x04\x00\x01\x00\x02\x00\x0bmx.example1",
    )
}

fn v2_ipv6() -> Vec<u8> {
    let client: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let server: std::net::Ipv6Addr = "2001:db8::25".parse().unwrap();
    let mut addrs = client.octets().to_vec();
    addrs.extend_from_slice(&server.octets());
    addrs.extend_from_slice(&40002u16.to_be_bytes());
    addrs.extend_from_slice(&587u16.to_be_bytes());
    v2(0x1, 0x21, &addrs, b"")
}

#[tokio::test]
async fn v1_tcp4() {
    let input = with_ehlo(b"PROXY TCP4 198.51.100.7 192.0.2.25 40001 25\r\n");
    let (result, rest) = serve_whole(&input).await;
    assert_eq!(
        result.unwrap(),
        proxied("198.51.100.7:40001", "192.0.2.25:25")
    );
    assert_eq!(rest, EHLO);
}

#[tokio::test]
async fn v1_tcp6() {
    let input = with_ehlo(b"PROXY TCP6 2001:db8::7 2001:db8::25 40002 25\r\n");
    let (result, rest) = serve_whole(&input).await;
    assert_eq!(
        result.unwrap(),
        proxied("[2001:db8::7]:40002", "[2001:db8::25]:25")
    );
    assert_eq!(rest, EHLO);
}

#[tokio::test]
async fn v1_tcp6_with_a_mapped_ipv4_gives_ipv4() {
    let input = with_ehlo(b"PROXY TCP6 ::ffff:198.51.100.7 ::ffff:192.0.2.25 1 25\r\n");
    let (result, rest) = serve_whole(&input).await;
    assert_eq!(result.unwrap(), proxied("198.51.100.7:1", "192.0.2.25:25"));
    assert_eq!(rest, EHLO);
}

#[tokio::test]
async fn v1_of_maximum_length() {
    let max = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(max.len(), 104);
    let (result, rest) = serve_whole(&with_ehlo(max)).await;
    assert!(matches!(result.unwrap(), ProxiedAddrs::Proxied { .. }));
    assert_eq!(rest, EHLO);
}

#[tokio::test]
async fn v2_ipv4_with_tlvs() {
    let (result, rest) = serve_whole(&with_ehlo(&v2_ipv4())).await;
    assert_eq!(
        result.unwrap(),
        proxied("198.51.100.7:40001", "192.0.2.25:25")
    );
    assert_eq!(rest, EHLO);
}

#[tokio::test]
async fn v2_ipv6_header() {
    let (result, rest) = serve_whole(&with_ehlo(&v2_ipv6())).await;
    assert_eq!(
        result.unwrap(),
        proxied("[2001:db8::7]:40002", "[2001:db8::25]:587")
    );
    assert_eq!(rest, EHLO);
}

#[tokio::test]
async fn v2_local() {
    // LOCAL with no addresses, as HAProxy's health checks send it.
    let (result, rest) = serve_whole(&with_ehlo(&v2(0x0, 0x00, b"", b""))).await;
    assert_eq!(result.unwrap(), ProxiedAddrs::Local);
    assert_eq!(rest, EHLO);
}

#[tokio::test]
async fn v2_unix_and_udp_are_refused() {
    let unix = v2(0x1, 0x31, &[0u8; 216], b"");
    let (result, _) = serve_whole(&unix).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::V2Unsupported)),
        "{result:?}"
    );
    let udp = v2(0x1, 0x12, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2], b"");
    let (result, _) = serve_whole(&udp).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::V2Unsupported)),
        "{result:?}"
    );
}

#[tokio::test]
async fn v2_too_long_is_refused_before_reading_it() {
    let mut header = v2(0x1, 0x11, &[0u8; 12], b"");
    header[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let (result, rest) = serve_whole(&header).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::V2TooLong(65551))),
        "{result:?}"
    );
    assert_eq!(rest, vec![0u8; 12], "the announced body was not read");
}

#[tokio::test]
async fn v2_bad_version_is_refused() {
    let mut header = v2_ipv4();
    header[12] = 0x11;
    let (result, _) = serve_whole(&header).await;
    assert!(matches!(result, Err(ProxyHeaderError::V2(_))), "{result:?}");
}

#[tokio::test]
async fn proxy_unknown_is_refused() {
    let (result, _) = serve_whole(b"PROXY UNKNOWN\r\n").await;
    let err = result.unwrap_err();
    assert!(matches!(err, ProxyHeaderError::Unknown(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "bad or missing protocol type: PROXY UNKNOWN\\r\\n"
    );
    let (result, _) = serve_whole(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n").await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Unknown(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn smtp_instead_of_a_header_is_refused_at_once() {
    let (result, rest) = serve(vec![EHLO.to_vec()], DEADLINE).await;
    let err = result.unwrap_err();
    assert!(matches!(err, ProxyHeaderError::Unrecognized(_)), "{err:?}");
    assert_eq!(err.to_string(), "unrecognized protocol header: E");
    assert_eq!(rest, &EHLO[1..]);
    // A line that starts like the prefix but is not it.
    let (result, _) = serve_whole(b"PROXIMITY\r\n").await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Unrecognized(_))),
        "{result:?}"
    );
    let (result, _) = serve_whole(b"\r\n\r\nQUIT\r\nxxxxxxxx").await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Unrecognized(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn malformed_v1_headers_are_refused() {
    let cases: &[&[u8]] = &[
        b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n",
        b"PROXY TCP4 198.51.100.7 192.0.2.25 040001 25\r\n",
        b"PROXY TCP4 198.51.100.7 192.0.2.25 65536 25\r\n",
        b"PROXY TCP4 ::ffff:198.51.100.7 192.0.2.25 1 25\r\n",
        b"PROXY TCP4 2001:db8::7 192.0.2.25 1 25\r\n",
        b"PROXY TCP6 198.51.100.7 192.0.2.25 1 25\r\n",
        b"PROXY TCP4 198.51.100.7 192.0.2.25 1 25\n",
        b"PROXY TCP4 198.51.100.7 192.0.2.25 1\r\n",
        b"PROXY TCP4  198.51.100.7 192.0.2.25 1 25\r\n",
        b"PROXY tcp4 198.51.100.7 192.0.2.25 1 25\r\n",
        b"PROXY UDP4 198.51.100.7 192.0.2.25 1 25\r\n",
    ];
    for case in cases {
        let (result, _) = serve_whole(case).await;
        assert!(
            matches!(result, Err(ProxyHeaderError::V1 { .. })),
            "{}: {result:?}",
            case.escape_ascii()
        );
    }
}

#[tokio::test]
async fn v1_without_line_end_stops_at_107_bytes() {
    let mut input = b"PROXY TCP6 ".to_vec();
    input.resize(200, b'1');
    let (result, rest) = serve_whole(&input).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::TooLong(_))),
        "{result:?}"
    );
    assert_eq!(rest.len(), 200 - 107);
}

#[tokio::test]
async fn headers_split_into_small_writes() {
    let cases = [
        (
            b"PROXY TCP4 198.51.100.7 192.0.2.25 40001 25\r\n".to_vec(),
            proxied("198.51.100.7:40001", "192.0.2.25:25"),
        ),
        (v2_ipv4(), proxied("198.51.100.7:40001", "192.0.2.25:25")),
        (
            v2_ipv6(),
            proxied("[2001:db8::7]:40002", "[2001:db8::25]:587"),
        ),
    ];
    for (header, expected) in cases {
        for size in [1, 3, 7] {
            let input = with_ehlo(&header);
            let chunks = input.chunks(size).map(<[u8]>::to_vec).collect();
            let (result, rest) = serve(chunks, DEADLINE).await;
            assert_eq!(result.unwrap(), expected, "chunks of {size}");
            assert_eq!(rest, EHLO, "chunks of {size}");
        }
    }
}

#[tokio::test]
async fn silence_times_out() {
    let started = std::time::Instant::now();
    let (result, _) = serve(vec![], Duration::from_millis(200)).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Timeout)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_partial_header_times_out_as_a_whole() {
    // The deadline covers the whole header, not each read: a trickle cannot hold the slot.
    let (result, _) = serve(
        vec![b"PROXY TCP4 ".to_vec(), b"198.51".to_vec()],
        Duration::from_millis(200),
    )
    .await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Timeout)),
        "{result:?}"
    );
}

#[tokio::test]
async fn close_mid_header_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (mut server, _) = listener.accept().await.unwrap();
    client.write_all(b"PROXY TCP4 1").await.unwrap();
    drop(client);
    let result = read_proxy_header(&mut server, DEADLINE).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Closed { read: 12 })),
        "{result:?}"
    );
}

/// An in-memory stream that hands out its bytes in the given pieces, one piece per read.
struct Pieces {
    pieces: std::collections::VecDeque<Vec<u8>>,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(mut piece) = self.pieces.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                self.pieces.push_front(piece.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn split_at(input: &[u8], cuts: &[usize]) -> Pieces {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = std::collections::VecDeque::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        // An empty read means end of stream, so a repeated cut must not make one.
        if cut > start {
            pieces.push_back(input[start..cut].to_vec());
        }
        start = cut;
    }
    Pieces { pieces }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_split_reads_the_same_header_and_leaves_the_rest(
        which in 0usize..3,
        cuts in proptest::collection::vec(0usize..200, 0..12),
    ) {
        let header = match which {
            0 => b"PROXY TCP6 2001:db8::7 2001:db8::25 40002 25\r\n".to_vec(),
            1 => v2_ipv4(),
            _ => v2_ipv6(),
        };
        let input = with_ehlo(&header);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut stream = split_at(&input, &cuts);
        let (result, rest) = runtime.block_on(async {
            let result = read_proxy_header(&mut stream, DEADLINE).await;
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
            (result, rest)
        });
        prop_assert!(matches!(result, Ok(ProxiedAddrs::Proxied { .. })), "{:?}", result);
        prop_assert_eq!(rest, EHLO.to_vec());
    }
}
