//! The SMTP dialogue's own rules, apart from the policy: which command is legal in which phase,
//! and the exact refusal when it is not. Pure: no I/O, no clock, no logging.
//!
//! One function, [`admit`], for the live session and for `relayguard check`, so the two cannot
//! drift: HELO required, TLS required first, AUTH state, nested MAIL, MAIL/RCPT/DATA order,
//! the recipient limit, SIZE, BDAT's place in a transaction and VRFY. Address syntax is the
//! command parser's (`smtp::command`), which both drive as well.

use crate::config::{SmtpdSettings, TlsLevel};
use crate::smtp::command::{path_is_bracketed, Command, CommandError};
use crate::smtp::ehlo_mask::EhloMask;
use crate::smtp::{replies, Reply};

/// Where the mail transaction stands, named for what it waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// No transaction: after connect, HELO/EHLO, RSET, STARTTLS or a finished message.
    #[default]
    ExpectMail,
    /// MAIL accepted; `recipients` accepted so far.
    ExpectRcpt { recipients: usize },
    /// BDAT chunks under way (`bytes` so far): only more BDAT continues the message.
    Chunking { bytes: u64 },
}

/// What the dialogue has established, the input [`admit`] judges a command against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dialogue {
    pub phase: Phase,
    /// HELO or EHLO was accepted since connect (or since STARTTLS).
    pub helo: bool,
    /// The upstream confirmed an AUTH in this session.
    pub authenticated: bool,
    pub tls: bool,
    /// The EHLO keywords this client was not offered; STARTTLS, BDAT, AUTH and the DSN
    /// parameters are refused with them, as smtpd.c does.
    pub discard: EhloMask,
}

/// The listener's settings that the rules read.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub helo_required: bool,
    /// smtpd_tls_security_level = encrypt.
    pub tls_required: bool,
    /// The listener can do STARTTLS at all.
    pub starttls_available: bool,
    pub recipient_limit: usize,
    /// 0: no limit.
    pub message_size_limit: u64,
    pub vrfy_disabled: bool,
    /// strict_rfc821_envelopes: MAIL and RCPT take `<address>` only.
    pub strict_rfc821: bool,
}

impl Rules {
    pub fn of(smtpd: &SmtpdSettings, has_tls_config: bool) -> Rules {
        Rules {
            helo_required: smtpd.helo_required,
            tls_required: smtpd.tls_level == TlsLevel::Encrypt,
            starttls_available: has_tls_config && smtpd.tls_level != TlsLevel::None,
            recipient_limit: smtpd.recipient_limit,
            message_size_limit: smtpd.message_size_limit,
            vrfy_disabled: smtpd.vrfy_disabled,
            strict_rfc821: smtpd.strict_rfc821,
        }
    }
}

/// Postfix's defaults (smtpd_recipient_limit = 1000, message_size_limit = 10240000, nothing
/// required), for a trace that has no listener's settings.
impl Default for Rules {
    fn default() -> Self {
        Rules {
            helo_required: false,
            tls_required: false,
            starttls_available: false,
            recipient_limit: 1000,
            message_size_limit: 10_240_000,
            vrfy_disabled: false,
            strict_rfc821: false,
        }
    }
}

/// Why a command is refused, and whether Postfix logs it as a `reject:` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reply: Reply,
    /// Postfix logs `NOQUEUE: reject: ...` for this one (the SIZE and recipient limits).
    pub logged: bool,
}

impl From<Reply> for Refusal {
    fn from(reply: Reply) -> Self {
        Refusal {
            reply,
            logged: false,
        }
    }
}

/// Whether `command` is refused with `530 5.7.0 Must issue a STARTTLS command first`: TLS is
/// required and not on, and it is not one of Postfix's PRE_TLS commands (postfix-semantics
/// 9.3). smtpd.c refuses it before the command's action runs, unlike every other refusal here.
pub fn needs_tls_first(rules: &Rules, dialogue: &Dialogue, command: &Command<'_>) -> bool {
    let pre_tls = matches!(
        command,
        Command::Ehlo(_) | Command::Helo(_) | Command::StartTls | Command::Noop | Command::Quit
    );
    rules.tls_required && !dialogue.tls && !pre_tls
}

