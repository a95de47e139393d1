//! SQL tables in policy parameters, end to end: the same main.cf lines on a private Postfix
//! 3.7 (with Debian's postfix-mysql and postfix-pgsql) and on relayguard, the same private
//! MariaDB and PostgreSQL behind both, the same replies. Then the database goes away in the
//! middle of the run: a temporary failure, never a permit.
//!
//! (The client table is PostgreSQL too, so every question also crosses the client stage.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::mariadb::{self, Mariadb};
use support::postfix::Postfix;
use support::postgres::{self, Postgres};
use support::probe::{ask_postfix, ask_proxied, Question};
use support::relayguard::{Relayguard, Role, TRUST_LOOPBACK_PROXY};
use support::slapd::{self, Slapd};

const ROWS: &str = "CREATE TABLE access (k VARCHAR(255), v VARCHAR(255));
INSERT INTO access VALUES ('blocked@local.test', 'REJECT no such user here'),
  ('moved@local.test', '550 5.1.6 moved to elsewhere.example'),
  ('later@local.test', 'DEFER_IF_PERMIT try again tomorrow'),
  ('spam.example', 'REJECT spam domain'), ('ok.example', 'OK'),
  ('198.51.100', 'REJECT bad network');";

/// A .cf file both servers read (smtpd runs as `postfix`: the file and its directory must be
/// readable by it).
fn cf(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn questions() -> Vec<Question> {
    // No client name: relayguard finds none in DNS for these addresses, and Postfix is told
    // the same.
    let q = Question::from;
    vec![
        q("192.0.2.9").recipient("blocked@local.test"),
        q("192.0.2.9").recipient("moved@local.test"),
        q("192.0.2.9").recipient("later@local.test"),
        q("192.0.2.9").recipient("u@local.test"),
        q("192.0.2.9").sender("s@spam.example"),
        q("192.0.2.9").sender("s@sub.spam.example"),
        q("192.0.2.9")
            .sender("Blocked@Local.Test")
            .recipient("u@local.test"),
        Question::from("198.51.100.7"),
        Question::from("192.0.2.9").sender("s@ok.example"),
    ]
}

/// A private Postfix and relayguard with the same `params`, asked every question: panics on
/// the first reply that differs. Returns both (still running) and how many RCPTs Postfix
/// refused.
async fn same_replies(params: &[(&str, String)]) -> (Postfix, Relayguard, usize) {
    let mut pf = Postfix::builder().starttls(false);
    for (k, v) in params {
        pf = pf.param(k, v);
    }
    let pf = pf.start();
    let rg = relayguard(params);
    let mut diffs = Vec::new();
    let mut rejected = 0;
    for q in questions() {
        let want = ask_postfix(&pf, &q).await;
        let got = ask_proxied(rg.addr("lb"), &q).await;
        rejected += usize::from(!want.rcpt.starts_with("250"));
        if (&got.mail, &got.rcpt) != (&want.mail, &want.rcpt) {
            diffs.push(format!(
                "{} from=<{}> to=<{}>:\n  postfix:    {} / {}\n  relayguard: {} / {}",
                q.addr, q.sender, q.recipient, want.mail, want.rcpt, got.mail, got.rcpt
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    (pf, rg, rejected)
}

fn relayguard(params: &[(&str, String)]) -> Relayguard {
    let mut b = Relayguard::builder()
        .policy("myhostname", "relayguard.test")
        .policy("mydestination", "local.test")
        .policy("mynetworks", "192.0.2.1/32");
    for (k, v) in params {
        b = b.policy(k, v);
    }
    b.listener("lb", Role::Smtp)
        .listener_toml("lb", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .extra_toml("[tables]\ntimeout = \"3s\"\ncache_ttl = \"0s\"\n")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_access_tables_answer_as_postfix() {
    let mut my = Mariadb::start();
    my.sql(ROWS);
    let pg = Postgres::start();
    pg.sql(ROWS);
    pg.sql(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}",
        postgres::USER
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let my_cf = cf(
        dir.path(),
        "mysql-access.cf",
        &format!(
            "hosts = inet:127.0.0.1:{}\nuser = {}\npassword = {}\ndbname = {}\nquery = SELECT v FROM access WHERE k='%s'\n",
            my.port,
            mariadb::USER,
            mariadb::PASSWORD,
            mariadb::DB
        ),
    );
    let pg_cf = cf(
        dir.path(),
        "pgsql-access.cf",
        &format!(
            "hosts = 127.0.0.1:{}\nuser = {}\npassword = {}\ndbname = {}\nquery = SELECT v FROM access WHERE k='%s'\n",
            pg.port,
            postgres::USER,
            postgres::PASSWORD,
            postgres::DB
        ),
    );
    let params = vec![
        (
            "smtpd_client_restrictions",
            format!("check_client_access pgsql:{}", pg_cf.display()),
        ),
        (
            "smtpd_sender_restrictions",
            format!("check_sender_access pgsql:{}", pg_cf.display()),
        ),
        (
            "smtpd_recipient_restrictions",
            format!(
                "check_recipient_access mysql:{}, permit_mynetworks, permit_auth_destination, reject",
                my_cf.display()
            ),
        ),
    ];
    let (_pf, rg, _) = same_replies(&params).await;
    // The answers were the database's: a rejection from each table.
    let blocked = ask_proxied(rg.addr("lb"), &questions()[0]).await;
    assert_eq!(
        blocked.rcpt,
        "554 5.7.1 <blocked@local.test>: Recipient address rejected: no such user here"
    );
    // The password is nowhere in relayguard's log.
    assert!(rg
        .log_lines()
        .iter()
        .all(|l| !l.contains(mariadb::PASSWORD) && !l.contains(postgres::PASSWORD)));

    // MariaDB goes away: the recipient table fails, and so does the RCPT, for now.
    my.stop();
    let q = Question::from("192.0.2.9").recipient("fresh@local.test");
    let got = ask_proxied(rg.addr("lb"), &q).await;
    assert_eq!(
        got.rcpt,
        "451 4.3.5 <fresh@local.test>: Recipient address rejected: Server configuration error"
    );
    // (Recovery after a restart waits out Postfix's 60 s retry interval for a failed host;
    // tests/sql_ldap_tables.rs covers it with the interval at zero.)
}

/// The directory: one person whose mail address has an access value in `description`.
const LDIF: &str = "dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=access,dc=example,dc=com
objectClass: organizationalUnit
ou: access

dn: uid=blocked,ou=access,dc=example,dc=com
objectClass: inetOrgPerson
uid: blocked
cn: blocked
sn: blocked
mail: blocked@local.test
description: REJECT no such user in the directory

dn: uid=moved,ou=access,dc=example,dc=com
objectClass: inetOrgPerson
uid: moved
cn: moved
sn: moved
mail: moved@local.test
description: 550 5.1.6 moved, says the directory
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_ldap_tables_answer_as_postfix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("access.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(ROWS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sqlite_cf = cf(
        dir.path(),
        "sqlite-access.cf",
        &format!(
            "dbpath = {}\nquery = SELECT v FROM access WHERE k='%s'\n",
            db.display()
        ),
    );
    let ldap = Slapd::start(LDIF);
    let ldap_cf = cf(
        dir.path(),
        "ldap-access.cf",
        &format!(
            "server_host = ldap://127.0.0.1:{}\nversion = 3\nbind = yes\nbind_dn = {}\nbind_pw = {}\nsearch_base = ou=access,{}\nquery_filter = (mail=%s)\nresult_attribute = description\n",
            ldap.port,
            slapd::ROOT_DN,
            slapd::ROOT_PW,
            slapd::SUFFIX
        ),
    );
    let params = vec![
        (
            "smtpd_sender_restrictions",
            format!("check_sender_access sqlite:{}", sqlite_cf.display()),
        ),
        (
            "smtpd_recipient_restrictions",
            format!(
                "check_recipient_access ldap:{}, permit_mynetworks, permit_auth_destination, reject",
                ldap_cf.display()
            ),
        ),
    ];
    let (_pf, rg, rejected) = same_replies(&params).await;
    // Both tables decided something: the directory's two entries and the SQLite domains.
    assert!(rejected >= 4, "{rejected}");
    assert!(rg.log_lines().iter().all(|l| !l.contains(slapd::ROOT_PW)));
}
