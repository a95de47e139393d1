//! Reads replies from the upstream: `250-...`/`250 ...` lines into one [`Reply`], bounded in
//! line length and line count, so a hostile or broken upstream cannot grow our memory.
//!
//! Stateless: the caller keeps unread bytes and calls again after the next read; "no complete
//! reply yet" is `Ok(None)`. A reply of well-formed lines written back with
//! [`Reply::write_to`] is byte-for-byte what the upstream sent (text kept as given, enhanced
//! status split off only when every line carries the same canonical one).

use std::borrow::Cow;

use memchr::memchr;

use super::reply::{EnhancedStatus, Reply};

/// Longest reply line accepted, line end included (Postfix's `line_length_limit`; RFC 5321
/// 4.5.3.1.5 asks for 512 but real servers send longer multi-line texts).
pub const REPLY_LINE_MAX: usize = 2048;

/// Most lines in one reply (an EHLO reply has about 15).
pub const REPLY_LINES_MAX: usize = 100;

/// Why the upstream's bytes are not a reply. Any of these means the upstream connection is no
/// longer in a known state: the session drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line does not start with a three-digit code and a separator")]
    Malformed,
    #[error("reply lines {first} and {later} have different codes")]
    CodeMismatch { first: u16, later: u16 },
    #[error("reply line longer than {REPLY_LINE_MAX} octets")]
    LineTooLong,
    #[error("reply longer than {REPLY_LINES_MAX} lines")]
    TooManyLines,
}

/// Parses the first reply in `buf`. `Ok(Some((reply, consumed)))` when it is complete (drop
/// `consumed` bytes; pipelined replies behind it stay), `Ok(None)` when more bytes are needed.
/// Lines end in CRLF or, leniently, a bare LF.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut count = 0;
    let mut code = None;
    loop {
        let rest = &buf[pos..];
        let window = rest.get(..REPLY_LINE_MAX).unwrap_or(rest);
        let Some(lf) = memchr(b'\n', window) else {
            if rest.len() >= REPLY_LINE_MAX {
                return Err(ReplyError::LineTooLong);
            }
            // Fail early on garbage instead of waiting for a line end that may never come.
            head(rest, true)?;
            return Ok(None);
        };
        let line = strip_cr(&rest[..lf]);
        let (c, last) = head(line, false)?.ok_or(ReplyError::Malformed)?;
        match code {
            None => code = Some(c),
            Some(first) if first != c => return Err(ReplyError::CodeMismatch { first, later: c }),
            Some(_) => {}
        }
        count += 1;
        pos += lf + 1;
        if last {
            break;
        }
        if count >= REPLY_LINES_MAX {
            return Err(ReplyError::TooManyLines);
        }
    }
    let code = code.ok_or(ReplyError::Malformed)?;
    Ok(Some((build(code, &buf[..pos]), pos)))
}

/// The code and whether this is the last line. With `partial`, an incomplete line is checked
/// only as far as it goes and `Ok(None)` means "fine so far".
fn head(line: &[u8], partial: bool) -> Result<Option<(u16, bool)>, ReplyError> {
    for (i, &b) in line.iter().take(3).enumerate() {
        let ok = match i {
            0 => (b'2'..=b'5').contains(&b),
            _ => b.is_ascii_digit(),
        };
        if !ok {
            return Err(ReplyError::Malformed);
        }
    }
    let last = match line.get(3) {
        None if partial => return Ok(None),
        None if line.len() == 3 => true,
        None => return Err(ReplyError::Malformed),
        Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(ReplyError::Malformed),
    };
    if partial {
        return Ok(None);
    }
    let code = line[..3]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    Ok(Some((code, last)))
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Builds the reply from lines already checked by `parse_reply`.
fn build(code: u16, bytes: &[u8]) -> Reply {
    let texts = || {
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| strip_cr(l).get(4..).unwrap_or_default())
    };
    let enhanced = texts()
        .next()
        .and_then(|t| enhanced_prefix(t, code))
        .filter(|(e, _)| texts().all(|t| enhanced_prefix(t, code).is_some_and(|(x, _)| x == *e)));
    let skip = enhanced.map_or(0, |(_, len)| len);
    let lines = texts()
        .map(|t| Cow::Owned(String::from_utf8_lossy(&t[skip..]).into_owned()))
        .collect();
    Reply {
        code,
        enhanced: enhanced.map(|(e, _)| e),
        lines,
    }
}

