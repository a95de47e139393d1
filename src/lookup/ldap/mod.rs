//! `ldap:` tables (ldap_table(5)) over ldap3: one shared connection, bound once, searched
//! with the expanded base and filter; each value of the result attributes becomes part of
//! the answer as dict_ldap_get_values() builds it.
//!
//! The connection is made on first lookup and again after it broke (LDAP_SERVER_DOWN: Postfix
//! reconnects and searches once more). The bind password never reaches an error or log.

mod config;

use std::path::Path;
use std::sync::{Arc, Mutex};

use ldap3::asn1::StructureTag;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, SearchOptions};
use tokio::time::timeout;

use super::cache::ReplyCache;
use super::cf::CfFile;
use super::domain::DomainList;
use super::table::{LookupFuture, RemoteTable, TableAnswer, TableReply};
use super::RemoteOptions;
pub use config::{quote_dn, quote_filter, LdapConfig};

/// LDAP result codes the lookup tells apart.
const NO_SUCH_OBJECT: u32 = 32;

/// Opens `ldap:NAME` with the default [`RemoteOptions`] (the file's own `timeout` applies).
pub fn open(cf_path: &Path) -> Result<Arc<dyn RemoteTable>, String> {
    open_with(cf_path, RemoteOptions::default())
}

/// Opens `ldap:NAME` with explicit cache settings; connects on first lookup.
pub fn open_with(cf_path: &Path, options: RemoteOptions) -> Result<Arc<dyn RemoteTable>, String> {
    Ok(Arc::new(LdapTable::open(cf_path, options)?))
}

/// An LDAP table and its one connection (ldap3 multiplexes concurrent searches on it).
pub struct LdapTable {
    name: String,
    config: LdapConfig,
    cache: ReplyCache,
    conn: Mutex<Option<Ldap>>,
}

impl std::fmt::Debug for LdapTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapTable")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why one search attempt did not give entries.
enum SearchError {
    /// The connection is gone: reconnect and try once more.
    Down(String),
    /// The server answered with an error code.
    Result(u32, String),
}

impl LdapTable {
    fn open(cf_path: &Path, options: RemoteOptions) -> Result<LdapTable, String> {
        let cf = CfFile::read(cf_path)?;
        let config = LdapConfig::read(&cf, options.timeout)?;
        Ok(LdapTable {
            name: format!("ldap:{}", cf_path.display()),
            cache: ReplyCache::new(options.cache_ttl, options.cache_size),
            config,
            conn: Mutex::new(None),
        })
    }

    async fn answer(&self, key: &str) -> TableAnswer {
        let t = &self.config.templates;
        let asked = DomainList::asks(self.config.domain.as_ref(), key)
            .then(|| t.base(key, quote_dn).zip(t.query(key, quote_filter)))
            .flatten();
        let Some((base, filter)) = asked else {
            return TableAnswer {
                reply: TableReply::NotFound,
                cached: false,
            };
        };
        let ask = async {
            match timeout(self.config.timeout, self.search(key, &base, &filter)).await {
                Ok(reply) => reply,
                Err(_) => {
                    // The connection may hold a half-read answer: start afresh next time.
                    self.drop_conn();
                    TableReply::Failed(format!(
                        "{}: no answer within {:?}",
                        self.name, self.config.timeout
                    ))
                }
            }
        };
        self.cache.answer(key, ask).await
    }

    async fn search(&self, key: &str, base: &str, filter: &str) -> TableReply {
        // OpenLDAP's ldap_search() takes `uid=x` without parentheses; ldap3's parser wants them.
        let filter = if filter.starts_with('(') {
            filter.to_string()
        } else {
            format!("({filter})")
        };
        let mut result = self.search_once(base, &filter).await;
        if let Err(SearchError::Down(_)) = result {
            self.drop_conn();
            result = self.search_once(base, &filter).await;
        }
        match result {
            Ok(entries) => self.format(key, entries),
            Err(SearchError::Result(NO_SUCH_OBJECT, _))
                if self.config.templates.base_is_dynamic() =>
            {
                TableReply::NotFound
            }
            Err(SearchError::Result(rc, why)) => {
                if rc != NO_SUCH_OBJECT {
                    self.drop_conn();
                }
                TableReply::Failed(format!(
                    "{}: search error {}",
                    self.name,
                    result_text(rc, &why)
                ))
            }
            Err(SearchError::Down(why)) => {
                self.drop_conn();
                TableReply::Failed(format!("{}: {why}", self.name))
            }
        }
    }

    async fn search_once(&self, base: &str, filter: &str) -> Result<Vec<ResultEntry>, SearchError> {
        let mut ldap = self.connection().await.map_err(SearchError::Down)?;
        let attrs: Vec<&str> = self
            .config
            .result_attributes
            .iter()
            .map(String::as_str)
            .collect();
        let size = i32::try_from(self.config.size_limit).unwrap_or(i32::MAX);
        let found = ldap
            .with_search_options(SearchOptions::new().sizelimit(size))
            .with_timeout(self.config.timeout)
            .search(base, self.config.scope, filter, attrs)
            .await
            .map_err(down)?;
        let (entries, result) = (found.0, found.1);
        match result.rc {
            0 => Ok(entries),
            rc => Err(SearchError::Result(rc, result.text)),
        }
    }