/// Admits `command` in `dialogue`, or says how Postfix refuses it. The policy runs only after
/// a command was admitted.
pub fn admit(rules: &Rules, dialogue: &Dialogue, command: &Command<'_>) -> Result<(), Refusal> {
    if needs_tls_first(rules, dialogue, command) {
        return Err(replies::must_issue_starttls().into());
    }
    let in_transaction = dialogue.phase != Phase::ExpectMail;
    match command {
        Command::StartTls if dialogue.tls => Err(replies::tls_already_active().into()),
        Command::StartTls
            if !rules.starttls_available || dialogue.discard.discards(EhloMask::STARTTLS) =>
        {
            Err(replies::command_not_implemented().into())
        }
        Command::Auth { .. } if dialogue.authenticated => {
            Err(replies::already_authenticated().into())
        }
        Command::Auth { .. } if in_transaction => {
            Err(replies::mail_transaction_in_progress().into())
        }
        Command::Auth { .. } | Command::Mail { .. } if rules.helo_required && !dialogue.helo => {
            Err(replies::send_helo_first().into())
        }
        Command::Mail { .. } if in_transaction => Err(replies::nested_mail().into()),
        Command::Mail { params, .. }
            if dialogue.discard.discards(EhloMask::DSN)
                && (params.ret.is_some() || params.envid.is_some()) =>
        {
            Err(replies::dsn_disabled().into())
        }
        Command::Mail { params, .. }
            if rules.message_size_limit > 0
                && params.size.is_some_and(|s| s > rules.message_size_limit) =>
        {
            Err(Refusal {
                reply: replies::message_size_exceeds_limit(),
                logged: true,
            })
        }
        Command::Rcpt { params, .. } => match dialogue.phase {
            Phase::ExpectMail => Err(replies::need_mail().into()),
            Phase::Chunking { .. } => Err(replies::rcpt_after_bdat().into()),
            Phase::ExpectRcpt { recipients } if recipients >= rules.recipient_limit => {
                Err(Refusal {
                    reply: replies::too_many_recipients(),
                    logged: true,
                })
            }
            Phase::ExpectRcpt { .. }
                if dialogue.discard.discards(EhloMask::DSN)
                    && (params.notify.is_some() || params.orcpt.is_some()) =>
            {
                Err(replies::dsn_disabled().into())
            }
            Phase::ExpectRcpt { .. } => Ok(()),
        },
        Command::Data => match dialogue.phase {
            Phase::ExpectMail => Err(replies::need_rcpt().into()),
            Phase::Chunking { .. } => Err(replies::data_after_bdat().into()),
            Phase::ExpectRcpt { recipients: 0 } => Err(replies::no_valid_recipients().into()),
            Phase::ExpectRcpt { .. } => Ok(()),
        },
        Command::Vrfy(_) if rules.vrfy_disabled => Err(replies::vrfy_disabled().into()),
        _ => Ok(()),
    }
}