/// An RFC 3463 status at the start of `text`, followed by a space, whose class matches the
/// reply code, written canonically (so that writing it again gives the same bytes). Returns
/// the status and the length to skip (status and space).
fn enhanced_prefix(text: &[u8], code: u16) -> Option<(EnhancedStatus, usize)> {
    let space = memchr(b' ', text)?;
    let s = std::str::from_utf8(&text[..space]).ok()?;
    let mut parts = s.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let number = |p: &str| -> Option<u16> {
        let canonical = !p.is_empty()
            && p.len() <= 3
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'));
        canonical.then(|| p.parse().ok()).flatten()
    };
    let class = u8::try_from(number(class)?).ok()?;
    if u16::from(class) != code / 100 || class == 3 {
        return None;
    }
    let status = EnhancedStatus::new(class, number(subject)?, number(detail)?);
    Some((status, space + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(r: &Reply) -> Vec<u8> {
        let mut out = Vec::new();
        r.write_to(&mut out);
        out
    }

    #[test]
    fn single_line_with_enhanced_status() {
        let (r, n) = parse_reply(b"250 2.1.0 Ok\r\nXX").unwrap().unwrap();
        assert_eq!(n, 14);
        assert_eq!(r, Reply::new(250, (2, 1, 0), "Ok"));
    }

    #[test]
    fn multi_line_ehlo() {
        let input = b"250-mx.relayguard.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
        let (r, n) = parse_reply(input).unwrap().unwrap();
        assert_eq!(n, input.len());
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced, None);
        assert_eq!(r.lines, ["mx.relayguard.test", "PIPELINING", "CHUNKING"]);
        assert_eq!(wire(&r), input);
    }

    #[test]
    fn greeting_and_odd_forms_round_trip() {
        for input in [
            &b"220 mx.relayguard.test ESMTP Postfix\r\n"[..],
            b"550-5.7.1 first\r\n550 5.7.1 second\r\n",
            b"550-5.7.1 first\r\n550 5.7.2 second\r\n",
            b"250 2.0.0  two spaces\r\n",
            b"250 2.0.0\r\n",
            b"451 4.03.0 leading zero stays text\r\n",
            b"250 5.0.0 class mismatch stays text\r\n",
            b"354 End data with <CR><LF>.<CR><LF>\r\n",
            b"250-\r\n250 x\r\n",
        ] {
            let (r, n) = parse_reply(input).unwrap().unwrap();
            assert_eq!(n, input.len());
            assert_eq!(wire(&r), input, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn incomplete_and_bad_input() {
        assert_eq!(parse_reply(b""), Ok(None));
        assert_eq!(parse_reply(b"25"), Ok(None));
        assert_eq!(parse_reply(b"250-a\r\n250"), Ok(None));
        assert_eq!(parse_reply(b"HTTP/1.1 400"), Err(ReplyError::Malformed));
        assert_eq!(parse_reply(b"250x"), Err(ReplyError::Malformed));
        assert_eq!(parse_reply(b"25\r\n"), Err(ReplyError::Malformed));
        assert_eq!(
            parse_reply(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::CodeMismatch {
                first: 250,
                later: 550
            })
        );
        assert_eq!(
            parse_reply(&[b'2'; REPLY_LINE_MAX]),
            Err(ReplyError::LineTooLong)
        );
        let many = b"250-x\r\n".repeat(REPLY_LINES_MAX);
        assert_eq!(parse_reply(&many), Err(ReplyError::TooManyLines));
        let ok = [
            b"250-x\r\n".repeat(REPLY_LINES_MAX - 1),
            b"250 y\r\n".to_vec(),
        ]
        .concat();
        assert!(parse_reply(&ok).unwrap().is_some());
    }

    #[test]
    fn bare_lf_is_accepted() {
        let (r, n) = parse_reply(b"250-a\n250 b\n").unwrap().unwrap();
        assert_eq!(n, 12);
        assert_eq!(r.lines, ["a", "b"]);
    }

    fn reply() -> impl Strategy<Value = Reply> {
        (
            prop_oneof![Just(220u16), Just(250), Just(354), Just(421), Just(550)],
            any::<bool>(),
            (0u16..8, 0u16..20),
            prop::collection::vec("[ -~]{0,30}", 1..6),
        )
            .prop_map(|(code, with_enhanced, (s, d), lines)| Reply {
                code,
                enhanced: (with_enhanced && code != 354)
                    .then(|| EnhancedStatus::new((code / 100) as u8, s, d)),
                lines: lines.into_iter().map(Cow::Owned).collect(),
            })
    }

    proptest! {
        #[test]
        fn pipelined_replies_parse_the_same_in_any_split(
            replies in prop::collection::vec(reply(), 1..4),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let input: Vec<u8> = replies.iter().flat_map(wire).collect();
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            bounds.push(input.len());
            bounds.sort_unstable();
            let mut buf = Vec::new();
            let mut got = Vec::new();
            let mut start = 0;
            for end in bounds {
                buf.extend_from_slice(&input[start..end]);
                start = end;
                while let Some((r, n)) = parse_reply(&buf).unwrap() {
                    got.push(r);
                    buf.drain(..n);
                }
            }
            prop_assert!(buf.is_empty());
            // Byte for byte: the text may have looked like a status, so compare the wire.
            let again: Vec<u8> = got.iter().flat_map(wire).collect();
            prop_assert_eq!(again, input);
            prop_assert_eq!(got.len(), replies.len());
        }

        #[test]
        fn any_bytes_never_panic_or_overrun(input in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(Some((r, n))) = parse_reply(&input) {
                prop_assert!(n <= input.len());
                prop_assert!(r.lines.len() <= REPLY_LINES_MAX);
            }
        }
    }
}
