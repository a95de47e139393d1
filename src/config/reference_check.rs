//! Keeps docs/config-reference.md true: every key the config types accept is documented, no
//! documented key is one they refuse, and every Postfix parameter relayguard implements is
//! listed with the built-in default it really has.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, Deserialize, Visitor};

use super::file;

/// A deserializer that deserializes nothing: it records the field names (or variant names)
/// serde's derive hands to `deserialize_struct` (or `deserialize_enum`) and stops there.
struct FieldNames(Vec<&'static str>);

impl<'de> de::Deserializer<'de> for &mut FieldNames {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("introspection only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields.to_vec();
        Err(de::Error::custom("introspection only"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = variants.to_vec();
        Err(de::Error::custom("introspection only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map identifier
        ignored_any
    }
}

/// The keys (or, for an enum, the values) `T` accepts.
fn names<'de, T: Deserialize<'de>>() -> BTreeSet<String> {
    let mut seen = FieldNames(Vec::new());
    let _ = T::deserialize(&mut seen);
    seen.0.iter().map(|s| (*s).to_owned()).collect()
}

/// Each TOML table of the config and the keys its type accepts.
fn sections() -> BTreeMap<&'static str, BTreeSet<String>> {
    BTreeMap::from([
        ("top level", names::<file::ConfigFile>()),
        ("[tls]", names::<file::TlsFile>()),
        ("[[listener]]", names::<file::ListenerFile>()),
        ("[listener.tls]", names::<file::TlsFile>()),
        (
            "[listener.proxy_protocol]",
            names::<file::ProxyProtocolFile>(),
        ),
        ("[upstream]", names::<file::UpstreamFile>()),
        ("[limits]", names::<file::LimitsFile>()),
        ("[log]", names::<file::LogFile>()),
        ("[dns]", names::<file::DnsFile>()),
        ("[tables]", names::<file::TablesFile>()),
        ("[import]", names::<file::ImportFile>()),
        ("[state]", names::<file::StateFile>()),
        ("[bans]", names::<file::BansFile>()),
        ("[admin]", names::<file::AdminFile>()),
    ])
}

/// Every Postfix parameter a `[policy]` table may set.
fn postfix_parameters() -> BTreeSet<String> {
    crate::policy::PARAMETERS
        .iter()
        .chain(super::settings::PARAMETERS)
        .chain(super::tls_params::PARAMETERS)
        .chain(crate::limits::anvil::PARAMETERS)
        .chain(crate::postscreen::PARAMETERS)
        .map(|s| (*s).to_owned())
        .collect()
}

/// One documented key: its section, names (a row may name two spellings), type and default.
#[derive(Debug)]
struct Row {
    section: String,
    names: Vec<String>,
    kind: String,
    default: String,
}

/// The backticked words of a cell, in order.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim_matches('"').to_owned())
        .collect()
}

/// The tables of docs/config-reference.md, by `## ` section (`[policy]` rows have no type).
fn documented(text: &str) -> Vec<Row> {
    let mut section = String::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = ticked(heading)
                .into_iter()
                .next()
                .unwrap_or_else(|| heading.trim().to_owned());
        } else if line.starts_with("| `") {
            let cells: Vec<&str> = line.split(" | ").collect();
            let (kind, default) = match (section.as_str(), cells.as_slice()) {
                ("[policy]", [_, default, ..]) => ("", *default),
                (_, [_, kind, default, ..]) => (*kind, *default),
                _ => panic!("a row without its cells: {line}"),
            };
            rows.push(Row {
                section: section.clone(),
                names: ticked(cells[0]),
                kind: kind.to_owned(),
                default: default.to_owned(),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::settings::parse_duration;

    const REFERENCE: &str = include_str!("../../docs/config-reference.md");

    /// Names the page and the code disagree on, both ways.
    fn assert_same(documented: &BTreeSet<String>, accepted: &BTreeSet<String>, section: &str) {
        let missing: Vec<_> = accepted.difference(documented).collect();
        let extra: Vec<_> = documented.difference(accepted).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{section}: not documented {missing:?}; documented but not accepted {extra:?}"
        );
    }

    fn rows() -> Vec<Row> {
        documented(REFERENCE)
    }

    #[test]
    fn every_section_documents_exactly_the_keys_its_type_accepts() {
        let rows = rows();
        let accepted = sections();
        for (section, keys) in &accepted {
            let listed: BTreeSet<String> = rows
                .iter()
                .filter(|r| &r.section == section)
                .flat_map(|r| r.names.clone())
                .collect();
            assert_same(&listed, keys, section);
        }
        let known: BTreeSet<&str> = accepted.keys().copied().chain(["[policy]"]).collect();
        for r in &rows {
            assert!(known.contains(r.section.as_str()), "unknown section {r:?}");
        }
    }

    #[test]
    fn every_postfix_parameter_is_listed_once() {
        let listed: Vec<String> = rows()
            .into_iter()
            .filter(|r| r.section == "[policy]")
            .flat_map(|r| r.names)
            .collect();
        let unique: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(unique.len(), listed.len(), "a parameter listed twice");
        assert_same(&unique, &postfix_parameters(), "[policy]");
    }

    fn policy_rows() -> Vec<Row> {
        rows()
            .into_iter()
            .filter(|r| r.section == "[policy]")
            .collect()
    }

    #[test]
    fn postfix_defaults_marked_checked_are_relayguards_builtins() {
        for r in policy_rows() {
            let name = &r.names[0];
            let builtin = crate::policy::builtin_default(name);
            let checked = r.default.contains("*checked*");
            match builtin {
                Some(value) => {
                    assert!(checked, "{name}: has a built-in default, mark it checked");
                    assert_eq!(
                        ticked(&r.default).first().map(String::as_str),
                        Some(value),
                        "{name}"
                    );
                }
                None => assert!(
                    !checked,
                    "{name}: marked checked, but has no built-in default"
                ),
            }
        }
    }

    #[test]
    fn documented_choices_are_the_values_the_types_accept() {
        let choices = [
            ("[[listener]]", "role", names::<file::Role>()),
            ("[upstream]", "kind", names::<file::UpstreamKind>()),
            (
                "[upstream]",
                "identity",
                names::<crate::upstream::identity::IdentityMode>(),
            ),
            ("[log]", "format", names::<file::LogFormat>()),
            ("[state]", "on_failure", names::<crate::state::FailMode>()),
        ];
        let rows = rows();
        for (section, key, accepted) in choices {
            let row = rows
                .iter()
                .find(|r| r.section == section && r.names == [key])
                .unwrap_or_else(|| panic!("{section} {key} not documented"));
            let listed: BTreeSet<String> = ticked(&row.kind).into_iter().collect();
            assert_eq!(listed, accepted, "{section} {key}");
        }
    }

    /// What a config that sets none of the optional keys compiles to.
    fn compiled_defaults() -> Vec<(&'static str, &'static str, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relayguard.toml");
        std::fs::write(
            &path,
            "[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:2525\"\nrole = \"smtp\"\n\
             [upstream]\nkind = \"smtp\"\naddress = \"127.0.0.1:10025\"\n[bans]\n",
        )
        .unwrap();
        let s = crate::config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
        let d = |d: Duration| format!("{}ms", d.as_millis());
        let bans = s.abuse.bans.clone().unwrap();
        let crate::state::BackendSettings::Memory(memory) = &s.abuse.state.backend else {
            panic!("memory is the default backend")
        };
        let word = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase().replace('_', "-");
        vec![
            (
                "[[listener]]",
                "max_connections",
                s.listeners[0].max_connections.to_string(),
            ),
            ("[upstream]", "identity", word(&s.upstream.identity)),
            (
                "[upstream]",
                "connect_timeout",
                d(s.upstream.connect_timeout),
            ),
            ("[upstream]", "reply_timeout", d(s.upstream.reply_timeout)),
            ("[limits]", "session_timeout", d(s.session_timeout)),
            ("[limits]", "handshake_timeout", d(s.handshake_timeout)),
            ("[limits]", "drain_timeout", d(s.drain_timeout)),
            ("[log]", "format", word(&s.log_format)),
            ("[dns]", "lookups", word(&s.dns.lookups)),
            ("[dns]", "timeout", d(s.dns.timeout)),
            ("[tables]", "timeout", d(s.tables.timeout)),
            ("[tables]", "cache_ttl", d(s.tables.cache_ttl)),
            ("[state]", "on_failure", word(&s.abuse.state.fail_mode)),
            (
                "[state]",
                "ipv6_prefix",
                s.abuse.state.ipv6_prefix.to_string(),
            ),
            ("[state]", "max_clients", memory.max_clients.to_string()),
            ("[state]", "max_bans", memory.max_bans.to_string()),
            (
                "[state]",
                "max_postscreen",
                memory.max_postscreen.to_string(),
            ),
            ("[admin]", "ready_window", d(s.abuse.ready_window)),
            ("[bans]", "window", d(bans.window)),
            ("[bans]", "ban_time", d(bans.ban_time)),
            ("[bans]", "max_ban_time", d(bans.max_ban_time)),
            ("[bans]", "repeat_window", d(bans.repeat_window)),
        ]
    }

    #[test]
    fn defaults_marked_checked_are_what_an_empty_key_compiles_to() {
        let compiled = compiled_defaults();
        for r in rows().iter().filter(|r| r.section != "[policy]") {
            let key = r.names[0].as_str();
            let actual = compiled
                .iter()
                .find(|(s, k, _)| *s == r.section && *k == key)
                .map(|(_, _, v)| v);
            let checked = r.default.contains("*checked*");
            let Some(actual) = actual else {
                assert!(
                    !checked,
                    "{} {key}: marked checked but not compared",
                    r.section
                );
                continue;
            };
            assert!(
                checked,
                "{} {key}: compared, mark it (*checked*)",
                r.section
            );
            let doc = ticked(&r.default).into_iter().next().unwrap_or_default();
            let doc = match parse_duration(&doc) {
                Some(t) if actual.ends_with("ms") => format!("{}ms", t.as_millis()),
                _ => doc,
            };
            assert_eq!(&doc, actual, "{} {key}", r.section);
        }
    }
}
