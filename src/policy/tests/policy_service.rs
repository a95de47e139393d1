//! check_policy_service in the engine: how the argument parses, the request text of each stage
//! (postfix-semantics 11.1), how `action=` and the default action become replies (11.2, 11.4),
//! and when the request is made relative to other lookups.

use std::time::Duration;

use super::*;
use crate::policy::pending::{DnsAnswer, FactAnswer, PolicyAnswer};
use crate::policy::policy_service::{Endpoint, PolicyService};

const BASE: &str = "myhostname = mx.local.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";

fn with_policy(test: &str, extra: &str) -> Policy {
    policy(test, &format!("{BASE}{extra}"), &[])
}

/// Evaluates `stage` to the end, answering each policy request with `answer(request text)`
/// and each DNS request with NXDOMAIN; returns the decision and every request made, in order.
fn run(
    p: &Policy,
    stage: Stage,
    facts: &Facts<'_>,
    answer: &dyn Fn(&str) -> Option<&'static str>,
) -> (Decision, Vec<Vec<FactRequest>>) {
    let mut cache = FactCache::default();
    let mut rounds = Vec::new();
    let mut state = TransactionState::default();
    for _ in 0..10 {
        match p.decide(stage, facts, &mut state, &cache) {
            Progress::Decided(d) => return (d, rounds),
            Progress::Needs(needs) => {
                for n in &needs {
                    let a = match n {
                        FactRequest::Policy { request, .. } => FactAnswer::Policy(PolicyAnswer {
                            action: answer(request).map(Into::into),
                            warnings: Vec::new(),
                        }),
                        FactRequest::Dns { .. } => FactAnswer::Dns(DnsAnswer::NxDomain),
                        FactRequest::Table { .. } => {
                            FactAnswer::Table(crate::policy::pending::TableResult::NotFound)
                        }
                    };
                    cache.insert(Fetched {
                        request: n.clone(),
                        answer: a,
                        elapsed: Duration::ZERO,
                        cached: false,
                    });
                }
                rounds.push(needs);
            }
        }
    }
    panic!("no decision after 10 rounds");
}

fn rcpt_with(p: &Policy, to: &str, action: Option<&'static str>) -> (String, Decision) {
    let w = who("192.0.2.50");
    let (d, _) = run(p, Stage::Rcpt, &w.facts(Some(to)), &|_| action);
    (shown(&d, "250 2.1.5 Ok"), d)
}

#[test]
fn parses_endpoints_overrides_and_main_cf_defaults() {
    let p = with_policy(
        "ps_parse",
        "smtpd_policy_service_timeout = 7s\nsmtpd_policy_service_policy_context = submission\nsmtpd_recipient_restrictions = check_policy_service { inet:127.0.0.1:9998, timeout=10s, {default_action = 450 4.7.1 later}, try_limit=3 }, check_policy_service unix:/run/policy.sock\n",
    );
    let services: Vec<&PolicyService> = p
        .stages
        .recipient
        .iter()
        .filter_map(|r| match r {
            Restriction::PolicyService(s) => Some(&**s),
            _ => None,
        })
        .collect();
    let [inet, unix] = services.as_slice() else {
        panic!("two services expected: {services:?}");
    };
    assert_eq!(
        inet.endpoint,
        Endpoint::Inet {
            host: "127.0.0.1".into(),
            port: 9998
        }
    );
    assert_eq!(inet.settings.timeout, Duration::from_secs(10));
    assert_eq!(inet.settings.try_limit, 3);
    assert_eq!(&*inet.settings.default_action, "450 4.7.1 later");
    assert_eq!(&*inet.settings.policy_context, "submission");
    assert_eq!(unix.endpoint, Endpoint::Unix("/run/policy.sock".into()));
    assert_eq!(unix.settings.timeout, Duration::from_secs(7));
    assert_eq!(unix.settings.retry_delay, Duration::from_secs(1));
    assert_eq!(
        &*unix.settings.default_action,
        "451 4.3.5 Server configuration problem"
    );
    assert!(p.can_wait());
}

