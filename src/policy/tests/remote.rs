//! Tables served by another program (socketmap, tcp) against scripted answers: the keys each
//! round asks, in Postfix's order and no more; the replies for found, not found and failed
//! lookups (smtpd_check.c check_table_result and reject_dict_retry); what load refuses.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::policy::pending::{FactAnswer, TableResult};

const BASE: &str = "myhostname = mx.local.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";
const SOCK: &str = "socketmap:inet:127.0.0.1:9000:access";
const TCP: &str = "tcp:127.0.0.1:9001";

/// Answers by (table, key); anything else is not found. `fail` keys fail for now.
#[derive(Default)]
struct Server {
    found: HashMap<(String, String), String>,
    fail: Vec<String>,
}

impl Server {
    fn with(mut self, table: &str, key: &str, value: &str) -> Self {
        self.found.insert((table.into(), key.into()), value.into());
        self
    }
    fn failing(mut self, key: &str) -> Self {
        self.fail.push(key.into());
        self
    }
    fn answer(&self, r: &FactRequest) -> FactAnswer {
        let FactRequest::Table { table, key } = r else {
            return FactAnswer::Dns(crate::policy::pending::DnsAnswer::NxDomain);
        };
        FactAnswer::Table(if self.fail.iter().any(|k| **k == **key) {
            TableResult::Failed("server down".into())
        } else {
            match self.found.get(&(table.to_string(), key.to_string())) {
                Some(v) => TableResult::Found(v.clone()),
                None => TableResult::NotFound,
            }
        })
    }
}

/// Evaluates to the end; also returns the requests of each round.
fn run(p: &Policy, stage: Stage, facts: &Facts<'_>, s: &Server) -> (String, Vec<Vec<String>>) {
    let mut rounds = Vec::new();
    let mut fetch = |needs: &[FactRequest]| {
        rounds.push(needs.iter().map(FactRequest::describe).collect());
        needs
            .iter()
            .map(|n| Fetched {
                request: n.clone(),
                answer: s.answer(n),
                elapsed: Duration::ZERO,
                cached: false,
            })
            .collect()
    };
    let mut st = TransactionState::default();
    let (d, _, _) = p.explain_fetching(stage, facts, &mut st, &mut fetch);
    let line = match &d.outcome {
        Outcome::Accept => "accept".into(),
        Outcome::Reject(r) => r.to_string(),
    };
    (line, rounds)
}

fn key(table: &str, k: &str) -> String {
    FactRequest::Table {
        table: table.into(),
        key: k.into(),
    }
    .describe()
}

#[test]
fn client_keys_are_asked_one_round_at_a_time_and_stop_at_the_first_hit() {
    let p = policy(
        "rt_client",
        &format!("{BASE}smtpd_client_restrictions = check_client_access {TCP}\n"),
        &[],
    );
    assert!(p.can_wait());
    assert_eq!(p.remote_tables(), vec![TCP]);
    let w = who("192.0.2.7").named("Host.Example");
    let s = Server::default().with(TCP, "192.0.2.7", "REJECT by address");
    let (reply, rounds) = run(&p, Stage::Rcpt, &w.facts(Some("u@local.test")), &s);
    assert_eq!(
        reply,
        "554 5.7.1 <Host.Example[192.0.2.7]>: Client host rejected: by address"
    );
    // A pattern table (DICT_FLAG_PATTERN) gets only the full name, unfolded, then the full
    // address: no parent domains, no address prefixes.
    assert_eq!(
        rounds,
        vec![vec![key(TCP, "Host.Example")], vec![key(TCP, "192.0.2.7")]]
    );
    let s = Server::default().with(TCP, "Host.Example", "OK");
    let (reply, rounds) = run(&p, Stage::Rcpt, &w.facts(Some("u@local.test")), &s);
    assert_eq!(reply, "accept");
    assert_eq!(rounds.len(), 1, "no address key after a name hit");
}

#[test]
fn a_table_request_waits_for_what_is_before_it() {
    // Nothing after a pending table lookup is asked in the same round, not even DNS.
    let p = policy(
        "rt_order",
        &format!("{BASE}smtpd_recipient_restrictions = check_recipient_access {SOCK}, check_sender_access {TCP}, reject_rbl_client zen.test\n"),
        &[],
    );
    let w = who("192.0.2.7");
    let (reply, rounds) = run(
        &p,
        Stage::Rcpt,
        &w.facts(Some("u@local.test")),
        &Server::default(),
    );
    assert_eq!(reply, "accept");
    assert_eq!(
        rounds,
        vec![
            vec![key(SOCK, "u@local.test")],
            vec![key(TCP, "s@sender.example")],
            vec!["DNS A 7.2.0.192.zen.test".to_string()],
        ]
    );
}

