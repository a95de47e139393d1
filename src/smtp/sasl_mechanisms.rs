//! Which SASL mechanisms a client may use: Postfix's smtpd_sasl_security_options and
//! smtpd_sasl_tls_security_options applied to the upstream's mechanism list.
//!
//! Pure: a list of names in, the allowed ones out. relayguard sees only the names the upstream
//! lists in its EHLO reply, not the properties its SASL server declares for them, so the
//! properties come from the table below: what Dovecot's auth server declares in its `MECH`
//! lines (src/auth/mech-*.c, the flags Postfix's xsasl_dovecot_server.c reads), which agree
//! with Cyrus SASL's plugin flags for these mechanisms on everything Postfix filters by.

// The security properties, one bit each, as Postfix's xsasl_dovecot_server.c numbers them.
const PLAINTEXT: u8 = 1 << 0;
const ACTIVE: u8 = 1 << 1;
const DICTIONARY: u8 = 1 << 2;
const ANONYMOUS: u8 = 1 << 3;
const FORWARD_SECRECY: u8 = 1 << 4;
const MUTUAL_AUTH: u8 = 1 << 5;

/// What a mechanism is vulnerable to (plaintext, active, dictionary, anonymous) and what it
/// provides (forward-secrecy, mutual-auth), per Dovecot's declarations:
///
/// | mechanism | Dovecot MECH flags |
/// |---|---|
/// | PLAIN, LOGIN | plaintext |
/// | ANONYMOUS | anonymous |
/// | CRAM-MD5, NTLM, OTP, SKEY | dictionary active |
/// | DIGEST-MD5, RPA | dictionary active mutual-auth |
/// | SCRAM-SHA-1, SCRAM-SHA-256 (and -PLUS) | mutual-auth |
/// | GSSAPI, GSS-SPNEGO, EXTERNAL | (none) |
///
/// A mechanism not in the table is treated as one declared with no flags, as Postfix treats a
/// Dovecot `MECH` line without any: it passes every `no...` option and fails `mutual_auth`
/// and `forward_secrecy`.
const MECHANISMS: &[(&str, u8)] = &[
    ("PLAIN", PLAINTEXT),
    ("LOGIN", PLAINTEXT),
    ("ANONYMOUS", ANONYMOUS),
    ("CRAM-MD5", DICTIONARY | ACTIVE),
    ("NTLM", DICTIONARY | ACTIVE),
    ("OTP", DICTIONARY | ACTIVE),
    ("SKEY", DICTIONARY | ACTIVE),
    ("DIGEST-MD5", DICTIONARY | ACTIVE | MUTUAL_AUTH),
    ("RPA", DICTIONARY | ACTIVE | MUTUAL_AUTH),
    ("SCRAM-SHA-1", MUTUAL_AUTH),
    ("SCRAM-SHA-1-PLUS", MUTUAL_AUTH),
    ("SCRAM-SHA-256", MUTUAL_AUTH),
    ("SCRAM-SHA-256-PLUS", MUTUAL_AUTH),
    ("GSSAPI", 0),
    ("GSS-SPNEGO", 0),
    ("EXTERNAL", 0),
];

/// The option words of smtpd_sasl_security_options (any case), with the property each names.
const OPTIONS: &[(&str, u8)] = &[
    ("noplaintext", PLAINTEXT),
    ("noactive", ACTIVE),
    ("nodictionary", DICTIONARY),
    ("noanonymous", ANONYMOUS),
    ("forward_secrecy", FORWARD_SECRECY),
    ("mutual_auth", MUTUAL_AUTH),
];

/// The properties Postfix requires a mechanism to have (the positive options).
const REQUIRED: u8 = FORWARD_SECRECY | MUTUAL_AUTH;

/// A compiled smtpd_sasl_security_options value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaslSecurity(u8);

impl SaslSecurity {
    /// Postfix's default, `noanonymous`.
    pub const DEFAULT: SaslSecurity = SaslSecurity(ANONYMOUS);

    /// Parses a value: words separated by commas and/or whitespace, any case. `Err` names the
    /// first unknown word (Postfix refuses it too: NAME_MASK_FATAL).
    pub fn parse(value: &str) -> Result<SaslSecurity, String> {
        let mut bits = 0;
        for word in value
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
        {
            let (_, bit) = OPTIONS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(word))
                .ok_or_else(|| format!("unknown SASL security option `{word}`"))?;
            bits |= bit;
        }
        Ok(SaslSecurity(bits))
    }

    /// Whether `mechanism` passes, as xsasl_dovecot_server_mech_filter decides: it has every
    /// required property and none of the refused ones.
    pub fn allows(self, mechanism: &str) -> bool {
        let props = MECHANISMS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(mechanism))
            .map_or(0, |(_, p)| *p);
        let required = self.0 & REQUIRED;
        let refused = self.0 & !REQUIRED;
        props & required == required && props & refused == 0
    }

    /// The mechanisms of `offered` that pass, in their order.
    pub fn filter<'a>(self, offered: &[&'a str]) -> Vec<&'a str> {
        offered.iter().copied().filter(|m| self.allows(m)).collect()
    }
}

impl Default for SaslSecurity {
    fn default() -> Self {
        SaslSecurity::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &[
        "PLAIN",
        "LOGIN",
        "ANONYMOUS",
        "CRAM-MD5",
        "DIGEST-MD5",
        "SCRAM-SHA-1",
        "GSSAPI",
        "X-UNKNOWN",
    ];

    fn allowed(options: &str) -> Vec<&'static str> {
        SaslSecurity::parse(options).unwrap().filter(ALL)
    }

    #[test]
    fn options_filter_as_postfix_with_dovecot() {
        assert_eq!(allowed(""), ALL);
        assert_eq!(
            SaslSecurity::default().filter(ALL),
            allowed("noanonymous"),
            "the default is noanonymous"
        );
        assert!(!allowed("noanonymous").contains(&"ANONYMOUS"));
        assert_eq!(
            allowed("noplaintext, noanonymous"),
            [
                "CRAM-MD5",
                "DIGEST-MD5",
                "SCRAM-SHA-1",
                "GSSAPI",
                "X-UNKNOWN"
            ]
        );
        assert_eq!(
            allowed("NODICTIONARY noactive"),
            [
                "PLAIN",
                "LOGIN",
                "ANONYMOUS",
                "SCRAM-SHA-1",
                "GSSAPI",
                "X-UNKNOWN"
            ]
        );
        assert_eq!(allowed("mutual_auth"), ["DIGEST-MD5", "SCRAM-SHA-1"]);
        assert_eq!(allowed("forward_secrecy"), Vec::<&str>::new());
        assert!(SaslSecurity::parse("noplaintext")
            .unwrap()
            .allows("cram-md5"));
    }

    #[test]
    fn an_unknown_option_is_refused() {
        assert_eq!(
            SaslSecurity::parse("noanonymous, nonsense"),
            Err("unknown SASL security option `nonsense`".into())
        );
    }
}
