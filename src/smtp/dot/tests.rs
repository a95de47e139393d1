use super::*;
use proptest::prelude::*;

/// What a session would have sent upstream and where it would have resumed reading commands.
#[derive(Debug, PartialEq)]
struct Outcome {
    forwarded: Vec<u8>,
    /// Absolute position right after the real end of data.
    end: Option<usize>,
    violation: Option<Violation>,
}

/// Feeds `input` through a growing buffer cut at `cuts`, as a session reading a socket would.
fn feed(scanner: &mut DotScanner, input: &[u8], cuts: &[usize]) -> Outcome {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut forwarded = Vec::new();
    let mut taken = 0;
    let mut start = 0;
    let mut violation = None;
    for end in bounds {
        buf.extend_from_slice(&input[start..end]);
        start = end;
        let s = scanner.scan(&buf, &mut out);
        assert!(s.forward <= s.consumed);
        forwarded.extend_from_slice(&buf[..s.forward]);
        forwarded.append(&mut out);
        buf.drain(..s.consumed);
        taken += s.consumed;
        violation = s.violation;
        if s.end {
            return Outcome {
                forwarded,
                end: Some(taken),
                violation,
            };
        }
        // Only a final CR may be left over for the next read.
        assert!(buf.len() <= 1, "left {buf:?}");
        assert!(buf.is_empty() || buf == b"\r");
    }
    Outcome {
        forwarded,
        end: None,
        violation,
    }
}

fn scan_all(mode: DotMode, input: &[u8]) -> Outcome {
    feed(&mut DotScanner::new(mode), input, &[])
}

/// The stream the upstream sees, with the DATA line's CRLF in front, has CR only before LF,
/// LF only after CR, no NUL, and `CRLF.CRLF` at most once, as its very end.
fn assert_safe_for_upstream(forwarded: &[u8], ended: bool) {
    let mut seen = b"\r\n".to_vec();
    seen.extend_from_slice(forwarded);
    for (i, &b) in seen.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(seen.get(i + 1), Some(&b'\n'), "bare CR in {seen:?}"),
            b'\n' => assert_eq!(seen[i - 1], b'\r', "bare LF in {seen:?}"),
            0 => panic!("NUL forwarded in {seen:?}"),
            _ => {}
        }
    }
    let ends = seen.windows(5).filter(|w| w == b"\r\n.\r\n").count();
    if ended {
        assert_eq!(ends, 1, "{seen:?}");
        assert!(seen.ends_with(b"\r\n.\r\n"));
    } else {
        assert_eq!(ends, 0, "fake end forwarded in {seen:?}");
    }
}

#[test]
fn clean_body_is_forwarded_verbatim_and_stops_at_the_end() {
    let input = b"Subject: x\r\n\r\n..stuffed\r\nline\r\n.\r\nQUIT\r\n";
    let o = scan_all(DotMode::Reject, input);
    let end = input.len() - b"QUIT\r\n".len();
    assert_eq!(o.end, Some(end));
    assert_eq!(o.violation, None);
    assert_eq!(o.forwarded, &input[..end]);
    assert_eq!(scan_all(DotMode::Normalize, input), o);
}

#[test]
fn dot_first_is_an_empty_message() {
    let mut s = DotScanner::new(DotMode::Reject);
    let r = s.scan(b".\r\nQUIT\r\n", &mut Vec::new());
    assert_eq!(
        r,
        Scan {
            consumed: 3,
            forward: 3,
            end: true,
            violation: None
        }
    );
    assert_eq!(s.body_bytes(), 0);
    // A finished scanner takes nothing more.
    let again = s.scan(b"QUIT\r\n", &mut Vec::new());
    assert_eq!((again.consumed, again.forward, again.end), (0, 0, true));
}

