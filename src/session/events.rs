//! Session log lines in Postfix's wording, so fail2ban's stock postfix filters match them.
//!
//! Each event carries the syslog tag (`postfix/smtpd`, `postfix/submission/smtpd`) as a field;
//! the `postfix` log format prints it where syslog would.

use std::fmt;

use crate::observe::printable::Printable;
use crate::policy::Note;
use crate::smtp::Reply;

/// Postfix logs at most this much of the input waiting behind an improperly pipelined command.
const PENDING_LOGGED: usize = 100;

/// The input waiting behind an improperly pipelined command, as Postfix logs it (escaped, the
/// first 100 octets), but never a credential: an AUTH line shows its mechanism only and nothing
/// after it, since what follows may be its SASL responses; behind an AUTH command itself
/// (`after_auth`) everything pending is the exchange, and none of it is shown.
pub fn pending_input(pending: &[u8], after_auth: bool) -> String {
    if after_auth {
        return "(SASL responses not logged)".into();
    }
    let pending = pending.get(..PENDING_LOGGED).unwrap_or(pending);
    let mut text = String::new();
    for line in pending.split_inclusive(|b| *b == b'\n') {
        let mut words = line.splitn(3, |b| *b == b' ');
        if words
            .next()
            .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH"))
        {
            let mechanism = words.next().unwrap_or(b"");
            let mechanism = mechanism.strip_suffix(b"\n").unwrap_or(mechanism);
            let mechanism = mechanism.strip_suffix(b"\r").unwrap_or(mechanism);
            escape_into(&mut text, b"AUTH ");
            escape_into(&mut text, mechanism);
            break;
        }
        escape_into(&mut text, line);
    }
    text
}

fn escape_into(text: &mut String, bytes: &[u8]) {
    text.extend(
        bytes
            .iter()
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from),
    );
}

pub struct EventLog {
    tag: std::sync::Arc<str>,
    /// `NAME[ADDR]`, as Postfix names a client.
    client: String,
}

/// The envelope facts Postfix appends to a reject line.
#[derive(Default)]
pub struct RejectContext<'a> {
    pub queue_id: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub esmtp: bool,
    pub helo: Option<&'a str>,
}

impl EventLog {
    pub fn new(tag: std::sync::Arc<str>, client: String) -> Self {
        Self { tag, client }
    }

    pub fn client(&self) -> &str {
        &self.client
    }

    /// Every line is written [`Printable`]: the client's words in it cannot end it early.
    pub fn info(&self, text: fmt::Arguments<'_>) {
        // The `postfix` format's lines skip tracing's event machinery, filtered as it would be.
        if tracing::enabled!(tracing::Level::INFO)
            && crate::observe::log::write_tagged(&self.tag, text)
        {
            return;
        }
        tracing::info!(tag = %self.tag, "{}", Printable(text));
    }

    pub fn warning(&self, text: fmt::Arguments<'_>) {
        tracing::warn!(tag = %self.tag, "warning: {}", Printable(text));
    }

    /// `NOQUEUE: reject: RCPT from NAME[ADDR]: 454 4.7.1 <x>: Relay access denied; from=<a> to=<x> proto=ESMTP helo=<h>`
    pub fn reject(
        &self,
        action: &str,
        stage: &str,
        reply: &dyn fmt::Display,
        ctx: &RejectContext<'_>,
    ) {
        let mut tail = String::new();
        if let Some(from) = ctx.from {
            tail.push_str(&format!(" from=<{from}>"));
        }
        if let Some(to) = ctx.to {
            tail.push_str(&format!(" to=<{to}>"));
        }
        tail.push_str(if ctx.esmtp {
            " proto=ESMTP"
        } else {
            " proto=SMTP"
        });
        if let Some(helo) = ctx.helo {
            tail.push_str(&format!(" helo=<{helo}>"));
        }
        let queue = ctx.queue_id.unwrap_or("NOQUEUE");
        self.info(format_args!(
            "{queue}: {action}: {stage} from {}: {reply};{tail}",
            self.client
        ));
    }

    pub fn rejected(&self, stage: &str, reply: &Reply, ctx: &RejectContext<'_>) {
        self.reject("reject", stage, reply, ctx);
    }

    /// Log-only verdicts (`warn`, `reject_warning`) from the policy, in the `NOQUEUE:` form;
    /// a `warning` (a lookup error, a configuration problem met at run time) as Postfix's
    /// msg_warn writes it: `warning: TEXT`.
    pub fn notes(&self, stage: &str, notes: &[Note], ctx: &RejectContext<'_>) {
        // A header to prepend is not an event: Postfix does not log it.
        for note in notes
            .iter()
            .filter(|n| n.action != crate::policy::PREPEND_NOTE)
        {
            if note.action == "warning" {
                self.warning(format_args!("{}", note.text));
            } else {
                self.reject(note.action, stage, &note.text, ctx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pending_input;

    #[test]
    fn pending_input_shows_commands_but_no_credential() {
        assert_eq!(
            pending_input(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", false),
            "MAIL FROM:<a@b>\\r\\nRCPT TO:<c@d>\\r\\n"
        );
        assert_eq!(
            pending_input(
                b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b>\r\n",
                false
            ),
            "AUTH PLAIN"
        );
        assert_eq!(
            pending_input(b"NOOP\r\nauth login\r\nYWxpY2U=\r\nc2VjcmV0\r\n", false),
            "NOOP\\r\\nAUTH login"
        );
        assert_eq!(
            pending_input(b"YWxpY2U=\r\nc2VjcmV0\r\n", true),
            "(SASL responses not logged)"
        );
        let long = "NOOP ".repeat(40);
        assert_eq!(pending_input(long.as_bytes(), false).len(), 100);
    }
}
