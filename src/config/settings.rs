//! The Postfix parameters that shape the SMTP dialogue itself (not the policy): hostname, banner,
//! size and recipient limits, timeouts, TLS level, bare-newline handling; and, in
//! [`super::dialogue`], error limits, SASL mechanisms and EHLO keywords.

use std::time::Duration;

use crate::policy::ParamMap;

use super::dialogue::{self, DialogueSettings};
use super::load::ConfigError;

/// This module's own parameter names.
const OWN_PARAMETERS: &[&str] = &[
    "myhostname",
    "mail_name",
    "smtpd_banner",
    "message_size_limit",
    "smtpd_timeout",
    "smtpd_recipient_limit",
    "smtpd_helo_required",
    "disable_vrfy_command",
    "smtpd_tls_security_level",
    "smtpd_forbid_bare_newline",
    "syslog_name",
    "strict_rfc821_envelopes",
    "smtpd_tls_received_header",
    "smtpd_sasl_authenticated_header",
];

/// Session-level parameter names relayguard implements, beside `policy::PARAMETERS`: this
/// module's and [`dialogue::PARAMETERS`].
pub const PARAMETERS: &[&str] = &concat::<{ OWN_PARAMETERS.len() + dialogue::PARAMETERS.len() }>(
    OWN_PARAMETERS,
    dialogue::PARAMETERS,
);

/// Two name lists as one, at compile time.
const fn concat<const N: usize>(a: &[&'static str], b: &[&'static str]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        out[a.len() + j] = b[j];
        j += 1;
    }
    out
}
/// What a listener's TLS allows and requires (Postfix's smtpd_tls_security_level plus wrapper mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsLevel {
    /// No STARTTLS offered.
    None,
    /// STARTTLS offered, not required.
    May,
    /// STARTTLS required before mail or AUTH (`530 5.7.0 Must issue a STARTTLS command first`).
    Encrypt,
    /// Implicit TLS from the first byte (port 465).
    Wrapper,
}

/// How the DATA body scanner treats bare CR/LF: refuse the message, or repair the line ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareNewline {
    Reject,
    Normalize,
}

/// The SMTP-dialogue settings of one listener, compiled from its effective parameters.
#[derive(Clone, Debug)]
pub struct SmtpdSettings {
    pub myhostname: String,
    /// The text after `220 `: smtpd_banner with `$myhostname` and `$mail_name` expanded.
    pub banner: String,
    /// Bytes; 0 means no limit (plain `SIZE` in EHLO).
    pub message_size_limit: u64,
    pub smtpd_timeout: Duration,
    pub recipient_limit: usize,
    pub helo_required: bool,
    pub vrfy_disabled: bool,
    /// strict_rfc821_envelopes: MAIL FROM and RCPT TO only as `<address>`.
    pub strict_rfc821: bool,
    pub tls_level: TlsLevel,
    pub bare_newline: BareNewline,
    /// The syslog tag prefix for Postfix-shaped log lines (`postfix`, `postfix/submission`).
    pub syslog_name: String,
    /// `{syslog_name}/smtpd`, the tag of every session log line; shared, not rebuilt per session.
    pub syslog_tag: std::sync::Arc<str>,
    /// Error limits, SASL mechanisms, EHLO keywords, pipelining.
    pub dialogue: DialogueSettings,
    /// relayguard's own Received: header (`[upstream] received_header`) names the TLS
    /// protocol and cipher; off by default, as Postfix's smtpd_tls_received_header.
    pub tls_received_header: bool,
    /// ... and the SASL login name; off by default, as Postfix's
    /// smtpd_sasl_authenticated_header, since it tells every recipient the sender's login.
    pub sasl_authenticated_header: bool,
}