/// strict_rfc821_envelopes for an admitted MAIL or RCPT `command` read from `line`: an
/// address outside `<>`, or one that starts with `@`, is Postfix's illegal address syntax.
pub fn admit_path(rules: &Rules, command: &Command<'_>, line: &[u8]) -> Result<(), Refusal> {
    let (addr, refusal) = match command {
        Command::Mail { from, .. } => (from, CommandError::BadSender),
        Command::Rcpt { to, .. } => (to, CommandError::BadRecipient),
        _ => return Ok(()),
    };
    if !rules.strict_rfc821 || (path_is_bracketed(line) && !addr.starts_with('@')) {
        return Ok(());
    }
    Err(refusal.reply().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::parse;

    const RULES: Rules = Rules {
        helo_required: false,
        tls_required: false,
        starttls_available: true,
        recipient_limit: 2,
        message_size_limit: 1000,
        vrfy_disabled: false,
        strict_rfc821: false,
    };

    fn judge(rules: &Rules, dialogue: &Dialogue, line: &str) -> String {
        let command = parse(line.as_bytes()).unwrap();
        match admit(rules, dialogue, &command) {
            Ok(()) => "admitted".into(),
            Err(r) => r.reply.to_string(),
        }
    }

    fn in_phase(phase: Phase) -> Dialogue {
        Dialogue {
            phase,
            helo: true,
            ..Dialogue::default()
        }
    }

    #[test]
    fn transaction_order_as_postfix() {
        let idle = in_phase(Phase::ExpectMail);
        let mail = in_phase(Phase::ExpectRcpt { recipients: 0 });
        let rcpt = in_phase(Phase::ExpectRcpt { recipients: 1 });
        let full = in_phase(Phase::ExpectRcpt { recipients: 2 });
        let bdat = in_phase(Phase::Chunking { bytes: 10 });
        let cases = [
            (&idle, "MAIL FROM:<a@b.example>", "admitted"),
            (
                &idle,
                "RCPT TO:<c@d.example>",
                "503 5.5.1 Error: need MAIL command",
            ),
            (&idle, "DATA", "503 5.5.1 Error: need RCPT command"),
            (
                &mail,
                "MAIL FROM:<a@b.example>",
                "503 5.5.1 Error: nested MAIL command",
            ),
            (&mail, "DATA", "554 5.5.1 Error: no valid recipients"),
            (
                &mail,
                "AUTH PLAIN",
                "503 5.5.1 Error: MAIL transaction in progress",
            ),
            (&rcpt, "RCPT TO:<c@d.example>", "admitted"),
            (&rcpt, "DATA", "admitted"),
            (
                &full,
                "RCPT TO:<c@d.example>",
                "452 4.5.3 Error: too many recipients",
            ),
            (
                &bdat,
                "RCPT TO:<c@d.example>",
                "503 5.5.1 Error: RCPT after BDAT",
            ),
            (&bdat, "DATA", "503 5.5.1 Error: DATA after BDAT"),
            (
                &idle,
                "MAIL FROM:<a@b.example> SIZE=1001",
                "552 5.3.4 Message size exceeds fixed limit",
            ),
            (&idle, "MAIL FROM:<a@b.example> SIZE=1000", "admitted"),
        ];
        for (dialogue, line, want) in cases {
            assert_eq!(
                judge(&RULES, dialogue, line),
                want,
                "{line} in {dialogue:?}"
            );
        }
    }

    #[test]
    fn helo_required_tls_required_and_auth_state() {
        let no_helo = Dialogue::default();
        let helo_required = Rules {
            helo_required: true,
            ..RULES
        };
        assert_eq!(
            judge(&RULES, &no_helo, "MAIL FROM:<a@b.example>"),
            "admitted"
        );
        assert_eq!(
            judge(&helo_required, &no_helo, "MAIL FROM:<a@b.example>"),
            "503 5.5.1 Error: send HELO/EHLO first"
        );
        assert_eq!(
            judge(&helo_required, &no_helo, "AUTH PLAIN"),
            "503 5.5.1 Error: send HELO/EHLO first"
        );
        let tls_required = Rules {
            tls_required: true,
            ..RULES
        };
        let plain = in_phase(Phase::ExpectMail);
        for line in [
            "MAIL FROM:<a@b.example>",
            "RCPT TO:<c@d.example>",
            "DATA",
            "AUTH PLAIN",
            "RSET",
            "VRFY x",
        ] {
            assert_eq!(
                judge(&tls_required, &plain, line),
                "530 5.7.0 Must issue a STARTTLS command first",
                "{line}"
            );
        }
        for line in ["EHLO x", "HELO x", "STARTTLS", "NOOP", "QUIT"] {
            assert_eq!(judge(&tls_required, &plain, line), "admitted", "{line}");
        }
        let encrypted = Dialogue { tls: true, ..plain };
        assert_eq!(
            judge(&tls_required, &encrypted, "MAIL FROM:<a@b.example>"),
            "admitted"
        );
        assert_eq!(
            judge(&RULES, &encrypted, "STARTTLS"),
            "554 5.5.1 Error: TLS already active"
        );
        let authenticated = Dialogue {
            authenticated: true,
            ..plain
        };
        assert_eq!(
            judge(&RULES, &authenticated, "AUTH LOGIN"),
            "503 5.5.1 Error: already authenticated"
        );
        let no_vrfy = Rules {
            vrfy_disabled: true,
            ..RULES
        };
        assert_eq!(
            judge(&no_vrfy, &plain, "VRFY x"),
            "502 5.5.1 VRFY command is disabled"
        );
    }
}