#[test]
fn counts_body_bytes() {
    let mut s = DotScanner::new(DotMode::Reject);
    s.scan(b"abc\r\n..x\r\n.\r\n", &mut Vec::new());
    assert_eq!(s.body_bytes(), 10);
    s.reset();
    assert!(!s.is_done());
    assert_eq!(s.body_bytes(), 0);
}

#[test]
fn final_cr_waits_for_the_next_read() {
    let mut s = DotScanner::new(DotMode::Reject);
    let r = s.scan(b"abc\r", &mut Vec::new());
    assert_eq!((r.consumed, r.forward, r.end), (3, 3, false));
    let r = s.scan(b"\r\n.\r", &mut Vec::new());
    assert_eq!((r.consumed, r.forward, r.end), (3, 3, false));
    let r = s.scan(b"\r\n", &mut Vec::new());
    assert_eq!((r.consumed, r.forward, r.end), (2, 2, true));
}

/// Every CR/LF/NUL variant around the dot, after go-smtp's TestServer_smtpSmuggling and
/// smtp-proto's data_receiver test. Each is followed by an injected command, then the real end.
const ATTACKS: &[(&str, &[u8], Violation)] = &[
    ("LF.LF", b"\n.\n", Violation::BareLf),
    ("LF.CRLF", b"\n.\r\n", Violation::BareLf),
    ("CRLF.LF", b"\r\n.\n", Violation::BareLf),
    ("CR.CR", b"\r.\r", Violation::BareCr),
    ("CR.CRLF", b"\r.\r\n", Violation::BareCr),
    ("CRLF.CR", b"\r\n.\r", Violation::BareCr),
    ("LF.CR", b"\n.\r", Violation::BareLf),
    ("CR.LF", b"\r.\n", Violation::BareCr),
    ("CRLF.CRCRLF", b"\r\n.\r\r\n", Violation::BareCr),
    ("CRCRLF.CRCRLF", b"\r\r\n.\r\r\n", Violation::BareCr),
    ("CRLF LF.CRLF", b"\r\n\n.\r\n", Violation::BareLf),
    ("CRLF.LF CRLF", b"\r\n.\n\r\n", Violation::BareLf),
    ("CRLF.CR NUL LF", b"\r\n.\r\0\n", Violation::BareCr),
    ("CRLF.NUL CRLF", b"\r\n.\0\r\n", Violation::Nul),
    ("CRLF NUL.CRLF", b"\r\n\0.\r\n", Violation::Nul),
    ("CRLF.CRLF NUL", b"\r\n.\r\x00\r\n", Violation::BareCr),
    ("LF LF.LF LF", b"\n\n.\n\n", Violation::BareLf),
    ("CR CR.CR CR", b"\r\r.\r\r", Violation::BareCr),
];

