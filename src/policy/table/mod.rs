//! Postfix lookup tables, opened once at load: texthash/hash/btree/lmdb (from the source text),
//! cidr, regexp and pcre (from a file or rules inline in braces), inline and static; and the
//! names of tables another program serves (socketmap, tcp), which hold no data here.
//!
//! An in-memory lookup takes an already case-folded key and never allocates, except where a
//! regexp/pcre value substitutes `$1`. A remote table is only named: its keys are asked of the
//! caller through `policy::pending` (the lookup orders in `policy::lookup` wait for them), and
//! the edge (`crate::lookup`) holds the backend that talks to the server.

mod cidr;
mod hash;
mod regexp;
mod remote;
mod source;

use std::borrow::Cow;
use std::path::Path;

use super::error::{Hint, PolicyError, PolicyWarning};
use super::params::Origin;

pub(crate) use cidr::CidrTable;
pub(crate) use hash::HashTable;
pub(crate) use regexp::{PcreTable, RegexpTable};
use remote::RemoteKeys;
use source::{inline_rules, read, resolve};

/// Table types relayguard implements (for hints).
pub const TABLE_TYPES: &[&str] = &[
    "texthash",
    "hash",
    "btree",
    "lmdb",
    "cidr",
    "regexp",
    "pcre",
    "inline",
    "static",
    "socketmap",
    "tcp",
];

/// Known Postfix table types that relayguard refuses, with why.
const FOREIGN_TYPES: &[(&str, &str)] = &[
    ("memcache", "network tables are not implemented yet"),
    ("unix", "the UNIX passwd/group tables are not implemented"),
    (
        "cdb",
        "relayguard reads texthash/hash/lmdb source files; use texthash",
    ),
    ("dbm", "use texthash with the source file"),
    ("sdbm", "use texthash with the source file"),
    ("nis", "NIS is not implemented"),
    ("nisplus", "NIS+ is not implemented"),
    ("netinfo", "NetInfo is not implemented"),
    ("environ", "environ tables are not implemented"),
    ("fail", "fail tables are not implemented"),
    ("randmap", "randmap tables are not implemented"),
    ("pipemap", "pipemap tables are not implemented"),
    ("unionmap", "unionmap tables are not implemented"),
    ("internal", "internal tables are not implemented"),
];

#[derive(Debug)]
enum Kind {
    Hash(HashTable),
    Static(Box<str>),
    Cidr(CidrTable),
    Regexp(RegexpTable),
    Pcre(PcreTable),
    Remote(RemoteKeys),
}

/// One opened lookup table.
#[derive(Debug)]
pub struct Table {
    spec: Box<str>,
    kind: Kind,
    /// For rules written inline in a parameter: where that parameter was written, which is
    /// where every value of the table comes from.
    inline_at: Option<Origin>,
}

impl Table {
    /// True when a lookup needs the network: its keys are asked through `policy::pending`.
    pub fn is_remote(&self) -> bool {
        matches!(self.kind, Kind::Remote(_))
    }

    /// Whether lookup keys are case-folded before they are sent (always for in-memory types,
    /// which store folded keys or match case-insensitively).
    pub(crate) fn folds_keys(&self) -> bool {
        match self.kind {
            Kind::Remote(k) => k.folded,
            _ => true,
        }
    }

