//! The mysql, pgsql and sqlite tables: one shared suite of .cf files and keys, run against
//! a private MariaDB (over TCP behind a dead host, and over its socket), a private
//! PostgreSQL and an SQLite file, then the failure cases each server allows.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relayguard::lookup::table::{RemoteTable, TableReply};
use relayguard::lookup::{open_remote, sql, RemoteOptions};

use super::support::{self, mariadb, postgres};
use super::{ask, differential, found, quick, write_cf};

/// Keys every SQL differential runs: plain, partial, malformed, and injection attempts
/// (quote, backslash-quote, comment, UNION, statement separator).
const SQL_KEYS: &[&str] = &[
    "alice@example.com",
    "list@example.com",
    "example.com",
    "bob",
    "nobody@example.com",
    "o'brien@example.com",
    "with\\back@example.com",
    "@example.com",
    "user@",
    "z@x.y.example",
    "x' OR '1'='1",
    "x' UNION SELECT v FROM secret WHERE '1'='1",
    "x\\' OR 1=1 -- ",
    "x'; DROP TABLE aliases; --",
    "\"dq\"@example.com",
    "jösé@example.com",
];

/// The rows every SQL database gets (standard SQL; MySQL needs the backslash doubled).
fn sql_rows(backslash: &str) -> String {
    format!(
        "CREATE TABLE aliases (k VARCHAR(255), v VARCHAR(255));
         INSERT INTO aliases VALUES ('alice@example.com', 'alice@mail.example'),
           ('list@example.com', 'a@one.example'), ('list@example.com', 'b@two.example'),
           ('list@example.com', 'c@three.example'), ('example.com', 'domain-row'),
           ('bob', 'local-bob'), ('o''brien@example.com', 'quoted-ok'),
           ('with{backslash}back@example.com', 'backslash-ok'),
           ('jösé@example.com', 'utf8-ok');
         CREATE TABLE secret (k VARCHAR(255), v VARCHAR(255));
         INSERT INTO secret VALUES ('k', 'SECRET');"
    )
}

/// The .cf bodies (after the connection lines) each SQL database is tested with; the
/// echo query returns the expansions themselves.
fn sql_cases(echo: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "basic.cf",
            "query = SELECT v FROM aliases WHERE k='%s'\n".into(),
        ),
        ("echo.cf", format!("query = {echo}\n")),
        (
            "format.cf",
            "query = SELECT v FROM aliases WHERE k='%s'\n\
             result_format = smtp:[%d] via %u for %U at %D\n"
                .into(),
        ),
        (
            "limit.cf",
            "query = SELECT v FROM aliases WHERE k='%s'\nexpansion_limit = 2\n".into(),
        ),
        (
            "domain.cf",
            "query = SELECT v FROM aliases WHERE k='%s'\ndomain = example.com\n".into(),
        ),
        (
            "legacy.cf",
            "table = aliases\nselect_field = v\nwhere_field = k\n\
             additional_conditions = AND v <> 'never'\n"
                .into(),
        ),
    ]
}

