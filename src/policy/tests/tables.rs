//! Table syntax as main.cf and table files write it: inline rules in braces, continuation lines.

use super::*;

const BASE: &str = "myhostname = mx.relayguard.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\nrelay_domains = static:all\n";

/// Postfix 3.7 reads `cidr:{ {rule}, {rule} }`, and the same for regexp and pcre, as the
/// lines of a table file (dict_stream.c); relayguard read the braces as a file name.
#[test]
fn inline_pattern_tables() {
    let p = policy(
        "inlinepattern",
        &format!(
            "{BASE}smtpd_client_restrictions = check_client_access cidr:{{ {{192.0.2.0/24 REJECT text with  two spaces}}, {{0.0.0.0/0 OK}} }}\n\
             smtpd_helo_restrictions = check_helo_access regexp:{{{{/^bad\\.example$$/ REJECT regexp says no}}, {{if /\\.test$$/}} {{/^a\\./ REJECT in if}} {{endif}}}}\n\
             smtpd_sender_restrictions = check_sender_access pcre:{{ {{ /^(\\w+)@spam\\.example$$/ REJECT spammer $$1 }} }}\n"
        ),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("192.0.2.7"), "u@local.test"),
        "554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: text with  two spaces"
    );
    // 0.0.0.0/0 OK ends the client stage; the HELO stage still runs.
    let c = who("198.51.100.1");
    assert_eq!(
        helo_rcpt(&c, "bad.example", &p),
        "554 5.7.1 <bad.example>: Helo command rejected: regexp says no"
    );
    assert_eq!(
        helo_rcpt(&c, "a.b.test", &p),
        "554 5.7.1 <a.b.test>: Helo command rejected: in if"
    );
    assert_eq!(helo_rcpt(&c, "a.b.example", &p), "250 2.1.5 Ok");
    assert_eq!(
        rcpt(&p, &c.clone().from("joe@spam.example"), "u@local.test"),
        "554 5.7.1 <joe@spam.example>: Sender address rejected: spammer joe"
    );
}

fn helo_rcpt(w: &Who, helo: &str, p: &Policy) -> String {
    rcpt(p, &w.clone().helo(Some(helo)), "u@local.test")
}

/// Postfix refuses a rule written without its braces ("no '{' at start of text") and an
/// unbalanced group; the map would be unavailable at run time (451 4.3.5), so it is a load
/// error here, at the parameter's line.
#[test]
fn inline_pattern_table_errors() {
    for (spec, why) in [
        (
            "cidr:{192.0.2.0/24 REJECT}",
            "no '{' at start of text in \"192.0.2.0/24\"",
        ),
        (
            "cidr:{ {192.0.2.0/24 REJECT}",
            "missing '}' in \"{ {192.0.2.0/24 REJECT}\"",
        ),
        (
            "regexp:{ {/a/ REJECT} }x",
            "syntax error after '}' in \"{ {/a/ REJECT} }x\"",
        ),
        (
            "cidr:{ {192.0.2.1/24 REJECT} }",
            "rule 1: non-null host address bits",
        ),
    ] {
        let e = try_policy(
            "inlineerr",
            &format!("{BASE}smtpd_client_restrictions = check_client_access {spec}\n"),
            &[],
        )
        .unwrap_err();
        let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|s| s.contains("main.cf:5: table `") && s.contains(spec) && s.contains(why)),
            "{spec}: {shown:?}"
        );
    }
}

/// readllines() joins a continuation line as it stands: the newline goes, the whitespace
/// around it stays, and a comment line in between is skipped (`postmap -q` [live]).
#[test]
fn continuation_lines_keep_their_whitespace() {
    let p = policy(
        "continuation",
        &format!("{BASE}smtpd_recipient_restrictions = check_recipient_access texthash:rcpts, check_client_access cidr:c.cidr\n"),
        &[
            (
                "rcpts",
                "retired@local.test REJECT This address\n    is retired\nfoo@local.test REJECT x # not a comment  \n  continued\n# comment\n\tmore\n",
            ),
            ("c.cidr", "0.0.0.0/0 REJECT cidr\n    continued   text\n"),
        ],
    );
    let c = who("192.0.2.1");
    assert_eq!(
        rcpt(&p, &c, "retired@local.test"),
        "554 5.7.1 <retired@local.test>: Recipient address rejected: This address    is retired"
    );
    assert_eq!(
        rcpt(&p, &c, "foo@local.test"),
        // The tab stays in the value; the reply shows it as a space, as Postfix's does [live].
        "554 5.7.1 <foo@local.test>: Recipient address rejected: x # not a comment    continued more"
    );
    assert_eq!(
        rcpt(&p, &c, "u@local.test"),
        "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: cidr    continued   text"
    );
}
