//! SASL usernames for logs and policy, read from the AUTH exchange the session relays: PLAIN
//! (`authzid NUL authcid NUL passwd`, RFC 4616) and LOGIN (the base64 answer to
//! `334 VXNlcm5hbWU6`). Passwords are never returned, stored or printed.
//!
//! Does not authenticate anyone: the upstream does. This only learns who the client claims to
//! be so that `sasl_username` can be logged and given to policy after the upstream's 235.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// What `Debug` and `Display` print for secrets.
pub const REDACTED: &str = "<redacted>";

/// The LOGIN mechanism's first challenge, base64 of `Username:`.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";

/// A SASL payload (a client response line) that must reach the upstream but never a log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The payload, to be written to the upstream and nowhere else.
    pub fn expose_for_relay(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0).into_bytes());
    }
}

/// Best effort: overwrite decoded credentials before the allocation is freed.
fn wipe(mut bytes: Vec<u8>) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

/// Why no username could be read. The session still relays the exchange: the upstream decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("SASL response is not base64")]
    BadBase64,
    #[error("PLAIN response is not authzid NUL authcid NUL password")]
    MalformedPlain,
    #[error("SASL username is empty")]
    EmptyUsername,
    #[error("SASL username is not UTF-8")]
    BadUtf8,
}

fn decode(response: &str) -> Result<Vec<u8>, SaslError> {
    // RFC 4954 4: "=" is an empty initial response.
    if response == "=" {
        return Ok(Vec::new());
    }
    STANDARD
        .decode(response.trim())
        .map_err(|_| SaslError::BadBase64)
}

fn username(bytes: &[u8]) -> Result<String, SaslError> {
    if bytes.is_empty() {
        return Err(SaslError::EmptyUsername);
    }
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| SaslError::BadUtf8)
}

/// The authentication identity (authcid) of a base64 PLAIN response. The authorization
/// identity is ignored, as Postfix logs `sasl_username` from the authcid.
pub fn plain_username(response: &str) -> Result<String, SaslError> {
    let decoded = decode(response)?;
    let mut parts = decoded.splitn(3, |&b| b == 0);
    let result = match (parts.next(), parts.next(), parts.next()) {
        (Some(_authzid), Some(authcid), Some(_password)) => username(authcid),
        _ => Err(SaslError::MalformedPlain),
    };
    wipe(decoded);
    result
}

/// The username of a base64 LOGIN response (the answer to [`LOGIN_USERNAME_CHALLENGE`], or the
/// initial response of `AUTH LOGIN <base64>`).
pub fn login_username(response: &str) -> Result<String, SaslError> {
    let decoded = decode(response)?;
    let result = username(&decoded);
    wipe(decoded);
    result
}

/// `*` cancels an exchange (RFC 4954 4); the session answers `501 5.7.0 Authentication aborted`.
pub fn is_abort(response: &str) -> bool {
    response.trim() == "*"
}

/// Follows one relayed AUTH exchange to find the username, whatever the mechanism's step the
/// client sends it in. Unknown mechanisms (CRAM-MD5, SCRAM, ...) yield none: the session then
/// logs the upstream's verdict without a username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsernameWatch {
    mechanism: Mechanism,
    expecting: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    Plain,
    Login,
    Other,
}

impl UsernameWatch {
    /// Starts at `AUTH mechanism [initial-response]`. Returns the username at once when the
    /// initial response carries it.
    pub fn start(
        mechanism: &str,
        initial_response: Option<&str>,
    ) -> (Self, Option<Result<String, SaslError>>) {
        let mechanism = if mechanism.eq_ignore_ascii_case("PLAIN") {
            Mechanism::Plain
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            Mechanism::Login
        } else {
            Mechanism::Other
        };
        let mut watch = Self {
            mechanism,
            expecting: false,
        };
        let found = match initial_response {
            Some(ir) => watch.read(ir),
            // PLAIN without an initial response sends the whole blob after an empty 334.
            None => {
                watch.expecting = mechanism == Mechanism::Plain;
                None
            }
        };
        (watch, found)
    }

    /// The upstream sent `334 text`.
    pub fn on_challenge(&mut self, text: &str) {
        if self.mechanism == Mechanism::Login && text.trim() == LOGIN_USERNAME_CHALLENGE {
            self.expecting = true;
        }
    }

    /// The client answered a challenge; returns the username when this answer carried it.
    pub fn on_response(&mut self, response: &str) -> Option<Result<String, SaslError>> {
        if !self.expecting || is_abort(response) {
            return None;
        }
        self.expecting = false;
        self.read(response)
    }

    fn read(&mut self, response: &str) -> Option<Result<String, SaslError>> {
        match self.mechanism {
            Mechanism::Plain => Some(plain_username(response)),
            Mechanism::Login => Some(login_username(response)),
            Mechanism::Other => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        // "\0alice\0secret" and "admin\0alice\0secret"
        assert_eq!(plain_username("AGFsaWNlAHNlY3JldA==").unwrap(), "alice");
        assert_eq!(plain_username("YWRtaW4AYWxpY2UAc2VjcmV0").unwrap(), "alice");
        assert_eq!(plain_username("not base64!"), Err(SaslError::BadBase64));
        // "alice" without NULs
        assert_eq!(plain_username("YWxpY2U="), Err(SaslError::MalformedPlain));
        // "\0\0secret"
        assert_eq!(
            plain_username("AABzZWNyZXQ="),
            Err(SaslError::EmptyUsername)
        );
        assert_eq!(plain_username("="), Err(SaslError::MalformedPlain));
    }

    #[test]
    fn login() {
        assert_eq!(login_username("YWxpY2U=").unwrap(), "alice");
        assert_eq!(login_username("/w=="), Err(SaslError::BadUtf8));
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("AGFsaWNlAHNlY3JldA==");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose_for_relay(), "AGFsaWNlAHNlY3JldA==");
        let cmd = crate::smtp::command::parse(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==").unwrap();
        let shown = format!("{cmd:?}");
        assert!(!shown.contains("AGFsaWNl"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn watch_plain_and_login_exchanges() {
        let (_, found) = UsernameWatch::start("plain", Some("AGFsaWNlAHNlY3JldA=="));
        assert_eq!(found, Some(Ok("alice".into())));

        let (mut w, found) = UsernameWatch::start("PLAIN", None);
        assert_eq!(found, None);
        w.on_challenge("");
        assert_eq!(
            w.on_response("AGFsaWNlAHNlY3JldA=="),
            Some(Ok("alice".into()))
        );

        let (mut w, found) = UsernameWatch::start("LOGIN", None);
        assert_eq!(found, None);
        w.on_challenge(LOGIN_USERNAME_CHALLENGE);
        assert_eq!(w.on_response("YWxpY2U="), Some(Ok("alice".into())));
        w.on_challenge("UGFzc3dvcmQ6");
        assert_eq!(w.on_response("c2VjcmV0"), None, "the password is not read");

        let (_, found) = UsernameWatch::start("LOGIN", Some("YWxpY2U="));
        assert_eq!(found, Some(Ok("alice".into())));

        let (mut w, _) = UsernameWatch::start("CRAM-MD5", None);
        w.on_challenge("PDEyMzQ1QGV4YW1wbGU+");
        assert_eq!(w.on_response("YWxpY2UgMDEyMzQ1"), None);

        let (mut w, _) = UsernameWatch::start("LOGIN", None);
        w.on_challenge(LOGIN_USERNAME_CHALLENGE);
        assert_eq!(w.on_response("*"), None);
    }
}