#[test]
fn refuses_bad_services_at_load() {
    let errs = errors(
        "ps_bad",
        &format!("{BASE}smtpd_recipient_restrictions = check_policy_service {{ inet:127.0.0.1:9998, colour=blue }}, check_policy_service\nsmtpd_policy_service_try_limit = 0\n"),
    );
    let all = errs.join("\n");
    assert!(all.contains("unknown option: \"colour = blue\""), "{all}");
    assert!(all.contains("needs a server"), "{all}");
    assert!(
        all.contains("bad numerical configuration: try_limit = 0"),
        "{all}"
    );
}

#[test]
fn request_text_at_rcpt_is_postfix_s() {
    let p = with_policy(
        "ps_request",
        "smtpd_policy_service_policy_context = submission\nsmtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:9998\n",
    );
    let mut w = who("203.0.113.9").named("client.example.org");
    w.client.reverse_name = "client.example.org".into();
    w.client.port = 54321;
    let recipients = vec!["earlier@local.test".to_string()];
    let mut facts = w.facts(Some("user@local.test"));
    facts.session = SessionFacts {
        server: Some("192.0.2.25:25".parse().unwrap()),
        size: 1234,
        instance: "7a86.6b0470db.38ed6.0",
        recipients: &recipients,
        ..SessionFacts::default()
    };
    let (_, rounds) = run(&p, Stage::Rcpt, &facts, &|_| Some("DUNNO"));
    let [round] = rounds.as_slice() else {
        panic!("{rounds:?}")
    };
    let [FactRequest::Policy {
        service, request, ..
    }] = round.as_slice()
    else {
        panic!("{round:?}")
    };
    assert_eq!(&*service.spec, "inet:127.0.0.1:9998");
    assert_eq!(
        &**request,
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
client_address=203.0.113.9\nclient_name=client.example.org\nclient_port=54321\n\
reverse_client_name=client.example.org\nserver_address=192.0.2.25\nserver_port=25\n\
helo_name=c.example\nsender=s@sender.example\nrecipient=user@local.test\nrecipient_count=0\n\
queue_id=\ninstance=7a86.6b0470db.38ed6.0\nsize=1234\netrn_domain=\nstress=\nsasl_method=\n\
sasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n\
ccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\n\
policy_context=submission\n"
    );
}

/// The request's `name=value` attributes at `stage`, as a list of pairs.
fn attributes(stage: Stage, facts: &Facts<'_>) -> Vec<(String, String)> {
    let p = with_policy(
        "ps_stages",
        "smtpd_client_restrictions = check_policy_service inet:127.0.0.1:9998\nsmtpd_helo_restrictions = check_policy_service inet:127.0.0.1:9998\nsmtpd_sender_restrictions = check_policy_service inet:127.0.0.1:9998\nsmtpd_data_restrictions = check_policy_service inet:127.0.0.1:9998\nsmtpd_end_of_data_restrictions = check_policy_service inet:127.0.0.1:9998\nsmtpd_delay_reject = no\n",
    );
    let (_, rounds) = run(&p, stage, facts, &|_| Some("DUNNO"));
    let Some(FactRequest::Policy { request, .. }) = rounds.first().and_then(|r| r.first()) else {
        panic!("no policy request at {stage:?}: {rounds:?}")
    };
    request
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> &'a str {
    &attrs.iter().find(|(k, _)| k == name).unwrap().1
}

