//! Client-supplied text made safe for a log line, as Postfix's `printable()` does: every
//! control character becomes `?`.
//!
//! A CR or LF inside a SASL username, a HELO name or an address would otherwise end the log
//! line and start a forged one (`warning: unknown[203.0.113.99]: SASL LOGIN authentication
//! failed`) that fail2ban reads as another client's. Valid UTF-8 stays, as with Postfix's
//! `smtputf8_enable = yes`; the replacement happens while writing, with no copy of the text.

use std::fmt;

/// Formats `T` with every control character (C0, DEL, C1) written as `?`.
pub struct Printable<T>(pub T);

impl<T: fmt::Display> fmt::Display for Printable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        write!(PrintableWriter(f), "{}", self.0)
    }
}

/// A `fmt::Write` that passes text on with its control characters replaced by `?`.
pub struct PrintableWriter<W>(pub W);

impl<W: fmt::Write> fmt::Write for PrintableWriter<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            self.0.write_char('?')?;
            let width = rest[at..].chars().next().map_or(1, char::len_utf8);
            rest = &rest[at + width..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_question_marks_and_the_rest_stays() {
        let forged = "alice\r\nDec  1 00:00:00 mx postfix/smtpd[1]: warning: x\u{7f}\u{85}\0";
        assert_eq!(
            Printable(forged).to_string(),
            "alice??Dec  1 00:00:00 mx postfix/smtpd[1]: warning: x???"
        );
        assert_eq!(Printable("tab\there").to_string(), "tab?here");
        assert_eq!(Printable("Grüße, 用户").to_string(), "Grüße, 用户");
        assert_eq!(
            Printable(format_args!("a{}b", "\n")).to_string(),
            "a?b",
            "format arguments are filtered too"
        );
    }
}
