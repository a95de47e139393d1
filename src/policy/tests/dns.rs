//! The DNS restrictions against a scripted zone: the replies of Postfix 3.7's smtpd_check.c
//! (its regression files smtpd_nullmx.ref and smtpd_check.ref where they cover a case), the
//! requests each round makes, and the state left alone while an evaluation waits.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::policy::pending::{DnsAnswer, DnsRecord, FactAnswer, RecordType};

const BASE: &str = "myhostname = mx.local.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";

/// Answers by (name, type); anything else is NXDOMAIN.
#[derive(Default)]
struct Zone(HashMap<(String, RecordType), DnsAnswer>);

impl Zone {
    fn with(mut self, name: &str, rtype: RecordType, answer: DnsAnswer) -> Self {
        self.0.insert((name.into(), rtype), answer);
        self
    }
    fn a(self, name: &str, addrs: &[&str]) -> Self {
        let records = addrs
            .iter()
            .map(|a| DnsRecord::Addr(a.parse().unwrap()))
            .collect();
        self.with(name, RecordType::A, DnsAnswer::Records(records))
    }
    fn mx(self, name: &str, hosts: &[&str]) -> Self {
        let records = hosts
            .iter()
            .map(|h| DnsRecord::Host {
                preference: 10,
                name: (*h).into(),
            })
            .collect();
        self.with(name, RecordType::Mx, DnsAnswer::Records(records))
    }
    fn txt(self, name: &str, text: &str) -> Self {
        self.with(
            name,
            RecordType::Txt,
            DnsAnswer::Records(vec![DnsRecord::Text(text.into())]),
        )
    }
    fn answer(&self, request: &FactRequest) -> FactAnswer {
        let FactRequest::Dns { name, rtype } = request else {
            panic!("not a DNS request: {request:?}");
        };
        FactAnswer::Dns(
            self.0
                .get(&(name.to_string(), *rtype))
                .cloned()
                .unwrap_or(DnsAnswer::NxDomain),
        )
    }
}

/// Evaluates to the end, answering from `zone`; also returns the requests of each round.
fn run(
    p: &Policy,
    stage: Stage,
    facts: &Facts<'_>,
    state: &mut TransactionState,
    zone: &Zone,
) -> (Decision, Vec<Vec<String>>) {
    let mut rounds = Vec::new();
    let mut fetch = |needs: &[FactRequest]| {
        rounds.push(needs.iter().map(FactRequest::describe).collect());
        needs
            .iter()
            .map(|n| Fetched {
                request: n.clone(),
                answer: zone.answer(n),
                elapsed: Duration::ZERO,
                cached: false,
            })
            .collect()
    };
    let (d, _, _) = p.explain_fetching(stage, facts, state, &mut fetch);
    (d, rounds)
}

fn line(d: &Decision) -> String {
    match &d.outcome {
        Outcome::Accept => "accept".into(),
        Outcome::Reject(r) => r.to_string(),
    }
}

fn rcpt_line(p: &Policy, w: &Who, to: &str, zone: &Zone) -> (String, Vec<Vec<String>>) {
    let (d, rounds) = run(
        p,
        Stage::Rcpt,
        &w.facts(Some(to)),
        &mut TransactionState::default(),
        zone,
    );
    (line(&d), rounds)
}

fn listed() -> Zone {
    Zone::default()
        .a("9.100.51.198.zen.test", &["127.0.0.2"])
        .txt("9.100.51.198.zen.test", "listed")
        .a("9.100.51.198.bl.test", &["127.0.0.10"])
}

#[test]
fn rbl_client_reply_as_postfix_words_it() {
    let p = policy(
        "rbl1",
        &format!("{BASE}smtpd_recipient_restrictions = reject_rbl_client zen.test, permit\n"),
        &[],
    );
    assert!(p.can_wait());
    let w = who("198.51.100.9");
    let (reply, rounds) = rcpt_line(&p, &w, "u@local.test", &listed());
    assert_eq!(
        reply,
        "554 5.7.1 Service unavailable; Client host [198.51.100.9] blocked using zen.test; listed"
    );
    // The A record first; the TXT only for a listed client.
    assert_eq!(
        rounds,
        [
            vec!["DNS A 9.100.51.198.zen.test".to_string()],
            vec!["DNS TXT 9.100.51.198.zen.test".to_string()],
        ]
    );
    let (reply, rounds) = rcpt_line(&p, &who("198.51.100.10"), "u@local.test", &listed());
    assert_eq!(reply, "accept");
    assert_eq!(rounds.len(), 1);
}

