//! The scanner in chunk framing (BDAT): the DATA line rules without a terminator, chunk and read
//! boundaries invisible, and the DATA body it writes for an upstream without CHUNKING.

use super::tests::{body_bytes, long_bodies, modes};
use super::*;
use proptest::prelude::*;

/// What a session sends upstream for a chunked message, and the violation it is told of.
#[derive(Debug, PartialEq)]
struct Chunked {
    forwarded: Vec<u8>,
    violation: Option<Violation>,
}

/// Feeds `content` as pieces cut at `cuts` (chunk ends and reads alike), then finishes.
fn feed_chunks(mut scanner: DotScanner, content: &[u8], cuts: &[usize]) -> Chunked {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (content.len() + 1)).collect();
    bounds.push(content.len());
    bounds.sort_unstable();
    let (mut start, mut out, mut forwarded) = (0, Vec::new(), Vec::new());
    for end in bounds {
        let piece = &content[start..end];
        start = end;
        let s = scanner.scan(piece, &mut out);
        assert_eq!(s.consumed, piece.len(), "chunk framing takes every byte");
        assert!(!s.end);
        forwarded.extend_from_slice(&piece[..s.forward]);
        forwarded.append(&mut out);
    }
    let violation = scanner.finish(&mut out);
    forwarded.append(&mut out);
    Chunked {
        forwarded,
        violation,
    }
}

fn whole(mode: DotMode, stuff: bool, content: &[u8]) -> Chunked {
    feed_chunks(DotScanner::chunks(mode, stuff), content, &[])
}

/// The first violation of `content` under `Reject`, found the simple way.
fn reference_violation(content: &[u8], max_line: usize) -> Option<Violation> {
    let mut line = 0;
    for (i, &b) in content.iter().enumerate() {
        match b {
            0 => return Some(Violation::Nul),
            b'\r' if content.get(i + 1) != Some(&b'\n') => return Some(Violation::BareCr),
            b'\n' if i == 0 || content[i - 1] != b'\r' => return Some(Violation::BareLf),
            b'\r' | b'\n' => line = 0,
            _ => {
                line += 1;
                if line > max_line {
                    return Some(Violation::LineTooLong);
                }
            }
        }
    }
    None
}

#[test]
fn a_crlf_split_across_chunks_is_a_line_end() {
    let mut s = DotScanner::chunks(DotMode::Reject, false);
    let mut out = Vec::new();
    let first = s.scan(b"line\r", &mut out);
    assert_eq!(
        (first.consumed, first.forward, first.violation),
        (5, 0, None)
    );
    // The CR waits for the byte that says what it is.
    assert_eq!(out, b"line");
    let second = s.scan(b"\nnext\r\n", &mut out);
    assert_eq!((second.consumed, second.violation), (7, None));
    assert_eq!(s.finish(&mut out), None);
    assert_eq!(out, b"line\r\nnext\r\n");
}

#[test]
fn a_dot_line_is_text_and_smuggling_is_refused_as_over_data() {
    assert_eq!(
        whole(DotMode::Reject, false, b"a\r\n.\r\nMAIL FROM:<x@y>\r\n"),
        Chunked {
            forwarded: b"a\r\n.\r\nMAIL FROM:<x@y>\r\n".to_vec(),
            violation: None
        }
    );
    let o = whole(DotMode::Reject, false, b"line\n.\nMAIL FROM:<x@y>\r\n");
    assert_eq!(o.violation, Some(Violation::BareLf));
    assert_eq!(o.forwarded, b"line");
    let nul = whole(DotMode::Normalize, false, b"a\r\n.\0\r\n");
    assert_eq!(nul.violation, Some(Violation::Nul));
    assert_eq!(nul.forwarded, b"a\r\n.");
}

#[test]
fn a_cr_ending_the_message_is_bare() {
    assert_eq!(
        whole(DotMode::Reject, false, b"end\r").violation,
        Some(Violation::BareCr)
    );
    let cut = feed_chunks(DotScanner::chunks(DotMode::Reject, false), b"a\rb", &[2]);
    assert_eq!(cut.violation, Some(Violation::BareCr));
    // Normalizing, it is a line end, wherever the chunk ended.
    for cuts in [&[][..], &[2], &[4]] {
        let n = feed_chunks(
            DotScanner::chunks(DotMode::Normalize, false),
            b"a\rb\nc\r",
            cuts,
        );
        assert_eq!(n.forwarded, b"a\r\nb\r\nc\r\n", "{cuts:?}");
        assert_eq!(n.violation, None);
    }
}

#[test]
fn line_length_counts_across_chunks() {
    let line = vec![b'x'; BODY_LINE_MAX];
    let at_limit = feed_chunks(DotScanner::chunks(DotMode::Reject, false), &line, &[500]);
    assert_eq!(at_limit.violation, None);
    let mut over = line.clone();
    over.push(b'x');
    let o = feed_chunks(DotScanner::chunks(DotMode::Reject, false), &over, &[500]);
    assert_eq!(o.violation, Some(Violation::LineTooLong));
    assert_eq!(o.forwarded.len(), BODY_LINE_MAX);
}