    /// Opens `type:name` as written in a parameter at `origin`; relative file names are taken
    /// relative to the directory of the file that names them.
    pub(crate) fn open(
        spec: &str,
        origin: &Origin,
        warnings: &mut Vec<PolicyWarning>,
    ) -> Result<Table, PolicyError> {
        let err = |why: String, hint: Hint| PolicyError::Table {
            table: spec.to_string(),
            origin: origin.clone(),
            why,
            hint,
        };
        let (ty, name) = spec
            .split_once(':')
            .ok_or_else(|| err("not a type:name table".into(), Hint::none()))?;
        let ty_l = ty.to_ascii_lowercase();
        let kind = match ty_l.as_str() {
            // proxymap only changes who opens the table; the lookups are the same.
            "proxy" => {
                return Table::open(name, origin, warnings).map(|t| Table {
                    spec: spec.into(),
                    ..t
                })
            }
            "texthash" | "hash" | "btree" | "lmdb" => {
                if name.starts_with('{') {
                    // Postfix would look for a file of that name and find none.
                    return Err(err(
                        format!("{ty} tables are files; Postfix reads rules in braces only for cidr, regexp and pcre"),
                        Hint::text("for exact keys write inline:{ key=value, { key = text with spaces } }"),
                    ));
                }
                let path = resolve(name, &origin.file);
                if ty_l != "texthash" {
                    warnings.push(PolicyWarning::new(
                        spec,
                        origin,
                        format!("relayguard does not read Berkeley DB or LMDB files; it reads the source text file {}", path.display()),
                        "keep the source file next to the compiled one (postmap is not needed for relayguard), or write texthash:".into(),
                    ));
                }
                let text = read(&path).map_err(|e| err(e, Hint::none()))?;
                Kind::Hash(HashTable::parse_file(&text, &path, warnings)?)
            }
            "inline" => {
                Kind::Hash(HashTable::parse_inline(name).map_err(|e| err(e, Hint::none()))?)
            }
            "static" => {
                let v = name
                    .strip_prefix('{')
                    .and_then(|v| v.strip_suffix('}'))
                    .unwrap_or(name)
                    .trim();
                Kind::Static(v.into())
            }
            "cidr" | "regexp" | "pcre" => {
                return Table::open_pattern(spec, &ty_l, name, origin);
            }
            other if remote::keys(other).is_some() => {
                let keys = remote::open(other, name).map_err(|why| err(why, Hint::none()))?;
                Kind::Remote(keys)
            }
            other => {
                if let Some((_, why)) = FOREIGN_TYPES.iter().find(|(t, _)| *t == other) {
                    return Err(err(
                        format!("table type `{other}` is not supported: {why}"),
                        Hint::none(),
                    ));
                }
                return Err(err(
                    format!("unknown table type `{ty}`"),
                    Hint::nearest(other, TABLE_TYPES.iter().copied()),
                ));
            }
        };
        Ok(Table {
            spec: spec.into(),
            kind,
            inline_at: None,
        })
    }

    /// A cidr, regexp or pcre table (`ty`, lower case) from its file or from inline rules.
    /// An error inside inline rules is reported at the parameter's line, naming the rule.
    fn open_pattern(
        spec: &str,
        ty: &str,
        name: &str,
        origin: &Origin,
    ) -> Result<Table, PolicyError> {
        let err = |why: String| PolicyError::Table {
            table: spec.to_string(),
            origin: origin.clone(),
            why,
            hint: Hint::none(),
        };
        let inline = name.starts_with('{');
        let (text, path) = if inline {
            (inline_rules(name).map_err(err)?, origin.file.clone())
        } else {
            let path = resolve(name, &origin.file);
            (read(&path).map_err(err)?, path)
        };
        let kind = match ty {
            "cidr" => CidrTable::parse(&text, &path).map(Kind::Cidr),
            "regexp" => RegexpTable::parse(&text, &path).map(Kind::Regexp),
            _ => PcreTable::parse(&text, &path).map(Kind::Pcre),
        };
        let kind = match kind {
            Ok(kind) => kind,
            Err(PolicyError::Table {
                origin: at, why, ..
            }) if inline => return Err(err(format!("rule {}: {why}", at.line))),
            Err(e) => return Err(e),
        };
        Ok(Table {
            spec: spec.into(),
            kind,
            inline_at: inline.then(|| origin.clone()),
        })
    }

    /// Opens one table outside a policy (for tools and benches); notices come back with it.
    pub fn load(spec: &str, origin: &Origin) -> Result<(Table, Vec<PolicyWarning>), PolicyError> {
        let mut warnings = Vec::new();
        let t = Table::open(spec, origin, &mut warnings)?;
        Ok((t, warnings))
    }

