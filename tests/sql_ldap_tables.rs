//! The mysql, pgsql, sqlite and ldap tables against real servers started here, and against
//! Postfix itself: for the same .cf file and key, `postmap -q` and relayguard must agree.
//!
//! Each test owns its server (stopped by PID on drop) and runs its cases in order, since
//! some stop and restart it. The keys include SQL and LDAP filter injection attempts: a
//! MAIL FROM is a key, and must never change what the query asks.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use relayguard::lookup::table::{RemoteTable, TableReply};
use relayguard::lookup::RemoteOptions;
use support::postmap;

// The cases live beside this file, one module per kind of server, so each reads alone.
#[path = "sql_ldap_tables/ldap.rs"]
mod ldap_cases;
#[path = "sql_ldap_tables/sql.rs"]
mod sql_cases;

/// Options for tests: short deadline, no cache (so each lookup reaches the server), hosts
/// retried at once after a failure.
pub fn quick() -> RemoteOptions {
    RemoteOptions {
        timeout: Duration::from_secs(2),
        retry_interval: Duration::ZERO,
        cache_ttl: Duration::ZERO,
        ..RemoteOptions::default()
    }
}

pub fn write_cf(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub async fn ask(table: &Arc<dyn RemoteTable>, key: &str) -> TableReply {
    table.lookup(key).await.reply
}

pub fn found(v: &str) -> TableReply {
    TableReply::Found(v.to_string())
}

/// Asks Postfix and relayguard the same keys of `spec`; panics on the first difference.
/// A failure on both sides counts as the same answer (the texts differ by design).
pub async fn differential(spec: &str, table: &Arc<dyn RemoteTable>, keys: &[&str]) -> usize {
    for key in keys {
        let theirs = postmap::query(spec, key);
        let ours = ask(table, key).await;
        let same = match (&theirs, &ours) {
            (TableReply::Failed(_), TableReply::Failed(_)) => true,
            (a, b) => a == b,
        };
        assert!(
            same,
            "{spec} key {key:?}: postmap {theirs:?}, relayguard {ours:?}"
        );
    }
    keys.len()
}