#[test]
fn independent_lists_are_asked_at_once() {
    let p = policy(
        "rbl2",
        &format!("{BASE}smtpd_recipient_restrictions = reject_rbl_client bl.test=127.0.0.[2..4], reject_rbl_client zen.test, reject_rhsbl_sender rhsbl.test, permit\n"),
        &[],
    );
    let w = who("198.51.100.9").from("s@bad.example");
    let (reply, rounds) = rcpt_line(&p, &w, "u@local.test", &listed());
    assert_eq!(
        rounds[0],
        [
            "DNS A 9.100.51.198.bl.test",
            "DNS A 9.100.51.198.zen.test",
            "DNS A bad.example.rhsbl.test"
        ]
    );
    // bl.test answered 127.0.0.10, outside its filter: zen.test decides.
    assert!(reply.contains("blocked using zen.test; listed"), "{reply}");
}

#[test]
fn rbl_failures_give_the_benefit_of_the_doubt_with_a_warning() {
    let p = policy(
        "rbl3",
        &format!("{BASE}smtpd_recipient_restrictions = reject_rbl_client zen.test, reject\n"),
        &[],
    );
    let zone = Zone::default().with(
        "9.100.51.198.zen.test",
        RecordType::A,
        DnsAnswer::TryAgain("timed out".into()),
    );
    let w = who("198.51.100.9");
    let (d, _) = run(
        &p,
        Stage::Rcpt,
        &w.facts(Some("u@local.test")),
        &mut TransactionState::default(),
        &zone,
    );
    // The list said nothing; the next restriction decides.
    assert!(line(&d).contains("Access denied"), "{}", line(&d));
    assert_eq!(d.notes[0].action, "warning");
    assert_eq!(
        d.notes[0].text,
        "9.100.51.198.zen.test: RBL lookup error: temporary failure: timed out"
    );
}

#[test]
fn rbl_reply_maps_and_codes() {
    let p = policy(
        "rbl4",
        &format!("{BASE}maps_rbl_reject_code = 550\nrbl_reply_maps = texthash:@DIR@/replies\nsmtpd_recipient_restrictions = reject_rbl_client zen.test, permit\n"),
        &[(
            "replies",
            "zen.test $rbl_code 5.7.9 $client_address listed by $rbl_domain: $rbl_reason\n",
        )],
    );
    let (reply, _) = rcpt_line(&p, &who("198.51.100.9"), "u@local.test", &listed());
    assert_eq!(reply, "550 5.7.9 198.51.100.9 listed by zen.test: listed");
}

#[test]
fn dnswl_permits_only_authorized_recipients() {
    let p = policy(
        "wl",
        &format!("{BASE}smtpd_relay_restrictions = permit_dnswl_client zen.test, reject_unauth_destination\nsmtpd_recipient_restrictions = permit_dnswl_client zen.test, reject\n"),
        &[],
    );
    let w = who("198.51.100.9");
    assert_eq!(rcpt_line(&p, &w, "u@local.test", &listed()).0, "accept");
    let (reply, rounds) = rcpt_line(&p, &w, "u@elsewhere.example", &listed());
    assert_eq!(
        reply,
        "554 5.7.1 <u@elsewhere.example>: Relay access denied"
    );
    assert!(rounds.is_empty(), "{rounds:?}");
}

