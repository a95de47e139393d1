//! reject_unlisted_recipient / reject_unlisted_sender: replies per address class (the
//! differential in tests/policy_differential.rs holds the same cases against Postfix).

use super::*;

const BASE: &str = "myhostname = mx.relayguard.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\nrecipient_delimiter = +\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";

#[test]
fn each_class_is_checked_against_its_own_table() {
    let p = policy(
        "unlisted-classes",
        &format!("{BASE}local_recipient_maps = texthash:@DIR@/users\nvirtual_alias_domains = valias.test\nvirtual_alias_maps = texthash:@DIR@/aliases\nvirtual_mailbox_domains = vbox.test\nvirtual_mailbox_maps = texthash:@DIR@/boxes\nrelay_domains = relay.test\nrelay_recipient_maps = texthash:@DIR@/relay\ncanonical_maps = texthash:@DIR@/canonical\n"),
        &[
            ("users", "alice x\n"),
            ("aliases", "alias@valias.test alice@local.test\n"),
            ("boxes", "user@vbox.test x\n"),
            ("relay", "known@relay.test x\n"),
            ("canonical", "bob@local.test alice@local.test\n"),
        ],
    );
    let out = who("203.0.113.5");
    for (rcpt_to, want) in [
        ("alice@local.test", "250 2.1.5 Ok"),
        ("alice+tag@local.test", "250 2.1.5 Ok"),
        ("bob@local.test", "250 2.1.5 Ok"),
        ("postmaster@local.test", "250 2.1.5 Ok"),
        ("nobody@local.test", "550 5.1.1 <nobody@local.test>: Recipient address rejected: User unknown in local recipient table"),
        ("alias@valias.test", "250 2.1.5 Ok"),
        ("nobody@valias.test", "550 5.1.1 <nobody@valias.test>: Recipient address rejected: User unknown in virtual alias table"),
        ("user@vbox.test", "250 2.1.5 Ok"),
        ("other@vbox.test", "550 5.1.1 <other@vbox.test>: Recipient address rejected: User unknown in virtual mailbox table"),
        ("known@relay.test", "250 2.1.5 Ok"),
        ("unknown@relay.test", "550 5.1.1 <unknown@relay.test>: Recipient address rejected: User unknown in relay recipient table"),
    ] {
        assert_eq!(rcpt(&p, &out, rcpt_to), want, "{rcpt_to}");
    }
    // A permit is checked too: a trusted client's unknown local user is still refused.
    assert_eq!(
        rcpt(&p, &who("127.0.0.1"), "nobody@local.test"),
        "550 5.1.1 <nobody@local.test>: Recipient address rejected: User unknown in local recipient table"
    );
    let d = rcpt_decision(&p, &out, "nobody@local.test");
    let r = d.reason.unwrap();
    assert_eq!(
        (&*r.parameter, r.table.as_deref()),
        (
            "smtpd_reject_unlisted_recipient",
            Some("local_recipient_maps")
        )
    );
}

#[test]
fn switches_codes_and_the_sender_side() {
    let p = policy(
        "unlisted-switches",
        &format!("{BASE}local_recipient_maps = texthash:@DIR@/users\nsmtpd_reject_unlisted_recipient = no\nsmtpd_reject_unlisted_sender = yes\nshow_user_unknown_table_name = no\nunknown_local_recipient_reject_code = 450\n"),
        &[("users", "alice x\n")],
    );
    let mut w = who("203.0.113.5");
    assert_eq!(rcpt(&p, &w, "nobody@local.test"), "250 2.1.5 Ok");
    w.sender = Some("ghost@local.test".into());
    assert_eq!(
        rcpt(&p, &w, "alice@local.test"),
        "450 4.1.0 <ghost@local.test>: Sender address rejected: User unknown"
    );
    w.sender = Some(String::new());
    assert_eq!(rcpt(&p, &w, "alice@local.test"), "250 2.1.5 Ok");
}

#[test]
fn the_hosts_user_database_is_left_to_the_mta_with_a_warning() {
    let p = policy(
        "unlisted-unix",
        &format!("{BASE}alias_maps = hash:@DIR@/aliases\nlocal_recipient_maps = proxy:unix:passwd.byname $alias_maps\n"),
        &[("aliases", "root x\n")],
    );
    assert_eq!(
        rcpt(&p, &who("203.0.113.5"), "nobody@local.test"),
        "250 2.1.5 Ok"
    );
    let w = p.warnings();
    assert!(
        w.iter()
            .any(|w| w.to_string().contains("unix:passwd.byname")),
        "{w:?}"
    );
}
