//! MAIL and RCPT parameters (RFC 1870 SIZE, 6152 BODY, 6531 SMTPUTF8, 3461 DSN, 4954 AUTH):
//! parsed from the words after the address, written back in one canonical order.
//!
//! Values stay as they were on the wire (ENVID, ORCPT and AUTH= are xtext, not decoded here).
//! Postfix's rules, checked live: a repeated SIZE or SMTPUTF8 is accepted (last SIZE wins), a
//! repeated RET, ENVID, NOTIFY or ORCPT is a syntax error, a repeated AUTH= is a 503.

use super::error::CommandError;
use super::words;
use crate::smtp::decimal::push_decimal;

/// RFC 6152 / 3030 body types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
    /// Parsed so the upstream can answer it, but relayguard never advertises BINARYMIME and
    /// Postfix refuses it (`555 5.5.4 Unsupported option: BODY=BINARYMIME`).
    BinaryMime,
}

impl Body {
    pub fn as_str(&self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        }
    }
}

/// RFC 3461 RET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

/// RFC 3461 NOTIFY: all three false is `NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// MAIL FROM parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailParams<'a> {
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// xtext as sent.
    pub envid: Option<&'a str>,
    /// xtext or `<>` as sent. The session decides whether a client may set it.
    pub auth: Option<&'a str>,
}

/// RCPT TO parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RcptParams<'a> {
    pub notify: Option<Notify>,
    /// `addr-type;xtext` as sent.
    pub orcpt: Option<&'a str>,
}

/// Splits `KEY=value` into the key and the value; `KEY` alone has no value.
fn key_value(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    }
}

fn unsupported(word: &str) -> CommandError {
    CommandError::UnsupportedOption(word.to_owned())
}

/// RFC 3461 4: xtext is printable ASCII except `+` and `=`, with `+XX` hex escapes. Postfix
/// lets `=` through; so do we, since the value is only relayed.
fn is_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'+' {
            let hex = b.get(i + 1..i + 3).unwrap_or_default();
            if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
                return false;
            }
            i += 3;
        } else if (33..=126).contains(&c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

impl<'a> MailParams<'a> {
    pub(super) fn parse(rest: &'a str) -> Result<Self, CommandError> {
        let mut p = MailParams::default();
        for word in words(rest) {
            let (key, value) = key_value(word);
            let is = |k: &str| key.eq_ignore_ascii_case(k);
            match value {
                Some(v) if is("SIZE") => {
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(CommandError::SizeSyntax);
                    }
                    p.size = Some(v.parse().map_err(|_| CommandError::SizeOverflow)?);
                }
                Some(v) if is("BODY") => {
                    p.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                        Body::SevenBit
                    } else if v.eq_ignore_ascii_case("8BITMIME") {
                        Body::EightBitMime
                    } else if v.eq_ignore_ascii_case("BINARYMIME") {
                        Body::BinaryMime
                    } else {
                        return Err(unsupported(word));
                    });
                }
                None if is("SMTPUTF8") => p.smtputf8 = true,
                Some(v) if is("RET") => {
                    p.ret = match (p.ret, v) {
                        (None, v) if v.eq_ignore_ascii_case("FULL") => Some(Ret::Full),
                        (None, v) if v.eq_ignore_ascii_case("HDRS") => Some(Ret::Hdrs),
                        _ => return Err(CommandError::RetSyntax),
                    };
                }
                Some(v) if is("ENVID") => {
                    if p.envid.is_some() || v.is_empty() || !is_xtext(v) {
                        return Err(CommandError::EnvidSyntax);
                    }
                    p.envid = Some(v);
                }
                Some(v) if is("AUTH") => {
                    if p.auth.is_some() {
                        return Err(CommandError::AuthDuplicate);
                    }
                    p.auth = Some(v);
                }
                _ => return Err(unsupported(word)),
            }
        }
        Ok(p)
    }

    pub(super) fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(size) = self.size {
            out.extend_from_slice(b" SIZE=");
            push_decimal(out, size);
        }
        if let Some(body) = self.body {
            out.extend_from_slice(b" BODY=");
            out.extend_from_slice(body.as_str().as_bytes());
        }
        if self.smtputf8 {
            out.extend_from_slice(b" SMTPUTF8");
        }
        match self.ret {
            Some(Ret::Full) => out.extend_from_slice(b" RET=FULL"),
            Some(Ret::Hdrs) => out.extend_from_slice(b" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = self.envid {
            out.extend_from_slice(b" ENVID=");
            out.extend_from_slice(envid.as_bytes());
        }
        if let Some(auth) = self.auth {
            out.extend_from_slice(b" AUTH=");
            out.extend_from_slice(auth.as_bytes());
        }
    }
}

