//! Frames SMTP command lines in a byte buffer: CRLF (or a bare LF) ends a line, overlong lines are
//! dropped through their line end so the session stays in step with the client.
//!
//! Does not copy, allocate or keep the buffer: the caller owns the bytes and advances by the
//! `consumed` counts it is given. The only state across reads is the one-bit `LineFramer`.

use memchr::memchr;

/// RFC 5321 4.5.3.1.4: a command line is at most 512 octets including CRLF.
pub const COMMAND_LINE_MAX: usize = 512;

/// RFC 4954 4: an AUTH command or SASL response line may be 12288 octets including CRLF
/// (Postfix's `smtpd_sasl_response_limit` is the same number). Callers that expect an AUTH
/// continuation line use this limit instead of [`COMMAND_LINE_MAX`].
pub const SASL_LINE_MAX: usize = 12288;

/// The outcome of looking for one line at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineScan<'a> {
    /// A whole line: `line` is its text without the CRLF or bare LF that ended it; drop
    /// `consumed` bytes (the text and the line end) from the buffer.
    Complete { line: &'a [u8], consumed: usize },
    /// No line end yet and the line is still within the limit: read more and scan again.
    Incomplete,
    /// The line is longer than the limit. Drop `consumed` bytes. When `ended` is true the whole
    /// line, through its LF, is gone and the caller answers it now (once per overlong line, with
    /// [`crate::smtp::replies::line_too_long`]); when false the caller must keep discarding with
    /// [`skip_line`] (or let a [`LineFramer`] remember it) until a later scan reports `ended`.
    TooLong { consumed: usize, ended: bool },
}

/// How far [`skip_line`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    /// Bytes of garbage to drop from the front of the buffer.
    pub consumed: usize,
    /// True when the LF ending the discarded line was among them.
    pub ended: bool,
}

/// Finds the first line in `buf`. `max_len` counts the line end too (RFC 5321's 512 includes
/// CRLF; a bare-LF line may therefore hold one octet more text than a CRLF line).
///
/// Only LF ends a line. A CR that is not right before the LF stays in the line text, so a
/// bare CR can never split one command into two; the command parser refuses it.
pub fn next_line(buf: &[u8], max_len: usize) -> LineScan<'_> {
    let window = buf.get(..max_len).unwrap_or(buf);
    if let Some(lf) = memchr(b'\n', window) {
        let text = &buf[..lf];
        let line = text.strip_suffix(b"\r").unwrap_or(text);
        return LineScan::Complete {
            line,
            consumed: lf + 1,
        };
    }
    if buf.len() < max_len {
        return LineScan::Incomplete;
    }
    let rest = skip_line(&buf[max_len..]);
    LineScan::TooLong {
        consumed: max_len + rest.consumed,
        ended: rest.ended,
    }
}

/// Discards the rest of an overlong line: everything through the next LF, or the whole
/// buffer when there is none yet.
pub fn skip_line(buf: &[u8]) -> Skip {
    match memchr(b'\n', buf) {
        Some(lf) => Skip {
            consumed: lf + 1,
            ended: true,
        },
        None => Skip {
            consumed: buf.len(),
            ended: false,
        },
    }
}

/// True when `buf` already holds something [`next_line`] would act on (a line end, or enough
/// bytes to call the line too long): the cheap "is another command pipelined behind this one"
/// test the session uses to decide when to flush its replies.
pub fn has_complete_line(buf: &[u8], max_len: usize) -> bool {
    buf.len() >= max_len || memchr(b'\n', buf).is_some()
}

/// [`next_line`] plus the one bit of state needed to keep discarding an overlong line across
/// reads. A session keeps one per client connection.
#[derive(Debug, Clone, Default)]
pub struct LineFramer {
    discarding: bool,
}

impl LineFramer {
    pub const fn new() -> Self {
        Self { discarding: false }
    }

