//! access(5) tables: actions, lookup orders, table types, classes.

use super::*;

// `relay_domains = static:all` lets every domain through relay control, so these tests see the
// access tables alone.
const BASE: &str = "myhostname = mx.relayguard.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\nrelay_domains = static:all\n";

/// Reference 4.1, every row with `check_recipient_access` on `X@t.test`.
#[test]
fn access_actions_replies() {
    let table = "ok@t.test OK any text
relay@t.test RELAY
digits@t.test 12345
d550@t.test 550
rej@t.test REJECT
rejt@t.test REJECT go away
rejd@t.test REJECT 5.7.9 go away
rej4@t.test REJECT 4.7.9 txt
rej9@t.test REJECT 5.7.9
r418@t.test REJECT 4.1.8 four
def@t.test DEFER
deft@t.test DEFER come back later
defd@t.test DEFER 4.2.0 txt
n550@t.test 550 nope
n550d@t.test 550 5.1.1 no such user
n450@t.test 450 later
n599@t.test 599 odd code
n421@t.test 421 closing
dunno@t.test DUNNO
dip@t.test DEFER_IF_PERMIT
dipt@t.test DEFER_IF_PERMIT 4.7.5 dip text
dir@t.test DEFER_IF_REJECT
warn@t.test WARN warned text
unauth@t.test reject_unauth_destination
list@t.test permit_mynetworks, reject
";
    let p = policy(
        "actions",
        &format!(
            "{BASE}smtpd_recipient_restrictions = check_recipient_access texthash:access, permit\n"
        ),
        &[("access", table)],
    );
    let c = who("192.0.2.50");
    let ok = "250 2.1.5 Ok";
    for (rcpt_to, want) in [
        ("ok@t.test", ok),
        ("relay@t.test", ok),
        ("digits@t.test", ok),
        ("d550@t.test", ok),
        (
            "rej@t.test",
            "554 5.7.1 <rej@t.test>: Recipient address rejected: Access denied",
        ),
        (
            "rejt@t.test",
            "554 5.7.1 <rejt@t.test>: Recipient address rejected: go away",
        ),
        (
            "rejd@t.test",
            "554 5.7.9 <rejd@t.test>: Recipient address rejected: go away",
        ),
        (
            "rej4@t.test",
            "554 5.7.9 <rej4@t.test>: Recipient address rejected: txt",
        ),
        (
            "def@t.test",
            "450 4.7.1 <def@t.test>: Recipient address rejected: Access denied",
        ),
        (
            "deft@t.test",
            "450 4.7.1 <deft@t.test>: Recipient address rejected: come back later",
        ),
        (
            "defd@t.test",
            "450 4.2.0 <defd@t.test>: Recipient address rejected: txt",
        ),
        (
            "n550@t.test",
            "550 5.7.1 <n550@t.test>: Recipient address rejected: nope",
        ),
        (
            "n550d@t.test",
            "550 5.1.1 <n550d@t.test>: Recipient address rejected: no such user",
        ),
        (
            "n450@t.test",
            "450 4.7.1 <n450@t.test>: Recipient address rejected: later",
        ),
        (
            "n599@t.test",
            "599 5.7.1 <n599@t.test>: Recipient address rejected: odd code",
        ),
        (
            "n421@t.test",
            "421 4.7.1 <n421@t.test>: Recipient address rejected: closing",
        ),
        ("dunno@t.test", ok),
        (
            "dip@t.test",
            "450 4.7.1 <dip@t.test>: Recipient address rejected: Service unavailable",
        ),
        (
            "dipt@t.test",
            "450 4.7.5 <dipt@t.test>: Recipient address rejected: dip text",
        ),
        ("dir@t.test", ok),
        ("warn@t.test", ok),
        (
            "list@t.test",
            "554 5.7.1 <list@t.test>: Recipient address rejected: Access denied",
        ),
    ] {
        assert_eq!(rcpt(&p, &c, rcpt_to), want, "{rcpt_to}");
    }
    let d = rcpt_decision(&p, &c, "n421@t.test");
    match &d.outcome {
        Outcome::Reject(r) => assert!(r.closes_connection()),
        Outcome::Accept => panic!(),
    }
    let r = d.reason.unwrap();
    assert_eq!(r.parameter, "smtpd_recipient_restrictions");
    assert_eq!(r.restriction, "check_recipient_access texthash:access");
    assert_eq!(r.key.as_deref(), Some("n421@t.test"));
    assert_eq!(r.value.as_deref(), Some("421 closing"));
    let warn = rcpt_decision(&p, &c, "warn@t.test");
    assert_eq!(
        warn.notes,
        vec![Note {
            action: "warn",
            text: "warned text".into()
        }]
    );
    // A restriction name as the value speaks with its own text.
    let p2 = policy(
        "actions-unauth",
        "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_relay_before_recipient_restrictions = no\nsmtpd_recipient_restrictions = check_recipient_access inline:{unauth@elsewhere.example=reject_unauth_destination}\n",
        &[],
    );
    assert_eq!(
        rcpt(&p2, &c, "unauth@elsewhere.example"),
        "554 5.7.1 <unauth@elsewhere.example>: Relay access denied"
    );
    // From 127.0.0.1 the restriction list in the value permits.
    assert_eq!(rcpt(&p, &who("127.0.0.1"), "list@t.test"), ok);
}

