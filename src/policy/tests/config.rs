//! Load-time errors, warnings and the scripted-session trace.

use super::*;
use crate::session::phase::Rules;
use crate::session::trace::{trace, Script};

const BASE: &str =
    "myhostname = mx.relayguard.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\n";

#[test]
fn unknown_and_unimplemented_names() {
    let dir = scratch("names");
    let e = errors("names", &format!("{BASE}mynetwork = 10.0.0.0/8\nsmtpd_client_connection_rate_limit = 5\nfrobnicate_everything = yes\n"));
    let main = dir.join("main.cf");
    assert!(
        e.contains(&format!(
            "{}:4: unknown parameter `mynetwork` (did you mean `mynetworks`?)",
            main.display()
        )),
        "{e:?}"
    );
    assert!(e.iter().any(|l| l.starts_with(&format!("{}:5: Postfix parameter `smtpd_client_connection_rate_limit` is not implemented by relayguard", main.display()))), "{e:?}");
    assert!(
        e.iter()
            .any(|l| l.contains(":6: unknown parameter `frobnicate_everything`")),
        "{e:?}"
    );
    // Names implemented elsewhere in relayguard are accepted when the caller says so.
    let map = parse_main_cf(
        &format!("{BASE}smtpd_client_connection_rate_limit = 5\n"),
        Path::new("/m"),
    )
    .unwrap();
    let r = Policy::compile_with(
        &map,
        &HostInfo::loopback(),
        &["smtpd_client_connection_rate_limit"],
    );
    assert!(r.is_ok(), "{:?}", r.err());
}

#[test]
fn restriction_errors_have_hints() {
    let e = errors(
        "restr",
        &format!("{BASE}smtpd_relay_restrictions = permit_mynetwork, reject_unauth_destination\n"),
    );
    assert!(e[0].ends_with(":4: `smtpd_relay_restrictions`: unknown restriction `permit_mynetwork` (did you mean `permit_mynetworks`?)"), "{e:?}");
    let e = errors("restr2", &format!("{BASE}smtpd_recipient_restrictions = check_etrn_access texthash:certs, reject_unauth_destination\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("`check_etrn_access` is a Postfix restriction relayguard does not implement"),
        "{e:?}"
    );
}

#[test]
fn relay_control_is_required() {
    let e = errors(
        "norelay",
        &format!("{BASE}smtpd_relay_restrictions = permit_mynetworks, permit\n"),
    );
    assert!(e[0].ends_with(":4: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains"), "{e:?}");
    // Inside a class counts.
    assert!(try_policy("relayclass", &format!("{BASE}smtpd_restriction_classes = rc\nrc = reject_unauth_destination\nsmtpd_relay_restrictions = permit_mynetworks, rc\n"), &[]).is_ok());
}

#[test]
fn tables_errors_and_notices() {
    let e = errors("tables", &format!("{BASE}smtpd_client_restrictions = check_client_access texthash:missing, check_client_access memcache:/etc/x.cf, check_client_access hashh:/x\n"));
    assert!(
        e.iter()
            .any(|l| l.contains("table `texthash:missing`: cannot read")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("table type `memcache` is not supported")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("unknown table type `hashh` (did you mean `hash`?)")),
        "{e:?}"
    );
    let p = policy(
        "hashnotice",
        &format!("{BASE}smtpd_client_restrictions = check_client_access hash:access\n"),
        &[("access", "10.0.0.1 REJECT\n")],
    );
    assert!(p.warnings().iter().any(|w| w
        .message
        .contains("does not read Berkeley DB or LMDB files")));
    assert_eq!(
        rcpt(&p, &who("10.0.0.1"), "u@local.test"),
        "554 5.7.1 <unknown[10.0.0.1]>: Client host rejected: Access denied"
    );
}

#[test]
fn dead_restrictions_and_lookalike_networks_warn() {
    let p = policy("dead", &format!("{BASE}mynetworks = 127.0.0.0/8 10.0.0.0/8x\nsmtpd_relay_restrictions = permit_mynetworks, reject, permit_sasl_authenticated\n"), &[]);
    let w: Vec<String> = p.warnings().iter().map(|w| w.message.clone()).collect();
    assert!(
        w.iter()
            .any(|m| m == "restriction `permit_sasl_authenticated' after `reject' is ignored"),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("\"10.0.0.0/8x\" is not a network")),
        "{w:?}"
    );
}