#[test]
fn each_stage_names_its_state_and_what_it_knows() {
    let w = who("192.0.2.50").helo(None);
    let mut connect = w.facts(None);
    connect.esmtp = false;
    connect.sender = None;
    let a = attributes(Stage::Connect, &connect);
    assert_eq!(a.len(), 29);
    assert_eq!(attr(&a, "protocol_state"), "CONNECT");
    assert_eq!(attr(&a, "protocol_name"), "SMTP");
    assert_eq!(attr(&a, "helo_name"), "");
    assert_eq!(attr(&a, "sender"), "");

    let w = who("192.0.2.50");
    let mut helo = w.facts(None);
    helo.sender = None;
    let a = attributes(Stage::Helo, &helo);
    assert_eq!(attr(&a, "protocol_state"), "EHLO");
    assert_eq!(attr(&a, "helo_name"), "c.example");
    helo.esmtp = false;
    let a = attributes(Stage::Helo, &helo);
    assert_eq!(attr(&a, "protocol_state"), "HELO");
    assert_eq!(attr(&a, "protocol_name"), "SMTP");

    let a = attributes(Stage::Mail, &w.facts(None));
    assert_eq!(attr(&a, "protocol_state"), "MAIL");
    assert_eq!(attr(&a, "sender"), "s@sender.example");
    assert_eq!(attr(&a, "recipient"), "");

    let one = vec!["only@local.test".to_string()];
    let two = vec!["a@local.test".to_string(), "b@local.test".to_string()];
    let mut data = w.facts(None);
    data.session.recipients = &one;
    let a = attributes(Stage::Data, &data);
    assert_eq!(attr(&a, "protocol_state"), "DATA");
    assert_eq!(attr(&a, "recipient"), "only@local.test");
    assert_eq!(attr(&a, "recipient_count"), "1");
    data.session.recipients = &two;
    data.session.size = 20;
    let a = attributes(Stage::EndOfData, &data);
    assert_eq!(attr(&a, "protocol_state"), "END-OF-MESSAGE");
    assert_eq!(attr(&a, "recipient"), "");
    assert_eq!(attr(&a, "recipient_count"), "2");
    assert_eq!(attr(&a, "size"), "20");

    let alice = w.clone().login("alice");
    let mut tls = alice.facts(None);
    tls.tls = true;
    tls.session.sasl_method = Some("PLAIN");
    tls.session.sasl_sender = Some("<alice@local.test>");
    tls.session.tls_protocol = Some("TLSv1.3");
    tls.session.tls_cipher = Some("TLS_AES_256_GCM_SHA384");
    tls.session.tls_keysize = 256;
    let a = attributes(Stage::Mail, &tls);
    assert_eq!(attr(&a, "sasl_method"), "PLAIN");
    assert_eq!(attr(&a, "sasl_username"), "alice");
    assert_eq!(attr(&a, "sasl_sender"), "<alice@local.test>");
    assert_eq!(attr(&a, "encryption_protocol"), "TLSv1.3");
    assert_eq!(attr(&a, "encryption_cipher"), "TLS_AES_256_GCM_SHA384");
    assert_eq!(attr(&a, "encryption_keysize"), "256");
}

#[test]
fn actions_give_postfix_s_replies() {
    let p = with_policy(
        "ps_actions",
        "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:23050, reject\n",
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "pdunno@local.test",
            "DUNNO",
            "554 5.7.1 <pdunno@local.test>: Recipient address rejected: Access denied",
        ),
        ("pok@local.test", "OK", "250 2.1.5 Ok"),
        (
            "preject@local.test",
            "REJECT policy says no",
            "554 5.7.1 <preject@local.test>: Recipient address rejected: policy says no",
        ),
        (
            "p550@local.test",
            "550 5.7.9 custom policy text",
            "550 5.7.9 <p550@local.test>: Recipient address rejected: custom policy text",
        ),
        (
            "pdefer@local.test",
            "DEFER_IF_PERMIT policy says later",
            "554 5.7.1 <pdefer@local.test>: Recipient address rejected: Access denied",
        ),
        (
            "pfrob@local.test",
            "frobnicate",
            "451 4.3.5 Server configuration error",
        ),
        ("pempty@local.test", "", "250 2.1.5 Ok"),
        (
            "pgrey@local.test",
            "DEFER_IF_PERMIT Service is unavailable",
            "554 5.7.1 <pgrey@local.test>: Recipient address rejected: Access denied",
        ),
        (
            "prestr@local.test",
            "reject_unauth_destination",
            "554 5.7.1 <prestr@local.test>: Recipient address rejected: Access denied",
        ),
        (
            "pstop@local.test",
            "permit_mynetworks, reject",
            "554 5.7.1 <pstop@local.test>: Recipient address rejected: Access denied",
        ),
    ];
    for (to, action, want) in cases {
        let (got, _) = rcpt_with(&p, to, Some(action));
        assert_eq!(&got, want, "action={action}");
    }
    // Without the trailing reject, an armed DEFER_IF_PERMIT fires at the end of the stage.
    let p = with_policy(
        "ps_dip",
        "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:23050\n",
    );
    let (got, _) = rcpt_with(
        &p,
        "pdefer@local.test",
        Some("DEFER_IF_PERMIT policy says later"),
    );
    assert_eq!(
        got,
        "450 4.7.1 <pdefer@local.test>: Recipient address rejected: policy says later"
    );
    let (got, d) = rcpt_with(&p, "pempty@local.test", Some(""));
    assert_eq!(got, "250 2.1.5 Ok");
    assert_eq!(
        d.notes,
        vec![Note {
            action: "warning",
            text: "access table inet:127.0.0.1:23050 entry  has empty value".into()
        }]
    );
    let (_, d) = rcpt_with(&p, "pfrob@local.test", Some("frobnicate"));
    assert_eq!(d.notes[0].text, "unknown smtpd restriction: \"frobnicate\"");
    let reason = d.reason.unwrap();
    assert_eq!(
        reason.restriction,
        "check_policy_service inet:127.0.0.1:23050"
    );
    assert_eq!(reason.value.as_deref(), Some("frobnicate"));
}