    /// The shared connection, made (and bound) if there is none: each URL in turn.
    async fn connection(&self) -> Result<Ldap, String> {
        if let Some(ldap) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(ldap);
        }
        let mut last = String::from("no server_host");
        for url in &self.config.urls {
            match self.connect(url).await {
                Ok(ldap) => {
                    *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(ldap.clone());
                    return Ok(ldap);
                }
                Err(why) => last = format!("connect to {url}: {why}"),
            }
        }
        Err(last)
    }

    async fn connect(&self, url: &str) -> Result<Ldap, String> {
        let settings = LdapConnSettings::new().set_conn_timeout(self.config.timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| e.to_string())?;
        ldap3::drive!(conn);
        if self.config.bind {
            let bound = ldap
                .with_timeout(self.config.timeout)
                .simple_bind(&self.config.bind_dn, self.config.bind_pw.expose())
                .await
                .map_err(|e| e.to_string())?;
            if bound.rc != 0 {
                return Err(format!(
                    "bind {} failed: {}",
                    self.config.bind_dn,
                    result_text(bound.rc, &bound.text)
                ));
            }
        }
        Ok(ldap)
    }

    fn drop_conn(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// dict_ldap_get_values() without DN/URL recursion: each value of each requested
    /// attribute, in the order the server sent them, through result_format.
    fn format(&self, key: &str, entries: Vec<ResultEntry>) -> TableReply {
        let mut results =
            self.config
                .templates
                .results(key, self.config.expansion_limit, &self.name);
        for (n, entry) in entries.into_iter().enumerate() {
            if self.config.size_limit > 0 && n >= self.config.size_limit {
                return TableReply::Failed(format!(
                    "{}: Query size limit ({}) exceeded",
                    self.name, self.config.size_limit
                ));
            }
            for (attr, values) in attributes(entry.0) {
                if !self
                    .config
                    .result_attributes
                    .iter()
                    .any(|a| is_subtype(a, &attr))
                {
                    continue;
                }
                for value in values {
                    if let Err(failed) = results.push(&value) {
                        return failed;
                    }
                }
            }
        }
        results.finish()
    }
}

/// An LDAP result code as ldap_err2string() names it, with the server's text if any.
fn result_text(rc: u32, text: &str) -> String {
    let name = match rc {
        3 => "Time limit exceeded",
        4 => "Size limit exceeded",
        32 => "No such object",
        34 => "Invalid DN syntax",
        48 => "Inappropriate authentication",
        49 => "Invalid credentials",
        50 => "Insufficient access",
        51 => "Server is busy",
        52 => "Server is unavailable",
        53 => "Server is unwilling to perform",
        _ => "LDAP error",
    };
    if text.is_empty() {
        format!("{rc}: {name}")
    } else {
        format!("{rc}: {name}: {text}")
    }
}

fn down(e: LdapError) -> SearchError {
    SearchError::Down(e.to_string())
}

/// attrdesc_subtype(): `mail` asks for `mail` and `mail;lang-en` alike, in any case.
fn is_subtype(wanted: &str, got: &str) -> bool {
    match got.get(..wanted.len()) {
        Some(head) if head.eq_ignore_ascii_case(wanted) => {
            got.len() == wanted.len() || got.as_bytes().get(wanted.len()) == Some(&b';')
        }
        _ => false,
    }
}

/// The (type, values) pairs of a SearchResultEntry, in the server's order; a malformed
/// entry yields nothing rather than a panic (ldap3's SearchEntry::construct would panic).
fn attributes(tag: StructureTag) -> Vec<(String, Vec<String>)> {
    let text = |t: StructureTag| {
        t.expect_primitive()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let mut out = Vec::new();
    let Some(mut parts) = tag.match_id(4).and_then(|t| t.expect_constructed()) else {
        return out;
    };
    if parts.len() < 2 {
        return out;
    }
    let attrs = parts.swap_remove(1);
    for pair in attrs.expect_constructed().unwrap_or_default() {
        let mut pair = pair.expect_constructed().unwrap_or_default().into_iter();
        let (Some(name), Some(values)) = (pair.next().and_then(text), pair.next()) else {
            continue;
        };
        let values = values
            .expect_constructed()
            .unwrap_or_default()
            .into_iter()
            .filter_map(text)
            .collect();
        out.push((name, values));
    }
    out
}

impl RemoteTable for LdapTable {
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a> {
        Box::pin(self.answer(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_pw_stays_out_of_debug() {
        let dir = tempfile::tempdir().unwrap();
        let cf = dir.path().join("l.cf");
        std::fs::write(&cf, "bind_dn = cn=x\nbind_pw = Ldap-cf-pw-31\n").unwrap();
        let shown = format!(
            "{:?}",
            LdapTable::open(&cf, RemoteOptions::default()).unwrap()
        );
        assert!(
            shown.contains("<redacted>") && !shown.contains("Ldap-cf-pw-31"),
            "{shown}"
        );
    }

    #[test]
    fn attribute_subtypes() {
        assert!(is_subtype("mail", "Mail"));
        assert!(is_subtype("mail", "mail;lang-en"));
        assert!(!is_subtype("mail", "mailHost"));
    }
}
