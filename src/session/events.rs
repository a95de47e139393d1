//! Session log lines in Postfix's wording, so fail2ban's stock postfix filters match them.
//!
//! Each event carries the syslog tag (`postfix/smtpd`, `postfix/submission/smtpd`) as a field;
//! the `postfix` log format prints it where syslog would.

use std::fmt;

use crate::policy::Note;
use crate::smtp::Reply;

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

    pub fn info(&self, text: fmt::Arguments<'_>) {
        tracing::info!(tag = %self.tag, "{text}");
    }

    pub fn warning(&self, text: fmt::Arguments<'_>) {
        tracing::warn!(tag = %self.tag, "warning: {text}");
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
        tracing::info!(tag = %self.tag, "{queue}: {action}: {stage} from {}: {reply};{tail}", self.client);
    }

    pub fn rejected(&self, stage: &str, reply: &Reply, ctx: &RejectContext<'_>) {
        self.reject("reject", stage, reply, ctx);
    }

    /// Log-only verdicts (`warn`, `reject_warning`) from the policy.
    pub fn notes(&self, stage: &str, notes: &[Note], ctx: &RejectContext<'_>) {
        for note in notes {
            self.reject(note.action, stage, &note.text, ctx);
        }
    }
}
