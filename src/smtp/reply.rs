//! SMTP replies: a code, an optional RFC 3463 enhanced status and text, written on the wire.

use std::borrow::Cow;
use std::fmt;

use smallvec::{smallvec, SmallVec};

use super::decimal::push_decimal;

/// An RFC 3463 enhanced status code such as `5.7.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedStatus {
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply. `lines` holds the text of each line without code or enhanced status;
/// a single-line reply has one entry. The enhanced status, when present, is written on every line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<EnhancedStatus>,
    pub lines: ReplyLines,
}

/// A reply's lines: one-line replies, nearly all of them, keep theirs inline.
pub type ReplyLines = SmallVec<[Cow<'static, str>; 1]>;

impl Reply {
    /// A single-line reply with an enhanced status: `Reply::new(250, (2, 0, 0), "Ok")`.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: Some(EnhancedStatus::new(enhanced.0, enhanced.1, enhanced.2)),
            lines: smallvec![text.into()],
        }
    }

    /// A single-line reply without an enhanced status (greeting, HELO, EHLO, 354).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: None,
            lines: smallvec![text.into()],
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// A 2xx: the command was done (RFC 5321 4.2.1). A MAIL or RCPT is accepted by its
    /// class, not by the exact 250: `251` and `252` accept too.
    pub fn is_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// 421 and 521 close the connection wherever they come from (Postfix, RFC 5321 3.8).
    pub fn closes_connection(&self) -> bool {
        self.code == 421 || self.code == 521
    }

    /// The first line's text, after the enhanced status.
    pub fn text(&self) -> &str {
        self.lines.first().map(|l| l.as_ref()).unwrap_or("")
    }

    /// Appends the reply in wire form, each line ending in CRLF, without allocating. Digits are
    /// written by hand: a reply is written for every relayed command, and `write!` costs more
    /// than the rest of the work together.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.lines.is_empty() {
            push_decimal(out, self.code);
            out.extend_from_slice(b"\r\n");
            return;
        }
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            push_decimal(out, self.code);
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(e) = self.enhanced {
                push_decimal(out, e.class);
                out.push(b'.');
                push_decimal(out, e.subject);
                out.push(b'.');
                push_decimal(out, e.detail);
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    /// The first line as Postfix logs it: `454 4.7.1 <x@y>: Relay access denied`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, self.text()),
            None => write!(f, "{} {}", self.code, self.text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_single_and_multi_line() {
        let mut out = Vec::new();
        Reply::new(454, (4, 7, 1), "<x@y.example>: Relay access denied").write_to(&mut out);
        assert_eq!(out, b"454 4.7.1 <x@y.example>: Relay access denied\r\n");
        out.clear();
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: smallvec!["mx.test".into(), "PIPELINING".into()],
        };
        r.write_to(&mut out);
        assert_eq!(out, b"250-mx.test\r\n250 PIPELINING\r\n");
        out.clear();
        Reply::new(550, (5, 7, 10), "x").write_to(&mut out);
        Reply::new(250, (2, 0, 0), "").write_to(&mut out);
        Reply {
            code: 334,
            enhanced: None,
            lines: ReplyLines::new(),
        }
        .write_to(&mut out);
        assert_eq!(out, b"550 5.7.10 x\r\n250 2.0.0 \r\n334\r\n");
    }
}
