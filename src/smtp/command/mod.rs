//! SMTP commands: parsed from one line into a `Command` that borrows it, and written back in
//! the canonical form relayguard sends upstream (never the client's raw line).
//!
//! Lenient where Postfix is lenient with `strict_rfc821_envelopes = no` (`MAIL FROM:a@b`,
//! `MAIL FROM: <a@b>`, lower-case verbs, extra blanks), strict where a lenient reading could
//! reach the upstream as something else (control characters, unbalanced brackets). Does not
//! allocate on success and never upper-cases a copy of the line.

use std::fmt;

use crate::smtp::decimal::push_decimal;

mod error;
mod params;

pub use error::CommandError;
pub use params::{Body, MailParams, Notify, RcptParams, Ret};

/// One client command. String fields point into the line given to [`parse`]. `Debug` never
/// prints an AUTH initial response (it holds the password, base64-encoded).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// The hostname argument as given (rest of the line, blanks trimmed).
    Ehlo(&'a str),
    Helo(&'a str),
    StartTls,
    /// `initial_response` is the base64 text (or `=`) as sent.
    Auth {
        mechanism: &'a str,
        initial_response: Option<&'a str>,
    },
    /// `from` is the address without `<>` or source route; `""` is the null sender.
    Mail {
        from: &'a str,
        params: MailParams<'a>,
    },
    /// `to` is the address without `<>` or source route, never empty.
    Rcpt {
        to: &'a str,
        params: RcptParams<'a>,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    /// The argument as given, brackets included: Postfix echoes it verbatim in its 252.
    Vrfy(&'a str),
    Help(Option<&'a str>),
}

/// Parses one command line (without its line end, as [`crate::smtp::line`] hands it out).
pub fn parse(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::BadUtf8)?;
    if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::ControlCharacter);
    }
    let line = line.trim_matches(is_blank);
    let (verb, rest) = split_word(line);
    if verb.is_empty() {
        return Err(CommandError::Empty);
    }
    let is = |v: &str| verb.eq_ignore_ascii_case(v);
    if is("MAIL") {
        parse_mail(rest)
    } else if is("RCPT") {
        parse_rcpt(rest)
    } else if is("EHLO") {
        non_empty(rest)
            .map(Command::Ehlo)
            .ok_or(CommandError::EhloSyntax)
    } else if is("HELO") {
        non_empty(rest)
            .map(Command::Helo)
            .ok_or(CommandError::HeloSyntax)
    } else if is("DATA") {
        bare(rest, Command::Data, CommandError::DataSyntax)
    } else if is("BDAT") {
        parse_bdat(rest).ok_or(CommandError::BdatSyntax)
    } else if is("RSET") {
        bare(rest, Command::Rset, CommandError::RsetSyntax)
    } else if is("NOOP") {
        Ok(Command::Noop)
    } else if is("QUIT") {
        Ok(Command::Quit)
    } else if is("STARTTLS") {
        bare(rest, Command::StartTls, CommandError::StartTlsSyntax)
    } else if is("AUTH") {
        let mut w = words(rest);
        match (w.next(), w.next(), w.next()) {
            (Some(mechanism), initial_response, None) => Ok(Command::Auth {
                mechanism,
                initial_response,
            }),
            _ => Err(CommandError::AuthSyntax),
        }
    } else if is("VRFY") {
        parse_vrfy(rest)
    } else if is("HELP") {
        Ok(Command::Help(non_empty(rest)))
    } else if is_non_smtp(verb) {
        Err(CommandError::NonSmtp)
    } else {
        Err(CommandError::Unrecognized)
    }
}

impl Command<'_> {
    /// The verb as Postfix names the stage in its logs (`MAIL`, `RCPT`, `END-OF-MESSAGE` is the
    /// session's).
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Help(_) => "HELP",
        }
    }

    /// Commands that must be the last of a pipelined group, as Postfix flags them for
    /// `reject_unauth_pipelining` (HELO, EHLO, DATA, NOOP, VRFY; postfix-semantics 9.5). The
    /// session also treats STARTTLS and QUIT specially on its own.
    pub fn must_end_group(&self) -> bool {
        matches!(
            self,
            Command::Helo(_) | Command::Ehlo(_) | Command::Data | Command::Noop | Command::Vrfy(_)
        )
    }

    /// Appends the canonical form with its CRLF: `MAIL FROM:<a@b.example> SIZE=123
    /// BODY=8BITMIME\r\n`. Parsing it again gives back an equal command.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Command::Ehlo(host) | Command::Helo(host) => {
                out.extend_from_slice(self.verb().as_bytes());
                out.push(b' ');
                out.extend_from_slice(host.as_bytes());
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                out.extend_from_slice(b"AUTH ");
                out.extend_from_slice(mechanism.as_bytes());
                if let Some(ir) = initial_response {
                    out.push(b' ');
                    out.extend_from_slice(ir.as_bytes());
                }
            }
            Command::Mail { from, params } => {
                out.extend_from_slice(b"MAIL FROM:<");
                out.extend_from_slice(from.as_bytes());
                out.push(b'>');
                params.write_to(out);
            }
            Command::Rcpt { to, params } => {
                out.extend_from_slice(b"RCPT TO:<");
                out.extend_from_slice(to.as_bytes());
                out.push(b'>');
                params.write_to(out);
            }
            Command::Bdat { size, last } => {
                out.extend_from_slice(b"BDAT ");
                push_decimal(out, *size);
                if *last {
                    out.extend_from_slice(b" LAST");
                }
            }
            Command::Vrfy(arg) => {
                out.extend_from_slice(b"VRFY ");
                out.extend_from_slice(arg.as_bytes());
            }
            Command::Help(arg) => {
                out.extend_from_slice(b"HELP");
                if let Some(arg) = arg {
                    out.push(b' ');
                    out.extend_from_slice(arg.as_bytes());
                }
            }
            Command::StartTls | Command::Data | Command::Rset | Command::Noop | Command::Quit => {
                out.extend_from_slice(self.verb().as_bytes())
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(h) => f.debug_tuple("Ehlo").field(h).finish(),
            Command::Helo(h) => f.debug_tuple("Helo").field(h).finish(),
            Command::Auth {
                mechanism,
                initial_response,
            } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial_response", &initial_response.map(|_| "<redacted>"))
                .finish(),
            Command::Mail { from, params } => f
                .debug_struct("Mail")
                .field("from", from)
                .field("params", params)
                .finish(),
            Command::Rcpt { to, params } => f
                .debug_struct("Rcpt")
                .field("to", to)
                .field("params", params)
                .finish(),
            Command::Bdat { size, last } => f
                .debug_struct("Bdat")
                .field("size", size)
                .field("last", last)
                .finish(),
            Command::Vrfy(a) => f.debug_tuple("Vrfy").field(a).finish(),
            Command::Help(a) => f.debug_tuple("Help").field(a).finish(),
            Command::StartTls | Command::Data | Command::Rset | Command::Noop | Command::Quit => {
                f.write_str(self.verb())
            }
        }
    }
}

