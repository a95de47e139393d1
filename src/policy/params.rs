//! Postfix parameters as the admin wrote them: name, value and where it was written.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a parameter value was written, for errors that say `file:line`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

/// One parameter value in `main.cf` syntax (a TOML array is joined with ", " by the loader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamValue {
    pub value: String,
    pub origin: Origin,
}

/// The effective Postfix parameters for one listener: `[policy]` with that listener's overrides
/// applied on top, as master.cf `-o name=value` is applied on top of main.cf.
#[derive(Clone, Debug, Default)]
pub struct ParamMap {
    values: BTreeMap<String, ParamValue>,
}

impl ParamMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: ParamValue) {
        self.values.insert(name.into(), value);
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// This map with `overrides` applied on top.
    pub fn overlaid(&self, overrides: &ParamMap) -> ParamMap {
        let mut merged = self.clone();
        for (k, v) in overrides.iter() {
            merged.insert(k, v.clone());
        }
        merged
    }

    /// This map with every `$name` in its values expanded from the map itself, for readers
    /// that take values as they are (a master.cf `-o name=$other` is common).
    pub fn expanded(&self) -> ParamMap {
        let lookup = |n: &str| self.value(n).map(str::to_owned);
        let mut out = self.clone();
        for v in out.values.values_mut() {
            if v.value.contains('$') {
                v.value = expand(&v.value, &lookup);
            }
        }
        out
    }
}

/// One part of a main.cf value as Postfix's mac_parse() splits it.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// `$name`, `${name}` or `$(name)`; with `${name?text}` / `${name:text}` the operator and
    /// the text.
    Macro {
        name: &'a str,
        test: Option<(char, &'a str)>,
    },
}

