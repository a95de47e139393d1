//! access(5) right-hand sides and the replies restrictions build, exactly as smtpd formats them.
//!
//! `parse_action` reads one table value; `Voice` is who a reject speaks for (`<NAME>: CLASS
//! rejected: TEXT`); `dsn_fix` applies Postfix's enhanced-code rules (class digit follows the reply
//! code, X.1.Y remapped for senders and recipients).

use crate::smtp::Reply;

/// Reply-code parameters (postconf defaults in [`Codes::default`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Codes {
    pub(crate) reject: u16,
    pub(crate) defer: u16,
    pub(crate) relay_domains_reject: u16,
    pub(crate) access_map_reject: u16,
    pub(crate) access_map_defer: u16,
    pub(crate) invalid_hostname_reject: u16,
    pub(crate) non_fqdn_reject: u16,
}

impl Default for Codes {
    fn default() -> Self {
        Codes {
            reject: 554,
            defer: 450,
            relay_domains_reject: 554,
            access_map_reject: 554,
            access_map_defer: 450,
            invalid_hostname_reject: 501,
            non_fqdn_reject: 504,
        }
    }
}

pub(crate) type Dsn = (u8, u16, u16);

/// A parsed access-table value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action<'v> {
    Ok,
    Dunno,
    /// REJECT, DEFER or a 4NN/5NN value: reply code, enhanced code, text.
    Reply {
        code: u16,
        dsn: Dsn,
        text: &'v str,
    },
    DeferIfPermit {
        dsn: Dsn,
        text: &'v str,
    },
    DeferIfReject {
        dsn: Dsn,
        text: &'v str,
    },
    /// WARN / INFO: logged, then DUNNO.
    Log {
        action: &'static str,
        text: &'v str,
    },
    /// A list of restriction or class names, evaluated in place.
    Restrictions(&'v str),
    /// An action that acts on the queued message, which a proxy does not own.
    Unsupported(&'static str),
    /// A lookup table as a value (Postfix: "do not specify lookup tables inside SMTPD access maps").
    Table,
    /// A 2NN/3NN code or an empty value.
    Invalid,
}

const MESSAGE_ACTIONS: &[&str] = &[
    "HOLD", "DISCARD", "FILTER", "REDIRECT", "BCC", "PREPEND", "HANGUP",
];

/// The message actions whose verdict is DUNNO in Postfix (check_table_result returns
/// SMTPD_CHECK_DUNNO after noting the action): relayguard can answer exactly as Postfix does and
/// leave the action to an MTA that holds the same table. DISCARD is not among them: it accepts
/// the recipient and skips every later restriction, so it decides.
pub(crate) const MTA_ACTIONS: &[&str] = &["HOLD", "FILTER", "REDIRECT", "BCC", "PREPEND"];

/// Splits a leading `D.D.D ` enhanced code off `text` (Postfix dsn_valid + a following space).
pub(crate) fn split_dsn(text: &str) -> (Option<Dsn>, &str) {
    // `REJECT 5.7.9` alone is a code with the default text [live].
    let (head, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let mut parts = head.split('.');
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (None, text);
    };
    let ok = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !(a.len() == 1 && matches!(a, "2" | "4" | "5") && ok(b, 3) && ok(c, 3)) {
        return (None, text);
    }
    match (a.parse(), b.parse(), c.parse()) {
        (Ok(a), Ok(b), Ok(c)) => (Some((a, b, c)), rest.trim_start()),
        _ => (None, text),
    }
}

fn word_and_text(value: &str) -> (&str, &str) {
    match value.split_once(char::is_whitespace) {
        Some((w, t)) => (w, t.trim_start()),
        None => (value, ""),
    }
}

fn with_default<'v>(text: &'v str, default: &'static str) -> &'v str {
    if text.is_empty() {
        default
    } else {
        text
    }
}

/// Parses an access-table value the way smtpd_check.c check_table_result does.
pub(crate) fn parse_action<'v>(value: &'v str, codes: &Codes) -> Action<'v> {
    let value = value.trim();
    if value.is_empty() {
        return Action::Invalid;
    }
    let (word, text) = word_and_text(value);
    let w = word.to_ascii_uppercase();
    match w.as_str() {
        "OK" | "RELAY" => return Action::Ok,
        "DUNNO" => return Action::Dunno,
        "REJECT" | "DEFER" => {
            let (code, default_dsn) = if w == "REJECT" {
                (codes.access_map_reject, (5, 7, 1))
            } else {
                (codes.access_map_defer, (4, 7, 1))
            };
            let (dsn, text) = split_dsn(text);
            return Action::Reply {
                code,
                dsn: dsn.unwrap_or(default_dsn),
                text: with_default(text, "Access denied"),
            };
        }
        "DEFER_IF_PERMIT" | "DEFER_IF_REJECT" => {
            let (dsn, text) = split_dsn(text);
            let dsn = dsn.unwrap_or((4, 7, 1));
            let text = with_default(text, "Service unavailable");
            return if w == "DEFER_IF_PERMIT" {
                Action::DeferIfPermit { dsn, text }
            } else {
                Action::DeferIfReject { dsn, text }
            };
        }
        "WARN" => {
            return Action::Log {
                action: "warn",
                text,
            }
        }
        "INFO" => {
            return Action::Log {
                action: "info",
                text,
            }
        }
        _ => {}
    }
    if let Some(a) = MESSAGE_ACTIONS.iter().find(|a| **a == w) {
        return Action::Unsupported(a);
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits means OK (Postfix's alldig rule): `550` alone accepts.
        return Action::Ok;
    }
    let b = value.as_bytes();
    if b.len() > 3 && b[..3].iter().all(u8::is_ascii_digit) && !b[3].is_ascii_digit() {
        let code: u16 = value[..3].parse().unwrap_or(0);
        if !(400..600).contains(&code) {
            return Action::Invalid;
        }
        let (dsn, text) = split_dsn(value[4..].trim_start());
        let default = if code >= 500 { (5, 7, 1) } else { (4, 7, 1) };
        return Action::Reply {
            code,
            dsn: dsn.unwrap_or(default),
            text,
        };
    }
    if word.contains(':') {
        return Action::Table;
    }
    Action::Restrictions(value)
}