impl<'a> RcptParams<'a> {
    pub(super) fn parse(rest: &'a str) -> Result<Self, CommandError> {
        let mut p = RcptParams::default();
        for word in words(rest) {
            let (key, value) = key_value(word);
            match value {
                Some(v) if key.eq_ignore_ascii_case("NOTIFY") => {
                    if p.notify.is_some() {
                        return Err(CommandError::NotifySyntax);
                    }
                    p.notify = Some(parse_notify(v).ok_or(CommandError::NotifySyntax)?);
                }
                Some(v) if key.eq_ignore_ascii_case("ORCPT") => {
                    if p.orcpt.is_some() || !is_orcpt(v) {
                        return Err(CommandError::OrcptSyntax);
                    }
                    p.orcpt = Some(v);
                }
                _ => return Err(unsupported(word)),
            }
        }
        Ok(p)
    }

    pub(super) fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(n) = self.notify {
            out.extend_from_slice(b" NOTIFY=");
            if n == Notify::default() {
                out.extend_from_slice(b"NEVER");
            } else {
                let names = [
                    (n.success, "SUCCESS"),
                    (n.failure, "FAILURE"),
                    (n.delay, "DELAY"),
                ];
                let mut first = true;
                for (_, name) in names.iter().filter(|(on, _)| *on) {
                    if !first {
                        out.push(b',');
                    }
                    out.extend_from_slice(name.as_bytes());
                    first = false;
                }
            }
        }
        if let Some(orcpt) = self.orcpt {
            out.extend_from_slice(b" ORCPT=");
            out.extend_from_slice(orcpt.as_bytes());
        }
    }
}

/// `NEVER`, or a comma list of SUCCESS, FAILURE, DELAY (repeats allowed, as in Postfix).
fn parse_notify(v: &str) -> Option<Notify> {
    if v.eq_ignore_ascii_case("NEVER") {
        return Some(Notify::default());
    }
    let mut n = Notify::default();
    for item in v.split(',') {
        if item.eq_ignore_ascii_case("SUCCESS") {
            n.success = true;
        } else if item.eq_ignore_ascii_case("FAILURE") {
            n.failure = true;
        } else if item.eq_ignore_ascii_case("DELAY") {
            n.delay = true;
        } else {
            return None;
        }
    }
    Some(n)
}

/// `addr-type;xtext` with a non-empty atom type (Postfix accepts an empty address part).
fn is_orcpt(v: &str) -> bool {
    let Some((kind, addr)) = v.split_once(';') else {
        return false;
    };
    !kind.is_empty()
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && is_xtext(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext() {
        assert!(is_xtext("abc+2B"));
        assert!(is_xtext("a=b"));
        assert!(is_xtext(""));
        assert!(!is_xtext("a+2"));
        assert!(!is_xtext("a+zz"));
        assert!(!is_xtext("a\u{e9}"));
    }

    #[test]
    fn notify_lists() {
        assert_eq!(parse_notify("never"), Some(Notify::default()));
        assert_eq!(
            parse_notify("SUCCESS,SUCCESS,delay"),
            Some(Notify {
                success: true,
                failure: false,
                delay: true
            })
        );
        assert_eq!(parse_notify("NEVER,SUCCESS"), None);
        assert_eq!(parse_notify(""), None);
    }
}
