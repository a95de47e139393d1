//! Why a session ended, and the per-command counters Postfix prints on its disconnect line.

use std::fmt;

use crate::observe::stack_text::StackText;

/// The reason a session ended; logged once with the command counts.
#[derive(Debug)]
pub enum SessionEnd {
    Quit,
    ClientClosed {
        after: &'static str,
    },
    Timeout {
        after: &'static str,
    },
    SessionTimeLimit,
    /// The session was closed with a 421/521 or a non-SMTP command.
    Closed {
        reason: String,
    },
    /// postscreen dropped the client, or it hung up, before the greeting: like Postfix's
    /// smtpd, which never saw it, the session logs no disconnect line.
    Screened {
        reason: String,
    },
    TlsHandshake(String),
    Io(String),
    Shutdown,
}

/// Postfix's disconnect-line order (smtpd_format_cmd_stats).
const ORDER: [&str; 16] = [
    "helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt", "data", "bdat",
    "rset", "noop", "vrfy", "etrn", "quit", "unknown",
];

/// How often each command was used, and how often it succeeded.
#[derive(Clone, Debug, Default)]
pub struct CommandCounts {
    ok: [u32; 16],
    total: [u32; 16],
}

impl CommandCounts {
    /// Counts one command by its Postfix name (`unknown` for anything unrecognised).
    pub fn record(&mut self, name: &str, ok: bool) {
        let i = ORDER
            .iter()
            .position(|n| *n == name)
            .unwrap_or(ORDER.len() - 1);
        self.total[i] += 1;
        if ok {
            self.ok[i] += 1;
        }
    }

    /// `ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4`, as on Postfix's disconnect line;
    /// written where it is displayed (every session's last log line), never kept.
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

/// The longest summary: 16 counted commands, `xforward=4294967295/4294967295 ` at the
/// longest, and the total.
const SUMMARY_MAX: usize = 17 * 32;

/// `ok`, or `ok/total` when some failed.
fn push_pair(text: &mut StackText<SUMMARY_MAX>, ok: u32, total: u32) {
    text.push_u32(ok);
    if ok != total {
        text.push(b'/');
        text.push_u32(total);
    }
}

/// [`CommandCounts::summary`].
pub struct Summary<'a>(&'a CommandCounts);

impl fmt::Display for Summary<'_> {
    /// Put together on the stack and written once: as a dozen small writes through the log
    /// line's filter it cost more than the rest of the line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = StackText::<SUMMARY_MAX>::new();
        let counts = self.0;
        let (mut ok_sum, mut total_sum) = (0u32, 0u32);
        for (i, name) in ORDER.iter().enumerate() {
            let (ok, total) = (counts.ok[i], counts.total[i]);
            ok_sum = ok_sum.saturating_add(ok);
            total_sum = total_sum.saturating_add(total);
            if total == 0 {
                continue;
            }
            text.push_str(name);
            text.push(b'=');
            push_pair(&mut text, ok, total);
            text.push(b' ');
        }
        text.push_str("commands=");
        if total_sum == 0 {
            text.push_str("0/0");
        } else {
            push_pair(&mut text, ok_sum, total_sum);
        }
        f.write_str(text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_postfix_shape() {
        let mut c = CommandCounts::default();
        assert_eq!(c.summary().to_string(), "commands=0/0");
        c.record("ehlo", true);
        c.record("mail", true);
        c.record("rcpt", false);
        c.record("rcpt", true);
        c.record("quit", true);
        c.record("FOO", false);
        assert_eq!(
            c.summary().to_string(),
            "ehlo=1 mail=1 rcpt=1/2 quit=1 unknown=0/1 commands=4/6"
        );
    }
}