#[test]
fn trace_of_forum_problem_1() {
    let p = policy(
        "trace1",
        &format!("{BASE}mynetworks = 127.0.0.0/8 !192.168.87.9 192.168.87.0/24\nsmtpd_relay_restrictions = permit_mynetworks, reject\n"),
        &[],
    );
    let mut s = Script::new(Client::unnamed("192.168.87.9".parse().unwrap(), 1));
    s.helo = Some("c.example".into());
    s.sender = Some("a@b.example".into());
    s.recipients = vec!["x@elsewhere.example".into(), "postmaster".into()];
    s.data = true;
    let t = trace(&p, &Rules::default(), &s);
    let lines: Vec<(&str, &str)> = t
        .steps
        .iter()
        .map(|s| (s.stage, s.reply.line.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("CONNECT", "220 mx.relayguard.test ESMTP"),
            ("EHLO", "250 mx.relayguard.test"),
            ("MAIL", "250 2.1.0 Ok"),
            (
                "RCPT",
                "554 5.7.1 <x@elsewhere.example>: Recipient address rejected: Access denied"
            ),
            ("RCPT", "250 2.1.5 Ok"),
            ("DATA", "354 End data with <CR><LF>.<CR><LF>"),
            ("END-OF-MESSAGE", "250 2.0.0 Ok: queued"),
        ]
    );
    let rcpt = &t.steps[3];
    let relay = rcpt
        .lists
        .iter()
        .find(|l| l.parameter == "smtpd_relay_restrictions")
        .unwrap();
    assert_eq!(relay.verdict, "reject");
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["auth_offered"], serde_json::json!(false));
    assert_eq!(json["client"], serde_json::json!("unknown[192.168.87.9]"));
    assert_eq!(
        json["steps"][3]["reason"]["restriction"],
        serde_json::json!("reject")
    );
    assert_eq!(
        json["steps"][3]["reply"]["enhanced"],
        serde_json::json!("5.7.1")
    );
}

#[test]
fn trace_with_delay_reject_no_and_sasl_gate() {
    let p = policy(
        "trace2",
        &format!("{BASE}smtpd_delay_reject = no\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_exceptions_networks = !10.0.0.0/8 0.0.0.0/0\nsmtpd_client_restrictions = check_client_access inline:{{{{203.0.113.9 = 421 go away}}}}\n"),
        &[],
    );
    let mut s = Script::new(Client::unnamed("198.51.100.1".parse().unwrap(), 1));
    s.helo = Some("c.example".into());
    s.login = Some("alice".into());
    s.sender = Some("a@b.example".into());
    s.recipients = vec!["u@local.test".into()];
    let t = trace(&p, &Rules::default(), &s);
    assert!(!t.auth_offered);
    let auth = &t.steps[2];
    assert_eq!(
        (auth.stage, auth.reply.line.as_str()),
        ("AUTH", "503 5.5.1 Error: authentication not enabled")
    );
    assert_eq!(
        auth.reason.as_ref().unwrap().parameter,
        "smtpd_sasl_exceptions_networks"
    );

    s.client = Client::unnamed("203.0.113.9".parse().unwrap(), 1);
    let t = trace(&p, &Rules::default(), &s);
    assert_eq!(t.steps.len(), 1);
    assert_eq!(
        t.steps[0].reply.line,
        "421 4.7.1 <unknown[203.0.113.9]>: Client host rejected: go away"
    );
    assert!(t.steps[0].closes);
}

