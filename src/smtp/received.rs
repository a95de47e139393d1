//! relayguard's own `Received:` trace header (RFC 5321 4.4), shaped as Postfix's smtpd writes
//! it, built from facts the session hands in: no clock, no socket, the date comes as text.
//!
//! Every client-supplied value (HELO, verified name, login, recipient) is reduced to printable
//! ASCII without the characters that would change the header's structure: `(`, `)` and `\`
//! would open or close a comment early, `;` would fake the separator before the date, `<` and
//! `>` the recipient's brackets, and whitespace would split one value into two tokens. Each
//! value is cut to [`MAX_VALUE`] characters, so every folded line stays under 998 octets, and
//! lines are folded at 78 where the tokens allow. Continuation lines start with a tab, so no
//! line of the header can start with `.` (it cannot be read as a DATA terminator or as a
//! dot-stuffed line) or be empty (it cannot end the header section).

/// Longest client-supplied value kept: longer ones are cut and end in `...`.
pub const MAX_VALUE: usize = 255;
/// RFC 5322 2.1.1's SHOULD: fold before a line grows past this (without the CRLF).
const FOLD_AT: usize = 78;

/// The negotiated TLS session, as Postfix's smtpd_tls_received_header writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsLine<'a> {
    pub protocol: &'a str,
    pub cipher: &'a str,
    pub bits: u16,
}

/// What the header says; see [`TraceFacts::header`].
#[derive(Clone, Debug)]
pub struct TraceFacts<'a> {
    /// The HELO/EHLO argument; `None` when the client sent none (the name takes its place).
    pub helo: Option<&'a str>,
    /// The verified client name, `unknown` when it was not verified.
    pub name: &'a str,
    /// The client address as text (`192.0.2.1`, `2001:db8::1`); IPv6 is written `IPv6:...`.
    pub addr: &'a str,
    /// Written only when the listener sets smtpd_tls_received_header.
    pub tls: Option<TlsLine<'a>>,
    /// Written only when the listener sets smtpd_sasl_authenticated_header.
    pub login: Option<&'a str>,
    /// The session used EHLO, TLS, AUTH: the RFC 3848 protocol name.
    pub esmtp: bool,
    pub encrypted: bool,
    pub authenticated: bool,
    /// relayguard's myhostname.
    pub by: &'a str,
    /// The message's id, also in relayguard's log line for it.
    pub id: &'a str,
    /// Named only when the message has exactly one recipient (as Postfix).
    pub recipient: Option<&'a str>,
    /// RFC 5322 date-time (`Tue, 24 Nov 2026 06:33:22 +0000`).
    pub date: &'a str,
}

impl TraceFacts<'_> {
    /// `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA` or `ESMTPSA` (RFC 3848; HELO clients stay `SMTP`).
    pub fn protocol(&self) -> &'static str {
        match (self.esmtp, self.encrypted, self.authenticated) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }

    /// The whole header field, folded, each line ending in CRLF.
    pub fn header(&self) -> Vec<u8> {
        let helo: Option<String> = self.helo.map(safe);
        let name = safe(self.name);
        let addr = address(self.addr);
        // Tokens never split across lines; a fold goes between them.
        let mut tokens: Vec<String> = Vec::with_capacity(10);
        // As Postfix's smtpd: the name stands in for a HELO the client never sent.
        tokens.push(format!("from {}", helo.as_deref().unwrap_or(&name)));
        tokens.push(format!("({name} [{addr}])"));
        if let Some(tls) = self.tls {
            tokens.push(format!(
                "(using {} with cipher {} ({}/{} bits))",
                safe(tls.protocol),
                safe(tls.cipher),
                tls.bits,
                tls.bits
            ));
        }
        if let Some(login) = self.login {
            tokens.push(format!("(Authenticated sender: {})", safe(login)));
        }
        tokens.push(format!("by {}", safe(self.by)));
        tokens.push("(relayguard)".into());
        tokens.push(format!("with {}", self.protocol()));
        let id = safe(self.id);
        match self.recipient {
            Some(rcpt) => {
                tokens.push(format!("id {id}"));
                tokens.push(format!("for <{}>;", safe(rcpt)));
            }
            None => tokens.push(format!("id {id};")),
        }
        // relayguard's own text, with its spaces; not the client's.
        tokens.push(self.date.to_owned());
        fold("Received:", &tokens)
    }
}

/// `[IPv6:2001:db8::1]`'s inside, as Postfix's smtpd writes an IPv6 client (RFC 5321 4.1.3).
fn address(addr: &str) -> String {
    let addr = safe(addr);
    if addr.contains(':') {
        format!("IPv6:{addr}")
    } else {
        addr
    }
}

/// A client-supplied value made safe for the header: printable ASCII only, structure
/// characters replaced by `?`, at most [`MAX_VALUE`] characters, never empty.
pub fn safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_VALUE));
    for (n, c) in value.chars().enumerate() {
        if n == MAX_VALUE {
            out.truncate(MAX_VALUE - 3);
            out.push_str("...");
            break;
        }
        let keep = c.is_ascii_graphic() && !matches!(c, '(' | ')' | '\\' | ';' | '<' | '>');
        out.push(if keep { c } else { '?' });
    }
    if out.is_empty() {
        out.push('?');
    }
    out
}

