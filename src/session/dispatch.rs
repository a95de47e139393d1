//! One command line, from bytes to its handler: parsed, checked against the pipelining rules,
//! the ban list and the dialogue's phase, then run; with Postfix's counter and stage names.

use super::{events, phase, Session, SessionEnd, Step};
use crate::limits::Trigger;
use crate::net::proxy_header::looks_like_proxy_header;
use crate::smtp::command::{parse, Command, CommandError};
use crate::smtp::replies;

impl Session {
    pub(super) async fn dispatch(&mut self, line: &[u8]) -> Step {
        let verb = verb_name(line);
        self.ctx.metrics.command(verb);
        if self.last == "CONNECT" && looks_like_proxy_header(line) {
            // A PROXY header from a peer that is not trusted to send one: it must never pass
            // for a command, nor get a chance to claim another address (Postfix's 421).
            self.log.warning(format_args!(
                "haproxy read: PROXY header from untrusted {}",
                self.log.client()
            ));
            self.io.reply(&replies::server_local_error(
                &self.ctx.listener.smtpd.myhostname,
            ));
            self.counts.record("unknown", false);
            return Step::End(SessionEnd::Closed {
                reason: "untrusted PROXY header".into(),
            });
        }
        if !line.eq_ignore_ascii_case(b"QUIT") {
            if let Some(step) = self.refuse_if_banned(stage_word(verb)) {
                self.counts.record(verb, false);
                return step;
            }
        }
        let command = match parse(line) {
            Ok(c) => c,
            Err(e) => {
                let trigger = match e {
                    CommandError::Unrecognized => Trigger::UnknownCommand,
                    _ => Trigger::Protocol,
                };
                Box::pin(self.report_failure(trigger, 0, 0)).await;
                // Postfix names the refused command in `too many errors after X` and `lost
                // connection after X`; an unrecognised one is UNKNOWN.
                self.last = stage_word(verb);
                let reply = e.reply();
                if e.closes_connection() {
                    // `BDAT x` also closes (521), but it is an SMTP command gone wrong.
                    if e == CommandError::NonSmtp {
                        self.log.warning(format_args!(
                            "non-SMTP command from {}: {}",
                            self.log.client(),
                            String::from_utf8_lossy(line)
                        ));
                    }
                    self.io.reply(&reply);
                    self.counts.record(verb, false);
                    return Step::End(SessionEnd::Closed {
                        reason: reply.to_string(),
                    });
                }
                self.io.reply(&reply);
                self.counts.record(verb, false);
                return Step::Failed;
            }
        };
        let violated = self.check_pipelining(&command, verb);
        self.last = command.verb();
        if violated {
            Box::pin(self.report_failure(Trigger::Protocol, 0, 0)).await;
        }
        if violated && self.ctx.listener.smtpd.dialogue.forbid_unauth_pipelining {
            // smtpd_forbid_unauth_pipelining: the command is not run, and the session ends
            // after the reply (smtpd.c breaks out of its command loop).
            self.io.reply(&replies::pipelining_sync_error());
            self.counts.record(verb, false);
            return Step::End(SessionEnd::Closed {
                reason: "SMTP protocol synchronization".into(),
            });
        }
        if let (Some(reply), false) = (
            self.policy_state.as_ref().and_then(|s| s.access_denied()),
            matches!(command, Command::Quit),
        ) {
            self.io.reply(&reply);
            self.counts.record(verb, false);
            return Step::Failed;
        }
        // Junk counts where smtpd.c counts it: once the command reached its action, which a
        // command refused for want of TLS never does.
        let junk = matches!(
            command,
            Command::Helo(_) | Command::Ehlo(_) | Command::Noop | Command::Rset | Command::Vrfy(_)
        ) && !phase::needs_tls_first(&self.rules(), &self.dialogue(), &command);
        let step = self.run_command(command, line, verb).await;
        if junk && !matches!(step, Step::End(_)) {
            self.add_junk();
        }
        step
    }