    /// The table as written (`texthash:/etc/postfix/access`).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Pattern tables (cidr, regexp, pcre) only see the first, full lookup key (Postfix's
    /// DICT_FLAG_PATTERN): no parent domains, no address prefixes, no `user@`.
    pub fn is_pattern(&self) -> bool {
        match self.kind {
            Kind::Cidr(_) | Kind::Regexp(_) | Kind::Pcre(_) => true,
            Kind::Remote(k) => k.pattern,
            Kind::Hash(_) | Kind::Static(_) => false,
        }
    }

    /// Looks up one key (already lower-cased by the caller, as smtpd does) in an in-memory
    /// table. A remote table has nothing here: its callers ask through `policy::pending`.
    pub fn lookup(&self, key: &str) -> Option<Cow<'_, str>> {
        match &self.kind {
            Kind::Remote(_) => None,
            Kind::Hash(h) => h.get(key).map(Cow::Borrowed),
            Kind::Static(v) => Some(Cow::Borrowed(v)),
            Kind::Cidr(c) => key
                .parse()
                .ok()
                .and_then(|a| c.lookup(a))
                .map(Cow::Borrowed),
            Kind::Regexp(r) => r.lookup(key),
            Kind::Pcre(p) => p.lookup(key),
        }
    }

    /// The entry `key` matched, as written in the table: the key itself for a hash table,
    /// the network or pattern for a cidr, regexp or pcre table. Metrics label rejections with
    /// it, so their count of distinct values is bounded by the table, not by the clients. A
    /// remote or static table has none.
    pub fn entry_for(&self, key: &str) -> Option<Box<str>> {
        match &self.kind {
            Kind::Remote(_) | Kind::Static(_) => None,
            Kind::Hash(h) => h.get(key).map(|_| key.into()),
            Kind::Cidr(c) => key.parse().ok().and_then(|a| c.entry(a)).map(Box::from),
            Kind::Regexp(r) => r.entry(key).map(Box::from),
            Kind::Pcre(p) => p.entry(key).map(Box::from),
        }
    }

    /// Every value the table can return, with where it was written, for checks at load.
    /// Values that substitute `$N` are included as written.
    pub(crate) fn values(&self) -> Vec<(&str, Origin)> {
        self.entries()
            .into_iter()
            .map(|e| (e.value, e.origin))
            .collect()
    }

    /// Every entry of an in-memory table: its key (a cidr network or a regexp pattern as
    /// written; empty for `static:`), value and line, in file order. Nothing for a remote table.
    pub fn entries(&self) -> Vec<Entry<'_>> {
        let mut entries = match &self.kind {
            Kind::Hash(h) => h.entries(),
            Kind::Static(v) => vec![Entry {
                key: "",
                value: v,
                origin: Origin::default(),
            }],
            Kind::Cidr(c) => c.entries(),
            Kind::Regexp(r) => r.entries(),
            Kind::Pcre(p) => p.entries(),
            // Known only at lookup time.
            Kind::Remote(_) => Vec::new(),
        };
        if let Some(at) = &self.inline_at {
            for e in &mut entries {
                e.origin = at.clone();
            }
        }
        entries
    }
}

/// Every entry of the exact-key tables (texthash, hash, inline, ...) that a parameter value
/// lists, first table first, with where each was written: for parameters whose values are all
/// read at load (tls_server_sni_maps loads each entry's certificates). Tables whose keys cannot
/// be listed (cidr, regexp, pcre, static, remote) are refused with the reason.
pub fn exact_entries(
    name: &str,
    value: &super::ParamValue,
    warnings: &mut Vec<PolicyWarning>,
) -> Result<Vec<(String, String, Origin)>, PolicyError> {
    let mut out = Vec::new();
    for spec in super::text::split_list(&value.value) {
        let table = Table::open(spec, &value.origin, warnings)?;
        if !matches!(table.kind, Kind::Hash(_)) {
            return Err(PolicyError::Table {
                table: spec.to_string(),
                origin: value.origin.clone(),
                why: format!("{name} needs a table whose keys relayguard can list at load"),
                hint: Hint::text("use texthash:, hash: (its source file) or inline:{ name=value }"),
            });
        }
        out.extend(
            table
                .entries()
                .into_iter()
                .map(|e| (e.key.to_owned(), e.value.to_owned(), e.origin)),
        );
    }
    Ok(out)
}

