//! postscreen(8)'s front-line tests as settings: the parameters of one smtp listener compiled
//! with Postfix 3.7's defaults, and which tests a client still has to take.
//!
//! Pure, like `policy/`: no sockets, no clock, no logging. The session
//! (`session/postscreen.rs`) reads the client, asks the DNS and the state store, passes `now`
//! in, and logs the lines [`screen`] words. The access list is in [`access`], the weighted
//! DNSBL score in [`dnsbl`].

pub mod access;
pub mod dnsbl;
pub mod screen;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use crate::limits::Millis;
use crate::policy::{expand, Origin, ParamMap, ParamValue, PolicyError};
use crate::state::PostscreenPass;

pub use access::{AccessList, AclVerdict};
pub use dnsbl::{DnsblScore, DnsblTest, DomainReply};

/// The parameter names this module reads. The deep protocol tests are accepted only when off
/// (their default), so a pasted main.cf that names them with `no` loads; housekeeping of
/// postscreen's own cache file has nothing to act on, the cache being the state store.
pub const PARAMETERS: &[&str] = &[
    "postscreen_access_list",
    "postscreen_blacklist_action",
    "postscreen_denylist_action",
    "postscreen_greet_banner",
    "postscreen_greet_wait",
    "postscreen_greet_action",
    "postscreen_greet_ttl",
    "postscreen_dnsbl_sites",
    "postscreen_dnsbl_threshold",
    "postscreen_dnsbl_whitelist_threshold",
    "postscreen_dnsbl_allowlist_threshold",
    "postscreen_dnsbl_action",
    "postscreen_dnsbl_reply_map",
    "postscreen_dnsbl_min_ttl",
    "postscreen_dnsbl_max_ttl",
    "postscreen_dnsbl_ttl",
    "postscreen_dnsbl_timeout",
    "postscreen_cache_map",
    "postscreen_cache_cleanup_interval",
    "postscreen_cache_retention_time",
    "postscreen_pipelining_enable",
    "postscreen_non_smtp_command_enable",
    "postscreen_bare_newline_enable",
    "respectful_logging",
];

/// The deep protocol tests (after the 220), not implemented: see [`PostscreenSettings::compile`].
pub const DEEP_TESTS: &[&str] = &[
    "postscreen_pipelining_enable",
    "postscreen_non_smtp_command_enable",
    "postscreen_bare_newline_enable",
];

/// A postscreen parameter an admin can fix.
#[derive(Debug, thiserror::Error)]
pub enum PostscreenError {
    #[error("{}:{}: bad value for `{name}`: {why}", origin.file.display(), origin.line)]
    BadValue {
        name: String,
        origin: Origin,
        why: String,
    },
    /// A table named by postscreen_access_list or postscreen_dnsbl_reply_map.
    #[error("{0}")]
    Table(#[from] PolicyError),
}

impl PostscreenError {
    pub(crate) fn bad(name: &str, value: &ParamValue, why: String) -> Self {
        PostscreenError::BadValue {
            name: name.to_owned(),
            origin: value.origin.clone(),
            why,
        }
    }
}

/// What a failed test does (postscreen's `ignore`, `enforce`, `drop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Log the failure and go on as if the test had not been run; it runs again next time.
    Ignore,
    /// Go on, but refuse every RCPT with the test's 550 reply: no transaction of the client
    /// reaches the upstream.
    Enforce,
    /// Answer the test's 521 reply and close.
    Drop,
}

impl Action {
    fn parse(name: &str, value: &ParamValue) -> Result<Action, PostscreenError> {
        match value.value.trim() {
            "ignore" => Ok(Action::Ignore),
            "enforce" => Ok(Action::Enforce),
            "drop" => Ok(Action::Drop),
            other => Err(PostscreenError::bad(
                name,
                value,
                format!("`{other}`: use ignore, enforce or drop"),
            )),
        }
    }
}

