//! Why a command line was refused, and the one Postfix reply for each reason.

use crate::smtp::replies;
use crate::smtp::reply::Reply;

/// A command the session must refuse before acting on it. Each variant maps to exactly one
/// reply ([`CommandError::reply`]), Postfix 3.7's text where Postfix has one (checked live).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An empty or all-blank line: `500 5.5.2 Error: bad syntax`.
    #[error("empty command line")]
    Empty,
    /// Not UTF-8: `500 5.5.2 Error: bad UTF-8 syntax`.
    #[error("command is not valid UTF-8")]
    BadUtf8,
    /// A control character (bare CR, NUL, ...) other than a tab. Postfix passes them on; we refuse
    /// them because the canonical command goes to an upstream that might end a line at a bare
    /// CR. Ours: `500 5.5.2 Error: bad syntax`.
    #[error("control character in command")]
    ControlCharacter,
    /// An unknown verb, including XCLIENT, XFORWARD, ETRN, EXPN, which relayguard never relays:
    /// `500 5.5.2 Error: command not recognized`.
    #[error("command not recognized")]
    Unrecognized,
    /// HTTP verbs, header lines, lines not starting with a letter:
    /// `221 2.7.0 Error: I can break rules, too. Goodbye.` and close.
    #[error("non-SMTP command")]
    NonSmtp,
    #[error("HELO without hostname")]
    HeloSyntax,
    #[error("EHLO without hostname")]
    EhloSyntax,
    /// `MAIL`, `MAIL FROM:`, `MAIL TO:...`.
    #[error("MAIL syntax")]
    MailSyntax,
    #[error("bad sender address syntax")]
    BadSender,
    #[error("RCPT syntax")]
    RcptSyntax,
    /// Also `VRFY a b`.
    #[error("bad recipient address syntax")]
    BadRecipient,
    /// An unknown or unsupported MAIL/RCPT parameter, as the client wrote it (`FOO=bar`,
    /// `BODY=foo`, `SIZE` without value, `NOTIFY=` on MAIL).
    #[error("unsupported option {0}")]
    UnsupportedOption(String),
    /// `SIZE=` not all digits.
    #[error("bad message size syntax")]
    SizeSyntax,
    /// `SIZE=` beyond 64 bits.
    #[error("message size beyond any limit")]
    SizeOverflow,
    #[error("bad RET parameter")]
    RetSyntax,
    #[error("bad ENVID parameter")]
    EnvidSyntax,
    #[error("AUTH= given twice")]
    AuthDuplicate,
    #[error("bad NOTIFY parameter")]
    NotifySyntax,
    #[error("bad ORCPT parameter")]
    OrcptSyntax,
    #[error("DATA with an argument")]
    DataSyntax,
    #[error("RSET with an argument")]
    RsetSyntax,
    #[error("STARTTLS with an argument")]
    StartTlsSyntax,
    #[error("VRFY without address")]
    VrfySyntax,
    #[error("AUTH syntax")]
    AuthSyntax,
    /// Postfix disconnects after this one.
    #[error("BDAT syntax")]
    BdatSyntax,
}

impl CommandError {
    pub fn reply(&self) -> Reply {
        use CommandError::*;
        match self {
            Empty | ControlCharacter => Reply::new(500, (5, 5, 2), "Error: bad syntax"),
            BadUtf8 => Reply::new(500, (5, 5, 2), "Error: bad UTF-8 syntax"),
            Unrecognized => replies::command_not_recognized(),
            NonSmtp => replies::non_smtp_command(),
            HeloSyntax => Reply::plain(501, "Syntax: HELO hostname"),
            EhloSyntax => Reply::plain(501, "Syntax: EHLO hostname"),
            MailSyntax => Reply::new(501, (5, 5, 4), "Syntax: MAIL FROM:<address>"),
            BadSender => Reply::new(501, (5, 1, 7), "Bad sender address syntax"),
            RcptSyntax => Reply::new(501, (5, 5, 4), "Syntax: RCPT TO:<address>"),
            BadRecipient => Reply::new(501, (5, 1, 3), "Bad recipient address syntax"),
            UnsupportedOption(o) => Reply::new(555, (5, 5, 4), format!("Unsupported option: {o}")),
            SizeSyntax => Reply::new(501, (5, 5, 4), "Bad message size syntax"),
            SizeOverflow => Reply::new(
                552,
                (5, 3, 4),
                "Message size exceeds file system imposed limit",
            ),
            RetSyntax => Reply::new(501, (5, 5, 4), "Bad RET parameter syntax"),
            EnvidSyntax => Reply::new(501, (5, 5, 4), "Bad ENVID parameter syntax"),
            AuthDuplicate => replies::multiple_auth_options(),
            NotifySyntax => Reply::new(501, (5, 5, 4), "Error: Bad NOTIFY parameter syntax"),
            OrcptSyntax => Reply::new(501, (5, 5, 4), "Error: Bad ORCPT parameter syntax"),
            DataSyntax => Reply::new(501, (5, 5, 4), "Syntax: DATA"),
            RsetSyntax => Reply::new(501, (5, 5, 4), "Syntax: RSET"),
            StartTlsSyntax => Reply::new(501, (5, 5, 4), "Syntax: STARTTLS"),
            VrfySyntax => Reply::new(501, (5, 5, 4), "Syntax: VRFY address [SMTPUTF8]"),
            AuthSyntax => Reply::new(501, (5, 5, 4), "Syntax: AUTH mechanism"),
            BdatSyntax => Reply::new(521, (5, 5, 4), "Syntax: BDAT count [LAST]"),
        }
    }

    /// The session closes the connection after writing the reply (the 221 for non-SMTP input,
    /// the 521 for bad BDAT syntax, whose chunk size is unknown so the stream cannot be resynced).
    pub fn closes_connection(&self) -> bool {
        matches!(self, CommandError::NonSmtp | CommandError::BdatSyntax)
    }
}