#[test]
fn message_actions_and_bad_values_are_load_errors() {
    for (value, needle) in [
        (
            "FILTER smtp:[127.0.0.1]:10025",
            "action FILTER acts on the queued message",
        ),
        ("REDIRECT other@t.test", "action REDIRECT"),
        ("250 fine", "is not an access action"),
        (
            "hash:/etc/postfix/foo",
            "do not specify lookup tables inside SMTPD access maps",
        ),
        ("frobnicate", "unknown restriction `frobnicate`"),
        ("undeclared_class", "smtpd_restriction_classes"),
    ] {
        let e = try_policy(
            "badvalues",
            &format!(
                "{BASE}smtpd_recipient_restrictions = check_recipient_access texthash:access\n"
            ),
            &[("access", &format!("# c\nx@t.test {value}\n"))],
        )
        .unwrap_err();
        let text = e
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains(needle), "{value}: {text}");
        assert!(text.contains("access:2:"), "{value}: {text}");
    }
}

#[test]
fn client_lookup_order() {
    let table = "client.example.com REJECT by name
10.20.30.40 OK
10.9.7 REJECT net 10.9.7
10.8 REJECT net 10.8
11 REJECT net 11
2001:db8:1:2:3:4:5 REJECT v6 7 groups
2001:db8:1 REJECT v6 3 groups
2001:db9 REJECT v6 2001:db9
example.net REJECT parent
unknown REJECT no name
";
    let p = policy(
        "clientorder",
        &format!("{BASE}smtpd_client_restrictions = check_client_access texthash:access\n"),
        &[("access", table)],
    );
    let r = |w: Who| rcpt(&p, &w, "u@local.test");
    assert_eq!(
        r(who("10.20.30.40").named("client.example.com")),
        "554 5.7.1 <client.example.com[10.20.30.40]>: Client host rejected: by name"
    );
    assert_eq!(
        r(who("10.20.30.40").named("other.example.org")),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        r(who("10.9.7.1").named("a.b")),
        "554 5.7.1 <a.b[10.9.7.1]>: Client host rejected: net 10.9.7"
    );
    assert_eq!(
        r(who("10.8.1.1").named("a.b")),
        "554 5.7.1 <a.b[10.8.1.1]>: Client host rejected: net 10.8"
    );
    assert_eq!(
        r(who("11.1.1.1").named("a.b")),
        "554 5.7.1 <a.b[11.1.1.1]>: Client host rejected: net 11"
    );
    assert_eq!(
        r(who("2001:db8:1:2:3:4:5:7").named("a.b")),
        "554 5.7.1 <a.b[2001:db8:1:2:3:4:5:7]>: Client host rejected: v6 7 groups"
    );
    assert_eq!(
        r(who("2001:db8:1:9::9").named("a.b")),
        "554 5.7.1 <a.b[2001:db8:1:9::9]>: Client host rejected: v6 3 groups"
    );
    assert_eq!(
        r(who("2001:db9::5").named("a.b")),
        "554 5.7.1 <a.b[2001:db9::5]>: Client host rejected: v6 2001:db9"
    );
    assert_eq!(
        r(who("192.0.2.1").named("mx.example.net")),
        "554 5.7.1 <mx.example.net[192.0.2.1]>: Client host rejected: parent"
    );
    // Trap 11: no rDNS is looked up as `unknown`.
    assert_eq!(
        r(who("192.0.2.1")),
        "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: no name"
    );
    assert!(p.wants_client_name());
}

