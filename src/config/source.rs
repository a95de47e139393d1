//! The config text as a source of values: byte spans to line numbers, relative paths to real
//! ones, `[policy]` tables to Postfix parameters with their origins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnetwork::IpNetwork;
use toml::Spanned;

use super::file::PolicyTable;
use super::load::ConfigError;
use super::settings::parse_duration;
use crate::policy::{Origin, ParamMap, ParamValue};

/// The config text, for turning byte spans into line numbers and relative paths into real ones.
pub(super) struct Source<'a> {
    pub(super) text: &'a str,
    pub(super) file: PathBuf,
    pub(super) dir: PathBuf,
}

impl Source<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.text
            .as_bytes()
            .iter()
            .take(offset)
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub(super) fn invalid(&self, offset: usize, why: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: self.line_of(offset),
            why,
        }
    }

    /// `[policy]` values as main.cf text: arrays are joined with ", ", booleans become yes/no.
    /// A value `imported` names is placed at its main.cf/master.cf line (`[import]`).
    pub(super) fn params(
        &self,
        table: &PolicyTable,
        imported: Option<(&Path, &std::collections::BTreeMap<String, usize>)>,
    ) -> ParamMap {
        let mut map = ParamMap::new();
        for (name, value) in table {
            let origin = match imported.and_then(|(f, lines)| Some((f, *lines.get(name)?))) {
                Some((file, line)) => Origin {
                    file: file.to_owned(),
                    line,
                },
                None => Origin {
                    file: self.file.clone(),
                    line: self.line_of(value.span().start),
                },
            };
            map.insert(
                name.clone(),
                ParamValue {
                    value: main_cf_text(value.get_ref()),
                    origin,
                },
            );
        }
        map
    }

    pub(super) fn duration(
        &self,
        value: Option<&Spanned<String>>,
        default: Duration,
        errors: &mut Vec<ConfigError>,
    ) -> Duration {
        let Some(v) = value else { return default };
        parse_duration(v.get_ref()).unwrap_or_else(|| {
            errors.push(self.invalid(
                v.span().start,
                format!("`{}` is not a time like 300s, 5m or 1h", v.get_ref()),
            ));
            default
        })
    }

    /// An `IP:port` value; `what` (e.g. "[admin] http ") opens the message when it is not one.
    pub(super) fn socket_address(
        &self,
        text: &Spanned<String>,
        what: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<SocketAddr> {
        let raw = text.get_ref();
        raw.parse()
            .map_err(|_| {
                errors.push(self.invalid(
                    text.span().start,
                    format!("{what}`{raw}` is not an address (IP:port, like 127.0.0.1:25)"),
                ))
            })
            .ok()
    }

    pub(super) fn network(
        &self,
        text: &Spanned<String>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<IpNetwork> {
        let raw = text.get_ref().trim();
        let cleaned = raw.replace(['[', ']'], "");
        match cleaned.parse::<IpNetwork>() {
            Ok(n) if n.network() == n.ip() => Some(n),
            Ok(_) => {
                errors.push(self.invalid(text.span().start, format!("`{raw}` has host bits set")));
                None
            }
            Err(_) => {
                errors
                    .push(self.invalid(text.span().start, format!("`{raw}` is not an IP network")));
                None
            }
        }
    }
}

fn main_cf_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(true) => "yes".into(),
        toml::Value::Boolean(false) => "no".into(),
        toml::Value::Array(items) => items
            .iter()
            .map(main_cf_text)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}
