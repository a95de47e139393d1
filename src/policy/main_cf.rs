//! Reads Postfix's main.cf and master.cf into parameter maps: comments, continuation lines,
//! `name = value`, master.cf services with their `-o name=value` overrides.
//!
//! Values stay as written (`$name` is expanded when the policy is compiled, against the final
//! map, as Postfix does lazily).

use std::path::Path;

use super::params::{Origin, ParamMap, ParamValue};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MainCfError {
    #[error("{file}:{line}: missing '=' after parameter name in \"{text}\"")]
    MissingEquals {
        file: String,
        line: usize,
        text: String,
    },
    #[error("{file}:{line}: empty parameter name")]
    EmptyName { file: String, line: usize },
    #[error("{file}:{line}: master.cf entry needs 8 fields, got \"{text}\"")]
    ShortService {
        file: String,
        line: usize,
        text: String,
    },
    #[error("{file}:{line}: bad -o option \"{text}\"")]
    BadOption {
        file: String,
        line: usize,
        text: String,
    },
}

/// Logical lines: `#` lines and blank lines dropped, a line starting with whitespace continued
/// onto the previous one (Postfix joins them with a space).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    logical_lines_at(text)
        .into_iter()
        .map(|l| (l.line, l.text))
        .collect()
}

/// One logical line and where each physical line of it starts in `text`.
struct Logical {
    line: usize,
    text: String,
    /// (byte offset in `text`, physical line number), ascending.
    starts: Vec<(usize, usize)>,
}

impl Logical {
    /// The physical line of the byte at `offset` in `text`.
    fn line_at(&self, offset: usize) -> usize {
        self.starts
            .iter()
            .rev()
            .find(|(at, _)| *at <= offset)
            .map_or(self.line, |(_, line)| *line)
    }
}

fn logical_lines_at(text: &str) -> Vec<Logical> {
    let mut out: Vec<Logical> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.text.push(' ');
                last.starts.push((last.text.len(), i + 1));
                last.text.push_str(trimmed);
                continue;
            }
        }
        out.push(Logical {
            line: i + 1,
            text: raw.trim_end().to_string(),
            starts: vec![(0, i + 1)],
        });
    }
    out
}

/// Parses main.cf text. A later assignment of the same name wins, as in Postfix.
pub fn parse_main_cf(text: &str, file: &Path) -> Result<ParamMap, MainCfError> {
    let mut map = ParamMap::new();
    let fname = file.display().to_string();
    for (line, content) in logical_lines(text) {
        let Some((name, value)) = content.split_once('=') else {
            return Err(MainCfError::MissingEquals {
                file: fname,
                line,
                text: content,
            });
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(MainCfError::EmptyName { file: fname, line });
        }
        map.insert(
            name,
            ParamValue {
                value: value.trim().to_string(),
                origin: Origin {
                    file: file.to_path_buf(),
                    line,
                },
            },
        );
    }
    Ok(map)
}

/// One master.cf service.
#[derive(Debug, Clone)]
pub struct MasterService {
    /// `smtp`, `submission`, `127.0.0.1:2525`, ...
    pub name: String,
    /// `inet`, `unix`, `pass`, ...
    pub kind: String,
    /// The command (`smtpd`, `cleanup`, ...).
    pub command: String,
    /// `-o name=value` overrides, to lay over main.cf.
    pub overrides: ParamMap,
    pub line: usize,
}

