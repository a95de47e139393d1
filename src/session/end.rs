//! Why a session ended, and the per-command counters Postfix prints on its disconnect line.

use std::fmt::Write;

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

    /// `ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4`, as on Postfix's disconnect line.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let (mut ok_sum, mut total_sum) = (0, 0);
        for (i, name) in ORDER.iter().enumerate() {
            let (ok, total) = (self.ok[i], self.total[i]);
            ok_sum += ok;
            total_sum += total;
            if total == 0 {
                continue;
            }
            if ok == total {
                let _ = write!(out, "{name}={ok} ");
            } else {
                let _ = write!(out, "{name}={ok}/{total} ");
            }
        }
        if ok_sum == total_sum && total_sum > 0 {
            let _ = write!(out, "commands={ok_sum}");
        } else {
            let _ = write!(out, "commands={ok_sum}/{total_sum}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_postfix_shape() {
        let mut c = CommandCounts::default();
        assert_eq!(c.summary(), "commands=0/0");
        c.record("ehlo", true);
        c.record("mail", true);
        c.record("rcpt", false);
        c.record("rcpt", true);
        c.record("quit", true);
        c.record("FOO", false);
        assert_eq!(
            c.summary(),
            "ehlo=1 mail=1 rcpt=1/2 quit=1 unknown=0/1 commands=4/6"
        );
    }
}