#[test]
fn helo_lookup_keeps_trailing_dot_and_literals() {
    let p = policy(
        "helo",
        &format!("{BASE}smtpd_helo_restrictions = check_helo_access texthash:helo\n"),
        &[(
            "helo",
            "bad.helo.example REJECT bad helo\n[10.1.1.1] REJECT literal\n10.1.1.2 REJECT naked\n",
        )],
    );
    let r = |h: &str| rcpt(&p, &who("192.0.2.50").helo(Some(h)), "u@local.test");
    assert_eq!(
        r("bad.helo.example"),
        "554 5.7.1 <bad.helo.example>: Helo command rejected: bad helo"
    );
    assert_eq!(
        r("BAD.HELO.EXAMPLE"),
        "554 5.7.1 <BAD.HELO.EXAMPLE>: Helo command rejected: bad helo"
    );
    assert_eq!(r("BAD.HELO.EXAMPLE."), "250 2.1.5 Ok");
    assert_eq!(
        r("x.bad.helo.example"),
        "554 5.7.1 <x.bad.helo.example>: Helo command rejected: bad helo"
    );
    assert_eq!(
        r("[10.1.1.1]"),
        "554 5.7.1 <[10.1.1.1]>: Helo command rejected: literal"
    );
    assert_eq!(
        r("10.1.1.2"),
        "554 5.7.1 <10.1.1.2>: Helo command rejected: naked"
    );
    // Trap 5: no HELO, no HELO checks.
    assert_eq!(
        rcpt(&p, &who("192.0.2.50").helo(None), "u@local.test"),
        "250 2.1.5 Ok"
    );
}

#[test]
fn mail_lookup_order() {
    let table = "ext@t.test REJECT no ext
t3.test REJECT parent t3
someuser@ REJECT user at
mixed@t.test REJECT mixed
<> REJECT null sender key
c550dsn@s.test 550 5.1.1 txt
";
    let p = policy(
        "mailorder",
        &format!("{BASE}recipient_delimiter = +\nsmtpd_sender_restrictions = check_sender_access texthash:access\nsmtpd_recipient_restrictions = check_recipient_access texthash:access\n"),
        &[("access", table)],
    );
    let c = who("192.0.2.50");
    assert_eq!(
        rcpt(&p, &c, "ext+foo@t.test"),
        "554 5.7.1 <ext+foo@t.test>: Recipient address rejected: no ext"
    );
    assert_eq!(
        rcpt(&p, &c, "x@a.t3.test"),
        "554 5.7.1 <x@a.t3.test>: Recipient address rejected: parent t3"
    );
    assert_eq!(
        rcpt(&p, &c, "SomeUser@Other.Where"),
        "554 5.7.1 <SomeUser@Other.Where>: Recipient address rejected: user at"
    );
    assert_eq!(
        rcpt(&p, &c, "MiXeD@T.TeSt"),
        "554 5.7.1 <MiXeD@T.TeSt>: Recipient address rejected: mixed"
    );
    assert_eq!(
        rcpt(&p, &c, "mixed@T.TEST."),
        "554 5.7.1 <mixed@T.TEST.>: Recipient address rejected: mixed"
    );
    assert_eq!(
        rcpt(&p, &c.clone().from(""), "u@local.test"),
        "554 5.7.1 <>: Sender address rejected: null sender key"
    );
    // X.1.1 from a sender table becomes X.1.7.
    assert_eq!(
        rcpt(&p, &c.clone().from("c550dsn@s.test"), "u@local.test"),
        "550 5.1.7 <c550dsn@s.test>: Sender address rejected: txt"
    );
}

