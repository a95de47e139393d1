//! regexp and pcre tables: `/pattern/flags value` lines, first match wins, `!/re/` negation,
//! `if /re/` ... `endif` blocks and `$N` substitution in the value.
//!
//! regexp tables are matched as one `regex::RegexSet` (one pass over the key for all rules), then
//! the rule order decides. pcre tables use the real PCRE2 library so that look-around,
//! backreferences and PCRE's exact semantics hold; they are tried rule by rule, as Postfix does.

use std::borrow::Cow;
use std::path::Path;

use super::{
    entries_with_origin, expand_captures, file_error, logical_lines, split_pattern, Entry,
};
use crate::policy::error::PolicyError;

/// One rule in file order; `pattern` indexes the compiled patterns.
#[derive(Debug)]
enum Rule {
    Match {
        pattern: usize,
        negated: bool,
        value: usize,
    },
    If {
        pattern: usize,
        negated: bool,
        end: usize,
    },
    Endif,
}

/// The structure shared by both table kinds: rules in order plus their values.
#[derive(Debug, Default)]
struct Rules {
    rules: Vec<Rule>,
    values: Vec<(Box<str>, usize)>,
    /// The pattern of each value as written (`/re/flags`, `!` included), for messages.
    keys: Vec<Box<str>>,
    file: Option<Box<Path>>,
}

impl Rules {
    /// Parses the file; `compile(pattern, flags)` returns the pattern's index.
    fn parse(
        text: &str,
        path: &Path,
        kind: &str,
        mut compile: impl FnMut(&str, &str) -> Result<usize, String>,
    ) -> Result<Rules, PolicyError> {
        let mut r = Rules {
            file: Some(path.into()),
            ..Rules::default()
        };
        let mut open_ifs: Vec<(usize, usize)> = Vec::new();
        for (line, content) in logical_lines(text) {
            let err =
                |why: String| file_error(format!("{kind}:{}", path.display()), path, line, why);
            let content = content.trim();
            if content.eq_ignore_ascii_case("endif") {
                let (at, _) = open_ifs
                    .pop()
                    .ok_or_else(|| err("endif without if".into()))?;
                r.rules.push(Rule::Endif);
                let end = r.rules.len();
                if let Some(Rule::If { end: e, .. }) = r.rules.get_mut(at) {
                    *e = end;
                }
                continue;
            }
            let (is_if, rest) = match content.get(..2) {
                Some(w)
                    if w.eq_ignore_ascii_case("if")
                        && content[2..].starts_with(char::is_whitespace) =>
                {
                    (true, content[2..].trim_start())
                }
                _ => (false, content),
            };
            let (negated, rest) = match rest.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let (pat, flags, value) = split_pattern(rest)
                .ok_or_else(|| err(format!("no closing delimiter in \"{content}\"")))?;
            let pattern = compile(pat, flags).map_err(err)?;
            if is_if {
                if !value.is_empty() {
                    return Err(err("text after if /pattern/".into()));
                }
                open_ifs.push((r.rules.len(), line));
                r.rules.push(Rule::If {
                    pattern,
                    negated,
                    end: 0,
                });
            } else {
                if value.is_empty() {
                    return Err(err(format!("missing value after pattern in \"{content}\"")));
                }
                r.values.push((value.into(), line));
                let key = content
                    .get(..content.len() - value.len())
                    .unwrap_or(content);
                r.keys.push(key.trim().into());
                r.rules.push(Rule::Match {
                    pattern,
                    negated,
                    value: r.values.len() - 1,
                });
            }
        }
        if let Some((_, line)) = open_ifs.pop() {
            return Err(file_error(
                format!("{kind}:{}", path.display()),
                path,
                line,
                "if without endif".into(),
            ));
        }
        Ok(r)
    }

    /// The first rule that applies: (pattern index, value index).
    fn first(&self, matched: impl Fn(usize) -> bool) -> Option<(usize, usize)> {
        let mut i = 0;
        while let Some(rule) = self.rules.get(i) {
            match rule {
                Rule::Match {
                    pattern,
                    negated,
                    value,
                } => {
                    if matched(*pattern) != *negated {
                        return Some((*pattern, *value));
                    }
                    i += 1;
                }
                Rule::If {
                    pattern,
                    negated,
                    end,
                } => {
                    i = if matched(*pattern) != *negated {
                        i + 1
                    } else {
                        *end
                    };
                }
                Rule::Endif => i += 1,
            }
        }
        None
    }

    fn entries(&self) -> Vec<Entry<'_>> {
        let entries = self
            .keys
            .iter()
            .zip(&self.values)
            .map(|(k, (v, line))| (&**k, &**v, *line));
        entries_with_origin(self.file.as_deref(), entries)
    }
}