/// What every SQL table must answer, checked before (and independently of) postmap.
async fn sql_expectations(dir: &Path, kind: &str) {
    let open = |name: &str| {
        open_remote(kind, name, &dir.join("main.cf"))
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let basic = open("basic.cf");
    assert_eq!(
        ask(&basic, "alice@example.com").await,
        found("alice@mail.example")
    );
    assert_eq!(
        ask(&basic, "list@example.com").await,
        found("a@one.example,b@two.example,c@three.example")
    );
    assert_eq!(
        ask(&basic, "nobody@example.com").await,
        TableReply::NotFound
    );
    assert_eq!(ask(&basic, "o'brien@example.com").await, found("quoted-ok"));
    assert_eq!(
        ask(&basic, "with\\back@example.com").await,
        found("backslash-ok")
    );
    // Postfix's pgsql client speaks LATIN1: a UTF-8 key reaches the server as other
    // characters and matches nothing.
    let utf8 = if kind == "pgsql" {
        TableReply::NotFound
    } else {
        found("utf8-ok")
    };
    assert_eq!(ask(&basic, "jösé@example.com").await, utf8);
    for attack in &SQL_KEYS[10..15] {
        assert_eq!(ask(&basic, attack).await, TableReply::NotFound, "{attack}");
    }
    let echo = open("echo.cf");
    assert_eq!(
        ask(&echo, "o'b@x.y.example").await,
        found("o'b|x.y.example|example|y|o'b@x.y.example|o'b|x.y.example")
    );
    assert_eq!(ask(&echo, "nodomain").await, TableReply::NotFound);
    assert_eq!(
        ask(&echo, "u@toplevel").await,
        TableReply::NotFound,
        "%2 needs two labels"
    );
    let format = open("format.cf");
    assert_eq!(
        ask(&format, "list@example.com").await,
        found(
            "smtp:[one.example] via a for list at example.com,\
             smtp:[two.example] via b for list at example.com,\
             smtp:[three.example] via c for list at example.com"
        )
    );
    let limit = open("limit.cf");
    assert_eq!(
        ask(&limit, "alice@example.com").await,
        found("alice@mail.example")
    );
    assert!(
        matches!(ask(&limit, "list@example.com").await, TableReply::Failed(w) if w.contains("Expansion limit"))
    );
    let domain = open("domain.cf");
    assert_eq!(
        ask(&domain, "alice@example.com").await,
        found("alice@mail.example")
    );
    assert_eq!(ask(&domain, "example.com").await, TableReply::NotFound);
    assert_eq!(ask(&domain, "bob").await, TableReply::NotFound);
    let legacy = open("legacy.cf");
    assert_eq!(ask(&legacy, "bob").await, found("local-bob"));
}

/// Writes the cases with `login` (hosts, user, password, dbname) in front, checks the
/// expectations, then runs the differential on each. Returns how many keys agreed.
async fn sql_suite(dir: &Path, kind: &str, login: &str, echo: &str) -> usize {
    let mut agreed = 0;
    for (name, body) in sql_cases(echo) {
        write_cf(dir, name, &format!("{login}{body}"));
    }
    sql_expectations(dir, kind).await;
    for (name, _) in sql_cases(echo) {
        let path = dir.join(name);
        let spec = format!("{kind}:{}", path.display());
        let table = open_remote(kind, &path.display().to_string(), &path)
            .unwrap()
            .unwrap();
        agreed += differential(&spec, &table, SQL_KEYS).await;
    }
    agreed
}

/// A server a test can stop and start again.
trait Restartable {
    fn stop(&mut self);
    fn restart(&mut self);
}

impl Restartable for mariadb::Mariadb {
    fn stop(&mut self) {
        mariadb::Mariadb::stop(self)
    }
    fn restart(&mut self) {
        mariadb::Mariadb::restart(self)
    }
}

impl Restartable for postgres::Postgres {
    fn stop(&mut self) {
        postgres::Postgres::stop(self)
    }
    fn restart(&mut self) {
        postgres::Postgres::restart(self)
    }
}

type Opener = fn(&Path, RemoteOptions) -> Result<Arc<dyn RemoteTable>, String>;

/// Bad password: a failure whose text does not hold the password. A slow query: failure at
/// the deadline. Concurrent lookups share the pool. A stopped server: failure, then answers
/// again once it is back. A second lookup within the TTL comes from the cache.
async fn sql_failures(
    dir: &Path,
    open: Opener,
    (login, bad_login): (&str, &str),
    slow_query: &str,
    server: &mut impl Restartable,
) {
    let wrong = write_cf(
        dir,
        "wrong.cf",
        &format!("{bad_login}query = SELECT v FROM aliases WHERE k='%s'\n"),
    );
    let t = open(&wrong, quick()).unwrap();
    match ask(&t, "alice@example.com").await {
        TableReply::Failed(why) => {
            assert!(!why.contains("Wrong-pw-0000"), "{why}");
            eprintln!("bad password: {why}");
        }
        other => panic!("bad password gave {other:?}"),
    }
    let slow = write_cf(dir, "slow.cf", &format!("{login}query = {slow_query}\n"));
    let t = open(
        &slow,
        RemoteOptions {
            timeout: Duration::from_millis(700),
            ..quick()
        },
    )
    .unwrap();
    let started = Instant::now();
    let reply = ask(&t, "alice@example.com").await;
    assert!(
        matches!(&reply, TableReply::Failed(w) if w.contains("no answer within")),
        "{reply:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    let basic = open(&dir.join("basic.cf"), quick()).unwrap();
    assert_eq!(ask(&basic, "bob").await, found("local-bob"));
    let many = futures_util::future::join_all((0..20).map(|_| basic.lookup("bob"))).await;
    assert!(
        many.iter().all(|a| a.reply == found("local-bob")),
        "{many:?}"
    );
    server.stop();
    assert!(matches!(ask(&basic, "bob").await, TableReply::Failed(_)));
    server.restart();
    assert_eq!(ask(&basic, "bob").await, found("local-bob"));

    let cached = open(&dir.join("basic.cf"), RemoteOptions::default()).unwrap();
    assert!(!cached.lookup("bob").await.cached);
    let again = cached.lookup("bob").await;
    assert!(
        again.cached && again.reply == found("local-bob"),
        "{again:?}"
    );
}

#[tokio::test]
async fn mysql_tables_match_postfix() {
    let mut db = mariadb::Mariadb::start();
    db.sql(&sql_rows("\\\\"));
    let dir = tempfile::tempdir().unwrap();
    let creds = format!(
        "user = {}\npassword = {}\ndbname = {}\n",
        mariadb::USER,
        mariadb::PASSWORD,
        mariadb::DB
    );
    // TCP behind a dead first host (Postfix tries another host), and the UNIX socket.
    let dead = support::process::free_port();
    let tcp = format!(
        "hosts = inet:127.0.0.1:{dead}, inet:127.0.0.1:{}\n{creds}",
        db.port
    );
    let echo = "SELECT '%u|%d|%1|%2|%S|%U|%D'";
    let agreed = sql_suite(dir.path(), "mysql", &tcp, echo).await;
    let unix_dir = dir.path().join("unix");
    std::fs::create_dir(&unix_dir).unwrap();
    let unix = format!("hosts = unix:{}\n{creds}", db.socket().display());
    let agreed = agreed + sql_suite(&unix_dir, "mysql", &unix, echo).await;
    eprintln!("mysql: postmap and relayguard agreed on {agreed} lookups");
    let bad = format!(
        "hosts = inet:127.0.0.1:{}\nuser = {}\npassword = Wrong-pw-0000\ndbname = {}\n",
        db.port,
        mariadb::USER,
        mariadb::DB
    );
    let slow = "SELECT IF(SLEEP(3) = 0, 'late', 'late') FROM DUAL WHERE '%s' <> ''";
    sql_failures(
        dir.path(),
        sql::mysql::open_with,
        (&tcp, &bad),
        slow,
        &mut db,
    )
    .await;
}

#[tokio::test]
async fn pgsql_tables_match_postfix() {
    let mut db = postgres::Postgres::start();
    db.sql(&sql_rows("\\"));
    db.sql(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}",
        postgres::USER
    ));
    let dir = tempfile::tempdir().unwrap();
    let creds = format!(
        "user = {}\npassword = {}\ndbname = {}\n",
        postgres::USER,
        postgres::PASSWORD,
        postgres::DB
    );
    let dead = support::process::free_port();
    let tcp = format!(
        "hosts = inet:127.0.0.1:{dead} 127.0.0.1:{}\n{creds}",
        db.port
    );
    let echo = "SELECT '%u|%d|%1|%2|%S|%U|%D'";
    let agreed = sql_suite(dir.path(), "pgsql", &tcp, echo).await;
    eprintln!("pgsql: postmap and relayguard agreed on {agreed} lookups");
    let bad = format!(
        "hosts = 127.0.0.1:{}\nuser = {}\npassword = Wrong-pw-0000\ndbname = {}\n",
        db.port,
        postgres::USER,
        postgres::DB
    );
    let slow = "SELECT 'late' FROM pg_sleep(3) WHERE '%s' <> ''";
    sql_failures(
        dir.path(),
        sql::pgsql::open_with,
        (&tcp, &bad),
        slow,
        &mut db,
    )
    .await;
}

