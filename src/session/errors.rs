//! The session's error counter, as smtpd.c keeps it: failed commands and junk commands count,
//! from smtpd_soft_error_limit on every reply is delayed (the tarpit), at
//! smtpd_hard_error_limit the session ends, and a delivered message forgives it all.

use super::{Session, SessionEnd};
use crate::smtp::replies;

impl Session {
    /// Counts one error. From smtpd_soft_error_limit errors on, every reply waits
    /// smtpd_error_sleep_time first (smtpd_chat.c), the one to the failed command excepted:
    /// it was queued before the count went up, as Postfix sends it before counting.
    pub(super) fn add_error(&mut self) {
        self.errors = self.errors.saturating_add(1);
        let limits = &self.ctx.listener.smtpd.dialogue;
        if self.errors >= limits.soft_error_limit {
            self.io.set_tarpit(Some(limits.error_sleep));
        }
    }

    /// Counts a junk command (smtpd.c's SMTPD_CMD_FLAG_LIMIT: HELO, EHLO, NOOP, RSET, VRFY;
    /// ETRN too, which relayguard refuses as unknown and so counts as an error anyway): past
    /// smtpd_junk_command_limit of them, each one is also an error.
    pub(super) fn add_junk(&mut self) {
        let before = self.junk;
        self.junk = self.junk.saturating_add(1);
        if before > self.ctx.listener.smtpd.dialogue.junk_command_limit {
            self.add_error();
        }
    }

    /// Postfix forgives a session's errors and junk commands once it delivered a message
    /// (smtpd.c), before it sends the reply that says so.
    pub(super) fn forgive_errors(&mut self) {
        self.errors = 0;
        self.junk = 0;
        self.io.set_tarpit(None);
    }

    /// At smtpd_hard_error_limit errors the session ends with 421, whatever kind of error the
    /// last one was; Postfix checks before reading the next command, and so does this.
    pub(super) fn error_limit_reached(&mut self) -> Option<SessionEnd> {
        if self.errors < self.ctx.listener.smtpd.dialogue.hard_error_limit {
            return None;
        }
        self.log.info(format_args!(
            "too many errors after {} from {}",
            self.last,
            self.log.client()
        ));
        self.io.reply(&replies::too_many_errors(
            &self.ctx.listener.smtpd.myhostname,
        ));
        Some(SessionEnd::Closed {
            reason: "too many errors".into(),
        })
    }
}
