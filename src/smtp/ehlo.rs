//! EHLO capabilities: what the upstream offered, and relayguard's own EHLO reply built from it.
//!
//! relayguard offers a client only what it implements itself (PIPELINING, SIZE, VRFY,
//! STARTTLS, ENHANCEDSTATUSCODES) and what it relays and the upstream supports (AUTH and its
//! mechanisms, 8BITMIME, DSN, SMTPUTF8, CHUNKING). XCLIENT, XFORWARD and any extension it does
//! not parse are never offered: it relays only what it understands.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use smallvec::smallvec;

use super::ehlo_mask::EhloMask;
use super::reply::{Reply, ReplyLines};
use super::response::parse_reply;
use super::sasl_mechanisms::SaslSecurity;

/// The extensions an upstream listed in its EHLO reply, keywords upper-cased. Shared: every
/// upstream connection of a worker usually holds the same list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    keywords: Arc<[(String, String)]>,
}

/// What relayguard may offer this client, decided by the session.
#[derive(Clone, Debug)]
pub struct Offer {
    pub hostname: String,
    pub starttls: bool,
    /// AUTH may be offered, with the upstream's mechanisms that these options allow.
    pub auth: Option<SaslSecurity>,
    /// broken_sasl_auth_clients: repeat the mechanisms in an `AUTH=` line.
    pub broken_auth_clients: bool,
    /// message_size_limit; 0 means none.
    pub size_limit: u64,
    pub chunking: bool,
    pub vrfy: bool,
    /// The keywords smtpd_discard_ehlo_keywords (or its address map) removes for this client.
    pub discard: EhloMask,
}

impl Capabilities {
    /// Reads an EHLO reply as it came off the wire: `wire` is the whole reply, framed by
    /// [`scan_reply`](super::response::scan_reply), its first line the server's name. The
    /// upstream answers every connection's EHLO alike, so each worker keeps the last reply's
    /// extension lines as sent and hands its list out again while they are the same bytes: no
    /// copy, no parse, no allocation.
    pub fn from_ehlo_wire(wire: &[u8]) -> Capabilities {
        type Last = Option<(Vec<u8>, Capabilities)>;
        thread_local! {
            static LAST: RefCell<Last> = const { RefCell::new(None) };
        }
        let extensions = memchr::memchr(b'\n', wire).map_or(&[][..], |lf| &wire[lf + 1..]);
        LAST.with_borrow_mut(|last| match last {
            Some((raw, caps)) if raw.as_slice() == extensions => caps.clone(),
            _ => {
                let caps = match parse_reply(wire) {
                    Ok(Some((reply, _))) => Self::from_ehlo(&reply),
                    _ => Capabilities::default(),
                };
                *last = Some((extensions.to_vec(), caps.clone()));
                caps
            }
        })
    }

