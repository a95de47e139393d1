//! SASL usernames for logs and policy: PLAIN (RFC 4616) and LOGIN carry one; nothing here ever
//! keeps or shows a password.

use std::fmt;

use base64::Engine as _;

/// A SASL payload that must never reach a log: `Debug` and `Display` print `<redacted>`.
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The username in the client's `step`th response (0 = the AUTH command's initial response),
/// for mechanisms that carry one in the clear: PLAIN's authcid, LOGIN's first response.
pub fn username(mechanism: &str, step: usize, response: &str) -> Option<String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(response.trim())
        .ok()?;
    if mechanism.eq_ignore_ascii_case("PLAIN") {
        // authzid NUL authcid NUL passwd: the password is dropped with `decoded`.
        let mut parts = decoded.split(|b| *b == 0);
        let _authzid = parts.next()?;
        let authcid = parts.next()?;
        parts.next()?;
        return Some(String::from_utf8_lossy(authcid).into_owned()).filter(|s| !s.is_empty());
    }
    if mechanism.eq_ignore_ascii_case("LOGIN") && step == 0 {
        return Some(String::from_utf8_lossy(&decoded).into_owned()).filter(|s| !s.is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_login_usernames() {
        // "\0alice\0secret"
        assert_eq!(
            username("PLAIN", 0, "AGFsaWNlAHNlY3JldA==").as_deref(),
            Some("alice")
        );
        assert_eq!(
            username("plain", 1, "AGFsaWNlAHNlY3JldA==").as_deref(),
            Some("alice")
        );
        assert_eq!(username("LOGIN", 0, "Ym9i").as_deref(), Some("bob"));
        assert_eq!(
            username("LOGIN", 1, "aHVudGVyMg==").as_deref(),
            None,
            "the second LOGIN response is the password"
        );
        assert_eq!(username("PLAIN", 0, "not base64!"), None);
        assert_eq!(username("CRAM-MD5", 0, "Ym9i"), None);
        assert_eq!(
            format!("{:?} {}", Secret("hunter2".into()), Secret("x".into())),
            "<redacted> <redacted>"
        );
    }
}