fn attack_body(attack: &[u8]) -> (Vec<u8>, usize) {
    let mut input = b"Subject: x\r\n\r\nline1".to_vec();
    input.extend_from_slice(attack);
    input.extend_from_slice(b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<v@local.test>\r\n");
    input.extend_from_slice(b"DATA\r\n.\r\n");
    let end = input.len();
    input.extend_from_slice(b"QUIT\r\n");
    (input, end)
}

#[test]
fn smuggling_attacks_are_refused_before_the_fake_end_is_forwarded() {
    for &(name, attack, expected) in ATTACKS {
        let (input, end) = attack_body(attack);
        for cuts in [vec![], (0..input.len()).collect::<Vec<_>>()] {
            let o = feed(&mut DotScanner::new(DotMode::Reject), &input, &cuts);
            assert_eq!(o.violation, Some(expected), "{name}");
            assert_eq!(o.end, Some(end), "{name}: must resync at the real end");
            assert_safe_for_upstream(&o.forwarded, false);
            assert!(
                !o.forwarded.windows(4).any(|w| w == b"MAIL"),
                "{name}: bytes past the fake end were forwarded"
            );
            assert!(input.starts_with(&o.forwarded), "{name}: not verbatim");
        }
    }
}

#[test]
fn smuggling_attacks_are_neutralised_when_normalizing() {
    for &(name, attack, _) in ATTACKS {
        let (input, end) = attack_body(attack);
        let o = scan_all(DotMode::Normalize, &input);
        assert_eq!(o.end, Some(end), "{name}");
        if attack.contains(&0) {
            assert_eq!(o.violation, Some(Violation::Nul), "{name}");
            assert_safe_for_upstream(&o.forwarded, false);
        } else {
            assert_eq!(o.violation, None, "{name}");
            // Exactly one end, the real one; the injected command stays inside the body.
            assert_safe_for_upstream(&o.forwarded, true);
            assert!(o.forwarded.windows(4).any(|w| w == b"MAIL"), "{name}");
        }
    }
}

#[test]
fn normalize_rewrites_bare_line_ends_and_stuffs_new_line_starts() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"a\nb\r\n.\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\rb\r\n.\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\n.\nb\r\n.\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\n.x\r\n.\r\n", b"a\r\n..x\r\n.\r\n"),
        (b"a\r\n.\rb\r\n.\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r\n.\nb\r\n.\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r\n..x\r\n.\r\n", b"a\r\n..x\r\n.\r\n"),
        (b"\n.\r\n.\r\n", b"\r\n..\r\n.\r\n"),
    ];
    for (input, expected) in cases {
        let o = scan_all(DotMode::Normalize, input);
        assert_eq!(
            o.forwarded,
            *expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(o.end, Some(input.len()));
        assert_eq!(o.violation, None);
    }
}

#[test]
fn a_nul_just_before_the_real_end_still_ends_the_message() {
    let input = b"line\0\r\n.\r\nMAIL FROM:<a@b.example>\r\n";
    let o = scan_all(DotMode::Reject, input);
    assert_eq!(o.violation, Some(Violation::Nul));
    assert_eq!(o.end, Some(10));
    assert_eq!(o.forwarded, b"line");
}

#[test]
fn body_line_limit_is_998_octets() {
    let mut ok = vec![b'x'; 998];
    ok.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(scan_all(DotMode::Reject, &ok).violation, None);
    let mut long = vec![b'x'; 999];
    long.extend_from_slice(b"\r\n.\r\n");
    let o = scan_all(DotMode::Reject, &long);
    assert_eq!(o.violation, Some(Violation::LineTooLong));
    assert_eq!(o.forwarded.len(), 998);
    assert_eq!(o.end, Some(long.len()));
    let off = feed(
        &mut DotScanner::new(DotMode::Reject).with_max_line(usize::MAX),
        &long,
        &[],
    );
    assert_eq!(off.violation, None);
}

#[test]
fn size_limit_stops_forwarding_at_the_limit() {
    let input = b"0123456789\r\n0123456789\r\n0123456789\r\n.\r\n";
    let mut s = DotScanner::new(DotMode::Reject).with_size_limit(20);
    let o = feed(&mut s, input, &[]);
    assert_eq!(o.violation, Some(Violation::TooBig));
    assert_eq!(o.forwarded, b"0123456789\r\n01234567");
    assert_eq!(o.end, Some(input.len()));
    let mut exact = DotScanner::new(DotMode::Reject).with_size_limit(36);
    assert_eq!(feed(&mut exact, input, &[]).violation, None);
}

#[test]
fn violation_replies() {
    let host = "mx.relayguard.test";
    let text = |v: Violation| v.reply(host).to_string();
    assert_eq!(
        text(Violation::BareLf),
        "550 5.5.2 mx.relayguard.test Error: bare <LF> received"
    );
    assert_eq!(
        text(Violation::BareCr),
        "550 5.5.2 mx.relayguard.test Error: bare <CR> received"
    );
    assert_eq!(
        text(Violation::Nul),
        "550 5.5.2 mx.relayguard.test Error: NUL character received"
    );
    assert_eq!(
        text(Violation::LineTooLong),
        "550 5.5.2 mx.relayguard.test Error: message line too long"
    );
    assert_eq!(
        text(Violation::TooBig),
        "552 5.3.4 Error: message file too big"
    );
}

