//! What can be wrong with a policy at load (errors) or surely not meant (warnings).
//!
//! Every error names the file and line the admin wrote and, where one exists, a hint: the nearest
//! known name or the value Postfix itself would suggest. Nothing here decides anything.

use std::fmt;

use super::params::Origin;

/// A hint appended to an error: ` (did you mean `x`?)` or any other fix, or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hint(pub Option<String>);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(h) => write!(f, " ({h})"),
            None => Ok(()),
        }
    }
}

impl Hint {
    pub fn none() -> Self {
        Hint(None)
    }

    pub fn text(t: impl Into<String>) -> Self {
        Hint(Some(t.into()))
    }

    /// `did you mean `x`?` with the nearest of `candidates`, if one is close enough.
    pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        let best = candidates
            .into_iter()
            .map(|c| (strsim::damerau_levenshtein(word, c), c))
            .min_by_key(|(d, _)| *d);
        match best {
            Some((d, c)) if d <= (word.len() / 3).max(2) => {
                Hint::text(format!("did you mean `{c}`?"))
            }
            _ => Hint::none(),
        }
    }
}

/// A configuration mistake found while compiling the policy. The config is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Neither a Postfix parameter, a relayguard session parameter nor a declared restriction class.
    #[error("{}:{}: unknown parameter `{name}`{hint}", origin.file.display(), origin.line)]
    UnknownParameter {
        name: String,
        origin: Origin,
        hint: Hint,
    },

    /// A `$name` (or `${name}`, `$(name)`) in `parameter`'s value that names nothing: neither a
    /// parameter set here nor a Postfix parameter with a built-in value. Postfix would expand it
    /// to nothing, which can silently empty a whole restriction list.
    #[error("{}:{}: `{parameter}` refers to `${name}`, which is defined nowhere{hint}", origin.file.display(), origin.line)]
    UndefinedParameter {
        name: String,
        parameter: String,
        origin: Origin,
        hint: Hint,
    },

    /// A real Postfix parameter that relayguard does not implement; it is refused rather than
    /// silently ignored.
    #[error("{}:{}: Postfix parameter `{name}` is not implemented by relayguard{hint}", origin.file.display(), origin.line)]
    NotImplemented {
        name: String,
        origin: Origin,
        hint: Hint,
    },

    /// A value that does not parse (a yes/no, a number, a list element).
    #[error("{}:{}: bad value for `{name}`: {why}{hint}", origin.file.display(), origin.line)]
    BadValue {
        name: String,
        origin: Origin,
        why: String,
        hint: Hint,
    },

    /// A name in a restriction list that is neither a restriction relayguard implements nor a
    /// declared class.
    #[error("{}:{}: `{name}`: unknown restriction `{restriction}`{hint}", origin.file.display(), origin.line)]
    UnknownRestriction {
        name: String,
        origin: Origin,
        restriction: String,
        hint: Hint,
    },

    /// A lookup table that cannot be used: unsupported type, unreadable or malformed file, or a
    /// value a proxy cannot honour. `origin` is the table file's line when the problem is inside it.
    #[error("{}:{}: table `{table}`: {why}{hint}", origin.file.display(), origin.line)]
    Table {
        table: String,
        origin: Origin,
        why: String,
        hint: Hint,
    },

    /// Postfix's start-up check: relay control is missing from both relay and recipient lists.
    #[error("{}:{}: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains", origin.file.display(), origin.line)]
    NoRelayControl { origin: Origin },
}

/// A setting that is valid but surely not what the admin meant; `check-config` prints these.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PolicyWarning {
    pub parameter: String,
    pub file: String,
    pub line: usize,
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

impl PolicyWarning {
    pub(crate) fn new(parameter: &str, origin: &Origin, message: String, fix: String) -> Self {
        Self {
            parameter: parameter.to_string(),
            file: origin.file.display().to_string(),
            line: origin.line,
            message,
            fix,
        }
    }
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: `{}`: {}; {}",
            self.file, self.line, self.parameter, self.message, self.fix
        )
    }
}
