//! Small text tools for lookups: case folding and address formatting into stack buffers (so a
//! lookup does not allocate), and Postfix's list splitting for compile time.

use std::fmt::Write;
use std::net::IpAddr;

const STACK: usize = 256;

/// `s` lower-cased (ASCII, as Postfix folds keys), borrowed when already lower-case. Lives on
/// the caller's stack for the duration of one lookup, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Lower<'a> {
    Borrowed(&'a str),
    Stack([u8; STACK], usize),
    Heap(String),
}

impl<'a> Lower<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        if !s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Lower::Borrowed(s);
        }
        if s.len() <= STACK {
            let mut buf = [0u8; STACK];
            for (d, b) in buf.iter_mut().zip(s.bytes()) {
                *d = b.to_ascii_lowercase();
            }
            return Lower::Stack(buf, s.len());
        }
        Lower::Heap(s.to_ascii_lowercase())
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Lower::Borrowed(s) => s,
            // ASCII lower-casing keeps UTF-8 valid; the fallback is unreachable in practice.
            Lower::Stack(buf, len) => std::str::from_utf8(&buf[..*len]).unwrap_or(""),
            Lower::Heap(s) => s,
        }
    }
}

/// An IP address in Postfix's text form (IPv6 compressed, lower-case), on the stack.
pub(crate) struct AddrText {
    buf: [u8; 48],
    len: usize,
}

struct Cursor<'b> {
    buf: &'b mut [u8; 48],
    len: usize,
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl AddrText {
    pub(crate) fn new(addr: IpAddr) -> Self {
        let mut buf = [0u8; 48];
        let mut c = Cursor {
            buf: &mut buf,
            len: 0,
        };
        // An IPv6 address is at most 45 characters, so this cannot overflow.
        let _ = write!(c, "{}", addr.to_canonical());
        let len = c.len;
        AddrText { buf, len }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// Splits on commas and whitespace outside `{...}` groups, as Postfix's mystrtokq does for
/// restriction lists, host lists and inline tables.
pub(crate) fn split_list(text: &str) -> Vec<&str> {
    split_outside_braces(text, |c| c == ',' || c.is_whitespace())
}

/// Splits on whitespace only (not commas) outside `{...}` groups: master.cf fields.
pub(crate) fn split_list_ws(text: &str) -> Vec<&str> {
    split_outside_braces(text, char::is_whitespace)
}

fn split_outside_braces(text: &str, is_separator: impl Fn(char) -> bool) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        match c {
            '{' => {
                depth += 1;
                start.get_or_insert(i);
            }
            '}' => {
                depth = depth.saturating_sub(1);
                start.get_or_insert(i);
            }
            c if depth == 0 && is_separator(c) => {
                if let Some(s) = start.take() {
                    out.push(&text[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_postfix() {
        assert_eq!(split_list("a,b ,  c\n\td"), vec!["a", "b", "c", "d"]);
        assert_eq!(
            split_list("check_client_access inline:{a=b, {c = d e}}, reject"),
            vec!["check_client_access", "inline:{a=b, {c = d e}}", "reject"]
        );
    }

    #[test]
    fn addr_text_is_postfix_form() {
        assert_eq!(
            AddrText::new("2001:db8:1:9:0:0:0:9".parse().unwrap()).as_str(),
            "2001:db8:1:9::9"
        );
        assert_eq!(
            AddrText::new("::ffff:10.1.2.3".parse().unwrap()).as_str(),
            "10.1.2.3"
        );
        assert_eq!(Lower::new("MiXeD@T.TeSt").as_str(), "mixed@t.test");
    }
}