impl SmtpdSettings {
    pub fn compile(
        params: &ParamMap,
        default_tls: TlsLevel,
        errors: &mut Vec<ConfigError>,
    ) -> SmtpdSettings {
        let myhostname = params
            .value("myhostname")
            .map(str::to_owned)
            .unwrap_or_else(system_hostname);
        let mail_name = params.value("mail_name").unwrap_or("relayguard").to_owned();
        let banner = params
            .value("smtpd_banner")
            .unwrap_or("$myhostname ESMTP $mail_name")
            .replace("${myhostname}", &myhostname)
            .replace("$myhostname", &myhostname)
            .replace("${mail_name}", &mail_name)
            .replace("$mail_name", &mail_name);
        let message_size_limit = number(params, "message_size_limit", 10_240_000, errors);
        let recipient_limit = number(params, "smtpd_recipient_limit", 1000, errors) as usize;
        let smtpd_timeout = duration(params, "smtpd_timeout", Duration::from_secs(300), errors);
        let tls_level = super::tls_params::security_level(params, default_tls, errors);
        let bare_newline = match params.get("smtpd_forbid_bare_newline") {
            None => BareNewline::Reject,
            Some(v) => match v.value.trim() {
                "reject" => BareNewline::Reject,
                "normalize" | "yes" => BareNewline::Normalize,
                other => {
                    errors.push(ConfigError::bad_value(
                        "smtpd_forbid_bare_newline",
                        v,
                        format!(
                            "`{other}`: relayguard always ends DATA only at <CR><LF>.<CR><LF>; use `reject` (default) or `normalize`"
                        ),
                    ));
                    BareNewline::Reject
                }
            },
        };
        SmtpdSettings {
            myhostname,
            banner,
            message_size_limit,
            smtpd_timeout,
            recipient_limit,
            helo_required: flag(params, "smtpd_helo_required", false, errors),
            vrfy_disabled: flag(params, "disable_vrfy_command", false, errors),
            strict_rfc821: flag(params, "strict_rfc821_envelopes", false, errors),
            tls_level,
            bare_newline,
            syslog_tag: format!("{}/smtpd", params.value("syslog_name").unwrap_or("postfix"))
                .into(),
            syslog_name: params.value("syslog_name").unwrap_or("postfix").to_owned(),
            dialogue: DialogueSettings::compile(params, errors),
            tls_received_header: flag(params, "smtpd_tls_received_header", false, errors),
            sasl_authenticated_header: flag(
                params,
                "smtpd_sasl_authenticated_header",
                false,
                errors,
            ),
        }
    }
}

pub(super) fn number(
    params: &ParamMap,
    name: &str,
    default: u64,
    errors: &mut Vec<ConfigError>,
) -> u64 {
    let Some(v) = params.get(name) else {
        return default;
    };
    v.value.trim().parse().unwrap_or_else(|_| {
        errors.push(ConfigError::bad_value(
            name,
            v,
            format!("`{}` is not a whole number", v.value),
        ));
        default
    })
}

pub(super) fn flag(
    params: &ParamMap,
    name: &str,
    default: bool,
    errors: &mut Vec<ConfigError>,
) -> bool {
    let Some(v) = params.get(name) else {
        return default;
    };
    match v.value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" => true,
        "no" | "false" => false,
        _ => {
            errors.push(ConfigError::bad_value(
                name,
                v,
                format!("`{}` is not yes or no", v.value),
            ));
            default
        }
    }
}

pub(super) fn duration(
    params: &ParamMap,
    name: &str,
    default: Duration,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    let Some(v) = params.get(name) else {
        return default;
    };
    parse_duration(&v.value).unwrap_or_else(|| {
        errors.push(ConfigError::bad_value(
            name,
            v,
            format!("`{}` is not a time like 300s, 5m or 1h", v.value),
        ));
        default
    })
}

/// A Postfix time value: a number with an optional unit s, m, h, d or w (seconds when bare).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        "w" => n.checked_mul(604_800)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Postfix's default myhostname is the machine's own name.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_name_lists_are_listed() {
        for name in OWN_PARAMETERS.iter().chain(dialogue::PARAMETERS) {
            assert!(PARAMETERS.contains(name), "{name}");
        }
        assert_eq!(
            PARAMETERS.len(),
            OWN_PARAMETERS.len() + dialogue::PARAMETERS.len()
        );
    }

    #[test]
    fn durations_follow_postfix_units() {
        assert_eq!(parse_duration("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