#[test]
fn recipient_key_is_the_resolved_folded_address_only() {
    let p = policy(
        "rt_rcpt",
        &format!("{BASE}recipient_delimiter = +\nsmtpd_recipient_restrictions = check_recipient_access {SOCK}\n"),
        &[],
    );
    let w = who("192.0.2.7");
    let s = Server::default().with(SOCK, "joe+x@local.test", "550 5.1.1 no such user");
    let (reply, rounds) = run(&p, Stage::Rcpt, &w.facts(Some("Joe+X@Local.Test.")), &s);
    assert_eq!(
        reply,
        "550 5.1.1 <Joe+X@Local.Test.>: Recipient address rejected: no such user"
    );
    assert_eq!(rounds, vec![vec![key(SOCK, "joe+x@local.test")]]);
}

#[test]
fn a_failed_access_lookup_is_a_configuration_error_reply_never_a_permit() {
    // smtpd_check.c check_mail_access: maps->error != 0 -> check_table_result with
    // "451 4.3.5 Server configuration error", in the voice of the lookup.
    let p = policy(
        "rt_fail",
        &format!("{BASE}smtpd_recipient_restrictions = check_recipient_access {SOCK}, permit\n"),
        &[],
    );
    let w = who("192.0.2.7");
    let s = Server::default().failing("u@local.test");
    let (reply, _) = run(&p, Stage::Rcpt, &w.facts(Some("u@local.test")), &s);
    assert_eq!(
        reply,
        "451 4.3.5 <u@local.test>: Recipient address rejected: Server configuration error"
    );
    // An empty value is an error too (maps.c: "should return NO RESULT in case of NOT FOUND").
    let s = Server::default().with(SOCK, "u@local.test", "");
    let (reply, _) = run(&p, Stage::Rcpt, &w.facts(Some("u@local.test")), &s);
    assert_eq!(
        reply,
        "451 4.3.5 <u@local.test>: Recipient address rejected: Server configuration error"
    );
}

#[test]
fn an_unfetchable_lookup_is_a_temporary_failure() {
    let p = policy(
        "rt_unfetched",
        &format!("{BASE}smtpd_recipient_restrictions = check_recipient_access {SOCK}, permit\n"),
        &[],
    );
    let w = who("192.0.2.7");
    let d = p.evaluate(
        Stage::Rcpt,
        &w.facts(Some("u@local.test")),
        &mut TransactionState::default(),
    );
    assert_eq!(shown(&d, "accept"), "451 4.3.0 Temporary lookup failure");
}

#[test]
fn sender_login_maps_over_a_remote_table() {
    let p = policy(
        "rt_login",
        &format!("{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_sender_login_maps = {SOCK}\nsmtpd_sender_restrictions = reject_sender_login_mismatch\n"),
        &[],
    );
    assert!(p.can_wait());
    let s = Server::default().with(SOCK, "alice@sender.example", "alice, alice2");
    let alice = who("192.0.2.7").from("alice@sender.example").login("alice");
    let (reply, rounds) = run(&p, Stage::Rcpt, &alice.facts(Some("u@local.test")), &s);
    assert_eq!(reply, "accept");
    assert_eq!(rounds, vec![vec![key(SOCK, "alice@sender.example")]]);
    let bob = who("192.0.2.7").from("alice@sender.example").login("bob");
    let (reply, _) = run(&p, Stage::Rcpt, &bob.facts(Some("u@local.test")), &s);
    assert_eq!(
        reply,
        "553 5.7.1 <alice@sender.example>: Sender address rejected: not owned by user bob"
    );
    let anon = who("192.0.2.7").from("alice@sender.example");
    let (reply, _) = run(&p, Stage::Rcpt, &anon.facts(Some("u@local.test")), &s);
    assert_eq!(
        reply,
        "553 5.7.1 <alice@sender.example>: Sender address rejected: not logged in"
    );
    // reject_dict_retry: the sender's own temporary failure text.
    let down = Server::default().failing("alice@sender.example");
    let (reply, _) = run(&p, Stage::Rcpt, &bob.facts(Some("u@local.test")), &down);
    assert_eq!(
        reply,
        "451 4.3.0 <alice@sender.example>: Temporary lookup failure"
    );
}

#[test]
fn login_maps_are_not_asked_when_postfix_would_not_ask() {
    // reject_authenticated_sender_login_mismatch looks only when the client is logged in.
    let p = policy(
        "rt_login_noask",
        &format!("{BASE}smtpd_sasl_auth_enable = yes\nsmtpd_sender_login_maps = {SOCK}\nsmtpd_sender_restrictions = reject_authenticated_sender_login_mismatch\n"),
        &[],
    );
    let anon = who("192.0.2.7").from("alice@sender.example");
    let (reply, rounds) = run(
        &p,
        Stage::Rcpt,
        &anon.facts(Some("u@local.test")),
        &Server::default(),
    );
    assert_eq!(reply, "accept");
    assert!(rounds.is_empty(), "{rounds:?}");
}

