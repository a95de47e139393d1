//! The upstream's EHLO capabilities, and the EHLO reply relayguard gives a client built from
//! them: Postfix's keyword order, only what relayguard relays, its own STARTTLS and SIZE.
//!
//! Unknown upstream extensions are dropped: relayguard writes every command upstream in its own
//! canonical form, so it can only offer what its parser understands. ETRN, XCLIENT, XFORWARD,
//! XVERP, BINARYMIME and the like are never offered to clients.

use std::borrow::Cow;

use super::reply::Reply;

/// One EHLO line: a keyword and its parameters, as the upstream sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub keyword: String,
    pub params: String,
}

/// What the upstream said in its EHLO reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// The upstream's name from the first line.
    pub hostname: String,
    pub extensions: Vec<Extension>,
}

/// Why an EHLO reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EhloError {
    #[error("upstream refused EHLO: {0}")]
    Refused(Reply),
    #[error("EHLO reply has no hostname")]
    NoHostname,
}

/// What relayguard may offer this client, decided by the session from config and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer<'a> {
    /// `$myhostname`: relayguard's name, the first line of its EHLO reply.
    pub hostname: &'a str,
    /// relayguard's own STARTTLS: TLS configured and not yet active.
    pub starttls: bool,
    /// SASL may be used by this client now (policy's `offers_auth`).
    pub auth: bool,
    /// `message_size_limit`, 0 for none.
    pub size_limit: u64,
    pub chunking: bool,
    /// relayguard answers VRFY itself (`disable_vrfy_command = no`), whatever the upstream says.
    pub vrfy: bool,
}