    /// Reads a parsed EHLO reply (the first line is the server's name and is skipped).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        Self::parse(reply.lines.get(1..).unwrap_or_default())
    }

    fn parse(extensions: &[Cow<'static, str>]) -> Capabilities {
        let keywords = extensions
            .iter()
            .map(|line| {
                let (kw, params) = line.split_once([' ', '=']).unwrap_or((line, ""));
                (kw.to_ascii_uppercase(), params.trim().to_owned())
            })
            .collect();
        Capabilities { keywords }
    }

    pub fn offers(&self, keyword: &str) -> bool {
        self.keywords
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(keyword))
    }

    pub fn params(&self, keyword: &str) -> Option<&str> {
        self.keywords
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(keyword))
            .map(|(_, p)| p.as_str())
    }

    /// The upstream's SASL mechanisms, in its order, without duplicates (`AUTH=` lines too).
    pub fn auth_mechanisms(&self) -> Vec<&str> {
        let mut mechs: Vec<&str> = Vec::new();
        for (k, p) in self.keywords.iter() {
            if k == "AUTH" {
                for m in p.split_ascii_whitespace() {
                    if !mechs.iter().any(|x| x.eq_ignore_ascii_case(m)) {
                        mechs.push(m);
                    }
                }
            }
        }
        mechs
    }

    /// The upstream's SIZE limit; `Some(0)` for a plain `SIZE`.
    pub fn size(&self) -> Option<u64> {
        self.params("SIZE").map(|p| p.parse().unwrap_or(0))
    }

    /// The upstream's mechanisms that `security` allows, in its order (what AUTH offers and
    /// accepts).
    pub fn allowed_mechanisms(&self, security: SaslSecurity) -> Vec<&str> {
        security.filter(&self.auth_mechanisms())
    }

    /// relayguard's EHLO reply for a client, in Postfix's keyword order (smtpd.c ehlo_cmd).
    pub fn advertise(&self, offer: &Offer) -> Reply {
        let kept = |bit: u16| !offer.discard.discards(bit);
        let mut lines: ReplyLines = smallvec![offer.hostname.clone().into()];
        if kept(EhloMask::PIPELINING) {
            lines.push("PIPELINING".into());
        }
        let size = match (offer.size_limit, self.size().unwrap_or(0)) {
            (0, 0) => 0,
            (0, up) => up,
            (ours, 0) => ours,
            (ours, up) => ours.min(up),
        };
        if kept(EhloMask::SIZE) {
            lines.push(if size == 0 {
                "SIZE".into()
            } else {
                format!("SIZE {size}").into()
            });
        }
        if offer.vrfy && kept(EhloMask::VRFY) {
            lines.push("VRFY".into());
        }
        if offer.starttls && kept(EhloMask::STARTTLS) {
            lines.push("STARTTLS".into());
        }
        let mechs = offer
            .auth
            .filter(|_| kept(EhloMask::AUTH))
            .map(|security| self.allowed_mechanisms(security).join(" "))
            .unwrap_or_default();
        if !mechs.is_empty() {
            lines.push(format!("AUTH {mechs}").into());
            // Postfix puts the pre-RFC 2554 form right after the standard one.
            if offer.broken_auth_clients {
                lines.push(format!("AUTH={mechs}").into());
            }
        }
        if kept(EhloMask::ENHANCEDSTATUSCODES) {
            lines.push("ENHANCEDSTATUSCODES".into());
        }
        for (kw, bit) in [
            ("8BITMIME", EhloMask::BITMIME8),
            ("DSN", EhloMask::DSN),
            ("SMTPUTF8", EhloMask::SMTPUTF8),
        ] {
            if self.offers(kw) && kept(bit) {
                lines.push(kw.into());
            }
        }
        if offer.chunking && self.offers("CHUNKING") && kept(EhloMask::CHUNKING) {
            lines.push("CHUNKING".into());
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

    const POSTFIX: &[u8] = b"250-mx.relayguard.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250-X-UNKNOWN foo\r\n250 CHUNKING\r\n";

    fn offer() -> Offer {
        Offer {
            hostname: "relayguard.test".into(),
            starttls: true,
            auth: Some(SaslSecurity::DEFAULT),
            broken_auth_clients: false,
            size_limit: 5_000_000,
            chunking: false,
            vrfy: true,
            discard: EhloMask::default(),
        }
    }

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn filters_the_upstream_offer() {
        let caps = Capabilities::from_ehlo(&parse_reply(POSTFIX).unwrap().unwrap().0);
        assert_eq!(caps.auth_mechanisms(), vec!["PLAIN", "LOGIN"]);
        assert_eq!(caps.size(), Some(10_240_000));
        assert_eq!(
            wire(&caps.advertise(&offer())),
            "250-relayguard.test\r\n250-PIPELINING\r\n250-SIZE 5000000\r\n250-VRFY\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n"
        );
        let quiet = Offer {
            starttls: false,
            auth: None,
            vrfy: false,
            chunking: true,
            size_limit: 0,
            ..offer()
        };
        assert_eq!(
            wire(&caps.advertise(&quiet)),
            "250-relayguard.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
        );
    }

    #[test]
    fn a_bare_upstream_gets_only_what_relayguard_does_itself() {
        let caps = Capabilities::from_ehlo(&Reply::plain(250, "tiny.example"));
        let text = wire(&caps.advertise(&Offer {
            size_limit: 0,
            ..offer()
        }));
        assert_eq!(text, "250-relayguard.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-VRFY\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n");
    }

    #[test]
    fn security_options_broken_clients_and_discarded_keywords() {
        let caps = Capabilities::from_ehlo(&parse_reply(POSTFIX).unwrap().unwrap().0);
        let no_plain = SaslSecurity::parse("noplaintext").unwrap();
        let text = wire(&caps.advertise(&Offer {
            auth: Some(no_plain),
            ..offer()
        }));
        assert!(!text.contains("AUTH"), "{text}");
        let text = wire(&caps.advertise(&Offer {
            broken_auth_clients: true,
            discard: EhloMask::parse("pipelining, dsn, starttls"),
            ..offer()
        }));
        assert_eq!(text, "250-relayguard.test\r\n250-SIZE 5000000\r\n250-VRFY\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
        let text = wire(&caps.advertise(&Offer {
            broken_auth_clients: true,
            discard: EhloMask::parse("auth"),
            ..offer()
        }));
        assert!(!text.contains("AUTH"), "{text}");
    }

    #[test]
    fn the_same_reply_shares_one_list_and_another_reply_is_read_afresh() {
        let first = Capabilities::from_ehlo_wire(POSTFIX);
        assert_eq!(
            first,
            Capabilities::from_ehlo(&parse_reply(POSTFIX).unwrap().unwrap().0)
        );
        // Another server name, the same extensions: the same list.
        let text = std::str::from_utf8(POSTFIX).unwrap();
        let renamed = text.replacen("mx.relayguard.test", "other.example", 1);
        let again = Capabilities::from_ehlo_wire(renamed.as_bytes());
        assert!(Arc::ptr_eq(&first.keywords, &again.keywords));
        let bare = Capabilities::from_ehlo_wire(b"250 tiny.example\r\n");
        assert!(!bare.offers("PIPELINING") && !bare.offers("SIZE"));
        let fewer =
            Capabilities::from_ehlo_wire(text.replacen("250-PIPELINING\r\n", "", 1).as_bytes());
        assert!(!fewer.offers("PIPELINING") && fewer.offers("SIZE"));
        let back = Capabilities::from_ehlo_wire(POSTFIX);
        assert!(back.offers("PIPELINING"));
        assert!(!Arc::ptr_eq(&first.keywords, &fewer.keywords));
    }
}
