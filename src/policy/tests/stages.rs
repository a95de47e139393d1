//! Stages, smtpd_delay_reject, deferrals, HELO/sender checks and the SASL gate.

use super::*;

const BASE: &str =
    "myhostname = mx.relayguard.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\n";

fn eval(
    p: &Policy,
    stage: Stage,
    w: &Who,
    rcpt: Option<&str>,
    st: &mut TransactionState,
) -> Decision {
    p.evaluate(stage, &w.facts(rcpt), st)
}

#[test]
fn delay_reject_yes_moves_rejects_to_rcpt() {
    let p = policy(
        "delayyes",
        &format!("{BASE}smtpd_client_restrictions = reject\n"),
        &[],
    );
    let w = who("203.0.113.9");
    let mut st = TransactionState::default();
    for stage in [Stage::Connect, Stage::Helo, Stage::Mail] {
        assert_eq!(eval(&p, stage, &w, None, &mut st).outcome, Outcome::Accept);
    }
    let d = eval(&p, Stage::Rcpt, &w, Some("u@local.test"), &mut st);
    assert_eq!(
        shown(&d, ""),
        "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied"
    );
    assert_eq!(d.reason.unwrap().parameter, "smtpd_client_restrictions");
    // Repeated for every RCPT; postmaster bypasses everything.
    assert_eq!(
        shown(
            &eval(&p, Stage::Rcpt, &w, Some("v@local.test"), &mut st),
            ""
        ),
        "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied"
    );
    assert_eq!(
        shown(
            &eval(&p, Stage::Rcpt, &w, Some("Postmaster"), &mut st),
            "250 2.1.5 Ok"
        ),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        shown(
            &eval(&p, Stage::Rcpt, &w, Some("postmaster@local.test"), &mut st),
            "250"
        ),
        "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied"
    );
}

#[test]
fn delay_reject_no_rejects_at_each_stage() {
    let p = policy("delayno", &format!("{BASE}smtpd_delay_reject = no\nsmtpd_client_restrictions = check_client_access inline:{{127.0.0.1=REJECT}}\nsmtpd_helo_restrictions = check_helo_access inline:{{{{bad.helo.example=REJECT bad helo}}}}\nsmtpd_sender_restrictions = check_sender_access inline:{{{{bad@s.test=REJECT bad sender}}}}\n"), &[]);
    let lh = who("127.0.0.1").named("localhost");
    let mut st = TransactionState::default();
    let d = eval(&p, Stage::Connect, &lh, None, &mut st);
    assert_eq!(
        shown(&d, ""),
        "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied"
    );
    let after = eval(&p, Stage::Mail, &lh, None, &mut st);
    assert_eq!(
        shown(&after, ""),
        "503 5.7.0 Error: access denied for localhost[127.0.0.1]"
    );
    assert_eq!(
        st.access_denied().unwrap().to_string(),
        "503 5.7.0 Error: access denied for localhost[127.0.0.1]"
    );

    let c = who("192.0.2.50").helo(Some("bad.helo.example"));
    let mut st = TransactionState::default();
    assert_eq!(
        eval(&p, Stage::Connect, &c, None, &mut st).outcome,
        Outcome::Accept
    );
    assert_eq!(
        shown(&eval(&p, Stage::Helo, &c, None, &mut st), ""),
        "554 5.7.1 <bad.helo.example>: Helo command rejected: bad helo"
    );
    let c = who("192.0.2.50").helo(None).from("bad@s.test");
    assert_eq!(
        shown(&eval(&p, Stage::Mail, &c, None, &mut st), ""),
        "554 5.7.1 <bad@s.test>: Sender address rejected: bad sender"
    );
    // Not re-checked at RCPT.
    assert_eq!(
        shown(
            &eval(&p, Stage::Rcpt, &c, Some("u@local.test"), &mut st),
            "250 2.1.5 Ok"
        ),
        "250 2.1.5 Ok"
    );
}