/// A POSIX-style regexp table (Postfix `regexp:`), case-insensitive unless a rule says `i`.
#[derive(Debug)]
pub(crate) struct RegexpTable {
    rules: Rules,
    set: regex::RegexSet,
    each: Vec<regex::Regex>,
}

impl RegexpTable {
    pub(crate) fn parse(text: &str, path: &Path) -> Result<RegexpTable, PolicyError> {
        let mut sources: Vec<String> = Vec::new();
        let mut each = Vec::new();
        let rules = Rules::parse(text, path, "regexp", |pat, flags| {
            let mut caseless = true;
            let mut multiline = false;
            for f in flags.chars() {
                match f {
                    'i' => caseless = !caseless,
                    'm' => multiline = !multiline,
                    'x' => return Err("flag `x` (basic regular expressions) is not supported; write an extended regexp".into()),
                    other => return Err(format!("unknown regexp option \"{other}\" (Postfix would skip this rule)")),
                }
            }
            let full = format!(
                "{}{}{}",
                if caseless { "(?i)" } else { "" },
                if multiline { "(?m)" } else { "" },
                pat
            );
            let re =
                regex::Regex::new(&full).map_err(|e| format!("bad regular expression: {e}"))?;
            each.push(re);
            sources.push(full);
            Ok(sources.len() - 1)
        })?;
        let set = regex::RegexSet::new(&sources).map_err(|e| {
            let why = format!("cannot build the regexp set: {e}");
            file_error(format!("regexp:{}", path.display()), path, 0, why)
        })?;
        Ok(RegexpTable { rules, set, each })
    }

    pub(crate) fn lookup(&self, key: &str) -> Option<Cow<'_, str>> {
        let matches = self.set.matches(key);
        let (pattern, value) = self.rules.first(|p| matches.matched(p))?;
        let value = &self.rules.values.get(value)?.0;
        if !value.contains('$') {
            return Some(Cow::Borrowed(value));
        }
        let caps = self.each.get(pattern)?.captures(key);
        Some(Cow::Owned(expand_captures(value, |n| {
            caps.as_ref().and_then(|c| c.get(n)).map(|m| m.as_str())
        })))
    }

    pub(crate) fn entries(&self) -> Vec<Entry<'_>> {
        self.rules.entries()
    }

    /// The pattern (`/re/flags` as written) of the rule `key` matches, for metrics.
    pub(crate) fn entry(&self, key: &str) -> Option<&str> {
        let matches = self.set.matches(key);
        let (_, value) = self.rules.first(|p| matches.matched(p))?;
        self.rules.keys.get(value).map(|k| &**k)
    }
}

/// A PCRE table (Postfix `pcre:`), matched with PCRE2 itself.
#[derive(Debug)]
pub(crate) struct PcreTable {
    rules: Rules,
    each: Vec<pcre2::bytes::Regex>,
}

impl PcreTable {
    pub(crate) fn parse(text: &str, path: &Path) -> Result<PcreTable, PolicyError> {
        let mut each = Vec::new();
        let rules = Rules::parse(text, path, "pcre", |pat, flags| {
            let mut b = pcre2::bytes::RegexBuilder::new();
            let mut caseless = true;
            let mut prefix = String::new();
            let mut anchored = false;
            for f in flags.chars() {
                match f {
                    'i' => caseless = !caseless,
                    'm' => {
                        b.multi_line(true);
                    }
                    's' => {
                        b.dotall(true);
                    }
                    'x' => {
                        b.extended(true);
                    }
                    'U' => prefix.push_str("(?U)"),
                    'A' => anchored = true,
                    // PCRE_EXTRA has no effect in PCRE2, which Postfix 3.7 also uses.
                    'X' => {}
                    other => {
                        return Err(format!(
                            "unknown pcre option \"{other}\" (Postfix would skip this rule)"
                        ))
                    }
                }
            }
            b.caseless(caseless).utf(true).jit_if_available(true);
            let full = if anchored {
                format!("{prefix}\\A(?:{pat})")
            } else {
                format!("{prefix}{pat}")
            };
            let re = b
                .build(&full)
                .map_err(|e| format!("bad PCRE pattern: {e}"))?;
            each.push(re);
            Ok(each.len() - 1)
        })?;
        Ok(PcreTable { rules, each })
    }

