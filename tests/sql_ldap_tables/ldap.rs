//! The ldap table against a private slapd: filter and result expansions, scope, domain,
//! expansion_limit, LDAP filter injection, bad bind password, a mute server, a restart,
//! and the postmap differential.

use std::time::{Duration, Instant};

use relayguard::lookup::ldap;
use relayguard::lookup::table::TableReply;

use super::support::{self, slapd};
use super::{ask, differential, found, quick, write_cf};

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
        // A base that depends on the key: a missing entry is "not found", not an error.
        ("base.cf", "search_base = uid=%u,ou=people,dc=example,dc=com\nscope = base\nquery_filter = (objectClass=*)\nresult_attribute = description\n"),
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
    let base = open("base.cf");
    assert_eq!(
        ask(&base, "alice@example.com").await,
        found("alice@mail.example")
    );
    assert_eq!(ask(&base, "nobody@example.com").await, TableReply::NotFound);
    assert_eq!(
        ask(&base, "a,b@example.com").await,
        TableReply::NotFound,
        "DN-quoted"
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
        "jösé@example.com",
        "a,b@example.com",
        "x+y#z@example.com",
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
        TableReply::Failed(why) => {
            assert!(!why.contains("Wrong-pw-0000"), "{why}");
            eprintln!("bad password: {why}");
        }
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
