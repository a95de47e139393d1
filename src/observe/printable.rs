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
        // Scanned as bytes: C0 and DEL are single bytes, and every C1 character (U+0080 to
        // U+009F) is 0xC2 followed by 0x80..=0x9F; no other UTF-8 sequence starts with 0xC2 and
        // goes on so. Every line relayguard logs passes here, most with nothing to replace.
        let bytes = text.as_bytes();
        let mut written = 0;
        let mut at = 0;
        while let Some(found) = bytes[at..]
            .iter()
            .position(|&b| b < 0x20 || b == 0x7f || b == 0xc2)
        {
            at += found;
            let width = match bytes.get(at..at + 2) {
                Some([0xc2, 0x80..=0x9f]) => 2,
                _ if bytes[at] == 0xc2 => {
                    at += 1;
                    continue;
                }
                _ => 1,
            };
            self.0.write_str(&text[written..at])?;
            self.0.write_char('?')?;
            at += width;
            written = at;
        }
        self.0.write_str(&text[written..])
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

    proptest::proptest! {
        /// The byte scan replaces exactly what `char::is_control` calls control, C1 included.
        #[test]
        fn the_byte_scan_replaces_exactly_the_control_characters(
            text in "(\\PC|\\p{Cc}|\u{a0}|\u{c2}|\u{100})*"
        ) {
            let expected: String = text
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            proptest::prop_assert_eq!(Printable(&text).to_string(), expected);
        }
    }
}
