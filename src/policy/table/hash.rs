//! Exact-key tables: texthash (and hash/btree/lmdb read from their source text) and inline:{...}.
//!
//! Keys are lower-cased at load, as Postfix folds them; a duplicate key keeps the first value.

use std::path::Path;

use rustc_hash::FxHashMap;

use super::{entries_with_origin, logical_lines, Entry};
use crate::policy::error::{Hint, PolicyError, PolicyWarning};
use crate::policy::params::Origin;

#[derive(Debug, Default)]
pub(crate) struct HashTable {
    map: FxHashMap<Box<str>, (Box<str>, usize)>,
    file: Option<Box<Path>>,
}

impl HashTable {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|(v, _)| &**v)
    }

    pub(crate) fn parse_file(
        text: &str,
        path: &Path,
        warnings: &mut Vec<PolicyWarning>,
    ) -> Result<HashTable, PolicyError> {
        let mut t = HashTable {
            map: FxHashMap::default(),
            file: Some(path.into()),
        };
        for (line, content) in logical_lines(text) {
            let origin = Origin {
                file: path.to_path_buf(),
                line,
            };
            let content = content.trim();
            let (key, value) = match content.split_once(char::is_whitespace) {
                Some((k, v)) => (k, v.trim()),
                None => {
                    return Err(PolicyError::Table {
                        table: path.display().to_string(),
                        origin,
                        why: format!("expected format: key whitespace value, got \"{content}\""),
                        hint: Hint::none(),
                    })
                }
            };
            let key = key.to_ascii_lowercase();
            if t.map.contains_key(key.as_str()) {
                warnings.push(PolicyWarning::new(
                    &path.display().to_string(),
                    &origin,
                    format!("duplicate entry: \"{key}\" (the first one is used, as in Postfix)"),
                    "remove one of the entries".into(),
                ));
                continue;
            }
            t.map.insert(key.into(), (value.into(), line));
        }
        Ok(t)
    }

    /// `{k1=v1, {k2 = value with spaces}}` (the text after `inline:`).
    pub(crate) fn parse_inline(spec: &str) -> Result<HashTable, String> {
        let body = spec
            .trim()
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| "inline table must be written inline:{key=value, ...}".to_string())?;
        let mut t = HashTable::default();
        for item in crate::policy::text::split_list(body) {
            let item = item
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .unwrap_or(item);
            let (k, v) = item.split_once('=').ok_or_else(|| {
                format!("missing '=' after attribute name in \"{item}\" (write {{key = value with spaces}})")
            })?;
            let k = k.trim().to_ascii_lowercase();
            if k.is_empty() {
                return Err(format!("empty key in \"{item}\""));
            }
            t.map.entry(k.into()).or_insert((v.trim().into(), 0));
        }
        Ok(t)
    }

    pub(crate) fn entries(&self) -> Vec<Entry<'_>> {
        let entries = self.map.iter().map(|(k, (v, line))| (&**k, &**v, *line));
        let mut e = entries_with_origin(self.file.as_deref(), entries);
        e.sort_by_key(|e| e.origin.line);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_groups_and_errors() {
        let t = HashTable::parse_inline("{A@x.test=OK, {b@x.test = REJECT two words}}").unwrap();
        assert_eq!(t.get("a@x.test"), Some("OK"));
        assert_eq!(t.get("b@x.test"), Some("REJECT two words"));
        assert!(HashTable::parse_inline("{u@x=REJECT two words}")
            .unwrap_err()
            .starts_with("missing '=' after attribute name"));
    }

    #[test]
    fn texthash_folds_keys_keeps_first_and_continues_lines() {
        let mut w = Vec::new();
        let t = HashTable::parse_file(
            "# c\nFoo.Example  REJECT x # not a comment\n  continued\nfoo.example OK\n\nbar DUNNO\n",
            Path::new("/t/access"),
            &mut w,
        )
        .unwrap();
        assert_eq!(
            t.get("foo.example"),
            Some("REJECT x # not a comment  continued")
        );
        assert_eq!(t.get("bar"), Some("DUNNO"));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].line, 4);
    }
}
