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
}

/// Expands `$name`, `${name}`, `${name?text}` (text if name is non-empty) and `${name:text}`
/// (text if name is empty) as Postfix does for main.cf values. `lookup` gives a parameter's raw
/// value (explicit or default); unknown names expand to nothing. Depth-limited against loops.
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
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(body) = after.strip_prefix('{') {
            // Find the matching close brace (values may nest ${a:${b}}).
            let mut depth_b = 1usize;
            let mut end = None;
            for (i, c) in body.char_indices() {
                match c {
                    '{' => depth_b += 1,
                    '}' => {
                        depth_b -= 1;
                        if depth_b == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                out.push_str(&rest[pos..]);
                return out;
            };
            let inner = &body[..end];
            let split = inner.find(['?', ':']);
            match split {
                Some(i) => {
                    let (name, op, text) = (&inner[..i], &inner[i..=i], &inner[i + 1..]);
                    let val = resolve(name);
                    let take = if op == "?" {
                        !val.is_empty()
                    } else {
                        val.is_empty()
                    };
                    if take {
                        out.push_str(&expand_depth(text, lookup, depth + 1));
                    } else if op == ":" {
                        out.push_str(&val);
                    }
                }
                None => out.push_str(&resolve(inner)),
            }
            rest = &body[end + 1..];
        } else if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
                rest = after;
                continue;
            }
            out.push_str(&resolve(&after[..len]));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
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
    }
}