/// smtpd looks up the resolved recipient [live].
#[test]
fn mail_lookup_uses_resolved_address() {
    let p = policy(
        "resolved",
        "myhostname = mx.relayguard.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_relay_before_recipient_restrictions = no\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\nsmtpd_recipient_restrictions = check_recipient_access texthash:access\n",
        &[("access", "user@elsewhere@local.test REJECT full internal\nuser@elsewhere REJECT stripped\nu4@x REJECT pct resolved\nuser@mx.relayguard.test REJECT myorigin key\nbare@ REJECT bare at\n")],
    );
    let c = who("203.0.113.9");
    assert_eq!(
        rcpt(&p, &c, "user@elsewhere@local.test"),
        "554 5.7.1 <user@elsewhere@local.test>: Recipient address rejected: stripped"
    );
    assert_eq!(
        rcpt(&p, &c, "u4%x@local.test"),
        "554 5.7.1 <u4%x@local.test>: Recipient address rejected: pct resolved"
    );
    assert_eq!(
        rcpt(&p, &who("127.0.0.1"), "user"),
        "554 5.7.1 <user>: Recipient address rejected: myorigin key"
    );
    assert_eq!(
        rcpt(&p, &who("127.0.0.1"), "bare"),
        "554 5.7.1 <bare>: Recipient address rejected: bare at"
    );
    assert_eq!(
        rcpt(&p, &who("127.0.0.1"), "bare@local.test"),
        "554 5.7.1 <bare@local.test>: Recipient address rejected: bare at"
    );
}

#[test]
fn parent_style_off_uses_dot_keys() {
    let p = policy(
        "dotkeys",
        &format!("{BASE}parent_domain_matches_subdomains = mynetworks\nsmtpd_recipient_restrictions = check_recipient_access texthash:access\n"),
        &[("access", ".t4.test REJECT dot\nt5.test REJECT plain\n")],
    );
    let c = who("192.0.2.50");
    assert_eq!(
        rcpt(&p, &c, "x@sub.t4.test"),
        "554 5.7.1 <x@sub.t4.test>: Recipient address rejected: dot"
    );
    assert_eq!(rcpt(&p, &c, "x@sub.t5.test"), "250 2.1.5 Ok");
    assert_eq!(
        rcpt(&p, &c, "x@t5.test"),
        "554 5.7.1 <x@t5.test>: Recipient address rejected: plain"
    );
}

/// Trap 10 and 32: pattern tables see only the full key, lower-cased.
#[test]
fn pattern_tables_full_key_only() {
    let p = policy(
        "patterns",
        &format!("{BASE}recipient_delimiter = +\nsmtpd_client_restrictions = check_client_access regexp:client.re\nsmtpd_sender_restrictions = check_sender_access regexp:sender.re\nsmtpd_recipient_restrictions = check_recipient_access pcre:rcpt.pcre, check_recipient_access regexp:case.re\n"),
        &[
            ("client.re", "/^203\\.0\\.114$/ REJECT prefix\n/^203\\.0\\.114\\.9$/ REJECT full\n"),
            ("sender.re", "/^spam\\.example$/ REJECT domain only\n/@spam\\.example$/ REJECT at domain\n"),
            ("rcpt.pcre", "/^joe@ext\\.example$/ REJECT joe\n"),
            ("case.re", "/^BIG@/i REJECT case-sensitive\n"),
        ],
    );
    assert_eq!(
        rcpt(&p, &who("203.0.114.10"), "u@local.test"),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        rcpt(&p, &who("203.0.114.9"), "u@local.test"),
        "554 5.7.1 <unknown[203.0.114.9]>: Client host rejected: full"
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.1").from("a@spam.example"), "u@local.test"),
        "554 5.7.1 <a@spam.example>: Sender address rejected: at domain"
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.1"), "joe+x@ext.example"),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.1"), "joe@ext.example"),
        "554 5.7.1 <joe@ext.example>: Recipient address rejected: joe"
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.1"), "BIG@local.test"),
        "250 2.1.5 Ok"
    );
}

#[test]
fn cidr_inline_static_tables_in_restrictions() {
    let p = policy(
        "cidrinline",
        &format!("{BASE}smtpd_client_restrictions = check_client_access cidr:c.cidr, check_client_access inline:{{{{192.0.2.9 = REJECT inline two words}}}}\nsmtpd_sender_restrictions = check_sender_access static:DUNNO, check_sender_access static:{{REJECT static text}}\n"),
        &[("c.cidr", "192.0.2.0/28 REJECT first block\n[2001:db8::]/32 REJECT v6 block\n")],
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.5"), "u@local.test"),
        "554 5.7.1 <unknown[192.0.2.5]>: Client host rejected: first block"
    );
    assert_eq!(
        rcpt(&p, &who("2001:db8::1"), "u@local.test"),
        "554 5.7.1 <unknown[2001:db8::1]>: Client host rejected: v6 block"
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.9"), "u@local.test"),
        "554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: first block"
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.99"), "u@local.test"),
        "554 5.7.1 <s@sender.example>: Sender address rejected: static text"
    );
}