#[test]
fn server_down_applies_the_default_action() {
    let p = with_policy(
        "ps_down",
        "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:23051, check_policy_service { inet:127.0.0.1:23052, default_action=DUNNO }\n",
    );
    let (got, d) = rcpt_with(&p, "user@local.test", None);
    assert_eq!(
        got,
        "451 4.3.5 <user@local.test>: Recipient address rejected: Server configuration problem"
    );
    assert_eq!(d.reason.unwrap().key.as_deref(), Some("default_action"));
    // The DUNNO service is not reached after the first one rejected; on its own it passes.
    let p = with_policy(
        "ps_down_dunno",
        "smtpd_recipient_restrictions = check_policy_service { inet:127.0.0.1:23052, default_action=DUNNO }\n",
    );
    let (got, _) = rcpt_with(&p, "user@local.test", None);
    assert_eq!(got, "250 2.1.5 Ok");
}

#[test]
fn asked_alone_and_in_postfix_s_order() {
    let p = with_policy(
        "ps_order",
        "smtpd_recipient_restrictions = reject_rbl_client zen.test, check_policy_service inet:127.0.0.1:1, reject_rbl_client bl.test, check_policy_service inet:127.0.0.1:2\n",
    );
    let w = who("192.0.2.50");
    let (d, rounds) = run(&p, Stage::Rcpt, &w.facts(Some("u@local.test")), &|_| {
        Some("DUNNO")
    });
    let described: Vec<Vec<String>> = rounds
        .iter()
        .map(|r| r.iter().map(FactRequest::describe).collect())
        .collect();
    // Both DNSBLs at once (DNS may be asked ahead of need), but no server until everything
    // before it is known, since a listing would have rejected first; then each server alone,
    // in list order.
    assert_eq!(
        described,
        vec![
            vec!["DNS A 50.2.0.192.zen.test", "DNS A 50.2.0.192.bl.test"],
            vec!["policy 127.0.0.1:1 RCPT"],
            vec!["policy 127.0.0.1:2 RCPT"],
        ]
    );
    assert_eq!(d.outcome, Outcome::Accept);
}

#[test]
fn prepend_is_a_note_and_the_list_goes_on() {
    let p = with_policy(
        "ps_prepend",
        "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:23050\n",
    );
    let (got, d) = rcpt_with(
        &p,
        "u@local.test",
        Some("PREPEND X-Greylist: delayed 5 seconds"),
    );
    assert_eq!(got, "250 2.1.5 Ok");
    assert_eq!(
        d.notes,
        vec![Note {
            action: PREPEND_NOTE,
            text: "X-Greylist: delayed 5 seconds".into()
        }]
    );
    let (got, d) = rcpt_with(&p, "u@local.test", Some("PREPEND no header here"));
    assert_eq!(got, "250 2.1.5 Ok");
    assert_eq!(
        d.notes[0].text,
        "access table inet:127.0.0.1:23050 entry \"policy query\" requires header: text"
    );
}