#[test]
fn stuffing_makes_a_data_body() {
    let o = feed_chunks(
        DotScanner::chunks(DotMode::Reject, true),
        b".a\r\n.\r\n..b\r\nend",
        &[1, 4, 5],
    );
    assert_eq!(o.forwarded, b"..a\r\n..\r\n...b\r\nend\r\n.\r\n");
    assert_eq!(o.violation, None);
    assert_eq!(whole(DotMode::Reject, true, b"").forwarded, b".\r\n");
    assert_eq!(
        whole(DotMode::Reject, true, b"x\r\n").forwarded,
        b"x\r\n.\r\n"
    );
    // A line begun by a normalized line end is stuffed too.
    let n = whole(DotMode::Normalize, true, b"a\n.\r.");
    assert_eq!(n.forwarded, b"a\r\n..\r\n..\r\n.\r\n");
    // Nothing of the end of data follows a violation.
    let v = whole(DotMode::Reject, true, b"a\r\n.\nb");
    assert_eq!(
        (v.forwarded, v.violation),
        (b"a\r\n..".to_vec(), Some(Violation::BareLf))
    );
}

fn clean_content() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => Just(&b"a"[..]),
            3 => Just(&b"."[..]),
            3 => Just(&b"\r\n"[..]),
        ],
        0..200,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    /// Chunk ends and read ends change nothing: not the bytes sent, not the verdict.
    #[test]
    fn any_chunking_gives_the_same_result(
        input in body_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        mode in modes(),
        stuff in any::<bool>(),
    ) {
        let mk = || DotScanner::chunks(mode, stuff).with_max_line(40);
        prop_assert_eq!(
            feed_chunks(mk(), &input, &cuts),
            feed_chunks(mk(), &input, &[])
        );
    }

    /// Chunks are judged by DATA's rules: the first bare CR, bare LF, NUL or long line, and
    /// what goes upstream is the content up to it, untouched.
    #[test]
    fn reject_finds_the_first_violation_and_forwards_up_to_it(
        input in body_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let o = feed_chunks(DotScanner::chunks(DotMode::Reject, false).with_max_line(40), &input, &cuts);
        prop_assert_eq!(o.violation, reference_violation(&input, 40));
        prop_assert!(input.starts_with(&o.forwarded));
        if o.violation.is_none() {
            prop_assert_eq!(&o.forwarded, &input);
        }
    }

    /// The DATA body written for a leg without CHUNKING is one the DATA scanner takes whole:
    /// it ends exactly at its end, and unstuffed it is the content with a final line end.
    #[test]
    fn stuffed_output_is_exactly_one_data_body(
        input in clean_content(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        mode in modes(),
    ) {
        let o = feed_chunks(DotScanner::chunks(mode, true), &input, &cuts);
        prop_assert_eq!(o.violation, None);
        let mut data = DotScanner::new(DotMode::Reject);
        let scan = data.scan(&o.forwarded, &mut Vec::new());
        prop_assert_eq!(
            (scan.consumed, scan.forward, scan.end, scan.violation),
            (o.forwarded.len(), o.forwarded.len(), true, None)
        );
        let body = &o.forwarded[..o.forwarded.len() - 3];
        let mut unstuffed = Vec::new();
        for line in body.split_inclusive(|b| *b == b'\n') {
            unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        let mut expected = input.clone();
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(unstuffed, expected);
    }

    /// Normalized chunks carry no bare line end, whatever came in, and a DATA body made of them
    /// has exactly one end.
    #[test]
    fn normalized_chunks_are_safe(
        input in body_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        stuff in any::<bool>(),
    ) {
        let o = feed_chunks(DotScanner::chunks(DotMode::Normalize, stuff), &input, &cuts);
        if o.violation.is_none() {
            for (i, &b) in o.forwarded.iter().enumerate() {
                match b {
                    b'\r' => prop_assert_eq!(o.forwarded.get(i + 1), Some(&b'\n')),
                    b'\n' => prop_assert!(i > 0 && o.forwarded[i - 1] == b'\r'),
                    _ => {}
                }
            }
        }
        if stuff && o.violation.is_none() {
            let scan = DotScanner::new(DotMode::Reject).scan(&o.forwarded, &mut Vec::new());
            prop_assert_eq!((scan.consumed, scan.end), (o.forwarded.len(), true));
        }
    }
}

proptest! {
    #[test]
    fn the_fast_lane_changes_nothing_in_chunks(
        input in long_bodies(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        stuff in any::<bool>(),
    ) {
        let mk = |fast: bool| {
            let mut s = DotScanner::chunks(DotMode::Reject, stuff);
            s.fast_lane &= fast;
            s
        };
        prop_assert_eq!(feed_chunks(mk(true), &input, &cuts), feed_chunks(mk(false), &input, &cuts));
    }
}