/// `name` and the tokens as one field: tokens joined by a space while the line stays within
/// [`FOLD_AT`], otherwise on a new line that starts with a tab (RFC 5322 2.2.3).
fn fold(name: &str, tokens: &[String]) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push_str(name);
    let mut line = name.len();
    for token in tokens {
        if line != name.len() && line + 1 + token.len() > FOLD_AT {
            out.push_str("\r\n\t");
            line = 1;
        } else {
            out.push(' ');
            line += 1;
        }
        out.push_str(token);
        line += token.len();
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> TraceFacts<'static> {
        TraceFacts {
            helo: Some("client.example"),
            name: "unknown",
            addr: "192.0.2.7",
            tls: None,
            login: None,
            esmtp: true,
            encrypted: false,
            authenticated: false,
            by: "relay.example",
            id: "7F3A0001",
            recipient: Some("u@local.test"),
            date: "Tue, 24 Nov 2026 06:33:22 +0000",
        }
    }

    fn text(f: &TraceFacts<'_>) -> String {
        String::from_utf8(f.header()).unwrap()
    }

    #[test]
    fn plain_esmtp_header_is_postfix_shaped() {
        assert_eq!(
            text(&facts()),
            "Received: from client.example (unknown [192.0.2.7]) by relay.example\r\n\
             \t(relayguard) with ESMTP id 7F3A0001 for <u@local.test>;\r\n\
             \tTue, 24 Nov 2026 06:33:22 +0000\r\n"
        );
    }

    #[test]
    fn tls_auth_ipv6_and_many_recipients() {
        let f = TraceFacts {
            addr: "2001:db8::7",
            name: "mail.client.example",
            tls: Some(TlsLine {
                protocol: "TLSv1.3",
                cipher: "TLS_AES_256_GCM_SHA384",
                bits: 256,
            }),
            login: Some("alice"),
            encrypted: true,
            authenticated: true,
            recipient: None,
            ..facts()
        };
        let t = text(&f);
        assert_eq!(
            t,
            "Received: from client.example (mail.client.example [IPv6:2001:db8::7])\r\n\
             \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\
             \t(Authenticated sender: alice) by relay.example (relayguard) with ESMTPSA\r\n\
             \tid 7F3A0001; Tue, 24 Nov 2026 06:33:22 +0000\r\n"
        );
        assert!(!t.contains(" for <"), "no recipient named for several");
    }

    #[test]
    fn protocol_names_follow_rfc3848() {
        let p = |esmtp, encrypted, authenticated| {
            TraceFacts {
                esmtp,
                encrypted,
                authenticated,
                ..facts()
            }
            .protocol()
        };
        assert_eq!(p(false, true, true), "SMTP");
        assert_eq!(p(true, false, false), "ESMTP");
        assert_eq!(p(true, true, false), "ESMTPS");
        assert_eq!(p(true, false, true), "ESMTPA");
        assert_eq!(p(true, true, true), "ESMTPSA");
    }

    #[test]
    fn no_helo_gives_the_name_in_its_place() {
        let f = TraceFacts {
            helo: None,
            ..facts()
        };
        assert!(
            text(&f).starts_with("Received: from unknown (unknown [192.0.2.7]) by relay.example"),
            "{}",
            text(&f)
        );
    }

    /// Every line ends in CRLF, holds no other control byte, stays under 998 octets, and only
    /// the first starts without a tab: one header field, whatever the client sent.
    fn assert_one_clean_field(t: &str) {
        assert!(t.ends_with("\r\n"));
        let lines: Vec<&str> = t[..t.len() - 2].split("\r\n").collect();
        assert!(lines[0].starts_with("Received: from "), "{t}");
        for (i, line) in lines.iter().enumerate() {
            assert!(line.len() < 998, "line {i} has {} octets", line.len());
            assert!(!line.is_empty() && !line.starts_with('.'), "{t}");
            assert_eq!(i > 0, line.starts_with('\t'), "{t}");
            assert!(
                line.bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
                "{line:?}"
            );
        }
        assert_eq!(t.matches('(').count(), t.matches(')').count(), "{t}");
        assert_eq!(t.matches(';').count(), 1, "{t}");
    }

    #[test]
    fn hostile_values_give_one_clean_bounded_field() {
        let long = "h".repeat(2000);
        let helo = format!("evil\r\n.\r\nX-Forged: yes\0\u{85}Grüße ( ) ; < > \\ {long}");
        let login = "bob\r\nReceived: from forged\0\u{7f}\u{e9}";
        let f = TraceFacts {
            helo: Some(&helo),
            name: "\r\n",
            login: Some(login),
            recipient: Some("a>;b@x\r\ny"),
            ..facts()
        };
        let t = text(&f);
        assert_one_clean_field(&t);
        assert!(
            t.contains("from evil??.??X-Forged:?yes??Gr??e?????????????hhh"),
            "{t}"
        );
        assert!(t.contains("hhh...\r\n\t(?? [192.0.2.7])"), "{t}");
        assert!(
            t.contains("(Authenticated sender: bob??Received:?from?forged???)"),
            "{t}"
        );
        assert!(t.contains("for <a??b@x??y>;"), "{t}");
        let helo_token = t.split_whitespace().nth(2).unwrap();
        assert_eq!(helo_token.len(), MAX_VALUE);
    }

    #[test]
    fn empty_values_become_a_placeholder() {
        assert_eq!(safe(""), "?");
        let f = TraceFacts {
            helo: Some(""),
            ..facts()
        };
        assert_one_clean_field(&text(&f));
        assert!(text(&f).starts_with("Received: from ? (unknown"));
    }

    #[test]
    fn safe_keeps_ordinary_names_and_cuts_at_the_bound() {
        assert_eq!(safe("mail-1.example.com"), "mail-1.example.com");
        assert_eq!(safe("[192.0.2.1]"), "[192.0.2.1]");
        assert_eq!(safe(&"x".repeat(MAX_VALUE)), "x".repeat(MAX_VALUE));
        let cut = safe(&"x".repeat(MAX_VALUE + 1));
        assert_eq!(cut.len(), MAX_VALUE);
        assert!(cut.ends_with("..."));
    }
}
