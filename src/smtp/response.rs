//! Parses replies read from the upstream, incrementally and within bounds.
//!
//! A reply is complete at its last line (`ddd text` or a bare `ddd`); until then
//! [`parse_reply`] returns `Ok(None)`. Line count and line length are bounded so a hostile or
//! broken upstream cannot make relayguard buffer without limit.

use std::borrow::Cow;

use memchr::memchr;

use smallvec::smallvec;

use super::reply::{EnhancedStatus, Reply, ReplyLines};

/// RFC 5321 4.5.3.1.5 allows 512 octets; Postfix itself reads up to 2048.
pub const MAX_REPLY_LINE: usize = 2048;
/// More lines than any real EHLO reply carries.
pub const MAX_REPLY_LINES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    #[error("reply of more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    #[error("reply line without a three-digit code: {0:?}")]
    BadCode(String),
    #[error("reply lines with different codes")]
    MixedCodes,
}

/// Where a complete reply at the start of a buffer ends, found without copying any of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyFrame {
    pub code: u16,
    /// The reply's bytes, its last line's LF included.
    pub len: usize,
    pub lines: usize,
}

/// Parses one complete reply at the start of `buf`: the reply and the bytes it used, or
/// `Ok(None)` when more input is needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    Ok(scan_reply(buf)?.map(|frame| (build_reply(buf, frame), frame.len)))
}

/// Checks the complete reply at the start of `buf` line by line and says where it ends, or
/// `Ok(None)` when more input is needed. Nothing is allocated for a reply still incomplete,
/// refused, or (see [`build_reply`]) wanted only for its code.
pub fn scan_reply(buf: &[u8]) -> Result<Option<ReplyFrame>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut count = 0;
    loop {
        let rest = &buf[pos..];
        let Some(lf) = memchr(b'\n', rest) else {
            if rest.len() > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        if lf > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let line = strip_cr(&rest[..lf]);
        pos += lf + 1;
        let this = line_code(line)?;
        if *code.get_or_insert(this) != this {
            return Err(ReplyError::MixedCodes);
        }
        count += 1;
        if count > MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        if line.get(3) != Some(&b'-') {
            return Ok(Some(ReplyFrame {
                code: this,
                len: pos,
                lines: count,
            }));
        }
    }
}

/// The reply `frame` found at the start of `buf`, its text copied out.
pub fn build_reply(buf: &[u8], frame: ReplyFrame) -> Reply {
    build(frame.code, &buf[..frame.len], frame.lines)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn line_code(line: &[u8]) -> Result<u16, ReplyError> {
    let digits = line.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit));
    let sep_ok = matches!(line.get(3), None | Some(b' ') | Some(b'-'));
    match digits {
        Some(d) if sep_ok => Ok(d.iter().fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'))),
        _ => Err(ReplyError::BadCode(
            String::from_utf8_lossy(line).into_owned(),
        )),
    }
}

/// Keeps each line's text as sent; the enhanced status is split off only when every line
/// carries the same one, so writing the reply again gives the same bytes. `wire` is the
/// whole reply, `count` lines, already checked. One allocation per line and one for the
/// list: replies are parsed on every forwarded command.
fn build(code: u16, wire: &[u8], count: usize) -> Reply {
    if count == 1 {
        // Nearly every relayed reply, once per command: one line, read once.
        let line = strip_cr(wire.strip_suffix(b"\n").unwrap_or(wire));
        let text = String::from_utf8_lossy(line.get(4..).unwrap_or(b""));
        let (enhanced, text) = match enhanced_prefix(&text, code) {
            Some((e, rest)) => (Some(e), rest.to_owned()),
            None => (None, text.into_owned()),
        };
        return Reply {
            code,
            enhanced,
            lines: smallvec![Cow::Owned(text)],
        };
    }
    // Several lines (an EHLO reply): each is read twice, once to see whether all carry the
    // same status and once to copy it out, rather than kept in a scratch vector between.
    let texts = || {
        wire.split_inclusive(|b| *b == b'\n').map(|raw| {
            let line = strip_cr(raw.strip_suffix(b"\n").unwrap_or(raw));
            String::from_utf8_lossy(line.get(4..).unwrap_or(b""))
        })
    };
    let mut statuses = texts().map(|t| enhanced_prefix(&t, code).map(|(e, _)| e));
    let first = statuses.next().flatten();
    let enhanced = first.filter(|e| statuses.all(|s| s == Some(*e)));
    let mut lines = ReplyLines::with_capacity(count);
    for text in texts() {
        let rest = enhanced
            .and_then(|_| enhanced_prefix(&text, code))
            .map(|(_, rest)| rest.to_owned());
        lines.push(Cow::Owned(rest.unwrap_or_else(|| text.into_owned())));
    }
    Reply {
        code,
        enhanced,
        lines,
    }
}

/// `2.1.0 Ok` -> (2.1.0, "Ok") when the class digit matches the reply code.
fn enhanced_prefix(text: &str, code: u16) -> Option<(EnhancedStatus, &str)> {
    let (status, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = status.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || u16::from(class) != code / 100 || !(2..=5).contains(&class) {
        return None;
    }
    Some((EnhancedStatus::new(class, subject, detail), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(wire: &[u8]) {
        let (reply, used) = parse_reply(wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        let mut out = Vec::new();
        reply.write_to(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(wire));
    }

    #[test]
    fn single_and_multi_line_replies() {
        let (r, n) = parse_reply(b"250 2.1.0 Ok\r\nXX").unwrap().unwrap();
        assert_eq!(
            (r.code, r.enhanced, r.text(), n),
            (250, Some(EnhancedStatus::new(2, 1, 0)), "Ok", 14)
        );
        let ehlo = b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
        let (r, _) = parse_reply(ehlo).unwrap().unwrap();
        assert_eq!(r.lines.as_slice(), ["mx.example", "PIPELINING", "8BITMIME"]);
        assert_eq!(r.enhanced, None);
        round_trip(ehlo);
        round_trip(b"220 mx.relayguard.test ESMTP Postfix\r\n");
        round_trip(b"535 5.7.8 Error: authentication failed: (reason unavailable)\r\n");
        round_trip(b"334 \r\n");
        round_trip(b"550-5.7.1 first\r\n550 5.7.1 second\r\n");
        assert_eq!(parse_reply(b"354 End data").unwrap(), None);
        assert_eq!(parse_reply(b"250-a\r\n").unwrap(), None);
    }

    #[test]
    fn bad_replies_are_errors() {
        assert!(matches!(
            parse_reply(b"hello\r\n"),
            Err(ReplyError::BadCode(_))
        ));
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::MixedCodes)
        );
        assert_eq!(parse_reply(&[b'2'; 3000]), Err(ReplyError::LineTooLong));
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(parse_reply(many.as_bytes()), Err(ReplyError::TooManyLines));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_reply(cut in 0usize..60) {
            let wire = b"250-mx.example\r\n250-SIZE 1000\r\n250 2.0.0 done\r\n";
            let cut = cut.min(wire.len());
            let first = parse_reply(&wire[..cut]).unwrap();
            if cut < wire.len() {
                prop_assert_eq!(first, None);
            }
            let whole = parse_reply(wire).unwrap().unwrap();
            prop_assert_eq!(whole.1, wire.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_reply(&bytes);
        }
    }
}