#[test]
fn lists_that_cannot_wait_refuse_remote_entries_at_load() {
    for (param, extra) in [
        ("smtpd_sasl_exceptions_networks", ""),
        ("smtpd_client_event_limit_exceptions", ""),
        ("rbl_reply_maps", ""),
    ] {
        let e = errors(
            &format!("rt_list_{param}"),
            &format!("{BASE}{extra}{param} = {TCP}\n"),
        );
        assert!(
            e.iter()
                .any(|e| e.contains(param) && e.contains("remote table")),
            "{param}: {e:?}"
        );
    }
    // mynetworks itself may wait, but the client limits' default copy of it cannot.
    let e = errors("rt_list_default", &format!("{BASE}mynetworks = {TCP}\n"));
    assert!(
        e.iter()
            .any(|e| e.contains("smtpd_client_event_limit_exceptions")
                && e.contains("defaults to $mynetworks")),
        "{e:?}"
    );
}

#[test]
fn relay_domains_over_a_remote_table() {
    let p = policy("rt_relay", &format!("{BASE}relay_domains = {SOCK}\n"), &[]);
    assert!(p.can_wait());
    let w = who("192.0.2.7");
    let s = Server::default().with(SOCK, "relay.example", "anything");
    let (reply, rounds) = run(&p, Stage::Rcpt, &w.facts(Some("u@Relay.Example")), &s);
    assert_eq!(reply, "accept");
    // A pattern table in a parent-style list still gets the full domain only.
    assert_eq!(rounds, vec![vec![key(SOCK, "relay.example")]]);
    let (reply, _) = run(&p, Stage::Rcpt, &w.facts(Some("u@sub.relay.example")), &s);
    assert_eq!(
        reply,
        "554 5.7.1 <u@sub.relay.example>: Relay access denied"
    );
    // RESOLVE_FLAG_FAIL: reject_dict_retry for the recipient.
    let down = Server::default().failing("relay.example");
    let (reply, _) = run(&p, Stage::Rcpt, &w.facts(Some("u@relay.example")), &down);
    assert_eq!(
        reply,
        "451 4.3.0 <u@relay.example>: Temporary lookup failure"
    );
    // Local and static destinations never ask the table.
    let (reply, rounds) = run(&p, Stage::Rcpt, &w.facts(Some("u@local.test")), &down);
    assert_eq!(reply, "accept");
    assert!(rounds.is_empty(), "{rounds:?}");
}

#[test]
fn permit_mynetworks_over_a_remote_table() {
    let p = policy(
        "rt_mynetworks",
        &format!("{BASE}mynetworks = 127.0.0.0/8 {TCP}\nsmtpd_client_event_limit_exceptions = 127.0.0.0/8\n"),
        &[],
    );
    let s = Server::default().with(TCP, "192.0.2.7", "trusted");
    let w = who("192.0.2.7");
    let (reply, rounds) = run(&p, Stage::Rcpt, &w.facts(Some("u@elsewhere.example")), &s);
    assert_eq!(reply, "accept");
    // match_hostname (the name, full only), then match_hostaddr.
    assert_eq!(
        rounds,
        vec![vec![key(TCP, "unknown")], vec![key(TCP, "192.0.2.7")]]
    );
    // An earlier static entry answers without asking.
    let local = who("127.0.0.1");
    let (reply, rounds) = run(
        &p,
        Stage::Rcpt,
        &local.facts(Some("u@elsewhere.example")),
        &s,
    );
    assert_eq!(reply, "accept");
    assert!(rounds.is_empty(), "{rounds:?}");
    let down = Server::default().failing("unknown");
    let (reply, _) = run(
        &p,
        Stage::Rcpt,
        &w.facts(Some("u@elsewhere.example")),
        &down,
    );
    assert_eq!(
        reply,
        "451 4.3.0 <u@elsewhere.example>: Temporary lookup failure"
    );
}

#[test]
fn restriction_values_from_a_remote_table_are_parsed_when_they_arrive() {
    // RESTRICTION_CLASS_README's local_only, with the client table served remotely.
    let p = policy(
        "rt_class",
        &format!("{BASE}smtpd_restriction_classes = local_only\nlocal_only = check_recipient_access inline:{{local.test=OK}}, reject\nsmtpd_recipient_restrictions = check_client_access {TCP}\n"),
        &[],
    );
    let w = who("127.0.0.1").named("localhost");
    let s = Server::default()
        .with(TCP, "localhost", "local_only")
        .with(
            TCP,
            "127.0.0.2",
            "permit_mynetworks, reject_unauth_destination",
        )
        .with(TCP, "127.0.0.3", "hash:/etc/postfix/other");
    let (reply, _) = run(&p, Stage::Rcpt, &w.facts(Some("user@local.test")), &s);
    assert_eq!(reply, "accept");
    let (reply, _) = run(&p, Stage::Rcpt, &w.facts(Some("user@remote.example")), &s);
    assert_eq!(
        reply,
        "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied"
    );
    let w2 = who("127.0.0.2");
    let (reply, _) = run(&p, Stage::Rcpt, &w2.facts(Some("user@remote.example")), &s);
    assert_eq!(reply, "accept");
    let w3 = who("127.0.0.3");
    let (reply, _) = run(&p, Stage::Rcpt, &w3.facts(Some("user@local.test")), &s);
    assert_eq!(reply, "451 4.3.5 Server configuration error");
}