/// Forum problem 3 / reference section 5: localhost may send only to local domains.
#[test]
fn forum_local_only_class() {
    let conf = format!(
        "{BASE}smtpd_restriction_classes = local_only\nlocal_only = check_recipient_access texthash:local_domains, reject\nsmtpd_recipient_restrictions =\n    check_client_access texthash:rc_clients,\n    check_sender_access texthash:rc_senders\n"
    );
    let p = policy(
        "localonly",
        &conf,
        &[
            ("local_domains", "local.test OK\n"),
            ("rc_clients", "127.0.0.1 local_only\n"),
            ("rc_senders", "foo@sender.example local_only\n"),
        ],
    );
    let lh = who("127.0.0.1").named("localhost");
    assert_eq!(rcpt(&p, &lh, "user@local.test"), "250 2.1.5 Ok");
    let d = rcpt_decision(&p, &lh, "user@remote.example");
    assert_eq!(
        shown(&d, ""),
        "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied"
    );
    let r = d.reason.unwrap();
    assert_eq!(r.restriction, "check_client_access texthash:rc_clients");
    assert_eq!(
        (r.key.as_deref(), r.value.as_deref()),
        (Some("127.0.0.1"), Some("local_only"))
    );
    assert_eq!(r.via, vec!["local_only".to_string(), "reject".to_string()]);
    assert_eq!(
        rcpt(
            &p,
            &who("127.0.0.2").named("localhost"),
            "user@remote.example"
        ),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        rcpt(
            &p,
            &who("127.0.0.2").from("foo@sender.example"),
            "user@remote.example"
        ),
        "554 5.7.1 <foo@sender.example>: Sender address rejected: Access denied"
    );
    // Trap 34: a domain key matches subdomains by default.
    assert_eq!(rcpt(&p, &lh, "user@sub.local.test"), "250 2.1.5 Ok");
    // Undeclared class: load error with the hint.
    let e = try_policy(
        "localonly-undeclared",
        &conf.replace("smtpd_restriction_classes = local_only\n", ""),
        &[
            ("local_domains", "local.test OK\n"),
            ("rc_clients", "127.0.0.1 local_only\n"),
            ("rc_senders", "x OK\n"),
        ],
    )
    .unwrap_err();
    let text = e
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("unknown parameter `local_only`"), "{text}");
    assert!(
        text.contains("rc_clients:1: `texthash:rc_clients`: unknown restriction `local_only`"),
        "{text}"
    );
}

#[test]
fn access_map_codes_apply_to_table_reject_word() {
    let p = policy(
        "mapcodes",
        &format!("{BASE}reject_code = 550\naccess_map_reject_code = 553\naccess_map_defer_code = 452\nsmtpd_recipient_restrictions = check_recipient_access inline:{{{{a@t.test=reject}}, {{b@t.test=DEFER}}, {{c@t.test=defer}}}}, reject\n"),
        &[],
    );
    let c = who("192.0.2.1");
    assert_eq!(
        rcpt(&p, &c, "a@t.test"),
        "553 5.7.1 <a@t.test>: Recipient address rejected: Access denied"
    );
    assert_eq!(
        rcpt(&p, &c, "b@t.test"),
        "452 4.7.1 <b@t.test>: Recipient address rejected: Access denied"
    );
    assert_eq!(
        rcpt(&p, &c, "c@t.test"),
        "452 4.7.1 <c@t.test>: Recipient address rejected: Access denied"
    );
    assert_eq!(
        rcpt(&p, &c, "d@local.test"),
        "550 5.7.1 <d@local.test>: Recipient address rejected: Access denied"
    );
}

