//! Postfix's EHLO discard mask (global/ehlo_mask.c): the keywords smtpd_discard_ehlo_keywords
//! and smtpd_discard_ehlo_keyword_address_maps remove from the EHLO reply.
//!
//! Pure: parses the keyword list and prints the mask the way Postfix's log line does. Which
//! command a discarded keyword also refuses is the session's business.

/// One bit per EHLO keyword Postfix knows, in Postfix's own bit order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EhloMask(u16);

impl EhloMask {
    pub const BITMIME8: u16 = 1 << 0;
    pub const PIPELINING: u16 = 1 << 1;
    pub const SIZE: u16 = 1 << 2;
    pub const VRFY: u16 = 1 << 3;
    pub const ETRN: u16 = 1 << 4;
    pub const AUTH: u16 = 1 << 5;
    pub const VERP: u16 = 1 << 6;
    pub const STARTTLS: u16 = 1 << 7;
    pub const XCLIENT: u16 = 1 << 8;
    pub const XFORWARD: u16 = 1 << 9;
    pub const ENHANCEDSTATUSCODES: u16 = 1 << 10;
    pub const DSN: u16 = 1 << 11;
    pub const SMTPUTF8: u16 = 1 << 12;
    pub const CHUNKING: u16 = 1 << 13;
    /// `silent-discard`: discard without the `discarding EHLO keywords` log line.
    pub const SILENT: u16 = 1 << 15;
}

/// Postfix's ehlo_mask_table, in its order: the order matters for the log line, where each
/// bit is printed under the first name that has it (so SMTPUTF8 prints as
/// `EHLO_MASK_SMTPUTF8`, as Postfix 3.7 logs it).
const NAMES: &[(&str, u16)] = &[
    ("8BITMIME", EhloMask::BITMIME8),
    ("AUTH", EhloMask::AUTH),
    ("ETRN", EhloMask::ETRN),
    ("PIPELINING", EhloMask::PIPELINING),
    ("SIZE", EhloMask::SIZE),
    ("VERP", EhloMask::VERP),
    ("VRFY", EhloMask::VRFY),
    ("XCLIENT", EhloMask::XCLIENT),
    ("XFORWARD", EhloMask::XFORWARD),
    ("STARTTLS", EhloMask::STARTTLS),
    ("ENHANCEDSTATUSCODES", EhloMask::ENHANCEDSTATUSCODES),
    ("DSN", EhloMask::DSN),
    ("EHLO_MASK_SMTPUTF8", EhloMask::SMTPUTF8),
    ("SMTPUTF8", EhloMask::SMTPUTF8),
    ("CHUNKING", EhloMask::CHUNKING),
    ("SILENT-DISCARD", EhloMask::SILENT),
];

impl EhloMask {
    /// Parses a keyword list (commas and/or whitespace, any case). Unknown words are ignored,
    /// as Postfix does (NAME_MASK_IGNORE), "so people can switch between Postfix versions".
    pub fn parse(value: &str) -> EhloMask {
        let bits = value
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter_map(|w| NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(w)))
            .fold(0, |bits, (_, bit)| bits | bit);
        EhloMask(bits)
    }

    /// Whether the keyword(s) of `bit` are discarded.
    pub fn discards(self, bit: u16) -> bool {
        self.0 & bit != 0
    }

    /// Whether `keyword` (as the EHLO reply spells it) is discarded.
    pub fn discards_keyword(self, keyword: &str) -> bool {
        NAMES
            .iter()
            .any(|(n, bit)| n.eq_ignore_ascii_case(keyword) && self.discards(*bit))
    }

    /// The line smtpd logs when it builds an EHLO reply with this mask, if any: nothing when
    /// the mask is empty or silent, and (a quirk of smtpd.c kept here) nothing either when
    /// ENHANCEDSTATUSCODES is among the discarded keywords.
    pub fn log_line(self) -> Option<String> {
        if self.0 == 0 || self.discards(Self::SILENT) || self.discards(Self::ENHANCEDSTATUSCODES) {
            return None;
        }
        let mut left = self.0;
        let mut names = Vec::new();
        for (name, bit) in NAMES {
            if left & bit != 0 {
                left &= !bit;
                names.push(*name);
            }
        }
        Some(format!("discarding EHLO keywords: {}", names.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_logs_as_postfix() {
        let m = EhloMask::parse("chunking, Pipelining  size,nonsense");
        assert!(m.discards(EhloMask::CHUNKING) && m.discards(EhloMask::SIZE));
        assert!(m.discards_keyword("PIPELINING") && !m.discards_keyword("DSN"));
        assert_eq!(
            m.log_line().as_deref(),
            Some("discarding EHLO keywords: PIPELINING SIZE CHUNKING")
        );
        assert_eq!(
            EhloMask::parse("smtputf8 dsn").log_line().as_deref(),
            Some("discarding EHLO keywords: DSN EHLO_MASK_SMTPUTF8")
        );
        assert_eq!(EhloMask::parse("silent-discard, dsn").log_line(), None);
        assert_eq!(EhloMask::parse("enhancedstatuscodes dsn").log_line(), None);
        assert_eq!(EhloMask::parse("").log_line(), None);
        assert_eq!(EhloMask::parse("nonsense"), EhloMask::default());
    }
}
