//! Parses replies read from the upstream, incrementally and within bounds.
//!
//! A reply is complete at its last line (`ddd text` or a bare `ddd`); until then
//! [`parse_reply`] returns `Ok(None)`. Line count and line length are bounded so a hostile or
//! broken upstream cannot make relayguard buffer without limit.

use std::borrow::Cow;

use memchr::memchr;

use super::reply::{EnhancedStatus, Reply};

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

/// Parses one complete reply at the start of `buf`: the reply and the bytes it used, or
/// `Ok(None)` when more input is needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    // Most replies are one line; a few more before the vector spills are cheap to keep.
    let mut lines: Vec<&[u8]> = Vec::with_capacity(1);
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
        let raw = &rest[..lf];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += lf + 1;
        let this = line_code(line)?;
        if *code.get_or_insert(this) != this {
            return Err(ReplyError::MixedCodes);
        }
        lines.push(line);
        if lines.len() > MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        if line.get(3) != Some(&b'-') {
            let code = code.unwrap_or(this);
            return Ok(Some((build(code, &lines), pos)));
        }
    }
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
/// carries the same one, so writing the reply again gives the same bytes. One allocation per
/// line: replies are parsed on every forwarded command.
fn build(code: u16, lines: &[&[u8]]) -> Reply {
    if let [line] = lines {
        // Nearly every relayed reply: one line, one allocation for its text.
        let text = String::from_utf8_lossy(line.get(4..).unwrap_or(b""));
        let (enhanced, text) = match enhanced_prefix(&text, code) {
            Some((e, rest)) => (Some(e), rest.to_owned()),
            None => (None, text.into_owned()),
        };
        return Reply {
            code,
            enhanced,
            lines: vec![Cow::Owned(text)],
        };
    }
    let texts: Vec<Cow<'_, str>> = lines
        .iter()
        .map(|l| String::from_utf8_lossy(l.get(4..).unwrap_or(b"")))
        .collect();
    // Each line's status and the text after it, parsed once.
    let split: Vec<Option<(EnhancedStatus, &str)>> =
        texts.iter().map(|t| enhanced_prefix(t, code)).collect();
    let first = split.first().copied().flatten().map(|(e, _)| e);
    let enhanced = first.filter(|e| split.iter().all(|p| p.is_some_and(|(x, _)| x == *e)));
    let lines = texts
        .iter()
        .zip(&split)
        .map(|(text, parts)| {
            let text = match (enhanced, parts) {
                (Some(_), Some((_, rest))) => *rest,
                _ => text.as_ref(),
            };
            Cow::Owned(text.to_owned())
        })
        .collect();
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
        assert_eq!(r.lines, vec!["mx.example", "PIPELINING", "8BITMIME"]);
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