/// One `key value` entry of a table, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub origin: Origin,
}

/// A table file that cannot be read as written: `table` names it as the error shows it, `line`
/// is in `path` (0 when no one line is at fault).
/// Whether a list entry such as `tcp:127.0.0.1:10027` or `proxy:mysql:/etc/x.cf` names a
/// table served by another program (whose lookups a caller must be able to wait for).
pub(crate) fn names_remote_table(entry: &str) -> bool {
    let inner = match entry.split_once(':') {
        Some((p, rest)) if p.eq_ignore_ascii_case("proxy") => rest,
        _ => entry,
    };
    inner
        .split_once(':')
        .is_some_and(|(ty, _)| remote::keys(&ty.to_ascii_lowercase()).is_some())
}

pub(crate) fn file_error(table: String, path: &Path, line: usize, why: String) -> PolicyError {
    PolicyError::Table {
        table,
        origin: Origin {
            file: path.to_path_buf(),
            line,
        },
        why,
        hint: Hint::none(),
    }
}

/// Each entry of a table with the file and line it came from, for check-config.
pub(crate) fn entries_with_origin<'a>(
    file: Option<&Path>,
    entries: impl Iterator<Item = (&'a str, &'a str, usize)>,
) -> Vec<Entry<'a>> {
    let file = file.map(Path::to_path_buf).unwrap_or_default();
    entries
        .map(|(key, value, line)| Entry {
            key,
            value,
            origin: Origin {
                file: file.clone(),
                line,
            },
        })
        .collect()
}

/// Postfix's line reader for table files (readllines): `#` lines and blank lines skipped, a
/// line starting with whitespace continues the previous one. The continuation is joined as it
/// stands, without the newline: the whitespace on both sides of the break stays, so
/// `This address` + `    is retired` reads `This address    is retired`. Returns (line number
/// of the first line, text).
pub(crate) fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(last) = out.last_mut() {
                last.1.push_str(line);
                continue;
            }
        }
        out.push((i + 1, line.to_string()));
    }
    out
}

/// Expands `$1`..`$9`, `${N}` and `$$` in a regexp/pcre value.
pub(crate) fn expand_captures<'a>(value: &str, group: impl Fn(usize) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(value.len() + 16);
    let mut chars = value.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek().map(|(_, c)| *c) {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some(d) if d.is_ascii_digit() => {
                chars.next();
                out.push_str(group(d as usize - '0' as usize).unwrap_or(""));
            }
            Some('{') => {
                let mut num = String::new();
                chars.next();
                for (_, c) in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    num.push(c);
                }
                if let Ok(n) = num.parse::<usize>() {
                    out.push_str(group(n).unwrap_or(""));
                }
            }
            _ => out.push('$'),
        }
    }
    out
}

/// Splits `/pattern/flags rest` (any delimiter) as Postfix's regexp and pcre tables do.
/// Returns (pattern, flags, rest).
pub(crate) fn split_pattern(line: &str) -> Option<(&str, &str, &str)> {
    let mut it = line.char_indices();
    let (_, delim) = it.next()?;
    let start = delim.len_utf8();
    let mut escaped = false;
    let mut end = None;
    for (i, c) in it {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == delim {
            end = Some(i);
            break;
        }
    }
    let end = end?;
    let pattern = &line[start..end];
    let after = &line[end + delim.len_utf8()..];
    let flags_end = after.find(char::is_whitespace).unwrap_or(after.len());
    Some((pattern, &after[..flags_end], after[flags_end..].trim()))
}