#[test]
fn class_recursion_and_tables_in_values_are_load_errors() {
    let e = errors("recursion", &format!("{BASE}smtpd_restriction_classes = a, b\na = b\nb = check_client_access inline:{{x=a}}, reject\nsmtpd_relay_restrictions = a, reject_unauth_destination\n"));
    assert!(
        e.iter()
            .any(|l| l.contains("restriction class `a` calls itself")),
        "{e:?}"
    );
    let e = try_policy(
        "tablevalue",
        &format!("{BASE}smtpd_recipient_restrictions = check_recipient_access texthash:access\n"),
        &[("access", "x@t.test check_sender_access texthash:other\n")],
    )
    .unwrap_err();
    assert!(e[0].to_string().contains("access:1: table `texthash:access`: value \"check_sender_access texthash:other\" names a lookup table"), "{}", e[0]);
}

/// A restriction that takes no argument leaves the next word alone: `reject_maps_rbl` used to
/// swallow `permit_mynetwork`, so its typo went unreported. `reject_rbl` (the old name of
/// reject_rbl_client) does take one.
#[test]
fn unimplemented_restrictions_take_only_their_own_argument() {
    let e = errors(
        "noarg",
        &format!("{BASE}smtpd_recipient_restrictions = reject_maps_rbl, permit_mynetwork, check_etrn_access texthash:logins, reject_unauth_destination\n"),
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains("unknown restriction `reject_maps_rbl` (`reject_maps_rbl` is a Postfix restriction relayguard does not implement)"), "{e:?}");
    assert!(
        e[1].contains("unknown restriction `permit_mynetwork` (did you mean `permit_mynetworks`?)"),
        "{e:?}"
    );
    assert!(e[2].contains("unknown restriction `check_etrn_access` (`check_etrn_access` is a Postfix restriction relayguard does not implement)"), "{e:?}");
}

/// The no-SASL warning names the restriction written, as smtpd's "restriction `%s' ignored".
#[test]
fn login_mismatch_warning_names_the_restriction() {
    let p = policy(
        "loginwarn",
        &format!("{BASE}smtpd_sender_login_maps = static:alice\nsmtpd_sender_restrictions = reject_authenticated_sender_login_mismatch, reject_known_sender_login_mismatch\n"),
        &[],
    );
    let w: Vec<&str> = p.warnings().iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        w,
        [
            "restriction `reject_authenticated_sender_login_mismatch' ignored: no SASL support (smtpd_sasl_auth_enable = no)",
            "restriction `reject_known_sender_login_mismatch' ignored: no SASL support (smtpd_sasl_auth_enable = no)",
        ],
        "{w:?}"
    );
}

/// Without smtpd_sender_login_maps a login-mismatch restriction sees an empty map, as smtpd
/// does (docker-mailserver ships its main.cf so): it loads, with a warning that says so.
#[test]
fn login_mismatch_without_login_maps_loads_with_a_warning() {
    let p = policy(
        "loginnomaps",
        &format!("{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_sender_restrictions = reject_authenticated_sender_login_mismatch\n"),
        &[],
    );
    let w: Vec<&str> = p.warnings().iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        w,
        ["smtpd_sender_login_maps is not set: `reject_authenticated_sender_login_mismatch' finds no sender owned by any login"],
        "{w:?}"
    );
}

/// `hash:$config_directory/access` in a hand-written [policy] is Postfix's /etc/postfix path
/// (Debian's build), not `/access`.
#[test]
fn directory_parameters_expand_to_postfix_s_defaults() {
    let e = errors(
        "confdir",
        &format!("{BASE}smtpd_client_restrictions = check_client_access texthash:$config_directory/relayguard-test-no-such-table\n"),
    );
    assert!(
        e.iter()
            .any(|e| e.contains("/etc/postfix/relayguard-test-no-such-table")),
        "{e:?}"
    );
}