#[test]
fn unknown_sender_domain_as_smtpd_nullmx_ref() {
    let p = policy(
        "usd",
        &format!("{BASE}smtpd_delay_reject = no\nsmtpd_sender_restrictions = reject_unknown_sender_domain\n"),
        &[],
    );
    let zone = Zone::default()
        .with("nullmx.test", RecordType::Mx, DnsAnswer::NullMx)
        .mx("mxonly.test", &["mx.mxonly.test"])
        .a("aonly.test", &["192.0.2.1"])
        .with(
            "slow.test",
            RecordType::Mx,
            DnsAnswer::TryAgain("timed out".into()),
        );
    let mail = |from: &str| {
        let w = who("198.51.100.9").from(from);
        let mut state = TransactionState::default();
        let (d, _) = run(&p, Stage::Mail, &w.facts(None), &mut state, &zone);
        (line(&d), state)
    };
    assert_eq!(
        mail("s@nxdomain.test").0,
        "450 4.1.8 <s@nxdomain.test>: Sender address rejected: Domain not found"
    );
    assert_eq!(mail("s@nullmx.test").0, "550 5.7.27 <s@nullmx.test>: Sender address rejected: Domain nullmx.test does not accept mail (nullMX)");
    assert_eq!(mail("s@mxonly.test").0, "accept");
    assert_eq!(mail("s@aonly.test").0, "accept");
    assert_eq!(mail("s@local.test").0, "accept");
    assert_eq!(mail("").0, "accept");
    // A temporary failure is armed as defer_if_permit: MAIL passes, RCPT is deferred.
    let (now, state) = mail("s@slow.test");
    assert_eq!(now, "accept");
    let w = who("198.51.100.9").from("s@slow.test");
    let d = p.evaluate(
        Stage::Rcpt,
        &w.facts(Some("u@local.test")),
        &mut state.clone(),
    );
    assert_eq!(
        line(&d),
        "450 4.1.8 <s@slow.test>: Sender address rejected: Domain not found"
    );
}

#[test]
fn unknown_recipient_domain_and_tempfail_action() {
    let p = policy(
        "urd",
        &format!("{BASE}unknown_address_tempfail_action = defer\nunknown_address_reject_code = 550\nsmtpd_relay_restrictions = reject_unknown_recipient_domain, permit_mynetworks, reject_unauth_destination\n"),
        &[],
    );
    let zone = Zone::default()
        .with("nullmx.test", RecordType::Mx, DnsAnswer::NullMx)
        .with(
            "slow.test",
            RecordType::Mx,
            DnsAnswer::TryAgain("SERVFAIL".into()),
        );
    let w = who("198.51.100.9");
    assert_eq!(
        rcpt_line(&p, &w, "u@nxdomain.test", &zone).0,
        "550 5.1.2 <u@nxdomain.test>: Recipient address rejected: Domain not found"
    );
    assert_eq!(rcpt_line(&p, &w, "u@nullmx.test", &zone).0, "556 5.1.10 <u@nullmx.test>: Recipient address rejected: Domain nullmx.test does not accept mail (nullMX)");
    assert_eq!(
        rcpt_line(&p, &w, "u@slow.test", &zone).0,
        "450 4.1.2 <u@slow.test>: Recipient address rejected: Domain not found"
    );
}

#[test]
fn unknown_helo_hostname() {
    let p = policy(
        "uhh",
        &format!("{BASE}smtpd_delay_reject = no\nsmtpd_helo_restrictions = reject_unknown_helo_hostname\n"),
        &[],
    );
    let zone = Zone::default().a("host.test", &["192.0.2.1"]).with(
        "nullmx.test",
        RecordType::Mx,
        DnsAnswer::NullMx,
    );
    let helo = |h: &str| {
        let w = who("198.51.100.9").helo(Some(h));
        let (d, rounds) = run(
            &p,
            Stage::Helo,
            &w.facts(None),
            &mut TransactionState::default(),
            &zone,
        );
        (line(&d), rounds)
    };
    let (reply, rounds) = helo("nxdomain.test");
    assert_eq!(
        reply,
        "450 4.7.1 <nxdomain.test>: Helo command rejected: Host not found"
    );
    assert_eq!(
        rounds,
        [[
            "DNS A nxdomain.test",
            "DNS AAAA nxdomain.test",
            "DNS MX nxdomain.test"
        ]]
    );
    assert_eq!(helo("host.test.").0, "accept");
    assert_eq!(helo("nullmx.test").0, "accept");
    assert_eq!(helo("[192.0.2.1]").0, "accept");
    assert_eq!(
        helo("[192.0.2.999]").0,
        "501 5.5.2 <[192.0.2.999]>: Helo command rejected: invalid ip address"
    );
}