/// Postfix splits commands on blanks; a tab is one too.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The first word and the rest with leading blanks removed.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(is_blank) {
        Some(i) => (&s[..i], s[i..].trim_start_matches(is_blank)),
        None => (s, ""),
    }
}

/// The blank-separated words of `s`.
fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_blank).filter(|w| !w.is_empty())
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn bare<'a>(rest: &str, ok: Command<'a>, err: CommandError) -> Result<Command<'a>, CommandError> {
    if rest.is_empty() {
        Ok(ok)
    } else {
        Err(err)
    }
}

/// Postfix's `smtpd_forbidden_commands = CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}` plus its
/// `is_header()` test on the verb of an unknown command (`Subject:`, `X-Foo:bar`).
fn is_non_smtp(verb: &str) -> bool {
    let starts_with_letter = verb.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    let header_like = match verb.find(':') {
        Some(colon) if colon > 0 => verb[..colon].bytes().all(|b| b.is_ascii_graphic()),
        _ => false,
    };
    !starts_with_letter
        || header_like
        || ["GET", "POST", "CONNECT"]
            .iter()
            .any(|v| verb.eq_ignore_ascii_case(v))
}

/// strict_rfc821_envelopes: the MAIL FROM / RCPT TO argument is an RFC 821 `<path>`, not a
/// bare address (extract_addr's strict mode). Only meaningful for a line that parsed as MAIL
/// or RCPT.
pub fn path_is_bracketed(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line);
    line.split_once(':')
        .is_some_and(|(_, arg)| arg.trim_start_matches(is_blank).starts_with('<'))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_mail(rest: &str) -> Result<Command<'_>, CommandError> {
    let arg = strip_prefix_ci(rest, "FROM:").ok_or(CommandError::MailSyntax)?;
    let arg = arg.trim_start_matches(is_blank);
    if arg.is_empty() {
        return Err(CommandError::MailSyntax);
    }
    let (addr, params) = split_address(arg).ok_or(CommandError::BadSender)?;
    let from = check_address(addr).ok_or(CommandError::BadSender)?;
    Ok(Command::Mail {
        from,
        params: MailParams::parse(params)?,
    })
}