/// Whose voice a reply speaks with: the reply name and class in `<NAME>: CLASS rejected: TEXT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum VoiceKind {
    Client,
    /// The client by its unverified (PTR) name: reject_rhsbl_reverse_client and the
    /// check_reverse_client_hostname_* restrictions.
    ReverseClient,
    Helo,
    Sender,
    Recipient,
    /// check_sasl_access: the client by its login name.
    Sasl,
    Data,
    EndOfData,
    ClientCert,
}

impl VoiceKind {
    pub(crate) fn class(self) -> &'static str {
        match self {
            VoiceKind::Client => "Client host",
            VoiceKind::ReverseClient => "Unverified Client host",
            VoiceKind::Helo => "Helo command",
            VoiceKind::Sender => "Sender address",
            VoiceKind::Recipient => "Recipient address",
            VoiceKind::Sasl => "SASL login name",
            VoiceKind::Data => "Data command",
            VoiceKind::EndOfData => "End-of-data",
            VoiceKind::ClientCert => "Client certificate",
        }
    }
}

/// Postfix's smtpd_dsn_fix: the class digit follows the reply code, and address-status codes
/// X.1.Y are mapped to what is being rejected.
pub(crate) fn dsn_fix(code: u16, dsn: Dsn, voice: VoiceKind) -> Dsn {
    let class = (code / 100) as u8;
    let (_, s, d) = dsn;
    if s != 1 {
        return (class, s, d);
    }
    let d = match voice {
        VoiceKind::Sender => match d {
            1 | 3 | 4 | 6 | 7 => 7,
            2 | 8 => 8,
            _ => 0,
        },
        VoiceKind::Recipient => match d {
            1..=6 => d,
            7 => 3,
            8 => 2,
            _ => 0,
        },
        _ => return (class, 0, 0),
    };
    (class, 1, d)
}

/// Truncates to 510 characters and turns non-printable characters into spaces, as
/// smtpd_check_reject does before sending.
pub(crate) fn printable(text: String) -> String {
    let mut t: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if t.len() > 510 {
        let mut end = 510;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
    }
    t
}

/// `451 4.3.5 Server configuration error`, what smtpd answers for an unusable access value.
pub(crate) fn config_error() -> Reply {
    Reply::new(451, (4, 3, 5), "Server configuration error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_as_the_reference_lists_them() {
        let c = Codes::default();
        assert_eq!(parse_action("OK any text", &c), Action::Ok);
        assert_eq!(parse_action("relay", &c), Action::Ok);
        assert_eq!(parse_action("12345", &c), Action::Ok);
        assert_eq!(parse_action("550", &c), Action::Ok);
        assert_eq!(
            parse_action("REJECT", &c),
            Action::Reply {
                code: 554,
                dsn: (5, 7, 1),
                text: "Access denied"
            }
        );
        assert_eq!(
            parse_action("reject 4.7.9 txt", &c),
            Action::Reply {
                code: 554,
                dsn: (4, 7, 9),
                text: "txt"
            }
        );
        assert_eq!(
            parse_action("DEFER come back later", &c),
            Action::Reply {
                code: 450,
                dsn: (4, 7, 1),
                text: "come back later"
            }
        );
        assert_eq!(
            parse_action("550 5.1.1 no such user", &c),
            Action::Reply {
                code: 550,
                dsn: (5, 1, 1),
                text: "no such user"
            }
        );
        assert_eq!(
            parse_action("450 later", &c),
            Action::Reply {
                code: 450,
                dsn: (4, 7, 1),
                text: "later"
            }
        );
        assert_eq!(parse_action("250 fine", &c), Action::Invalid);
        assert_eq!(
            parse_action("DEFER_IF_PERMIT", &c),
            Action::DeferIfPermit {
                dsn: (4, 7, 1),
                text: "Service unavailable"
            }
        );
        assert_eq!(
            parse_action("WARN warned text", &c),
            Action::Log {
                action: "warn",
                text: "warned text"
            }
        );
        assert_eq!(
            parse_action("FILTER smtp:[127.0.0.1]:10025", &c),
            Action::Unsupported("FILTER")
        );
        assert_eq!(parse_action("hash:/etc/postfix/foo", &c), Action::Table);
        assert_eq!(
            parse_action("permit_mynetworks, reject", &c),
            Action::Restrictions("permit_mynetworks, reject")
        );
    }

    #[test]
    fn dsn_fix_table() {
        assert_eq!(dsn_fix(554, (4, 7, 9), VoiceKind::Recipient), (5, 7, 9));
        assert_eq!(dsn_fix(450, (5, 7, 1), VoiceKind::Recipient), (4, 7, 1));
        assert_eq!(dsn_fix(550, (5, 1, 1), VoiceKind::Sender), (5, 1, 7));
        assert_eq!(dsn_fix(550, (5, 1, 8), VoiceKind::Recipient), (5, 1, 2));
        assert_eq!(dsn_fix(550, (5, 1, 9), VoiceKind::Recipient), (5, 1, 0));
        assert_eq!(dsn_fix(550, (5, 1, 1), VoiceKind::Client), (5, 0, 0));
    }
}
