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
use std::time::{Duration, Instant};

use relayguard::lookup::table::{RemoteTable, TableReply};
use relayguard::lookup::{ldap, open_remote, sql, RemoteOptions};
use support::{mariadb, postgres, postmap, slapd};

/// Options for tests: short deadline, no cache (so each lookup reaches the server), hosts
/// retried at once after a failure.
fn quick() -> RemoteOptions {
    RemoteOptions {
        timeout: Duration::from_secs(2),
        retry_interval: Duration::ZERO,
        cache_ttl: Duration::ZERO,
        ..RemoteOptions::default()
    }
}

fn write_cf(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn ask(table: &Arc<dyn RemoteTable>, key: &str) -> TableReply {
    table.lookup(key).await.reply
}

fn found(v: &str) -> TableReply {
    TableReply::Found(v.to_string())
}

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
];

/// Asks Postfix and relayguard the same keys of `spec`; panics on the first difference.
/// A failure on both sides counts as the same answer (the texts differ by design).
async fn differential(spec: &str, table: &Arc<dyn RemoteTable>, keys: &[&str]) -> usize {
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

/// The rows every SQL database gets (standard SQL; MySQL needs the backslash doubled).
fn sql_rows(backslash: &str) -> String {
    format!(
        "CREATE TABLE aliases (k VARCHAR(255), v VARCHAR(255));
         INSERT INTO aliases VALUES ('alice@example.com', 'alice@mail.example'),
           ('list@example.com', 'a@one.example'), ('list@example.com', 'b@two.example'),
           ('list@example.com', 'c@three.example'), ('example.com', 'domain-row'),
           ('bob', 'local-bob'), ('o''brien@example.com', 'quoted-ok'),
           ('with{backslash}back@example.com', 'backslash-ok');
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
    for attack in &SQL_KEYS[10..] {
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

/// Bad password: a failure whose text does not hold the password. A stopped server:
/// failure, then answers again once it is back. A slow query: failure at the deadline.
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
        TableReply::Failed(why) => assert!(!why.contains("Wrong-pw-0000"), "{why}"),
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

const LDIF: &str = "dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
mail: alice@example.com
description: alice@mail.example

dn: uid=list,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: list
cn: List
sn: L
mail: list@example.com
description: a@one.example
description: b@two.example
description: c@three.example

dn: uid=star*,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: star*
cn: Star
sn: S
mail: star*@example.com
description: star-ok
";

#[tokio::test]
async fn ldap_tables_match_postfix() {
    let mut server = slapd::Slapd::start(LDIF);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dead = support::process::free_port();
    let login = format!(
        "server_host = 127.0.0.1:{dead} ldap://127.0.0.1:{}\nversion = 3\nbind_dn = {}\nbind_pw = {}\nsearch_base = {}\n",
        server.port, slapd::ROOT_DN, slapd::ROOT_PW, slapd::SUFFIX
    );
    let cases = [
        ("mail.cf", "query_filter = (mail=%s)\nresult_attribute = description\n"),
        ("uid.cf", "query_filter = (&(uid=%u)(objectClass=inetOrgPerson))\nresult_attribute = description, cn\nresult_format = %u at %d for %U\n"),
        ("limit.cf", "query_filter = mail=%s\nresult_attribute = description\nexpansion_limit = 2\n"),
        ("domain.cf", "query_filter = (mail=%s)\nresult_attribute = description\ndomain = example.com\n"),
        ("scope.cf", "query_filter = (mail=%s)\nresult_attribute = description\nscope = one\n"),
    ];
    for (name, body) in cases {
        write_cf(d, name, &format!("{login}{body}"));
    }
    let open = |name: &str| ldap::open_with(&d.join(name), quick()).unwrap();
    let mail = open("mail.cf");
    assert_eq!(
        ask(&mail, "alice@example.com").await,
        found("alice@mail.example")
    );
    assert_eq!(
        ask(&mail, "list@example.com").await,
        found("a@one.example,b@two.example,c@three.example")
    );
    assert_eq!(ask(&mail, "star*@example.com").await, found("star-ok"));
    // A key that is a filter of its own matches nothing: `*` and `)(` arrive escaped.
    for attack in ["*", "*@example.com", "x)(mail=*", "*)(|(mail=*"] {
        assert_eq!(ask(&mail, attack).await, TableReply::NotFound, "{attack}");
    }
    let uid = open("uid.cf");
    assert_eq!(
        ask(&uid, "list@example.com").await,
        found("a at one.example for list,b at two.example for list,c at three.example for list")
    );
    assert!(
        matches!(ask(&open("limit.cf"), "list@example.com").await, TableReply::Failed(w) if w.contains("Expansion limit"))
    );
    assert_eq!(
        ask(&open("domain.cf"), "alice@other.example").await,
        TableReply::NotFound
    );
    assert_eq!(
        ask(&open("scope.cf"), "alice@example.com").await,
        TableReply::NotFound,
        "one level below the suffix is ou=people only"
    );

    let keys = [
        "alice@example.com",
        "list@example.com",
        "star*@example.com",
        "nobody@example.com",
        "*",
        "*@example.com",
        "x)(mail=*",
        "*)(|(mail=*",
        "bob",
        "@example.com",
        "a\\5c@example.com",
    ];
    let mut agreed = 0;
    for (name, _) in cases {
        let path = d.join(name);
        agreed += differential(&format!("ldap:{}", path.display()), &open(name), &keys).await;
    }
    eprintln!("ldap: postmap and relayguard agreed on {agreed} lookups");

    let wrong = write_cf(d, "wrong.cf", &format!("server_host = ldap://127.0.0.1:{}\nversion = 3\nbind_dn = {}\nbind_pw = Wrong-pw-0000\nsearch_base = {}\nquery_filter = (mail=%s)\nresult_attribute = description\n", server.port, slapd::ROOT_DN, slapd::SUFFIX));
    match ask(
        &ldap::open_with(&wrong, quick()).unwrap(),
        "alice@example.com",
    )
    .await
    {
        TableReply::Failed(why) => assert!(!why.contains("Wrong-pw-0000"), "{why}"),
        other => panic!("bad bind_pw gave {other:?}"),
    }
    // A server that accepts and never answers: failure at the table's own `timeout`.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_cf = write_cf(
        d,
        "mute.cf",
        &format!(
            "server_host = 127.0.0.1:{}\ntimeout = 1\nversion = 3\nquery_filter = (mail=%s)\n",
            mute.local_addr().unwrap().port()
        ),
    );
    let started = Instant::now();
    assert!(matches!(
        ask(
            &ldap::open_with(&mute_cf, quick()).unwrap(),
            "alice@example.com"
        )
        .await,
        TableReply::Failed(_)
    ));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    assert_eq!(
        ask(&mail, "alice@example.com").await,
        found("alice@mail.example")
    );
    server.stop();
    assert!(matches!(
        ask(&mail, "alice@example.com").await,
        TableReply::Failed(_)
    ));
    server.restart();
    assert_eq!(
        ask(&mail, "alice@example.com").await,
        found("alice@mail.example")
    );
}
