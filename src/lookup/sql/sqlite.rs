//! `sqlite:` tables (sqlite_table(5)) over rusqlite: the file is opened read-only, keys are
//! quoted as sqlite3_mprintf("%q") does, and column 0 of each row is a value.
//!
//! SQLite's API blocks, so each query runs on tokio's blocking pool; a query still running at
//! the deadline is interrupted (sqlite3_interrupt), so it does not hold a thread after the
//! lookup failed.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, InterruptHandle, OpenFlags};

use super::config::{Flavor, HostAddr, SqlConfig};
use super::{lock, Rows, SqlClient, SqlTable};
use crate::lookup::cf::CfFile;
use crate::lookup::table::RemoteTable;
use crate::lookup::RemoteOptions;

/// Opens `sqlite:NAME` with the default [`RemoteOptions`]; the database file is opened on
/// first lookup.
pub fn open(cf_path: &Path) -> Result<Arc<dyn RemoteTable>, String> {
    open_with(cf_path, RemoteOptions::default())
}

/// Opens `sqlite:NAME` with explicit timeouts and cache settings.
pub fn open_with(
    cf_path: &Path,
    mut options: RemoteOptions,
) -> Result<Arc<dyn RemoteTable>, String> {
    let cf = CfFile::read(cf_path)?;
    let config = SqlConfig::read(&cf, Flavor::Sqlite)?;
    // A local file has no server to stay away from: ask again at the next lookup.
    options.retry_interval = std::time::Duration::ZERO;
    let name = format!("sqlite:{}", cf_path.display());
    Ok(Arc::new(SqlTable::new(name, config, SqliteClient, options)))
}

pub struct SqliteClient;

/// An open database and the handle that interrupts a query on it from another thread.
pub struct SqliteConn {
    db: Arc<Mutex<Connection>>,
    interrupt: Arc<InterruptHandle>,
}

impl SqlClient for SqliteClient {
    type Conn = SqliteConn;

    const QUOTE: super::Quote = quote;

    async fn connect(&self, host: &HostAddr) -> Result<SqliteConn, String> {
        let HostAddr::File(path) = host else {
            return Err(format!("not an SQLite file: {host}"));
        };
        let path = path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            // Read-only and never created: Postfix's sqlite3_open() would create an empty
            // file for a mistyped dbpath and then fail every query.
            Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| format!("open {}: {e}", path.display()))
        })
        .await
        .map_err(|e| format!("sqlite open task: {e}"))??;
        Ok(SqliteConn {
            interrupt: Arc::new(opened.get_interrupt_handle()),
            db: Arc::new(Mutex::new(opened)),
        })
    }

    async fn rows<'a>(&'a self, conn: &'a mut SqliteConn, query: &'a str) -> Result<Rows, String> {
        let db = conn.db.clone();
        let query = query.to_string();
        let mut guard = InterruptOnDrop(Some(conn.interrupt.clone()));
        let done = tokio::task::spawn_blocking(move || run(&lock(&db), &query)).await;
        guard.0 = None;
        done.map_err(|e| format!("sqlite query task: {e}"))?
    }

    fn all_columns(&self) -> bool {
        false
    }
}

/// Interrupts the query when the lookup is dropped before it finished (its deadline passed).
struct InterruptOnDrop(Option<Arc<InterruptHandle>>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.interrupt();
        }
    }
}

fn run(db: &Connection, query: &str) -> Result<Rows, String> {
    let mut stmt = db
        .prepare(query)
        .map_err(|e| format!("SQL prepare failed: {e}"))?;
    let mut rows = stmt
        .query([])
        .map_err(|e| format!("SQL step failed: {e}"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| format!("SQL step failed: {e}"))? {
        // sqlite3_column_text(): numbers as their text, NULL as no value.
        let value = match row.get_ref(0) {
            Ok(ValueRef::Null) | Err(_) => None,
            Ok(ValueRef::Integer(i)) => Some(i.to_string()),
            Ok(ValueRef::Real(f)) => Some(f.to_string()),
            Ok(ValueRef::Text(t) | ValueRef::Blob(t)) => {
                Some(String::from_utf8_lossy(t).into_owned())
            }
        };
        out.push(vec![value]);
    }
    Ok(out)
}

/// sqlite3_mprintf("%q"): each `'` doubled.
pub fn quote(value: &str, out: &mut String) {
    super::pgsql::quote(value, out);
}