#[test]
fn regexp_substitution_reaches_the_reply() {
    let p = policy(
        "resubst",
        &format!("{BASE}smtpd_sender_restrictions = check_sender_access regexp:s.re\n"),
        &[("s.re", "/^(.*)@spam\\.example$/ REJECT user $1 is spam\n")],
    );
    assert_eq!(
        rcpt(
            &p,
            &who("192.0.2.1").from("Joe@SPAM.example"),
            "u@local.test"
        ),
        "554 5.7.1 <Joe@SPAM.example>: Sender address rejected: user joe is spam"
    );
}

/// check_sasl_access: the login name as one key, in its own voice; without SASL, Postfix's
/// "ignored" warning and no decision.
#[test]
fn check_sasl_access_looks_up_the_login() {
    let rules = "smtpd_recipient_restrictions = check_sasl_access inline:{{ALICE=REJECT suspended}, bob=OK}, reject\n";
    let p = policy(
        "sasl-access",
        &format!("{BASE}smtpd_sasl_auth_enable = yes\n{rules}"),
        &[],
    );
    let mut w = who("203.0.113.5");
    w.login = Some("alice".into());
    assert_eq!(
        rcpt(&p, &w, "x@t.test"),
        "554 5.7.1 <alice>: SASL login name rejected: suspended"
    );
    w.login = Some("bob".into());
    assert_eq!(rcpt(&p, &w, "x@t.test"), "250 2.1.5 Ok");
    w.login = None;
    assert_eq!(
        rcpt(&p, &w, "x@t.test"),
        "554 5.7.1 <x@t.test>: Recipient address rejected: Access denied"
    );
    let off = policy("sasl-access-off", &format!("{BASE}{rules}"), &[]);
    w.login = Some("alice".into());
    let d = rcpt_decision(&off, &w, "x@t.test");
    assert_eq!(
        d.notes,
        vec![Note {
            action: "warning",
            text: "restriction `check_sasl_access' ignored: no SASL support".into()
        }]
    );
}

/// Issue 12: a queued-message action is refused naming its entry (key, action, file:line);
/// listed in the MTA-action tables, HOLD is DUNNO as in Postfix (the hit ends that table, the
/// next restriction decides) while the table's other entries decide as usual, and DISCARD,
/// which decides, stays refused.
#[test]
fn message_actions_left_to_the_mta() {
    let dir = scratch("mtaactions");
    std::fs::write(
        dir.join("access"),
        "held@t.test HOLD quarantine\nbad@t.test REJECT no\nt.test REJECT domain\n",
    )
    .unwrap();
    let spec = format!("texthash:{}/access", dir.display());
    let main = format!("{BASE}smtpd_recipient_restrictions = check_recipient_access {spec}, check_recipient_access inline:{{{{held@t.test=REJECT second}}}}\n");
    let map = parse_main_cf(&main, &dir.join("main.cf")).unwrap();
    let errors: Vec<String> = Policy::compile(&map)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errors,
        [format!("{}/access:1: table `{spec}`: entry `held@t.test HOLD quarantine`: action HOLD acts on the queued message, which relayguard (a proxy without a queue) cannot do (Postfix's verdict for HOLD is DUNNO: keep this restriction on the MTA too and list the table in [tables] mta_actions, so that relayguard answers DUNNO and the MTA applies HOLD)", dir.display())]
    );
    let host = HostInfo::loopback();
    let p = Policy::compile_in_config(
        &map,
        &host,
        &[],
        &Default::default(),
        std::slice::from_ref(&spec),
    )
    .unwrap();
    let c = who("192.0.2.9");
    assert_eq!(
        rcpt(&p, &c, "held@t.test"),
        "554 5.7.1 <held@t.test>: Recipient address rejected: second"
    );
    assert_eq!(
        rcpt(&p, &c, "bad@t.test"),
        "554 5.7.1 <bad@t.test>: Recipient address rejected: no"
    );
    assert_eq!(
        rcpt(&p, &c, "other@t.test"),
        "554 5.7.1 <other@t.test>: Recipient address rejected: domain"
    );
    std::fs::write(dir.join("access"), "gone@t.test DISCARD\n").unwrap();
    let errors: Vec<String> =
        Policy::compile_in_config(&map, &host, &[], &Default::default(), &[spec])
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
    assert!(
        errors.len() == 1
            && errors[0].contains("entry `gone@t.test DISCARD`: action DISCARD")
            && errors[0].contains("DISCARD decides"),
        "{errors:?}"
    );
}
