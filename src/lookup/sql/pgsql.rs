//! `pgsql:` tables (pgsql_table(5)) over tokio-postgres: connects, quotes keys as
//! PQescapeStringConn() does, and sends the query as a simple (text) query, as PQexec() does.
//!
//! Like Postfix 3.7 it talks to the server as a LATIN1 client (see [`as_latin1`] and
//! [`from_latin1`]): the same keys match the same rows and values come back as the same
//! bytes, except that bytes which are not UTF-8 become U+FFFD (a `String` holds text).
//!
//! Only the client part; hosts, templates and results are in [`super`].

use std::path::Path;
use std::sync::Arc;

use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use super::config::{Flavor, HostAddr, SqlConfig};
use super::{Rows, SqlClient, SqlTable};
use crate::lookup::cf::{CfFile, Password};
use crate::lookup::table::RemoteTable;
use crate::lookup::RemoteOptions;

/// Opens `pgsql:NAME` with the default [`RemoteOptions`]; connects on first lookup.
pub fn open(cf_path: &Path) -> Result<Arc<dyn RemoteTable>, String> {
    open_with(cf_path, RemoteOptions::default())
}

/// Opens `pgsql:NAME` with explicit timeouts and cache settings.
pub fn open_with(cf_path: &Path, options: RemoteOptions) -> Result<Arc<dyn RemoteTable>, String> {
    let cf = CfFile::read(cf_path)?;
    let config = SqlConfig::read(&cf, Flavor::Pgsql)?;
    let client = PgsqlClient {
        user: config.user.clone(),
        password: config.password.clone(),
        dbname: config.dbname.clone(),
    };
    let name = format!("pgsql:{}", cf_path.display());
    Ok(Arc::new(SqlTable::new(name, config, client, options)))
}

/// What every connection logs in with (a `postgresql://` host brings its own).
pub struct PgsqlClient {
    user: String,
    password: Password,
    dbname: String,
}

impl SqlClient for PgsqlClient {
    type Conn = Client;

    const QUOTE: super::Quote = quote;

    async fn connect(&self, host: &HostAddr) -> Result<Client, String> {
        let config = match host {
            HostAddr::Uri(uri) => uri
                .expose()
                .parse::<Config>()
                // The parser's message may quote the URI, and the URI may hold a password.
                .map_err(|_| format!("{host}: not a valid postgresql:// connection URI"))?,
            HostAddr::Unix(dir) => {
                let mut c = self.login();
                c.host_path(dir);
                c
            }
            HostAddr::Inet { host, port } => {
                let mut c = self.login();
                c.host(host).port(port.unwrap_or(5432));
                c
            }
            HostAddr::File(_) => return Err(format!("not a PostgreSQL host: {host}")),
        };
        let (client, connection) = config.connect(NoTls).await.map_err(|e| why(&e))?;
        // The connection task does the socket I/O; it ends when the client is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // quote() doubles quotes only, which is PQescapeStringConn()'s escaping when the
        // server takes backslashes literally; make sure it does, whatever its default.
        client
            .batch_execute("SET standard_conforming_strings = on")
            .await
            .map_err(|e| why(&e))?;
        Ok(client)
    }

    async fn rows<'a>(&'a self, conn: &'a mut Client, query: &'a str) -> Result<Rows, String> {
        let messages = conn
            .simple_query(&as_latin1(query))
            .await
            .map_err(|e| format!("query failed: {}", why(&e)))?;
        let mut rows = Vec::new();
        for m in messages {
            match m {
                SimpleQueryMessage::Row(r) => {
                    let mut row = Vec::with_capacity(r.len());
                    for i in 0..r.len() {
                        row.push(match r.get(i) {
                            Some(v) => Some(from_latin1(v)?),
                            None => None,
                        });
                    }
                    rows.push(row);
                }
                // A table's query is one statement; its rows end at its CommandComplete.
                SimpleQueryMessage::CommandComplete(_) if !rows.is_empty() => break,
                _ => {}
            }
        }
        Ok(rows)
    }
}

/// tokio-postgres says only "db error" for what the server said; the server's own words
/// (severity and message, as libpq's PQerrorMessage gives them) tell the admin what to fix.
fn why(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl PgsqlClient {
    fn login(&self) -> Config {
        let mut c = Config::new();
        if !self.user.is_empty() {
            c.user(&self.user);
        }
        if !self.password.expose().is_empty() {
            c.password(self.password.expose());
        }
        c.dbname(&self.dbname);
        c
    }
}

/// The query as a LATIN1 client sends it. Postfix 3.7 release builds (not SNAPSHOT) set
/// client_encoding LATIN1, so the server reads each byte of the UTF-8 key as one character:
/// `jösé` arrives as `jÃ¶sÃ©`. tokio-postgres always speaks UTF8, so the same characters are
/// sent as UTF-8 here and the server sees what it sees from Postfix: the same rows match.
fn as_latin1(query: &str) -> String {
    query.bytes().map(char::from).collect()
}

/// A value as the bytes a LATIN1 client receives, read back as UTF-8 text: a key echoed
/// by the query comes back as it went out, as with Postfix. A character LATIN1 lacks makes
/// the server fail the query for Postfix, so it fails here too.
fn from_latin1(value: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(value.len());
    for c in value.chars() {
        let b = u8::try_from(u32::from(c)).map_err(|_| {
            format!("query failed: character {c:?} has no equivalent in encoding LATIN1")
        })?;
        bytes.push(b);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// PQescapeStringConn() with standard_conforming_strings on: each `'` doubled. Keys are
/// UTF-8 and NUL-free (checked before any query), so no other byte needs care.
pub fn quote(value: &str, out: &mut String) {
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
}
