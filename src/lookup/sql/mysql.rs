//! `mysql:` tables (mysql_table(5)) over mysql_async: connects, quotes keys as
//! mysql_real_escape_string() does, and runs the query in the text protocol.
//!
//! Only the client part; hosts, templates and results are in [`super`].

use std::path::Path;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};

use super::config::{Flavor, HostAddr, SqlConfig};
use super::{Rows, SqlClient, SqlTable};
use crate::lookup::cf::{CfFile, Password};
use crate::lookup::table::RemoteTable;
use crate::lookup::RemoteOptions;

/// Opens `mysql:NAME` with the default [`RemoteOptions`]. Connects on first lookup, not
/// here, as Postfix does: a database that is down at load makes lookups fail, not the load.
pub fn open(cf_path: &Path) -> Result<Arc<dyn RemoteTable>, String> {
    open_with(cf_path, RemoteOptions::default())
}

/// Opens `mysql:NAME` with explicit timeouts and cache settings.
pub fn open_with(cf_path: &Path, options: RemoteOptions) -> Result<Arc<dyn RemoteTable>, String> {
    Ok(Arc::new(table(cf_path, options)?))
}

fn table(cf_path: &Path, options: RemoteOptions) -> Result<SqlTable<MysqlClient>, String> {
    let cf = CfFile::read(cf_path)?;
    let config = SqlConfig::read(&cf, Flavor::Mysql)?;
    let client = MysqlClient {
        user: config.user.clone(),
        password: config.password.clone(),
        dbname: config.dbname.clone(),
    };
    let name = format!("mysql:{}", cf_path.display());
    Ok(SqlTable::new(name, config, client, options))
}

/// What every connection logs in with.
pub struct MysqlClient {
    user: String,
    password: Password,
    dbname: String,
}

impl SqlClient for MysqlClient {
    type Conn = Conn;

    const QUOTE: super::Quote = quote;

    async fn connect(&self, host: &HostAddr) -> Result<Conn, String> {
        let opts = OptsBuilder::default()
            .user((!self.user.is_empty()).then(|| self.user.clone()))
            .pass((!self.password.expose().is_empty()).then(|| self.password.expose()))
            .db_name(Some(self.dbname.clone()))
            // Never switch a TCP connection to the server's socket behind our back.
            .prefer_socket(false);
        let opts = match host {
            HostAddr::Unix(path) => opts.socket(Some(path.to_string_lossy())),
            HostAddr::Inet { host, port } => opts
                .ip_or_hostname(host.clone())
                .tcp_port(port.unwrap_or(3306)),
            other => return Err(format!("not a MySQL host: {other}")),
        };
        Conn::new(opts).await.map_err(|e| e.to_string())
    }

    async fn rows<'a>(&'a self, conn: &'a mut Conn, query: &'a str) -> Result<Rows, String> {
        let rows: Vec<Row> = conn
            .query(query)
            .await
            .map_err(|e| format!("query failed: {e}"))?;
        Ok(rows
            .into_iter()
            .map(|row| row.unwrap().into_iter().map(text).collect())
            .collect())
    }
}

/// A text-protocol column as Postfix sees it (`row[j]`, NULL as no value).
fn text(value: Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        // The text protocol sends every value as bytes; others only from binary results.
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// mysql_real_escape_string() for a UTF-8 connection in the default SQL mode: backslash
/// before NUL, LF, CR, backslash, both quotes and Ctrl-Z. A key cannot end the string
/// literal it is put in, whatever it holds.
pub fn quote(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_stays_out_of_debug_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cf = dir.path().join("t.cf");
        let body = "hosts = 127.0.0.1:1\nuser = u\npassword = Pw-in-cf-77\ndbname = d\n";
        std::fs::write(&cf, format!("{body}query = SELECT '%s'\n")).unwrap();
        let shown = format!("{:?}", table(&cf, RemoteOptions::default()).unwrap());
        assert!(
            shown.contains("<redacted>") && !shown.contains("Pw-in-cf-77"),
            "{shown}"
        );
        std::fs::write(&cf, format!("{body}query = SELECT '%x'\n")).unwrap();
        let e = table(&cf, RemoteOptions::default()).unwrap_err();
        assert_eq!(
            e,
            format!("{}:5: Invalid query template: SELECT '%x'", cf.display())
        );
    }

    #[test]
    fn quoting_matches_mysql_real_escape_string() {
        let mut out = String::new();
        quote("a'b\"c\\d\0e\nf\rg\x1ah é", &mut out);
        assert_eq!(out, "a\\'b\\\"c\\\\d\\0e\\nf\\rg\\Zh é");
    }
}