/// One listener's postscreen, compiled. Present only on a listener of role smtp whose
/// parameters set any `postscreen_*` name: postscreen is opt-in, as it is in master.cf.
#[derive(Debug)]
pub struct PostscreenSettings {
    /// postscreen_access_list (default `permit_mynetworks`).
    pub access: AccessList,
    /// postscreen_denylist_action, or its old name postscreen_blacklist_action.
    pub denylist_action: Action,
    /// The teaser `220-` text (postscreen_greet_banner, default `$smtpd_banner`); `None` when
    /// it is empty, which turns the pregreet test off.
    pub greet_banner: Option<String>,
    /// postscreen_greet_wait: `${stress?{2}:{6}}s`, 6 s; relayguard is never under stress.
    pub greet_wait: Duration,
    pub greet_action: Action,
    pub greet_ttl: Duration,
    /// `None` when postscreen_dnsbl_sites is empty.
    pub dnsbl: Option<DnsblTest>,
    /// respectful_logging: ALLOWLISTED/DENYLISTED rather than WHITELISTED/BLACKLISTED.
    pub respectful_logging: bool,
    /// soft_bounce: postscreen turns the 5s of every reply it sends into 4s.
    pub soft_bounce: bool,
    /// `{syslog_name}/postscreen` and `{syslog_name}/dnsblog`, the tags of its log lines.
    pub tag: Arc<str>,
    pub dnsblog_tag: Arc<str>,
}

/// Which tests a client has to take now (psc_todo_tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub pregreet: bool,
    pub dnsbl: bool,
    /// The client has never passed some enabled test: its final blessing is `PASS NEW`.
    pub new: bool,
}

impl PostscreenSettings {
    /// Compiles postscreen for a listener whose effective parameters are `params`; `None`
    /// when none of them is a postscreen one. `smtpd_banner` is the listener's expanded
    /// banner, postscreen_greet_banner's default.
    pub fn compile(
        params: &ParamMap,
        smtpd_banner: &str,
    ) -> Result<Option<PostscreenSettings>, Vec<PostscreenError>> {
        if !params
            .iter()
            .any(|(name, _)| name.starts_with("postscreen_"))
        {
            return Ok(None);
        }
        let mut errors = Vec::new();
        let here = Origin::default();
        // `$smtpd_banner` is the listener's own banner, already expanded; `$stress` is never
        // set: relayguard has no stress mode.
        let lookup = |name: &str| match name {
            "smtpd_banner" => Some(smtpd_banner.to_owned()),
            "stress" => None,
            _ => params.value(name).map(str::to_owned),
        };
        let value = |name: &str, default: &str| -> ParamValue {
            match params.get(name) {
                Some(v) => ParamValue {
                    value: expand(&unstressed(&v.value), &lookup),
                    origin: v.origin.clone(),
                },
                None => ParamValue {
                    value: default.to_owned(),
                    origin: here.clone(),
                },
            }
        };
        for name in DEEP_TESTS {
            let v = value(name, "no");
            if !v.value.trim().eq_ignore_ascii_case("no") {
                errors.push(PostscreenError::bad(
                    name,
                    &v,
                    "postscreen's deep protocol tests (after the 220) are not implemented: \
                     relayguard's own smtpd_forbid_unauth_pipelining, smtpd_forbid_bare_newline \
                     and non-SMTP command handling apply to every session; set it to no"
                        .into(),
                ));
            }
        }
        let access = take(
            &mut errors,
            AccessList::compile(&value("postscreen_access_list", "permit_mynetworks")),
            AccessList::default(),
        );
        let denylist = match params.get("postscreen_denylist_action") {
            Some(_) => value("postscreen_denylist_action", "ignore"),
            None => value("postscreen_blacklist_action", "ignore"),
        };
        let denylist_action = take(
            &mut errors,
            Action::parse("postscreen_denylist_action", &denylist),
            Action::Ignore,
        );
        let banner = value("postscreen_greet_banner", smtpd_banner).value;
        let greet_wait = take(
            &mut errors,
            time(
                "postscreen_greet_wait",
                &value("postscreen_greet_wait", "6s"),
            ),
            SIX,
        );
        let greet_action = take(
            &mut errors,
            Action::parse(
                "postscreen_greet_action",
                &value("postscreen_greet_action", "ignore"),
            ),
            Action::Ignore,
        );
        let greet_ttl = take(
            &mut errors,
            time("postscreen_greet_ttl", &value("postscreen_greet_ttl", "1d")),
            DAY,
        );
        let dnsbl = take(&mut errors, DnsblTest::compile(&value), None);
        let respectful_logging = take(
            &mut errors,
            respectful(params, &value("respectful_logging", "")),
            true,
        );
        let soft_bounce = value("soft_bounce", "no")
            .value
            .trim()
            .eq_ignore_ascii_case("yes");
        let syslog_name = value("syslog_name", "postfix").value;
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Some(PostscreenSettings {
            access,
            denylist_action,
            greet_banner: Some(banner).filter(|b| !b.trim().is_empty()),
            greet_wait,
            greet_action,
            greet_ttl,
            dnsbl,
            respectful_logging,
            soft_bounce,
            tag: format!("{syslog_name}/postscreen").into(),
            dnsblog_tag: format!("{syslog_name}/dnsblog").into(),
        }))
    }

    /// Whether any test is on: without one, only the access list runs.
    pub fn has_tests(&self) -> bool {
        self.greet_banner.is_some() || self.dnsbl.is_some()
    }

    /// The tests `cached` (the client's entry in the pass cache, if any) does not cover at
    /// `now`. A test passed until `t` is still passed at `t`, as in Postfix.
    pub fn plan(&self, cached: Option<&PostscreenPass>, now: Millis) -> Plan {
        let pregreet_on = self.greet_banner.is_some();
        let dnsbl_on = self.dnsbl.is_some();
        let Some(c) = cached else {
            return Plan {
                pregreet: pregreet_on,
                dnsbl: dnsbl_on,
                new: true,
            };
        };
        let expired = |until: Option<Millis>| until.is_none_or(|t| now > t);
        Plan {
            pregreet: pregreet_on && expired(c.pregreet),
            dnsbl: dnsbl_on && expired(c.dnsbl),
            new: (pregreet_on && c.pregreet.is_none()) || (dnsbl_on && c.dnsbl.is_none()),
        }
    }
}

