//! Reads a Postfix table configuration file (`mysql:/etc/postfix/x.cf`) the way cfg_parser.c
//! and dict_load_fp() do: `name = value` lines, `#` comments, indented continuation lines.
//!
//! Only parsing and typed getters with Postfix's defaults and bounds; the backends decide
//! which names they read. Errors name the file and line; a password value never appears in
//! one (see [`Password`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::policy::logical_lines;

/// A password or bind secret from a table config: `Debug` and `Display` print `<redacted>`,
/// so neither a log line nor an error built with `{:?}` can carry it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub(crate) fn new(secret: String) -> Self {
        Password(secret)
    }

    /// The secret itself, for the one place that hands it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One parsed config file: each name's last value (dict_load_fp replaces duplicates) and the
/// line it was written on.
#[derive(Debug)]
pub struct CfFile {
    path: PathBuf,
    entries: HashMap<String, (String, usize)>,
}

impl CfFile {
    /// Reads and parses `path`. The error is `path[:line]: why`.
    pub fn read(path: &Path) -> Result<CfFile, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        CfFile::parse(&text, path)
    }

    /// Parses config text that came from `path` (used for messages only).
    pub fn parse(text: &str, path: &Path) -> Result<CfFile, String> {
        let mut entries = HashMap::new();
        for (line, logical) in logical_lines(text) {
            // split_nameval(): the name ends at '=' or whitespace, both sides are trimmed.
            let Some((name, value)) = logical.split_once('=') else {
                return Err(format!(
                    "{}:{line}: expected format: key = value",
                    path.display()
                ));
            };
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!(
                    "{}:{line}: expected format: key = value",
                    path.display()
                ));
            }
            entries.insert(name.to_string(), (value.trim().to_string(), line));
        }
        Ok(CfFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `file:line` where `name` was set, or just the file when it was not.
    pub fn at(&self, name: &str) -> String {
        match self.entries.get(name) {
            Some((_, line)) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    /// Whether the file sets `name` at all.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// cfg_get_str(): the value or `default`, at least `min` bytes long (0: no minimum).
    pub fn str(&self, name: &str, default: &str, min: usize) -> Result<String, String> {
        let value = self
            .entries
            .get(name)
            .map(|(v, _)| v.as_str())
            .unwrap_or(default);
        if value.len() < min {
            return Err(format!(
                "{}: bad string length {} < {min}: {name} = {value}",
                self.at(name),
                value.len()
            ));
        }
        Ok(value.to_string())
    }

    /// cfg_get_str() with no default: `None` when the file does not set `name`.
    pub fn opt_str(&self, name: &str) -> Option<String> {
        self.entries.get(name).map(|(v, _)| v.clone())
    }

    /// A secret: never quoted back in an error, whatever goes wrong.
    pub fn password(&self, name: &str) -> Password {
        Password(self.opt_str(name).unwrap_or_default())
    }

    /// cfg_get_int(): a whole decimal number, at least `min` when `min` is not 0.
    pub fn int(&self, name: &str, default: i64, min: i64) -> Result<i64, String> {
        let value = match self.entries.get(name) {
            Some((v, _)) => v.parse::<i32>().map(i64::from).map_err(|_| {
                format!(
                    "{}: bad numerical configuration: {name} = {v}",
                    self.at(name)
                )
            })?,
            None => default,
        };
        if min != 0 && value < min {
            return Err(format!(
                "{}: invalid {name} parameter value {value} < {min}",
                self.at(name)
            ));
        }
        Ok(value)
    }

    /// cfg_get_bool(): `yes` or `no`, in any case.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.entries.get(name) {
            None => Ok(default),
            Some((v, _)) if v.eq_ignore_ascii_case("yes") => Ok(true),
            Some((v, _)) if v.eq_ignore_ascii_case("no") => Ok(false),
            Some((v, _)) => Err(format!(
                "{}: bad boolean configuration: {name} = {v}",
                self.at(name)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(text: &str) -> CfFile {
        CfFile::parse(text, Path::new("/etc/postfix/t.cf")).unwrap()
    }

    #[test]
    fn names_values_continuations_and_duplicates() {
        let c = cf("# c\nuser = a\nquery = SELECT x\n   FROM t\n\nuser=b\n");
        assert_eq!(c.str("user", "", 0).unwrap(), "b");
        assert_eq!(c.str("query", "", 0).unwrap(), "SELECT x   FROM t");
        assert_eq!(c.at("user"), "/etc/postfix/t.cf:6");
        assert_eq!(c.str("dbname", "", 0).unwrap(), "");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = CfFile::parse("user = a\nbogus line\n", Path::new("/x.cf")).unwrap_err();
        assert_eq!(e, "/x.cf:2: expected format: key = value");
        let c = cf("dbname =\nexpansion_limit = 2x\ncache = maybe\n");
        assert_eq!(
            c.str("dbname", "", 1).unwrap_err(),
            "/etc/postfix/t.cf:1: bad string length 0 < 1: dbname = "
        );
        assert_eq!(
            c.int("expansion_limit", 0, 0).unwrap_err(),
            "/etc/postfix/t.cf:2: bad numerical configuration: expansion_limit = 2x"
        );
        assert!(c.bool("cache", false).is_err());
    }

    #[test]
    fn password_is_redacted() {
        let c = cf("password = hunter2\n");
        let p = c.password("password");
        assert_eq!(p.expose(), "hunter2");
        assert_eq!(format!("{p:?} {p}"), "<redacted> <redacted>");
    }
}