#[tokio::test]
async fn sqlite_tables_match_postfix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tables.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(sql_rows("\\"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = format!("dbpath = {}\n", db.display());
    let echo = "SELECT '%u|%d|%1|%2|%S|%U|%D'";
    let agreed = sql_suite(dir.path(), "sqlite", &login, echo).await;
    eprintln!("sqlite: postmap and relayguard agreed on {agreed} lookups");
    // A query that runs for many seconds is interrupted at the deadline.
    let slow = write_cf(dir.path(), "slow.cf", &format!("{login}query = WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT max(x) FROM c WHERE '%s' <> ''\n"));
    let t = sql::sqlite::open_with(
        &slow,
        RemoteOptions {
            timeout: Duration::from_millis(300),
            ..quick()
        },
    )
    .unwrap();
    let started = Instant::now();
    assert!(matches!(ask(&t, "k").await, TableReply::Failed(_)));
    assert!(started.elapsed() < Duration::from_secs(1));
    let missing = write_cf(
        dir.path(),
        "missing.cf",
        "dbpath = /nonexistent/x.db\nquery = SELECT '%s'\n",
    );
    let t = sql::sqlite::open_with(&missing, quick()).unwrap();
    assert!(matches!(ask(&t, "k").await, TableReply::Failed(w) if w.contains("/nonexistent/x.db")));
    assert!(!missing.with_extension("db").exists());
}
