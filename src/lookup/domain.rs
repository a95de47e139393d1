//! The `domain` parameter of the SQL and LDAP tables (db_common_check_domain()): only keys
//! `user@domain` with a non-empty user and a listed domain are looked up at all.
//!
//! A string_list in Postfix's sense: names compared without case, `!name` to exclude,
//! `/file/name` for more names, `type:table` for an in-memory table; the first match decides.

use std::path::Path;

use crate::policy::{Origin, Table};

#[derive(Debug)]
enum Pattern {
    Name(String),
    Table(Table),
}

/// A parsed `domain = ...` list.
#[derive(Debug)]
pub struct DomainList {
    patterns: Vec<(bool, Pattern)>,
}

impl DomainList {
    /// Parses the list written at `at` (`file:line`, for errors) in `cf_file`. Relative
    /// table names are taken relative to the config file, as everywhere in relayguard.
    pub fn parse(text: &str, cf_file: &Path, at: &str) -> Result<DomainList, String> {
        let mut patterns = Vec::new();
        let mut words: Vec<String> = split(text).map(str::to_string).collect();
        words.reverse();
        while let Some(word) = words.pop() {
            let (negated, word) = match word.strip_prefix('!') {
                Some(rest) => (true, rest.to_string()),
                None => (false, word),
            };
            if word.starts_with('/') {
                // A file of more patterns, read now: match_list reads it once at open too.
                let text = std::fs::read_to_string(&word)
                    .map_err(|e| format!("{at}: domain: open {word}: {e}"))?;
                let mut more: Vec<String> = text
                    .lines()
                    .map(|l| l.split('#').next().unwrap_or(""))
                    .flat_map(split)
                    .map(|w| {
                        if negated {
                            format!("!{w}")
                        } else {
                            w.to_string()
                        }
                    })
                    .collect();
                more.reverse();
                words.extend(more);
                continue;
            }
            let pattern = if word.contains(':') && !word.starts_with('[') {
                let origin = Origin {
                    file: cf_file.to_path_buf(),
                    line: 0,
                };
                let (table, _) =
                    Table::load(&word, &origin).map_err(|e| format!("{at}: domain: {e}"))?;
                Pattern::Table(table)
            } else {
                Pattern::Name(word.to_ascii_lowercase())
            };
            patterns.push((negated, pattern));
        }
        Ok(DomainList { patterns })
    }

    /// Whether a table with this (optional) `domain` list asks the server about `key` at
    /// all: never for a key with a NUL (Postfix keys are C strings), and, with a list, only
    /// for an address it admits. Otherwise the answer is "not found" without a query.
    pub fn asks(list: Option<&DomainList>, key: &str) -> bool {
        !key.contains('\0') && list.is_none_or(|l| l.admits(key))
    }

    /// Whether `key` may be looked up: it has a non-empty local part and its domain (after
    /// the last `@`) matches the list.
    pub fn admits(&self, key: &str) -> bool {
        let Some(at) = key.rfind('@') else {
            return false;
        };
        if at == 0 {
            return false;
        }
        let domain = key[at + 1..].to_ascii_lowercase();
        for (negated, pattern) in &self.patterns {
            let hit = match pattern {
                Pattern::Name(n) => *n == domain,
                Pattern::Table(t) => t.lookup(&domain).is_some(),
            };
            if hit {
                return !negated;
            }
        }
        false
    }
}

/// Postfix's list separators (CHARS_COMMA_SP), outside `{...}` as mystrtokq() splits, so
/// `inline:{ a=b, c=d }` stays one word.
fn split(text: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    text.split(move |c: char| {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        depth == 0 && matches!(c, ',' | ' ' | '\t' | '\r' | '\n')
    })
    .filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_negation_and_local_part() {
        let d = DomainList::parse(
            "!no.example, Example.COM other.example",
            Path::new("/x.cf"),
            "/x.cf:1",
        )
        .unwrap();
        assert!(d.admits("a@example.com"));
        assert!(d.admits("a@OTHER.example"));
        assert!(!d.admits("a@no.example"));
        assert!(!d.admits("a@sub.example.com"));
        assert!(!d.admits("@example.com"));
        assert!(!d.admits("example.com"));
    }

    #[test]
    fn tables_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("domains");
        std::fs::write(&list, "# listed\nfile.example\n").unwrap();
        let text = format!("{}, inline:{{ tab.example=yes }}", list.display());
        let d = DomainList::parse(&text, Path::new("/x.cf"), "/x.cf:1").unwrap();
        assert!(d.admits("u@file.example"));
        assert!(d.admits("u@tab.example"));
        assert!(!d.admits("u@else.example"));
        let e = DomainList::parse("/nonexistent/list", Path::new("/x.cf"), "/x.cf:3").unwrap_err();
        assert!(
            e.starts_with("/x.cf:3: domain: open /nonexistent/list"),
            "{e}"
        );
    }
}
