//! tls_server_sni_maps: the names a listener has other keys and certificates for, with the
//! chain files each loads, read from the tables at load (and so again at every reload).
//!
//! Postfix reads a texthash or inline table's values into memory when it opens the table;
//! relayguard goes one step further and loads the certificates then, so a bad file is a load
//! error at the entry's line rather than a failed handshake later.

use std::path::Path;

use super::load::ConfigError;
use crate::net::tls_server::SniEntry;
use crate::policy::{self, ParamMap, PolicyWarning};

pub const PARAMETER: &str = "tls_server_sni_maps";

/// The entries of `tls_server_sni_maps`, first table first; empty when it is unset. Chain
/// files are separated by commas or whitespace, as in smtpd_tls_chain_files, and a relative
/// name is taken relative to the config file's directory, as the other TLS files are.
pub fn entries(
    params: &ParamMap,
    dir: &Path,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<PolicyWarning>,
) -> Option<Vec<SniEntry>> {
    let Some(value) = params.get(PARAMETER).filter(|v| !v.value.trim().is_empty()) else {
        return Some(Vec::new());
    };
    let listed = match policy::exact_entries(PARAMETER, value, warnings) {
        Ok(listed) => listed,
        Err(e) => {
            errors.push(e.into());
            return None;
        }
    };
    let mut out = Vec::new();
    for (key, files, origin) in listed {
        let chains: Vec<_> = files
            .split([',', ' ', '\t', '\n'])
            .filter(|f| !f.is_empty())
            .map(|f| dir.join(f))
            .collect();
        if chains.is_empty() {
            errors.push(ConfigError::Invalid {
                file: origin.file,
                line: origin.line,
                why: format!("{PARAMETER}: `{key}` names no chain file"),
            });
            return None;
        }
        out.push(SniEntry { key, chains });
    }
    Some(out)
}