    pub(crate) fn lookup(&self, key: &str) -> Option<Cow<'_, str>> {
        let bytes = key.as_bytes();
        let (pattern, value) = self.rules.first(|p| {
            self.each
                .get(p)
                .is_some_and(|re| re.is_match(bytes).unwrap_or(false))
        })?;
        let value = &self.rules.values.get(value)?.0;
        if !value.contains('$') {
            return Some(Cow::Borrowed(value));
        }
        let caps = self.each.get(pattern)?.captures(bytes).ok().flatten();
        Some(Cow::Owned(expand_captures(value, |n| {
            caps.as_ref()
                .and_then(|c| c.get(n))
                .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
        })))
    }

    pub(crate) fn entries(&self) -> Vec<Entry<'_>> {
        self.rules.entries()
    }

    /// The pattern (`/re/flags` as written) of the rule `key` matches, for metrics.
    pub(crate) fn entry(&self, key: &str) -> Option<&str> {
        let bytes = key.as_bytes();
        let (_, value) = self.rules.first(|p| {
            self.each
                .get(p)
                .is_some_and(|re| re.is_match(bytes).unwrap_or(false))
        })?;
        self.rules.keys.get(value).map(|k| &**k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's regexp example with its `postmap -q` results [live]. Keys are given as
    /// smtpd would give them (lower-cased) except where the point is the `i` flag.
    #[test]
    fn regexp_reference_example() {
        let t = RegexpTable::parse(
            "/^postmaster@/          OK
/^(.*)@spam\\.example$/  REJECT user $1 is spam
/@sub\\.example$/i       REJECT toggled
if /\\.test$/
/^a@/                   REJECT a at test
endif
!/@/                    REJECT no at sign
",
            Path::new("/t/r"),
        )
        .unwrap();
        let q = |k: &str| t.lookup(k).map(|c| c.into_owned());
        assert_eq!(q("postmaster@x.example").as_deref(), Some("OK"));
        assert_eq!(
            q("Joe@SPAM.example").as_deref(),
            Some("REJECT user Joe is spam")
        );
        assert_eq!(q("a@sub.example").as_deref(), Some("REJECT toggled"));
        assert_eq!(q("A@SUB.EXAMPLE"), None);
        assert_eq!(q("a@b.test").as_deref(), Some("REJECT a at test"));
        assert_eq!(q("b@b.test"), None);
        assert_eq!(q("nodomain").as_deref(), Some("REJECT no at sign"));
    }

    #[test]
    fn pcre_reference_example() {
        let t = PcreTable::parse(
            "/^(\\w+)\\+(\\w+)@ext\\.example$/   REJECT ext $2 of $1
/^\\[?192\\.0\\.2\\.\\d+\\]?$/        REJECT literal helo
if !/^mail\\./
/\\.dyn\\.example$/               REJECT dynamic host
endif
",
            Path::new("/t/p"),
        )
        .unwrap();
        let q = |k: &str| t.lookup(k).map(|c| c.into_owned());
        assert_eq!(
            q("joe+promo@ext.example").as_deref(),
            Some("REJECT ext promo of joe")
        );
        assert_eq!(q("[192.0.2.7]").as_deref(), Some("REJECT literal helo"));
        assert_eq!(
            q("host.dyn.example").as_deref(),
            Some("REJECT dynamic host")
        );
        assert_eq!(q("mail.dyn.example"), None);
    }

    #[test]
    fn pcre_has_pcre_semantics() {
        // Look-behind and backreferences: not expressible in the regex crate.
        let t = PcreTable::parse(
            "/(?<!mail)\\.bad\\.example$/ REJECT lb\n/^(\\w)\\1@/ REJECT double\n",
            Path::new("/t/p"),
        )
        .unwrap();
        assert_eq!(t.lookup("x.bad.example").as_deref(), Some("REJECT lb"));
        assert_eq!(t.lookup("mail.bad.example"), None);
        assert_eq!(t.lookup("aa@x").as_deref(), Some("REJECT double"));
        assert_eq!(t.lookup("ab@x"), None);
    }

    #[test]
    fn the_entry_matched_is_the_pattern_not_the_key() {
        let t =
            RegexpTable::parse("/^a.*@x\\.example$/ REJECT\n/b/ OK\n", Path::new("/t/r")).unwrap();
        assert_eq!(t.entry("alice@x.example"), Some("/^a.*@x\\.example$/"));
        assert_eq!(t.entry("zzz"), None);
        let p = PcreTable::parse("/^a.*@x\\.example$/ REJECT\n", Path::new("/t/p")).unwrap();
        assert_eq!(p.entry("alice@x.example"), Some("/^a.*@x\\.example$/"));
    }

    #[test]
    fn unknown_flag_is_refused_with_line() {
        let e = RegexpTable::parse("/a/ OK\n/b/c REJECT\n", Path::new("/t/r")).unwrap_err();
        assert!(
            matches!(e, PolicyError::Table { ref origin, ref why, .. } if origin.line == 2 && why.starts_with("unknown regexp option \"c\""))
        );
    }
}