fn parse_rcpt(rest: &str) -> Result<Command<'_>, CommandError> {
    let arg = strip_prefix_ci(rest, "TO:").ok_or(CommandError::RcptSyntax)?;
    let arg = arg.trim_start_matches(is_blank);
    if arg.is_empty() {
        return Err(CommandError::RcptSyntax);
    }
    let (addr, params) = split_address(arg).ok_or(CommandError::BadRecipient)?;
    let to = check_address(addr)
        .filter(|a| !a.is_empty())
        .ok_or(CommandError::BadRecipient)?;
    Ok(Command::Rcpt {
        to,
        params: RcptParams::parse(params)?,
    })
}

fn parse_vrfy(rest: &str) -> Result<Command<'_>, CommandError> {
    let mut w = words(rest);
    match (w.next(), w.next(), w.next()) {
        (None, _, _) => Err(CommandError::VrfySyntax),
        (Some(arg), None, None) => Ok(Command::Vrfy(arg)),
        (Some(arg), Some(opt), None) if opt.eq_ignore_ascii_case("SMTPUTF8") => {
            Ok(Command::Vrfy(arg))
        }
        _ => Err(CommandError::BadRecipient),
    }
}

fn parse_bdat(rest: &str) -> Option<Command<'_>> {
    let mut w = words(rest);
    let size = w.next()?;
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let size = size.parse().ok()?;
    match (w.next(), w.next()) {
        (None, _) => Some(Command::Bdat { size, last: false }),
        (Some(l), None) if l.eq_ignore_ascii_case("LAST") => {
            Some(Command::Bdat { size, last: true })
        }
        _ => None,
    }
}

/// Splits the address from the parameters. `<...>` may hold quoted `>` and blanks; it must be
/// followed by a blank or the end (`<a@b>SIZE=1` is refused, as Postfix does). Without `<` the
/// address is the first word.
fn split_address(arg: &str) -> Option<(&str, &str)> {
    let Some(inner) = arg.strip_prefix('<') else {
        let (addr, params) = split_word(arg);
        return Some((addr, params));
    };
    let close = closing_bracket(inner)?;
    let after = &inner[close + 1..];
    if !after.is_empty() && !after.starts_with(is_blank) {
        return None;
    }
    Some((&inner[..close], after.trim_start_matches(is_blank)))
}

/// Index of the `>` that ends a bracketed address, skipping quoted strings and `\` escapes.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Refuses what Postfix calls illegal address syntax (unquoted blanks, `user@`) and what would
/// not survive being written back as `<address>` (stray brackets, an open quote); drops an RFC
/// 5321 source route (`@a,@b:user@c` -> `user@c`), which servers are to ignore.
fn check_address(addr: &str) -> Option<&str> {
    let addr = match route_end(addr)? {
        Some(i) => {
            let rest = &addr[i + 1..];
            // What is left must read the same when written back as `<rest>`: a second route
            // (`@:@:`) would be stripped again there, and the command would change meaning.
            if rest.is_empty() || route_end(rest)?.is_some() {
                return None;
            }
            rest
        }
        None => addr,
    };
    if addr.ends_with('@') {
        return None;
    }
    Some(addr)
}

/// Where the source route of `addr` ends (its `:`), if it has one; `None` for syntax that
/// cannot be written back as `<addr>` (unquoted blanks or brackets, an open quote or escape).
fn route_end(addr: &str) -> Option<Option<usize>> {
    let mut quoted = false;
    let mut escaped = false;
    let mut route_end = None;
    for (i, b) in addr.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            _ if quoted => {}
            b' ' | b'\t' | b'<' | b'>' => return None,
            b':' if route_end.is_none() && addr.starts_with('@') => route_end = Some(i),
            _ => {}
        }
    }
    if quoted || escaped {
        return None;
    }
    Some(route_end)
}

#[cfg(test)]
mod tests;