#[test]
fn unknown_client_hostname_codes() {
    let p = policy(
        "uch",
        &format!("{BASE}unknown_client_reject_code = 550\nsmtpd_client_restrictions = reject_unknown_client_hostname\n"),
        &[],
    );
    assert!(!p.can_wait());
    let mut w = who("198.51.100.9");
    let r = |w: &Who| rcpt(&p, w, "u@local.test");
    assert_eq!(
        r(&w),
        "550 5.7.25 Client host rejected: cannot find your hostname, [198.51.100.9]"
    );
    w.client.name_status = NameStatus::Temporary;
    assert_eq!(
        r(&w),
        "450 4.7.25 Client host rejected: cannot find your hostname, [198.51.100.9]"
    );
    w.client.name_status = NameStatus::Ok;
    w.client.name = "c.example".into();
    assert_eq!(r(&w), "250 2.1.5 Ok");
}

#[test]
fn sender_mx_access_checks_hosts_then_addresses() {
    let cidr = "192.0.2.0/24 REJECT bad network\n";
    let p = policy(
        "smx",
        &format!("{BASE}smtpd_sender_restrictions = check_sender_mx_access cidr:@DIR@/bad.cidr, check_sender_ns_access inline:{{ ns.good.test=OK }}\n"),
        &[("bad.cidr", cidr)],
    );
    let zone = Zone::default()
        .mx("bad.example", &["mx1.bad.example", "mx2.bad.example"])
        .a("mx1.bad.example", &["198.51.100.1"])
        .a("mx2.bad.example", &["192.0.2.7"])
        .a("nomx.example", &["192.0.2.8"])
        .with(
            "good.test",
            RecordType::Ns,
            DnsAnswer::Records(vec![DnsRecord::Host {
                preference: 0,
                name: "ns.good.test".into(),
            }]),
        );
    let w = who("198.51.100.9").from("s@bad.example");
    let (reply, rounds) = rcpt_line(&p, &w, "u@local.test", &zone);
    assert_eq!(
        reply,
        "554 5.7.1 <s@bad.example>: Sender address rejected: bad network"
    );
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    for host in ["DNS A mx1.bad.example", "DNS AAAA mx2.bad.example"] {
        assert!(
            rounds[1].iter().any(|r| r == host),
            "both hosts at once: {rounds:?}"
        );
    }
    // No MX: the domain is its own mail host.
    let w = who("198.51.100.9").from("s@nomx.example");
    assert!(rcpt_line(&p, &w, "u@local.test", &zone)
        .0
        .contains("bad network"));
    // An OK from these restrictions is refused for safety.
    let w = who("198.51.100.9").from("s@good.test");
    let (d, _) = run(
        &p,
        Stage::Rcpt,
        &w.facts(Some("u@local.test")),
        &mut TransactionState::default(),
        &zone,
    );
    assert_eq!(line(&d), "451 4.3.5 Server configuration error");
    // (After the MX check's own warning: good.test has no MX, and no address either.)
    let texts: Vec<&str> = d.notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Unable to look up MX host good.test for Sender address s@good.test: NXDOMAIN",
            "restriction check_sender_ns_access returns OK for s@good.test",
            "this is not allowed for security reasons",
            "use DUNNO instead of OK if you want to make an exception",
        ]
    );
}

#[test]
fn waiting_leaves_the_state_alone_and_in_memory_policies_never_wait() {
    let p = policy(
        "state",
        &format!("{BASE}smtpd_delay_reject = no\nsmtpd_client_restrictions = defer_if_permit, reject_rbl_client zen.test\n"),
        &[],
    );
    let w = who("198.51.100.9");
    let mut state = TransactionState::default();
    let progress = p.decide(
        Stage::Connect,
        &w.facts(None),
        &mut state,
        &FactCache::default(),
    );
    assert!(matches!(progress, Progress::Needs(_)));
    assert!(state.is_clear());
    // Without a way to fetch, the answer is a temporary failure, never a permit.
    let d = p.evaluate(Stage::Connect, &w.facts(None), &mut state);
    assert_eq!(line(&d), "451 4.3.0 Temporary lookup failure");

    let plain = policy(
        "plain",
        &format!("{BASE}smtpd_recipient_restrictions = check_client_access inline:{{ 1.2.3.4=REJECT }}, permit\n"),
        &[],
    );
    assert!(!plain.can_wait());
}
