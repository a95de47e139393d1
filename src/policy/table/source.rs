//! Where a table's text comes from: a file named relative to the file that names it, or, for
//! the pattern tables (cidr, regexp, pcre), rules written inline in braces, as Postfix 3.7's
//! dict_stream_open() reads `cidr:{ {rule}, {rule} }`.
//!
//! Only text: the table modules parse it. Nothing here reads a file more than once.

use std::path::{Path, PathBuf};

use crate::policy::text::split_list;

/// A table name relative to the directory of the file that names it.
pub(super) fn resolve(name: &str, file: &Path) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match file.parent() {
        Some(dir) => dir.join(p),
        None => p.to_path_buf(),
    }
}

pub(super) fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The rules of an inline pattern table, one per line (so rule N is line N), from the text
/// after `type:`, which starts with `{`. The outer braces must enclose the whole name, and
/// every rule must be a balanced `{...}` group; whitespace inside a rule's braces is trimmed
/// at both ends, not inside. Errors read as Postfix's extpar() reports them.
pub(super) fn inline_rules(name: &str) -> Result<String, String> {
    let body = strip_braces(name)?;
    let mut text = String::new();
    for rule in split_list(body) {
        text.push_str(strip_braces(rule)?.trim());
        text.push('\n');
    }
    Ok(text)
}

/// The text inside one balanced `{...}` that spans all of `text`.
fn strip_braces(text: &str) -> Result<&str, String> {
    if !text.starts_with('{') {
        return Err(format!("no '{{' at start of text in \"{text}\""));
    }
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let after = i + c.len_utf8();
                    if after != text.len() {
                        return Err(format!("syntax error after '}}' in \"{text}\""));
                    }
                    return Ok(&text[1..i]);
                }
            }
            _ => {}
        }
    }
    Err(format!("missing '}}' in \"{text}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_become_lines() {
        assert_eq!(
            inline_rules("{ {192.0.2.0/24 REJECT a  b}, {0.0.0.0/0 OK} }").unwrap(),
            "192.0.2.0/24 REJECT a  b\n0.0.0.0/0 OK\n"
        );
        assert_eq!(inline_rules("{{ /a{2}/ X }}").unwrap(), "/a{2}/ X\n");
        assert_eq!(inline_rules("{}").unwrap(), "");
        assert!(inline_rules("{a b}")
            .unwrap_err()
            .starts_with("no '{' at start of text in \"a\""));
        assert!(inline_rules("{ {a}")
            .unwrap_err()
            .starts_with("missing '}'"));
        assert!(inline_rules("{ {a} }x")
            .unwrap_err()
            .starts_with("syntax error after '}'"));
    }
}