/// `${stress?{A}:{B}}`, as postconf prints the stress-dependent defaults, is B: relayguard is
/// never under stress (the `{A}:{B}` form is Postfix 3.0's, which `expand` does not read).
fn unstressed(text: &str) -> std::borrow::Cow<'_, str> {
    const OPEN: &str = "${stress?{";
    let Some(start) = text.find(OPEN) else {
        return text.into();
    };
    let rest = &text[start + OPEN.len()..];
    let parsed = rest.split_once("}:{").and_then(|(_, b)| {
        let (b, tail) = b.split_once("}}")?;
        Some(format!("{}{b}{tail}", &text[..start]))
    });
    parsed.map_or(text.into(), Into::into)
}

/// `r`'s value, or `fallback` with the error kept: every mistake is reported at once.
fn take<T>(errors: &mut Vec<PostscreenError>, r: Result<T, PostscreenError>, fallback: T) -> T {
    r.unwrap_or_else(|e| {
        errors.push(e);
        fallback
    })
}

const SIX: Duration = Duration::from_secs(6);
const DAY: Duration = Duration::from_secs(86_400);

/// A Postfix time value as conv_time() reads it: a number, then a unit s, m, h, d or w (or
/// seconds when bare); like Postfix, what follows the unit letter is not looked at.
pub(crate) fn time(name: &str, value: &ParamValue) -> Result<Duration, PostscreenError> {
    let text = value.value.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let n: Option<u64> = text.get(..digits).and_then(|d| d.parse().ok());
    let unit = match text.as_bytes().get(digits) {
        None | Some(b's') => Some(1),
        Some(b'm') => Some(60),
        Some(b'h') => Some(3600),
        Some(b'd') => Some(86_400),
        Some(b'w') => Some(604_800),
        Some(_) => None,
    };
    n.zip(unit)
        .and_then(|(n, unit)| n.checked_mul(unit))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            PostscreenError::bad(
                name,
                value,
                format!("`{}` is not a time like 6s, 1h or 1d", value.value),
            )
        })
}

/// respectful_logging: set, or `${{$compatibility_level} <level {3.6} ? {no} : {yes}}`.
fn respectful(params: &ParamMap, value: &ParamValue) -> Result<bool, PostscreenError> {
    match value.value.trim().to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        "" => Ok(params
            .value("compatibility_level")
            .and_then(|level| {
                let mut parts = level.trim().split('.');
                let major: u32 = parts.next()?.parse().ok()?;
                let minor: u32 = parts.next().unwrap_or("0").parse().ok()?;
                Some((major, minor) >= (3, 6))
            })
            // relayguard's policy assumes level 3.6 when none is set.
            .unwrap_or(true)),
        other => Err(PostscreenError::bad(
            "respectful_logging",
            value,
            format!("`{other}` is not yes or no"),
        )),
    }
}