/// Splits `value` into text and macros. A `$` that starts no macro (Postfix: "empty macro
/// name") or a bracket that does not close is reported, and kept as text.
fn pieces(value: &str) -> (Vec<Piece<'_>>, Option<String>) {
    let mut out = Vec::new();
    let mut problem = None;
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        if pos > 0 {
            out.push(Piece::Text(&rest[..pos]));
        }
        let after = &rest[pos + 1..];
        let close = match after.chars().next() {
            Some('{') => Some('}'),
            Some('(') => Some(')'),
            _ => None,
        };
        if let Some(close) = close {
            let open = if close == '}' { '{' } else { '(' };
            // Only the same kind of bracket nests, as in Postfix's balpar().
            let mut depth = 0usize;
            let end = after.char_indices().find_map(|(i, c)| {
                if c == open {
                    depth += 1;
                } else if c == close {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                None
            });
            let Some(end) = end else {
                problem.get_or_insert_with(|| format!("missing '{close}' after `${open}`"));
                out.push(Piece::Text(&rest[pos..]));
                return (out, problem);
            };
            let inner = &after[1..end];
            let piece = match inner.find(['?', ':']) {
                Some(i) => Piece::Macro {
                    name: &inner[..i],
                    test: inner[i..].chars().next().map(|op| (op, &inner[i + 1..])),
                },
                None => Piece::Macro {
                    name: inner,
                    test: None,
                },
            };
            out.push(piece);
            rest = &after[end + 1..];
        } else if let Some(stripped) = after.strip_prefix('$') {
            out.push(Piece::Text("$"));
            rest = stripped;
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                problem.get_or_insert_with(|| {
                    "empty macro name after `$` (write $$ for a literal $)".to_string()
                });
                out.push(Piece::Text("$"));
                rest = after;
                continue;
            }
            out.push(Piece::Macro {
                name: &after[..len],
                test: None,
            });
            rest = &after[len..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    (out, problem)
}

/// Expands `$name`, `${name}`, `$(name)`, `${name?text}` (text if name is non-empty) and
/// `${name:text}` (text if name is empty) as Postfix does for main.cf values. `lookup` gives a
/// parameter's raw value (explicit or default); unknown names expand to nothing (the loader
/// refuses them first, see [`references`]). Depth-limited against loops.
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    expand_depth(value, lookup, 0)
}

fn expand_depth(value: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> String {
    if depth > 20 || !value.contains('$') {
        return value.to_string();
    }
    let resolve = |name: &str| -> String {
        lookup(name)
            .map(|v| expand_depth(&v, lookup, depth + 1))
            .unwrap_or_default()
    };
    let mut out = String::with_capacity(value.len());
    for piece in pieces(value).0 {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Macro { name, test: None } => out.push_str(&resolve(name)),
            Piece::Macro {
                name,
                test: Some((op, text)),
            } => {
                let val = resolve(name);
                // `?` takes the text when name is set, `:` when it is not.
                let take = if op == '?' {
                    !val.is_empty()
                } else {
                    val.is_empty()
                };
                if take {
                    out.push_str(&expand_depth(text, lookup, depth + 1));
                } else if op == ':' {
                    out.push_str(&val);
                }
            }
        }
    }
    out
}

/// Expands a reply template whose names stand for run-time values (`$rbl_domain`,
/// `$client_address`): values are inserted as they are, never expanded again, so a `$` in a
/// DNS TXT record stays text. `Err` names the first macro `lookup` does not know, or the
/// template's syntax error.
pub fn expand_template(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let (parts, problem) = pieces(template);
    if let Some(p) = problem {
        return Err(p);
    }
    let mut out = String::with_capacity(template.len() + 32);
    for piece in parts {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Macro { name, test } => {
                let val = lookup(name).ok_or_else(|| format!("unknown name `${name}`"))?;
                match test {
                    None => out.push_str(&val),
                    Some((op, text)) => {
                        let set = !val.is_empty();
                        if (op == '?') == set {
                            out.push_str(&expand_template(text, lookup)?);
                        } else if op == ':' {
                            out.push_str(&val);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The parameter names a value refers to, each with whether the value needs it defined:
/// `$name` does, while `${name?text}` and `${name:text}` only ask whether it is set. A
/// syntax error Postfix would stop at ("empty macro name") comes back as `Err`.
pub fn references(value: &str) -> Result<Vec<(&str, bool)>, String> {
    let (parts, problem) = pieces(value);
    if let Some(p) = problem {
        return Err(p);
    }
    let mut out = Vec::new();
    for piece in parts {
        if let Piece::Macro { name, test } = piece {
            out.push((name, test.is_none()));
            if let Some((_, text)) = test {
                out.extend(references(text)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_main_cf() {
        let look = |n: &str| match n {
            "myhostname" => Some("mx.example".to_string()),
            "mydomain" => Some("example".to_string()),
            "empty" => Some(String::new()),
            "nested" => Some("$myhostname".to_string()),
            _ => None,
        };
        assert_eq!(
            expand("$myhostname, localhost.$mydomain, localhost", &look),
            "mx.example, localhost.example, localhost"
        );
        assert_eq!(expand("${nested}/x", &look), "mx.example/x");
        assert_eq!(expand("${empty:$mydomain}", &look), "example");
        assert_eq!(expand("${mydomain:no}", &look), "example");
        assert_eq!(expand("${mydomain?yes}", &look), "yes");
        assert_eq!(expand("${empty?yes}", &look), "");
        assert_eq!(expand("$(mydomain)/x $$1", &look), "example/x $1");
        assert_eq!(expand("${mydomain?$(nested)}", &look), "mx.example");
    }

    /// mailcow's master.cf: `-o smtpd_tls_mandatory_protocols=$smtps_smtpd_tls_mandatory_protocols`.
    #[test]
    fn a_map_expands_its_own_references() {
        let map = crate::policy::main_cf::parse_main_cf(
            "smtps_protocols = >=TLSv1.2\nsmtpd_tls_mandatory_protocols = $smtps_protocols\nplain = no dollar\n",
            std::path::Path::new("main.cf"),
        )
        .unwrap();
        let e = map.expanded();
        assert_eq!(e.value("smtpd_tls_mandatory_protocols"), Some(">=TLSv1.2"));
        assert_eq!(e.value("plain"), Some("no dollar"));
        assert_eq!(
            e.get("smtpd_tls_mandatory_protocols").unwrap().origin.line,
            2
        );
    }

    #[test]
    fn references_and_their_errors() {
        assert_eq!(
            references("$a, ${b}, $(c), ${d:$e}, ${f?x}, $$g").unwrap(),
            vec![
                ("a", true),
                ("b", true),
                ("c", true),
                ("d", false),
                ("e", true),
                ("f", false)
            ]
        );
        assert!(references("/x$/")
            .unwrap_err()
            .starts_with("empty macro name"));
        assert!(references("x $")
            .unwrap_err()
            .starts_with("empty macro name"));
        assert!(references("${a").unwrap_err().starts_with("missing '}'"));
    }
}