    /// Runs an admitted command, or refuses it by the dialogue's rules.
    async fn run_command(&mut self, command: Command<'_>, line: &[u8], verb: &'static str) -> Step {
        if let Some(reply) = self.bdat_state_refusal(&command) {
            self.io.reply(&reply);
            self.counts.record(verb, false);
            return Step::Failed;
        }
        let rules = self.rules();
        let admitted = phase::admit(&rules, &self.dialogue(), &command)
            .and_then(|()| phase::admit_path(&rules, &command, line));
        if let Err(refusal) = admitted {
            Box::pin(self.report_failure(Trigger::Protocol, 0, 0)).await;
            if refusal.logged {
                self.log_refusal(&command, &refusal.reply);
            }
            let step = match command {
                // The chunk follows whatever the reply: read past it, or its bytes would be
                // taken for commands.
                Command::Bdat { size, last } => {
                    Box::pin(self.skip_chunk(size, last, refusal.reply)).await
                }
                _ => self.refuse(refusal.reply),
            };
            self.counts.record(verb, false);
            return step;
        }
        let step = match command {
            Command::Mail { .. } | Command::Rcpt { .. } if self.screened.is_some() => {
                self.screened_command(&command)
            }
            Command::Ehlo(name) => Box::pin(self.helo(name, true)).await,
            Command::Helo(name) => Box::pin(self.helo(name, false)).await,
            // Rare, large futures are boxed so an idle session's task stays small.
            Command::StartTls => Box::pin(self.starttls()).await,
            Command::Auth {
                mechanism,
                initial_response,
            } => Box::pin(self.auth(mechanism, initial_response)).await,
            Command::Mail { .. } => Box::pin(self.mail(&command)).await,
            Command::Rcpt { .. } => Box::pin(self.rcpt(&command)).await,
            Command::Data => Box::pin(self.data()).await,
            Command::Bdat { size, last } => Box::pin(self.bdat(size, last)).await,
            Command::Rset => Box::pin(self.rset()).await,
            Command::Noop => {
                self.io.reply(&replies::ok());
                Step::Ok
            }
            Command::Quit => {
                self.io.reply(&replies::bye());
                self.counts.record("quit", true);
                return Step::End(SessionEnd::Quit);
            }
            Command::Vrfy(address) => Box::pin(self.vrfy(address)).await,
            Command::Help(_) => {
                self.io.reply(&replies::help());
                Step::Ok
            }
        };
        match &step {
            Step::Ok => self.counts.record(verb, true),
            Step::Failed => self.counts.record(verb, false),
            Step::End(_) => self.counts.record(verb, false),
        }
        step
    }

    /// Postfix's smtpd_flag_ill_pipelining: more input already waiting behind a command that
    /// must end a pipelined group, or behind any command before EHLO. Logged once, whatever
    /// the policy; `reject_unauth_pipelining` and smtpd_forbid_unauth_pipelining act on it.
    /// True when this command is the one that gave it away.
    fn check_pipelining(&mut self, command: &Command<'_>, verb: &str) -> bool {
        if self.improper_pipelining
            || self.io.rbuf.is_empty()
            || (self.heard.esmtp && !command.must_end_group())
        {
            return false;
        }
        self.flag_ill_pipelining(
            &verb.to_ascii_uppercase(),
            matches!(command, Command::Auth { .. }),
        );
        true
    }

    /// Raises the sticky improper-pipelining flag and logs the input waiting behind `after`
    /// (smtpd.c's smtpd_flag_ill_pipelining).
    pub(super) fn flag_ill_pipelining(&mut self, after: &str, after_auth: bool) {
        self.improper_pipelining = true;
        let pending = events::pending_input(&self.io.rbuf, after_auth);
        self.log.info(format_args!(
            "improper command pipelining after {after} from {}: {pending}",
            self.log.client()
        ));
    }
}

/// Postfix's counter names (disconnect line) and stage words (`lost connection after X`) for
/// the commands it counts by name.
const VERBS: [(&str, &str); 13] = [
    ("helo", "HELO"),
    ("ehlo", "EHLO"),
    ("starttls", "STARTTLS"),
    ("auth", "AUTH"),
    ("mail", "MAIL"),
    ("rcpt", "RCPT"),
    ("data", "DATA"),
    ("bdat", "BDAT"),
    ("rset", "RSET"),
    ("noop", "NOOP"),
    ("vrfy", "VRFY"),
    ("quit", "QUIT"),
    ("etrn", "ETRN"),
];

/// The Postfix counter name for a command line (`unknown` for anything else).
fn verb_name(line: &[u8]) -> &'static str {
    let verb = line.split(|b| *b == b' ').next().unwrap_or(b"");
    VERBS
        .iter()
        .find(|(name, _)| verb.eq_ignore_ascii_case(name.as_bytes()))
        .map_or("unknown", |(name, _)| name)
}

/// The stage word for a command line that did not parse, from its counter name.
fn stage_word(verb: &'static str) -> &'static str {
    VERBS
        .iter()
        .find(|(name, _)| *name == verb)
        .map_or("UNKNOWN", |(_, word)| word)
}