/// RFC 5321 4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
fn is_keyword(k: &str) -> bool {
    k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Capabilities {
    /// Reads a 250 EHLO reply. Lines that are not `keyword [params]` are skipped, among them
    /// Postfix's `AUTH=PLAIN LOGIN` for broken clients; the first line for a keyword wins.
    pub fn parse(reply: &Reply) -> Result<Self, EhloError> {
        if reply.code != 250 {
            return Err(EhloError::Refused(reply.clone()));
        }
        let mut lines = reply.lines.iter();
        let hostname = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .ok_or(EhloError::NoHostname)?
            .to_owned();
        let mut extensions: Vec<Extension> = Vec::new();
        for line in lines {
            let line = line.trim();
            let (keyword, params) = line.split_once(' ').unwrap_or((line, ""));
            if !is_keyword(keyword)
                || extensions
                    .iter()
                    .any(|e| e.keyword.eq_ignore_ascii_case(keyword))
            {
                continue;
            }
            extensions.push(Extension {
                keyword: keyword.to_owned(),
                params: params.trim().to_owned(),
            });
        }
        Ok(Self {
            hostname,
            extensions,
        })
    }

    fn get(&self, keyword: &str) -> Option<&Extension> {
        self.extensions
            .iter()
            .find(|e| e.keyword.eq_ignore_ascii_case(keyword))
    }

    /// The upstream advertised `keyword` (any case).
    pub fn offers(&self, keyword: &str) -> bool {
        self.get(keyword).is_some()
    }

    /// The parameters after `keyword`, as sent.
    pub fn params(&self, keyword: &str) -> Option<&str> {
        self.get(keyword).map(|e| e.params.as_str())
    }

    /// The upstream's SASL mechanisms, in its order.
    pub fn auth_mechanisms(&self) -> impl Iterator<Item = &str> {
        self.params("AUTH").unwrap_or("").split_whitespace()
    }

    /// `Some(0)` for a plain `SIZE` (no fixed limit), `None` when SIZE is not offered or its
    /// parameter is not a number.
    pub fn size(&self) -> Option<u64> {
        let p = self.params("SIZE")?;
        if p.is_empty() {
            Some(0)
        } else {
            p.parse().ok()
        }
    }

    /// The XCLIENT attributes the upstream accepts from relayguard (for `upstream/identity`).
    pub fn xclient_attributes(&self) -> impl Iterator<Item = &str> {
        self.params("XCLIENT").unwrap_or("").split_whitespace()
    }

    /// relayguard's EHLO reply for a client, in the order of Postfix's `ehlo_cmd`:
    /// PIPELINING, SIZE, VRFY, STARTTLS, AUTH, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8,
    /// CHUNKING. Relayed keywords appear only when the upstream offers them; SIZE carries the
    /// smaller non-zero limit of the upstream's and `offer.size_limit` (plain `SIZE` when both
    /// are 0); AUTH only with `offer.auth` and at least one upstream mechanism.
    pub fn advertise(&self, offer: &Offer) -> Reply {
        let mut lines: Vec<Cow<'static, str>> = vec![Cow::Owned(offer.hostname.to_owned())];
        let relayed = |k: &'static str, lines: &mut Vec<Cow<'static, str>>| {
            if self.offers(k) {
                lines.push(Cow::Borrowed(k));
            }
        };
        relayed("PIPELINING", &mut lines);
        if let Some(upstream) = self.size() {
            let limit = match (upstream, offer.size_limit) {
                (0, mine) => mine,
                (theirs, 0) => theirs,
                (theirs, mine) => theirs.min(mine),
            };
            lines.push(if limit == 0 {
                Cow::Borrowed("SIZE")
            } else {
                Cow::Owned(format!("SIZE {limit}"))
            });
        }
        if offer.vrfy {
            lines.push(Cow::Borrowed("VRFY"));
        }
        if offer.starttls {
            lines.push(Cow::Borrowed("STARTTLS"));
        }
        let mechanisms: Vec<&str> = self.auth_mechanisms().collect();
        if offer.auth && !mechanisms.is_empty() {
            lines.push(Cow::Owned(format!("AUTH {}", mechanisms.join(" "))));
        }
        relayed("ENHANCEDSTATUSCODES", &mut lines);
        relayed("8BITMIME", &mut lines);
        relayed("DSN", &mut lines);
        relayed("SMTPUTF8", &mut lines);
        if offer.chunking {
            relayed("CHUNKING", &mut lines);
        }
        Reply {
            code: 250,
            enhanced: None,
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::response::parse_reply;

    const POSTFIX: &[u8] = b"250-mx.relayguard.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
        250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n\
        250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n\
        250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

    fn postfix() -> Capabilities {
        let (reply, _) = parse_reply(POSTFIX).unwrap().unwrap();
        Capabilities::parse(&reply).unwrap()
    }

    fn offer() -> Offer<'static> {
        Offer {
            hostname: "relayguard.localhost",
            starttls: true,
            auth: true,
            size_limit: 0,
            chunking: true,
            vrfy: true,
        }
    }

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn reads_postfix_capabilities() {
        let c = postfix();
        assert_eq!(c.hostname, "mx.relayguard.test");
        assert!(c.offers("pipelining"));
        assert!(c.offers("XCLIENT"));
        assert!(!c.offers("BINARYMIME"));
        assert_eq!(c.size(), Some(10240000));
        assert_eq!(c.auth_mechanisms().collect::<Vec<_>>(), ["PLAIN", "LOGIN"]);
        assert_eq!(c.xclient_attributes().count(), 9);
        assert!(!c.offers("AUTH=PLAIN"));
    }

    #[test]
    fn advertises_in_postfix_order_without_etrn_or_xclient() {
        assert_eq!(
            wire(&postfix().advertise(&offer())),
            "250-relayguard.localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
             250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
             250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
        );
    }

    #[test]
    fn offer_switches_and_size() {
        let c = postfix();
        let minimal = Offer {
            starttls: false,
            auth: false,
            chunking: false,
            vrfy: false,
            size_limit: 5000,
            ..offer()
        };
        assert_eq!(
            wire(&c.advertise(&minimal)),
            "250-relayguard.localhost\r\n250-PIPELINING\r\n250-SIZE 5000\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n"
        );
        let bigger = Offer {
            size_limit: 99999999,
            ..offer()
        };
        assert!(wire(&c.advertise(&bigger)).contains("250-SIZE 10240000\r\n"));

        let (plain, _) = parse_reply(b"250-up\r\n250-SIZE\r\n250 AUTH\r\n")
            .unwrap()
            .unwrap();
        let plain = Capabilities::parse(&plain).unwrap();
        assert_eq!(plain.size(), Some(0));
        let r = wire(&plain.advertise(&offer()));
        assert_eq!(
            r,
            "250-relayguard.localhost\r\n250-SIZE\r\n250-VRFY\r\n250 STARTTLS\r\n"
        );
        let limited = Offer {
            size_limit: 777,
            ..offer()
        };
        assert!(wire(&plain.advertise(&limited)).contains("250-SIZE 777\r\n"));
    }

    #[test]
    fn bare_upstream_and_refusal() {
        let (r, _) = parse_reply(b"250 up.example\r\n").unwrap().unwrap();
        let c = Capabilities::parse(&r).unwrap();
        assert_eq!(
            wire(&c.advertise(&Offer {
                starttls: false,
                vrfy: false,
                ..offer()
            })),
            "250 relayguard.localhost\r\n"
        );
        let (r, _) = parse_reply(b"502 5.5.1 Error: command not implemented\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(
            Capabilities::parse(&r),
            Err(EhloError::Refused(_))
        ));
    }
}
