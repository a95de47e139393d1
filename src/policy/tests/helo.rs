//! HELO syntax restrictions: reject_invalid_helo_hostname and reject_non_fqdn_helo_hostname on
//! names, bare addresses and address literals, with Postfix's exact replies.

use super::*;

const BASE: &str =
    "myhostname = mx.relayguard.test\nmydestination = local.test\nmynetworks = 127.0.0.0/8\n";

#[test]
fn helo_syntax_checks() {
    let p = policy("helosyntax", &format!("{BASE}smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname\n"), &[]);
    let r = |h: &str| rcpt(&p, &who("192.0.2.1").helo(Some(h)), "u@local.test");
    assert_eq!(
        r("bad_helo!"),
        "501 5.5.2 <bad_helo!>: Helo command rejected: Invalid name"
    );
    assert_eq!(
        r("[1.2.3.999]"),
        "501 5.5.2 <[1.2.3.999]>: Helo command rejected: invalid ip address"
    );
    assert_eq!(
        r("nodots"),
        "504 5.5.2 <nodots>: Helo command rejected: need fully-qualified hostname"
    );
    assert_eq!(
        r("1.2.3.4"),
        "504 5.5.2 <1.2.3.4>: Helo command rejected: need fully-qualified hostname"
    );
    assert_eq!(r("[1.2.3.4]"), "250 2.1.5 Ok");
    assert_eq!(r("[IPv6:::1]"), "250 2.1.5 Ok");
    assert_eq!(r("a_b.example"), "250 2.1.5 Ok");
    assert_eq!(
        r("[IPv6:1.2.3.4]"),
        "501 5.5.2 <[IPv6:1.2.3.4]>: Helo command rejected: invalid ip address"
    );
    assert_eq!(r("host.example."), "250 2.1.5 Ok");
}

/// Address literals in HELO are judged by Postfix's valid_ipv4_hostaddr/valid_ipv6_hostaddr
/// (valid_hostname.c) behind valid_mailhost_addr, not by the Rust parsers: leading zeros pass,
/// a zero first octet does not, `[IPv6:...]` takes Postfix's field rules. Both restrictions
/// answer a bad literal with `invalid ip address` and invalid_hostname_reject_code [live].
#[test]
fn helo_address_literals_as_postfix() {
    let invalid = |h: &str| format!("501 5.5.2 <{h}>: Helo command rejected: invalid ip address");
    for list in [
        "reject_invalid_helo_hostname",
        "reject_non_fqdn_helo_hostname",
    ] {
        let p = policy(
            &format!("helolit-{list}"),
            &format!("{BASE}smtpd_helo_restrictions = {list}\n"),
            &[],
        );
        let r = |h: &str| rcpt(&p, &who("192.0.2.1").helo(Some(h)), "u@local.test");
        for bad in [
            "[321.255.255.255]",
            "[0.255.255.255]",
            "[1.2.3.321]",
            "[1.2.3]",
            "[1.2.3.4.5]",
            "[1..2.3.4]",
            "[.1.2.3.4]",
            "[1.2.3.4.5.]",
            "[1.2.3.4.]",
            "[]",
            "[1.2.3.4",
            "[::1]",
            "[IPv6:1.2.3.4]",
            "[IPv6:1:2]",
            "[IPv6:1:2:]",
            "[IPv6:1::2::3]",
            "[IPv6:1:2:3:4:5:6:7:8:9]",
            "[IPv6:12345::1]",
            "[IPv6::1:2]",
            "[IPv6:1:2:3:4:5:6:7:1.2.3.4]",
            "[IPv6:::ffff:1.2.3.256]",
        ] {
            assert_eq!(r(bad), invalid(bad), "{list} {bad}");
        }
        for good in [
            "[01.2.3.4]",
            "[0.0.0.0]",
            "[1.2.3.4]",
            "[IPv6:::1]",
            "[ipv6:::1]",
            "[IPv6:2001:db8::1]",
            "[IPv6:1:2:3]",
            "[IPv6:1::]",
            "[IPv6:::ffff:1.2.3.4]",
            "[IPv6:1:2:3:4:5:6:7:8]",
        ] {
            assert_eq!(r(good), "250 2.1.5 Ok", "{list} {good}");
        }
    }
}

/// Outside brackets, reject_invalid_helo_hostname also takes a bare address, judged the same
/// way after one trailing dot is cut (smtpd_check.c dup_if_truncate) [src].
#[test]
fn helo_bare_address_as_postfix() {
    let p = policy(
        "helobare",
        &format!("{BASE}smtpd_helo_restrictions = reject_invalid_helo_hostname\n"),
        &[],
    );
    let r = |h: &str| rcpt(&p, &who("192.0.2.1").helo(Some(h)), "u@local.test");
    for good in ["1.2.3.4", "1.2.3.4.", "01.2.3.4", "::1", "1:2:3"] {
        assert_eq!(r(good), "250 2.1.5 Ok", "{good}");
    }
    for bad in ["0.1.2.3", "1.2.3.4..", "1.2.3"] {
        assert_eq!(
            r(bad),
            format!("501 5.5.2 <{bad}>: Helo command rejected: Invalid name"),
            "{bad}"
        );
    }
}