pub(super) fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => Just(b'a'),
            3 => Just(b'.'),
            3 => Just(b'\r'),
            3 => Just(b'\n'),
            1 => Just(0u8),
            1 => any::<u8>(),
        ],
        0..300,
    )
}

pub(super) fn modes() -> impl Strategy<Value = DotMode> {
    prop_oneof![Just(DotMode::Reject), Just(DotMode::Normalize)]
}

proptest! {
    #[test]
    fn any_split_gives_the_same_result(
        input in body_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        mode in modes(),
    ) {
        let mk = || DotScanner::new(mode).with_max_line(40).with_size_limit(200);
        let whole = feed(&mut mk(), &input, &[]);
        let split = feed(&mut mk(), &input, &cuts);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn nothing_unsafe_ever_reaches_the_upstream(
        input in body_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        mode in modes(),
    ) {
        let o = feed(&mut DotScanner::new(mode).with_max_line(40), &input, &cuts);
        assert_safe_for_upstream(&o.forwarded, o.end.is_some() && o.violation.is_none());
        if mode == DotMode::Reject {
            prop_assert!(input.starts_with(&o.forwarded));
            if let (Some(end), None) = (o.end, o.violation) {
                prop_assert_eq!(&o.forwarded[..], &input[..end]);
            }
        }
        // The end is the first real CRLF.CRLF, wherever the reads were cut.
        let mut seen = b"\r\n".to_vec();
        seen.extend_from_slice(&input);
        let first = seen.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 3);
        prop_assert_eq!(o.end, first);
    }

    #[test]
    fn normalize_equals_reject_on_clean_input(input in body_bytes()) {
        let reject = scan_all(DotMode::Reject, &input);
        // Unfinished input may differ: Normalize holds back a line-start dot until it knows
        // whether the line is the end.
        if reject.violation.is_none() && reject.end.is_some() {
            prop_assert_eq!(scan_all(DotMode::Normalize, &input), reject);
        }
    }
}

/// Mostly clean lines, so the fast lane sees whole blocks, with every kind of trouble mixed in.
pub(super) fn long_bodies() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            40 => Just(&b"abcdefghij"[..]),
            8 => Just(&b"\r\n"[..]),
            2 => Just(&b"\r\n."[..]),
            1 => Just(&b"."[..]),
            1 => Just(&b"\r"[..]),
            1 => Just(&b"\n"[..]),
            1 => Just(&b"\0"[..]),
            1 => Just(&b"\r\n.\r\n"[..]),
        ],
        0..400,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    /// The fast lane decides nothing: with it and without it, every split of every body gives
    /// the same forwarded bytes, end and violation.
    #[test]
    fn the_fast_lane_changes_no_result(
        input in long_bodies(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max_line in prop_oneof![Just(64usize), Just(100), Just(BODY_LINE_MAX)],
        size_limit in prop_oneof![Just(0u64), 0..4000u64],
    ) {
        let mk = |fast: bool| {
            let mut s = DotScanner::new(DotMode::Reject)
                .with_max_line(max_line)
                .with_size_limit(size_limit);
            s.fast_lane &= fast;
            s
        };
        let byte_wise = feed(&mut mk(false), &input, &cuts);
        prop_assert_eq!(feed(&mut mk(true), &input, &cuts), byte_wise);
    }
}

#[test]
fn the_fast_lane_is_used_where_the_cpu_allows() {
    assert_eq!(
        DotScanner::new(DotMode::Reject).fast_lane,
        blocks::available()
    );
    assert!(!DotScanner::new(DotMode::Normalize).fast_lane);
    assert!(!DotScanner::new(DotMode::Reject).with_max_line(40).fast_lane);
}