#[test]
fn ok_ends_only_its_stage() {
    let p = policy(
        "okstage",
        &format!("{BASE}smtpd_client_restrictions = permit\nsmtpd_helo_restrictions = reject\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("203.0.113.9"), "u@local.test"),
        "554 5.7.1 <c.example>: Helo command rejected: Access denied"
    );
    let p = policy(
        "okstage2",
        &format!("{BASE}smtpd_client_restrictions = permit\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("203.0.113.9"), "u@elsewhere.example"),
        "454 4.7.1 <u@elsewhere.example>: Relay access denied"
    );
}

#[test]
fn defer_if_permit_and_defer_if_reject_scopes() {
    let p = policy(
        "dip",
        &format!("{BASE}smtpd_client_restrictions = defer_if_permit\n"),
        &[],
    );
    let c = who("203.0.113.9");
    assert_eq!(
        rcpt(&p, &c, "u@local.test"),
        "450 4.7.0 <unknown[203.0.113.9]>: Client host rejected: defer_if_permit requested"
    );
    assert_eq!(
        rcpt(&p, &c, "u@elsewhere.example"),
        "454 4.7.1 <u@elsewhere.example>: Relay access denied"
    );
    let p = policy("dir1", &format!("{BASE}smtpd_client_restrictions = defer_if_reject\nsmtpd_recipient_restrictions = reject\n"), &[]);
    assert_eq!(
        rcpt(&p, &c, "u@local.test"),
        "554 5.7.1 <u@local.test>: Recipient address rejected: Access denied"
    );
    let p = policy(
        "dir2",
        &format!("{BASE}smtpd_recipient_restrictions = defer_if_reject, reject\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &c, "u@local.test"),
        "450 4.7.0 <u@local.test>: Recipient address rejected: defer_if_reject requested"
    );
    let p = policy("dir3", &format!("{BASE}smtpd_relay_restrictions = defer_if_reject, permit_mynetworks, reject_unauth_destination\n"), &[]);
    assert_eq!(
        rcpt(&p, &c, "u@elsewhere.example"),
        "450 4.7.0 <u@elsewhere.example>: Recipient address rejected: defer_if_reject requested"
    );
}

#[test]
fn warn_if_reject_only_notes() {
    let p = policy(
        "warnif",
        &format!("{BASE}smtpd_recipient_restrictions = warn_if_reject reject_non_fqdn_recipient\n"),
        &[],
    );
    let d = rcpt_decision(&p, &who("127.0.0.1"), "u@local");
    assert_eq!(d.outcome, Outcome::Accept);
    assert_eq!(
        d.notes,
        vec![Note {
            action: "reject_warning",
            text: "504 5.5.2 <u@local>: Recipient address rejected: need fully-qualified address"
                .into()
        }]
    );
}

#[test]
fn non_fqdn_sender_and_recipient() {
    let p = policy("nonfqdn", &format!("{BASE}smtpd_sender_restrictions = reject_non_fqdn_sender\nsmtpd_recipient_restrictions = reject_non_fqdn_recipient\n"), &[]);
    let c = who("127.0.0.1");
    assert_eq!(
        rcpt(&p, &c.clone().from("user"), "u@local.test"),
        "504 5.5.2 <user>: Sender address rejected: need fully-qualified address"
    );
    assert_eq!(
        rcpt(&p, &c.clone().from("user@host"), "u@local.test"),
        "504 5.5.2 <user@host>: Sender address rejected: need fully-qualified address"
    );
    assert_eq!(
        rcpt(&p, &c.clone().from(""), "u@local.test"),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        rcpt(&p, &c, "u@local"),
        "504 5.5.2 <u@local>: Recipient address rejected: need fully-qualified address"
    );
}

#[test]
fn sender_login_mismatch() {
    let p = policy(
        "loginmismatch",
        &format!("{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_sender_login_maps = texthash:logins\nsmtpd_sender_restrictions = reject_sender_login_mismatch\n"),
        &[("logins", "alice@local.test alice\nshared@local.test alice, bob\n@team.test carol\n")],
    );
    let c = who("192.0.2.1");
    let r = |login: Option<&str>, from: &str| {
        let mut w = c.clone().from(from);
        if let Some(l) = login {
            w = w.login(l);
        }
        rcpt(&p, &w, "u@local.test")
    };
    assert_eq!(r(Some("alice"), "alice@local.test"), "250 2.1.5 Ok");
    assert_eq!(r(Some("bob"), "shared@local.test"), "250 2.1.5 Ok");
    assert_eq!(r(Some("carol"), "anyone@team.test"), "250 2.1.5 Ok");
    assert_eq!(
        r(Some("alice"), "bob@local.test"),
        "553 5.7.1 <bob@local.test>: Sender address rejected: not owned by user alice"
    );
    assert_eq!(r(Some("alice"), ""), "250 2.1.5 Ok");
    assert_eq!(
        r(None, "alice@local.test"),
        "553 5.7.1 <alice@local.test>: Sender address rejected: not logged in"
    );
    assert_eq!(r(None, "nobody@else.test"), "250 2.1.5 Ok");
}

/// No smtpd_sender_login_maps is an empty map to smtpd: a logged-in sender is owned by
/// nobody (Postfix 3.7 answers 553 so for docker-mailserver's main.cf), an anonymous one
/// has no owner to need, and reject_known_* finds nothing to compare.
#[test]
fn sender_login_mismatch_without_a_map() {
    let r = |restriction: &str, login: Option<&str>| {
        let p = policy(
            "loginnomap",
            &format!(
                "{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_sender_restrictions = {restriction}\n"
            ),
            &[],
        );
        let mut w = who("192.0.2.1").from("alice@local.test");
        if let Some(l) = login {
            w = w.login(l);
        }
        rcpt(&p, &w, "u@local.test")
    };
    let refused = "553 5.7.1 <alice@local.test>: Sender address rejected: not owned by user alice";
    assert_eq!(r("reject_sender_login_mismatch", Some("alice")), refused);
    assert_eq!(
        r("reject_authenticated_sender_login_mismatch", Some("alice")),
        refused
    );
    assert_eq!(
        r("reject_known_sender_login_mismatch", Some("alice")),
        "250 2.1.5 Ok"
    );
    assert_eq!(r("reject_sender_login_mismatch", None), "250 2.1.5 Ok");
}

#[test]
fn permit_sasl_authenticated_needs_sasl_enabled() {
    let p = policy("sasloff", &format!("{BASE}smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n"), &[]);
    assert_eq!(
        rcpt(
            &p,
            &who("203.0.113.9").login("alice"),
            "u@elsewhere.example"
        ),
        "554 5.7.1 <u@elsewhere.example>: Relay access denied"
    );
    assert!(p.warnings().iter().any(|w| w
        .message
        .contains("permit_sasl_authenticated never matches")));
    let p = policy("saslon", &format!("{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n"), &[]);
    let d = rcpt_decision(
        &p,
        &who("203.0.113.9").login("alice"),
        "u@elsewhere.example",
    );
    assert_eq!(d.outcome, Outcome::Accept);
    assert_eq!(d.reason.unwrap().restriction, "permit_sasl_authenticated");
}

/// Forum problem 2: AUTH only from known networks, and the all-`!` trap.
#[test]
fn sasl_gate() {
    let p = policy("saslgate", &format!("{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_sasl_exceptions_networks = !10.1.0.0/16 !203.0.113.7 0.0.0.0/0 [::]/0\n"), &[]);
    let inside = who("10.1.2.3");
    let known = who("203.0.113.7");
    let outside = who("198.51.100.1");
    assert!(p.offers_auth(&inside.facts(None)));
    assert!(p.offers_auth(&known.facts(None)));
    assert!(!p.offers_auth(&outside.facts(None)));
    let refusal = p.check_auth(&outside.facts(None)).unwrap_err();
    assert_eq!(
        refusal.reply.to_string(),
        "503 5.5.1 Error: authentication not enabled"
    );
    assert_eq!(refusal.kind, AuthRefusalKind::ExceptedNetwork);
    assert_eq!(refusal.reason.parameter, "smtpd_sasl_exceptions_networks");
    assert_eq!(refusal.reason.value.as_deref(), Some("0.0.0.0/0"));
    assert!(p.warnings().is_empty());

    let trap = policy("sasltrap", &format!("{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_sasl_exceptions_networks = !10.1.0.0/16 !203.0.113.7\n"), &[]);
    assert!(trap.offers_auth(&outside.facts(None)));
    let w = &trap.warnings()[0];
    assert_eq!(w.parameter, "smtpd_sasl_exceptions_networks");
    assert!(w.message.contains("matches nobody"));
    assert_eq!(w.fix, "add the networks the exclusions are cut from after them, e.g. `smtpd_sasl_exceptions_networks = !10.1.0.0/16 !203.0.113.7 0.0.0.0/0 [::]/0`");

    let off = policy("saslgate-off", BASE, &[]);
    let r = off.check_auth(&outside.facts(None)).unwrap_err();
    assert_eq!(
        (r.kind, r.reply.to_string().as_str()),
        (
            AuthRefusalKind::NotEnabled,
            "503 5.5.1 Error: authentication not enabled"
        )
    );
    let tls = policy(
        "saslgate-tls",
        &format!("{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_tls_auth_only = yes\n"),
        &[],
    );
    let r = tls.check_auth(&outside.facts(None)).unwrap_err();
    assert_eq!(
        (r.kind, r.reply.to_string().as_str()),
        (
            AuthRefusalKind::TlsRequired,
            "503 5.5.1 Error: authentication not enabled"
        )
    );
    let mut f = outside.facts(None);
    f.tls = true;
    assert!(tls.offers_auth(&f));
}

#[test]
fn data_and_end_of_data() {
    let p = policy("data", &format!("{BASE}smtpd_data_restrictions = reject_unauth_pipelining, reject\nsmtpd_end_of_data_restrictions = defer\n"), &[]);
    let mut c = who("203.0.113.9");
    let mut st = TransactionState::default();
    c.pipelining = true;
    assert_eq!(
        shown(&eval(&p, Stage::Data, &c, None, &mut st), ""),
        "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"
    );
    c.pipelining = false;
    assert_eq!(
        shown(&eval(&p, Stage::Data, &c, None, &mut st), ""),
        "554 5.7.1 <DATA>: Data command rejected: Access denied"
    );
    assert_eq!(
        shown(&eval(&p, Stage::EndOfData, &c, None, &mut st), ""),
        "450 4.3.2 <END-OF-MESSAGE>: End-of-data rejected: Try again later"
    );
    let e = try_policy(
        "data-bare",
        &format!("{BASE}smtpd_data_restrictions = inline:{{x=y}}\n"),
        &[],
    )
    .unwrap_err();
    assert!(
        e[0].to_string()
            .contains("specify one of check_client_access"),
        "{}",
        e[0]
    );
}

/// A defer_if_permit armed by the HELO stage (smtpd_delay_reject = no) is the HELO's: after
/// STARTTLS forgets the HELO it no longer defers a permitted recipient.
#[test]
fn forgetting_the_helo_drops_what_its_stage_armed() {
    let p = policy(
        "forgethelo",
        &format!("{BASE}smtpd_delay_reject = no\nsmtpd_helo_restrictions = check_helo_access inline:{{{{bad.example=defer_if_permit}}}}\nsmtpd_relay_restrictions = permit_mynetworks, reject\n"),
        &[],
    );
    let c = who("127.0.0.1").helo(Some("bad.example"));
    let mut state = TransactionState::default();
    p.evaluate(Stage::Connect, &c.facts(None), &mut state);
    p.evaluate(Stage::Helo, &c.facts(None), &mut state);
    let mut kept = state.clone();
    let armed = p.evaluate(
        Stage::Rcpt,
        &c.facts(Some("x@elsewhere.example")),
        &mut kept,
    );
    assert_eq!(
        shown(&armed, "250 2.1.5 Ok"),
        "450 4.7.1 <bad.example>: Helo command rejected: Service unavailable"
    );
    state.forget_helo();
    let after_tls = c.clone().helo(None);
    let d = p.evaluate(
        Stage::Rcpt,
        &after_tls.facts(Some("x@elsewhere.example")),
        &mut state,
    );
    assert_eq!(shown(&d, "250 2.1.5 Ok"), "250 2.1.5 Ok");
}
