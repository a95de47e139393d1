//! Rewrites a carried value so the imported config loads and means what main.cf meant: refused
//! restriction words come out of restriction lists, and `$name`s of parameters relayguard does
//! not carry are replaced by their value (Postfix would expand them; relayguard would expand
//! them to nothing).
//!
//! Returns what it changed; saying so to the admin is the caller's job.

use std::path::Path;

use crate::policy::{self, ParamMap};

/// A restriction word taken out of a list (with its argument, when it takes one).
#[derive(Debug, PartialEq, Eq)]
pub struct Removed {
    pub word: String,
}

/// One carried value after rewriting.
#[derive(Debug, Default)]
pub struct Rewritten {
    pub value: String,
    pub removed: Vec<Removed>,
    /// `$name` -> value substitutions, as notes for the comment beside the line.
    pub expanded: Vec<String>,
}

/// Postfix's built-in value of `name` (Debian's build); `config_directory` is where main.cf
/// itself is.
fn builtin(name: &str, main_cf: &Path) -> Option<String> {
    if name == "config_directory" {
        return main_cf
            .parent()
            .map(|d| d.display().to_string())
            .filter(|d| !d.is_empty());
    }
    crate::policy::default_value(name, (3, 6))
        .filter(|_| name.ends_with("_directory") || name == "mail_owner")
        .map(str::to_owned)
}

/// Rewrites `value` of the carried parameter `name`. `is_list` says whether the value is a
/// restriction list; `is_carried` which names relayguard reads.
pub fn rewrite(
    value: &str,
    is_list: bool,
    is_carried: &dyn Fn(&str) -> bool,
    main: &ParamMap,
    main_cf: &Path,
) -> Rewritten {
    let mut out = Rewritten {
        value: value.to_owned(),
        ..Rewritten::default()
    };
    if is_list {
        drop_refused(&mut out);
    }
    expand_foreign(&mut out, is_carried, main, main_cf);
    out
}

/// Takes refused words (and their arguments) out of the list, leaving the rest as written.
fn drop_refused(out: &mut Rewritten) {
    let text = out.value.as_str();
    let tokens = policy::split_list(text);
    // Byte ranges of the tokens: split_list returns slices of `text`.
    let spans: Vec<(usize, usize)> = tokens
        .iter()
        .map(|t| {
            let start = t.as_ptr() as usize - text.as_ptr() as usize;
            (start, start + t.len())
        })
        .collect();
    let mut drop = vec![false; tokens.len()];
    let mut removed = Vec::new();
    let mut i = 0;
    while let Some(&t) = tokens.get(i) {
        if let Some(takes_argument) = policy::refused_restriction(t) {
            drop[i] = true;
            let mut word = t.to_owned();
            if takes_argument {
                if let Some(arg) = tokens.get(i + 1) {
                    word = format!("{word} {arg}");
                    drop[i + 1] = true;
                    i += 1;
                }
            }
            removed.push(Removed { word });
        }
        i += 1;
    }
    if removed.is_empty() {
        return;
    }
    // Each kept token keeps the separator written after it, up to the next token, unless it
    // is the last one kept.
    let last_kept = (0..tokens.len()).rev().find(|&k| !drop[k]);
    let mut kept = String::new();
    for (k, &(start, end)) in spans.iter().enumerate() {
        if drop[k] {
            continue;
        }
        let until = match (Some(k) == last_kept, spans.get(k + 1)) {
            (false, Some(next)) => next.0,
            _ => end,
        };
        kept.push_str(&text[start..until]);
    }
    out.value = kept;
    out.removed = removed;
}

/// The value Postfix gives a parameter relayguard does not carry: main.cf's, else the built-in.
fn foreign_value(name: &str, main: &ParamMap, main_cf: &Path) -> Option<String> {
    main.value(name)
        .map(str::to_owned)
        .or_else(|| builtin(name, main_cf))
}

fn expand_foreign(
    out: &mut Rewritten,
    is_carried: &dyn Fn(&str) -> bool,
    main: &ParamMap,
    main_cf: &Path,
) {
    let Ok(refs) = policy::references(&out.value) else {
        // A `$` syntax error: the loader reports it at the line.
        return;
    };
    let foreign: Vec<(String, bool)> = refs
        .iter()
        .filter(|(n, _)| !is_carried(n))
        .map(|(n, plain)| ((*n).to_owned(), *plain))
        .collect();
    if foreign.is_empty() {
        return;
    }
    let lookup = |n: &str| foreign_value(n, main, main_cf);
    if foreign.iter().any(|(_, plain)| !plain) {
        // `${name?text}` / `${name:text}` on a foreign name: expand the whole value, carried
        // names included, which is what Postfix would compute from the same main.cf.
        let lookup_all =
            |n: &str| -> Option<String> { main.value(n).map(str::to_owned).or_else(|| lookup(n)) };
        out.value = policy::expand(&out.value, &lookup_all);
        out.expanded
            .push("expanded in full: it tests a parameter relayguard does not carry".into());
        return;
    }
    for (name, _) in foreign {
        let with = policy::expand(&lookup(&name).unwrap_or_default(), &lookup);
        out.value = replace_macro(&out.value, &name, &with);
        out.expanded.push(format!("${name} is \"{with}\""));
    }
}

/// `text` with `$name`, `${name}` and `$(name)` replaced by `with` (not `$name_longer`).
fn replace_macro(text: &str, name: &str, with: &str) -> String {
    let text = text
        .replace(&format!("${{{name}}}"), with)
        .replace(&format!("$({name})"), with);
    let needle = format!("${name}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&needle) {
        let after = &rest[at + needle.len()..];
        let continues = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if continues { &needle } else { with });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::main_cf::parse_main_cf;

    fn main() -> ParamMap {
        parse_main_cf(
            "my_tables = /srv/tables\nmydestination = local.test\n",
            Path::new("/etc/postfix/main.cf"),
        )
        .unwrap()
    }

    fn carried(n: &str) -> bool {
        n == "mydestination" || n == "config_directory_x"
    }

    #[test]
    fn refused_words_leave_the_list() {
        let r = rewrite(
            "permit_mynetworks, reject_unverified_recipient, check_etrn_access texthash:/x reject_unauth_destination",
            true,
            &carried,
            &main(),
            Path::new("/etc/postfix/main.cf"),
        );
        assert_eq!(r.value, "permit_mynetworks, reject_unauth_destination");
        assert_eq!(
            r.removed,
            [
                Removed {
                    word: "reject_unverified_recipient".into()
                },
                Removed {
                    word: "check_etrn_access texthash:/x".into()
                }
            ]
        );
        let r = rewrite(
            "permit_mynetworks check_client_access texthash:/a reject_unverified_sender, sleep 5",
            true,
            &carried,
            &main(),
            Path::new("/etc/postfix/main.cf"),
        );
        assert_eq!(r.value, "permit_mynetworks check_client_access texthash:/a");
    }

    #[test]
    fn foreign_names_are_expanded_carried_ones_kept() {
        let r = rewrite(
            "check_client_access texthash:$config_directory/access, check_sender_access texthash:${my_tables}/senders, $mydestination $config_directory_x",
            false,
            &carried,
            &main(),
            Path::new("/etc/postfix/main.cf"),
        );
        assert_eq!(
            r.value,
            "check_client_access texthash:/etc/postfix/access, check_sender_access texthash:/srv/tables/senders, $mydestination $config_directory_x"
        );
        assert_eq!(r.expanded.len(), 2, "{:?}", r.expanded);
    }
}