#[test]
fn a_default_action_that_fails_again_falls_back_to_postfix_s() {
    // The default action names a class that asks the same dead server.
    let p = with_policy(
        "ps_nested",
        "smtpd_restriction_classes = again\nagain = check_policy_service { inet:127.0.0.1:23053, default_action=again }\nsmtpd_recipient_restrictions = check_policy_service { inet:127.0.0.1:23053, default_action=again }\n",
    );
    let (got, _) = rcpt_with(&p, "user@local.test", None);
    assert_eq!(
        got,
        "451 4.3.5 <user@local.test>: Recipient address rejected: Server configuration problem"
    );
}

#[test]
fn the_same_server_twice_in_one_command_is_asked_twice() {
    let p = policy(
        "ps_twice",
        "myhostname = mx.local.test\nmydestination = local.test\nsmtpd_relay_restrictions = check_policy_service inet:127.0.0.1:1, reject_unauth_destination\nsmtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:1\n",
        &[],
    );
    let w = who("192.0.2.50");
    let (d, rounds) = run(&p, Stage::Rcpt, &w.facts(Some("u@local.test")), &|_| {
        Some("DUNNO")
    });
    assert_eq!(d.outcome, Outcome::Accept);
    let repeats: Vec<u32> = rounds
        .iter()
        .flatten()
        .map(|r| match r {
            FactRequest::Policy { repeat, .. } => *repeat,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(repeats, vec![0, 1]);
}

#[test]
fn not_asked_when_an_earlier_lookup_rejects() {
    use crate::policy::pending::DnsRecord;
    let p = with_policy(
        "ps_listed",
        "smtpd_recipient_restrictions = reject_rbl_client zen.test, check_policy_service inet:127.0.0.1:1\n",
    );
    let w = who("192.0.2.50");
    let facts = w.facts(Some("u@local.test"));
    let mut cache = FactCache::default();
    let mut state = TransactionState::default();
    let Progress::Needs(first) = p.decide(Stage::Rcpt, &facts, &mut state, &cache) else {
        panic!("the DNSBL must be asked first");
    };
    assert_eq!(
        first.iter().map(FactRequest::describe).collect::<Vec<_>>(),
        ["DNS A 50.2.0.192.zen.test"]
    );
    cache.insert(Fetched {
        request: first[0].clone(),
        answer: FactAnswer::Dns(DnsAnswer::Records(vec![DnsRecord::Addr(
            "127.0.0.2".parse().unwrap(),
        )])),
        elapsed: Duration::ZERO,
        cached: false,
    });
    // Listed: rejected without a word to the policy server (a greylist counts no attempt);
    // the DNSBL's TXT record may still be asked for the reply text.
    let d = loop {
        match p.decide(Stage::Rcpt, &facts, &mut state, &cache) {
            Progress::Decided(d) => break d,
            Progress::Needs(needs) => {
                for n in needs {
                    assert!(matches!(n, FactRequest::Dns { .. }), "asked {n:?}");
                    cache.insert(Fetched {
                        request: n,
                        answer: FactAnswer::Dns(DnsAnswer::NoData),
                        elapsed: Duration::ZERO,
                        cached: false,
                    });
                }
            }
        }
    };
    assert!(
        shown(&d, "").starts_with(
            "554 5.7.1 Service unavailable; Client host [192.0.2.50] blocked using zen.test"
        ),
        "{}",
        shown(&d, "")
    );
}

/// A relative unix: path is under queue_directory, as Postfix has it (the ISPmail guide's
/// `check_policy_service unix:private/quota-status`).
#[test]
fn a_relative_socket_is_under_the_queue_directory() {
    let endpoint = |extra: &str| {
        let p = with_policy(
            "ps_relative",
            &format!("{extra}smtpd_recipient_restrictions = check_policy_service unix:private/quota-status\n"),
        );
        p.stages
            .recipient
            .iter()
            .find_map(|r| match r {
                Restriction::PolicyService(s) => Some(s.endpoint.clone()),
                _ => None,
            })
            .expect("a policy service")
    };
    assert_eq!(
        endpoint(""),
        Endpoint::Unix("/var/spool/postfix/private/quota-status".into())
    );
    assert_eq!(
        endpoint("queue_directory = /srv/postfix/\n"),
        Endpoint::Unix("/srv/postfix/private/quota-status".into())
    );
}