/// Parses master.cf text into services with their `-o` overrides (`-o name=value` and
/// `-o { name = value with spaces }`).
pub fn parse_master_cf(text: &str, file: &Path) -> Result<Vec<MasterService>, MainCfError> {
    let fname = file.display().to_string();
    let mut out = Vec::new();
    for logical in logical_lines_at(text) {
        let (line, content) = (logical.line, logical.text.as_str());
        let tokens = super::text::split_list_ws(content);
        if tokens.len() < 8 {
            return Err(MainCfError::ShortService {
                file: fname,
                line,
                text: content.to_owned(),
            });
        }
        let mut overrides = ParamMap::new();
        let mut i = 8;
        while i < tokens.len() {
            let t = tokens[i];
            // Each -o is placed at its own physical line (tokens are slices of `content`).
            let at = logical.line_at(t.as_ptr() as usize - content.as_ptr() as usize);
            // Postfix 3.0 lets any argument with whitespace be braced, `-o` with it:
            // `{ -o name = value with spaces }` is one argument, as is `-o { name = value }`.
            let t = match t.strip_prefix('{').and_then(|b| b.strip_suffix('}')) {
                Some(inner) if inner.trim_start().starts_with("-o") => inner.trim(),
                _ => t,
            };
            let opt = if t == "-o" {
                i += 1;
                tokens.get(i).copied()
            } else {
                t.strip_prefix("-o").map(str::trim_start)
            };
            if let Some(opt) = opt {
                let body = opt
                    .strip_prefix('{')
                    .and_then(|o| o.strip_suffix('}'))
                    .unwrap_or(opt);
                let Some((n, v)) = body.split_once('=') else {
                    return Err(MainCfError::BadOption {
                        file: fname,
                        line: at,
                        text: opt.into(),
                    });
                };
                overrides.insert(
                    n.trim(),
                    ParamValue {
                        value: v.trim().to_string(),
                        origin: Origin {
                            file: file.to_path_buf(),
                            line: at,
                        },
                    },
                );
            }
            i += 1;
        }
        out.push(MasterService {
            name: tokens[0].to_string(),
            kind: tokens[1].to_string(),
            command: tokens[7].to_string(),
            overrides,
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_cf_continuations_and_comments() {
        let m = parse_main_cf(
            "# comment\nmynetworks = 127.0.0.0/8\n    [::1]/128\n\n  # indented comment\nmydestination = local.test\nmydestination = $myhostname\n",
            Path::new("/etc/postfix/main.cf"),
        )
        .unwrap();
        assert_eq!(m.value("mynetworks"), Some("127.0.0.0/8 [::1]/128"));
        assert_eq!(m.get("mydestination").unwrap().origin.line, 7);
        assert_eq!(m.value("mydestination"), Some("$myhostname"));
        assert!(matches!(
            parse_main_cf("oops\n", Path::new("m")),
            Err(MainCfError::MissingEquals { line: 1, .. })
        ));
    }

    #[test]
    fn master_cf_overrides() {
        let s = parse_master_cf(
            "smtp      inet  n       -       y       -       -       smtpd\nsubmission inet n       -       y       -       -       smtpd\n  -o syslog_name=postfix/submission\n  -o { smtpd_relay_restrictions = permit_sasl_authenticated, reject }\n  { -o smtpd_sender_restrictions = reject_non_fqdn_sender, permit }\n  -osmtpd_client_restrictions=$mua_client\n",
            Path::new("/etc/postfix/master.cf"),
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].name, "submission");
        assert_eq!(
            s[1].overrides.value("smtpd_relay_restrictions"),
            Some("permit_sasl_authenticated, reject")
        );
        // Each -o at its own line of the continued entry.
        assert_eq!(s[1].line, 2);
        assert_eq!(s[1].overrides.get("syslog_name").unwrap().origin.line, 3);
        assert_eq!(
            s[1].overrides
                .get("smtpd_client_restrictions")
                .unwrap()
                .origin
                .line,
            6
        );
        assert_eq!(
            s[1].overrides.value("smtpd_sender_restrictions"),
            Some("reject_non_fqdn_sender, permit")
        );
        assert_eq!(
            s[1].overrides.value("smtpd_client_restrictions"),
            Some("$mua_client")
        );
        assert_eq!(
            s[1].overrides.value("syslog_name"),
            Some("postfix/submission")
        );
    }
}