    /// True while the rest of an overlong line is being dropped.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Like [`next_line`], but after a `TooLong { ended: false }` the following calls keep
    /// dropping input, reporting `TooLong` again, until the line's LF: exactly one
    /// `TooLong { ended: true }` is returned per overlong line, however the input was split.
    pub fn next<'a>(&mut self, buf: &'a [u8], max_len: usize) -> LineScan<'a> {
        if self.discarding {
            if buf.is_empty() {
                return LineScan::Incomplete;
            }
            let skip = skip_line(buf);
            self.discarding = !skip.ended;
            return LineScan::TooLong {
                consumed: skip.consumed,
                ended: skip.ended,
            };
        }
        let scan = next_line(buf, max_len);
        if let LineScan::TooLong { ended: false, .. } = scan {
            self.discarding = true;
        }
        scan
    }

    /// Forgets a half-discarded line (after STARTTLS the plaintext buffer is thrown away).
    pub fn reset(&mut self) {
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crlf_and_bare_lf_end_a_line() {
        assert_eq!(
            next_line(b"NOOP\r\nQUIT\r\n", 512),
            LineScan::Complete {
                line: b"NOOP",
                consumed: 6
            }
        );
        assert_eq!(
            next_line(b"NOOP\nQUIT", 512),
            LineScan::Complete {
                line: b"NOOP",
                consumed: 5
            }
        );
        assert_eq!(next_line(b"NOOP\r", 512), LineScan::Incomplete);
        assert_eq!(next_line(b"", 512), LineScan::Incomplete);
    }

    #[test]
    fn bare_cr_does_not_end_a_line() {
        assert_eq!(
            next_line(b"MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n", 512),
            LineScan::Complete {
                line: b"MAIL FROM:<a@b>\rRCPT TO:<c@d>",
                consumed: 31
            }
        );
        // Only the CR right before the LF is part of the line end.
        assert_eq!(
            next_line(b"NOOP\r\r\n", 512),
            LineScan::Complete {
                line: b"NOOP\r",
                consumed: 7
            }
        );
    }

    #[test]
    fn limit_counts_the_line_end() {
        let mut ok = vec![b'a'; 510];
        ok.extend_from_slice(b"\r\n");
        assert!(matches!(
            next_line(&ok, 512),
            LineScan::Complete { consumed: 512, .. }
        ));
        let mut long = vec![b'a'; 511];
        long.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(
            next_line(&long, 512),
            LineScan::TooLong {
                consumed: 513,
                ended: true
            }
        );
        assert_eq!(
            next_line(&[b'a'; 600], 512),
            LineScan::TooLong {
                consumed: 600,
                ended: false
            }
        );
        assert_eq!(next_line(&[b'a'; 511], 512), LineScan::Incomplete);
    }

    #[test]
    fn framer_discards_across_reads_and_reports_once() {
        let mut f = LineFramer::new();
        assert_eq!(
            f.next(&[b'x'; 600], 512),
            LineScan::TooLong {
                consumed: 600,
                ended: false
            }
        );
        assert!(f.is_discarding());
        assert_eq!(f.next(b"", 512), LineScan::Incomplete);
        assert_eq!(
            f.next(b"xxxx", 512),
            LineScan::TooLong {
                consumed: 4,
                ended: false
            }
        );
        assert_eq!(
            f.next(b"xx\r\nNOOP\r\n", 512),
            LineScan::TooLong {
                consumed: 4,
                ended: true
            }
        );
        assert_eq!(
            f.next(b"NOOP\r\n", 512),
            LineScan::Complete {
                line: b"NOOP",
                consumed: 6
            }
        );
    }

    #[test]
    fn pipelined_check() {
        assert!(!has_complete_line(b"MAIL FROM:<a@b>", 512));
        assert!(has_complete_line(b"MAIL FROM:<a@b>\n", 512));
        assert!(has_complete_line(&[b'a'; 512], 512));
    }

    #[derive(Debug, PartialEq)]
    enum Event {
        Line(Vec<u8>),
        TooLong,
    }

    /// Feeds `input` in pieces through a growing buffer, as a session would.
    fn frame(input: &[u8], cuts: &[usize], max: usize) -> Vec<Event> {
        let mut framer = LineFramer::new();
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        bounds.push(input.len());
        bounds.sort_unstable();
        for end in bounds {
            buf.extend_from_slice(&input[start..end]);
            start = end;
            loop {
                match framer.next(&buf, max) {
                    LineScan::Complete { line, consumed } => {
                        events.push(Event::Line(line.to_vec()));
                        buf.drain(..consumed);
                    }
                    LineScan::TooLong { consumed, ended } => {
                        if ended {
                            events.push(Event::TooLong);
                        }
                        buf.drain(..consumed);
                    }
                    LineScan::Incomplete => break,
                }
            }
        }
        events
    }

    fn smtp_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => Just(b'a'),
                1 => Just(b'\r'),
                1 => Just(b'\n'),
                1 => any::<u8>(),
            ],
            0..200,
        )
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_lines(
            input in smtp_bytes(),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            prop_assert_eq!(frame(&input, &[], 16), frame(&input, &cuts, 16));
        }

        #[test]
        fn buffer_never_grows_past_the_limit(
            input in smtp_bytes(),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            // A one-byte-at-a-time feed shows the peak the framer lets the buffer reach.
            let mut framer = LineFramer::new();
            let mut buf = Vec::new();
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            bounds.push(input.len());
            bounds.sort_unstable();
            let mut start = 0;
            for end in bounds {
                for &b in &input[start..end] {
                    buf.push(b);
                    while let LineScan::Complete { consumed, .. }
                        | LineScan::TooLong { consumed, .. } = framer.next(&buf, 16)
                    {
                        buf.drain(..consumed);
                    }
                    prop_assert!(buf.len() < 16);
                }
                start = end;
            }
        }
    }
}
