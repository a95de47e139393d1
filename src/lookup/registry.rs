//! The remote tables a configuration names, each opened once into its backend and found by
//! the spec string the policy asks with (`socketmap:inet:127.0.0.1:9000:access`).
//!
//! Opening connects nothing (backends connect on the first lookup), so it runs at load, in
//! `check-config`, and on reload, where the tables both snapshots name keep their backend (its
//! connections and cached answers) and the others are opened or dropped.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::socketmap::Socketmap;
use super::table::RemoteTable;
use super::tcp_table::TcpTable;
use super::RemoteOptions;

/// How remote table lookups run (`[tables]` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSettings {
    /// One lookup, connect and retries included, fails for now after this long.
    pub timeout: Duration,
    /// Found and not-found answers are reused this long; zero for never.
    pub cache_ttl: Duration,
}

impl Default for TableSettings {
    fn default() -> Self {
        TableSettings {
            timeout: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(10),
        }
    }
}

/// A remote table spec no backend can open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table {spec}: {why}")]
pub struct OpenError {
    pub spec: String,
    pub why: String,
}

/// The opened backends, by spec.
#[derive(Default)]
pub struct RemoteTables {
    settings: TableSettings,
    tables: FxHashMap<Box<str>, Arc<dyn RemoteTable>>,
}

impl RemoteTables {
    /// Opens every spec; `previous` lends the backends of specs it already has open with the
    /// same settings. Every spec that cannot be opened is reported.
    pub fn open(
        specs: &BTreeSet<String>,
        settings: TableSettings,
        previous: Option<&RemoteTables>,
    ) -> Result<RemoteTables, Vec<OpenError>> {
        let mut tables = FxHashMap::default();
        let mut errors = Vec::new();
        for spec in specs {
            let kept = previous
                .filter(|p| p.settings == settings)
                .and_then(|p| p.tables.get(spec.as_str()));
            let backend = match kept {
                Some(b) => Ok(b.clone()),
                None => open_backend(spec, settings),
            };
            match backend {
                Ok(b) => {
                    tables.insert(spec.as_str().into(), b);
                }
                Err(why) => errors.push(OpenError {
                    spec: spec.clone(),
                    why,
                }),
            }
        }
        if errors.is_empty() {
            Ok(RemoteTables { settings, tables })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, spec: &str) -> Option<&Arc<dyn RemoteTable>> {
        self.tables.get(spec)
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Whether `other` holds the very same backend for `spec` (for tests of reload).
    pub fn shares(&self, other: &RemoteTables, spec: &str) -> bool {
        match (self.tables.get(spec), other.tables.get(spec)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The one place that knows which backend serves which table type: a new type gets a line
/// here (and is listed as remote in `policy::table`).
fn open_backend(spec: &str, settings: TableSettings) -> Result<Arc<dyn RemoteTable>, String> {
    // proxy:TYPE:NAME only changes who opens the table in Postfix.
    let inner = match spec.split_once(':') {
        Some((p, rest)) if p.eq_ignore_ascii_case("proxy") => rest,
        _ => spec,
    };
    let (ty, name) = inner.split_once(':').ok_or("not a type:name table")?;
    let TableSettings { timeout, cache_ttl } = settings;
    match ty.to_ascii_lowercase().as_str() {
        "socketmap" => Ok(Arc::new(Socketmap::open(spec, name, timeout, cache_ttl)?)),
        "tcp" => Ok(Arc::new(TcpTable::open(name, timeout, cache_ttl)?)),
        // A relative .cf name is taken from the working directory, as Postfix's daemons take
        // it from theirs.
        sql_or_ldap => {
            let options = RemoteOptions {
                timeout,
                cache_ttl,
                ..RemoteOptions::default()
            };
            match super::open_remote_with(sql_or_ldap, name, Path::new("main.cf"), options) {
                Some(opened) => opened,
                None => Err(format!("no backend for {sql_or_ldap} tables in this build")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reload_keeps_backends_of_tables_both_configs_name() {
        let s = TableSettings::default();
        let a = "socketmap:inet:127.0.0.1:9:a";
        let b = "tcp:127.0.0.1:10";
        let first = RemoteTables::open(&specs(&[a]), s, None).unwrap();
        let second = RemoteTables::open(&specs(&[a, b]), s, Some(&first)).unwrap();
        assert!(first.shares(&second, a));
        assert_eq!(second.len(), 2);
        let slower = TableSettings {
            timeout: Duration::from_secs(30),
            ..s
        };
        let third = RemoteTables::open(&specs(&[a]), slower, Some(&second)).unwrap();
        assert!(!third.shares(&second, a), "new settings open anew");
    }

    #[test]
    fn every_bad_spec_is_reported() {
        let errors = RemoteTables::open(
            &specs(&[
                "socketmap:inet:127.0.0.1:9",
                "mysql:/etc/m.cf",
                "tcp:nowhere",
            ]),
            TableSettings::default(),
            None,
        )
        .err()
        .unwrap();
        assert_eq!(errors.len(), 3, "{errors:?}");
        // A missing .cf file is found at load, with its name.
        assert!(
            errors[0]
                .to_string()
                .starts_with("table mysql:/etc/m.cf: open /etc/m.cf"),
            "{errors:?}"
        );
    }
}
