//! Network lists, mynetworks, relay control and destinations.

use super::*;

const BASE: &str = "myhostname = mx.relayguard.test\nmydestination = local.test\n";

/// Forum problem 1: `!` before the covering network excludes one host.
#[test]
fn forum_mynetworks_exclusion() {
    let p = policy(
        "forum1",
        &format!("{BASE}mynetworks = 127.0.0.0/8 !192.168.87.9 192.168.87.0/24\nsmtpd_relay_restrictions = permit_mynetworks, reject\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("192.168.87.9"), "x@elsewhere.example"),
        "554 5.7.1 <x@elsewhere.example>: Recipient address rejected: Access denied"
    );
    let d = rcpt_decision(&p, &who("192.168.87.9"), "x@elsewhere.example");
    assert_eq!(
        d.reason.as_ref().unwrap().parameter,
        "smtpd_relay_restrictions"
    );
    assert_eq!(d.reason.as_ref().unwrap().restriction, "reject");
    let ok = rcpt_decision(&p, &who("192.168.87.10"), "x@elsewhere.example");
    assert_eq!(ok.outcome, Outcome::Accept);
    let r = ok.reason.unwrap();
    assert_eq!(
        (&*r.restriction, r.value.as_deref()),
        ("permit_mynetworks", Some("192.168.87.0/24"))
    );
    assert_eq!(
        rcpt(&p, &who("127.0.0.1"), "x@elsewhere.example"),
        "250 2.1.5 Ok"
    );
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
}

/// The same host placed after its network is never excluded, and check-config says so.
#[test]
fn negation_after_network_warns() {
    let p = policy(
        "negafter",
        &format!("{BASE}mynetworks = 10.0.0.0/8 !10.1.0.0/16\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("10.1.2.3"), "r@elsewhere.example"),
        "250 2.1.5 Ok"
    );
    let w = &p.warnings()[0];
    assert_eq!(w.parameter, "mynetworks");
    assert_eq!(w.fix, "move `!10.1.0.0/16` before `10.0.0.0/8`");
    let p = policy(
        "negbefore",
        &format!("{BASE}mynetworks = !10.1.0.0/16 10.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("10.1.2.3"), "r@elsewhere.example"),
        "554 5.7.1 <r@elsewhere.example>: Relay access denied"
    );
    assert_eq!(
        rcpt(&p, &who("10.2.0.1"), "r@elsewhere.example"),
        "250 2.1.5 Ok"
    );
}

#[test]
fn default_relay_restrictions_defer_foreign() {
    let p = policy(
        "defaults",
        &format!("{BASE}mynetworks = 127.0.0.0/8\n"),
        &[],
    );
    let d = rcpt_decision(&p, &who("203.0.113.9"), "u@elsewhere.example");
    assert_eq!(
        shown(&d, ""),
        "454 4.7.1 <u@elsewhere.example>: Relay access denied"
    );
    let r = d.reason.unwrap();
    assert_eq!(r.parameter, "smtpd_relay_restrictions");
    assert_eq!(r.restriction, "defer_unauth_destination");
    assert_eq!(
        rcpt(&p, &who("203.0.113.9"), "u@local.test"),
        "250 2.1.5 Ok"
    );
}

#[test]
fn ipv6_clients_and_networks() {
    let p = policy(
        "ipv6",
        &format!("{BASE}mynetworks = 127.0.0.0/8 [2001:db8::]/32 [2001:db9::1]\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("2001:db8::5"), "u@elsewhere.example"),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        rcpt(&p, &who("2001:db9:0:0:0:0:0:1"), "u@elsewhere.example"),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        rcpt(&p, &who("2001:db9::2"), "u@elsewhere.example"),
        "554 5.7.1 <u@elsewhere.example>: Relay access denied"
    );
    // An IPv4 pattern never matches an IPv6 client, but an IPv4-mapped client is IPv4.
    assert_eq!(
        rcpt(&p, &who("::ffff:127.0.0.1"), "u@elsewhere.example"),
        "250 2.1.5 Ok"
    );
}

#[test]
fn bad_network_entries_are_load_errors() {
    for (value, why) in [
        ("10.1.2.3/8", "non-null host address bits in \"10.1.2.3/8\", perhaps you should use \"10.0.0.0/8\" instead"),
        ("10.0.0.0/33", "bad mask length in \"10.0.0.0/33\""),
    ] {
        let e = try_policy("badnet", &format!("{BASE}\nmynetworks = {value}\n"), &[]).unwrap_err();
        match &e[0] {
            PolicyError::BadValue { name, origin, why: w, .. } => {
                assert_eq!((name.as_str(), origin.line), ("mynetworks", 4));
                assert_eq!(w, why);
            }
            other => panic!("{other:?}"),
        }
    }
    let e = try_policy(
        "badnet6",
        &format!("{BASE}mynetworks = 2001:db8::/32\n"),
        &[],
    )
    .unwrap_err();
    let text = e[0].to_string();
    assert!(
        text.contains("without brackets") && text.contains("write [2001:db8::]/32"),
        "{text}"
    );
}

#[test]
fn network_list_forms_files_tables_names() {
    let dir = scratch("netforms");
    std::fs::write(
        dir.join("nets"),
        "# trusted\n192.0.2.0/24 !198.51.100.7\n198.51.100.0/24\n",
    )
    .unwrap();
    std::fs::write(dir.join("cidr"), "203.0.113.0/25 anything\n").unwrap();
    let p = policy(
        "netforms",
        &format!("{BASE}mynetworks = [10.1.2.3], {}/nets,\n  cidr:{}/cidr\n  trusted.example, .sub.example\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n", path(&dir), path(&dir)),
        &[],
    );
    let ok = "250 2.1.5 Ok";
    let no = "554 5.7.1 <u@elsewhere.example>: Relay access denied";
    assert_eq!(rcpt(&p, &who("10.1.2.3"), "u@elsewhere.example"), ok);
    assert_eq!(rcpt(&p, &who("192.0.2.77"), "u@elsewhere.example"), ok);
    assert_eq!(rcpt(&p, &who("198.51.100.7"), "u@elsewhere.example"), no);
    assert_eq!(rcpt(&p, &who("198.51.100.8"), "u@elsewhere.example"), ok);
    assert_eq!(rcpt(&p, &who("203.0.113.5"), "u@elsewhere.example"), ok);
    assert_eq!(rcpt(&p, &who("203.0.113.200"), "u@elsewhere.example"), no);
    // mynetworks is in parent_domain_matches_subdomains: names match subdomains too.
    assert_eq!(
        rcpt(
            &p,
            &who("192.0.9.1").named("trusted.example"),
            "u@elsewhere.example"
        ),
        ok
    );
    assert_eq!(
        rcpt(
            &p,
            &who("192.0.9.1").named("MX.Trusted.Example"),
            "u@elsewhere.example"
        ),
        ok
    );
    // In a parent-style list `.sub.example` matches nothing [live], and check-config says so.
    assert_eq!(
        rcpt(
            &p,
            &who("192.0.9.1").named("a.sub.example"),
            "u@elsewhere.example"
        ),
        no
    );
    assert_eq!(p.warnings()[0].fix, "write `sub.example`");
    assert_eq!(
        rcpt(
            &p,
            &who("192.0.9.1").named("sub.example"),
            "u@elsewhere.example"
        ),
        no
    );
    assert!(p.wants_client_name());
}

#[test]
fn mynetworks_style_from_interfaces() {
    let host = HostInfo {
        interfaces: vec![
            ("127.0.0.1".parse().unwrap(), 8),
            ("192.0.2.2".parse().unwrap(), 24),
            ("::1".parse().unwrap(), 128),
            ("fd00::2".parse().unwrap(), 64),
        ],
        hostname: Some("mx.relayguard.test".into()),
    };
    let compile = |style: &str| {
        let map = parse_main_cf(
            &format!("mydestination = local.test\nmynetworks_style = {style}\n"),
            Path::new("/m"),
        )
        .unwrap();
        Policy::compile_for_host(&map, &host).unwrap()
    };
    let host_style = compile("host");
    let m = |p: &Policy, a: &str| {
        p.mynetworks()
            .match_client("unknown", a.parse().unwrap())
            .is_match()
    };
    assert!(
        m(&host_style, "192.0.2.2")
            && !m(&host_style, "192.0.2.3")
            && m(&host_style, "fd00::2")
            && !m(&host_style, "fd00::3")
    );
    let subnet = compile("subnet");
    assert!(
        m(&subnet, "192.0.2.3")
            && m(&subnet, "127.9.9.9")
            && m(&subnet, "fd00::3")
            && !m(&subnet, "192.0.3.1")
    );
    let class = compile("class");
    assert!(m(&class, "192.0.2.200") && m(&class, "127.200.0.1"));
    // Default at compatibility_level 3.6 is host.
    let map = parse_main_cf("mydestination = local.test\n", Path::new("/m")).unwrap();
    let dflt = Policy::compile_for_host(&map, &host).unwrap();
    assert!(m(&dflt, "192.0.2.2") && !m(&dflt, "192.0.2.3"));
    // smtpd_client_event_limit_exceptions defaults to $mynetworks, the computed one too.
    let ex = dflt.event_limit_exceptions();
    assert!(ex
        .match_client("unknown", "192.0.2.2".parse().unwrap())
        .is_match());
    assert!(!ex
        .match_client("unknown", "192.0.2.3".parse().unwrap())
        .is_match());
}

/// Reference 6.2 through the whole engine: replies for every open-relay form.
#[test]
fn open_relay_address_forms() {
    let p = policy(
        "forms",
        &format!("{BASE}relay_domains = relay.test\nvirtual_alias_domains = valias.test\nvirtual_mailbox_domains = vmbox.test\ninet_interfaces = loopback-only\nmynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"),
        &[],
    );
    let c = who("203.0.113.5");
    let ok = "250 2.1.5 Ok";
    for (to, want) in [
        ("user@local.test", ok.to_string()),
        ("USER@LOCAL.TEST", ok.into()),
        ("user@local.test.", ok.into()),
        ("\"user\"@local.test", ok.into()),
        ("user%local.test@local.test", ok.into()),
        ("local.test!user@local.test", ok.into()),
        ("@elsewhere:user@local.test", ok.into()),
        ("@a,@b:user@local.test", ok.into()),
        ("user@[127.0.0.1]", ok.into()),
        ("user@[IPv6:::1]", ok.into()),
        ("user@relay.test", ok.into()),
        ("user@sub.relay.test", ok.into()),
        ("user@RELAY.TEST.", ok.into()),
        // No virtual_alias_maps: the resolver's error:User unknown (smtpd_reject_unlisted_recipient).
        (
            "user@valias.test",
            "550 5.1.1 <user@valias.test>: Recipient address rejected: User unknown in virtual alias table".into(),
        ),
        ("user@vmbox.test", ok.into()),
        ("@local.test", ok.into()),
        ("postmaster", ok.into()),
        ("Postmaster", ok.into()),
        (
            "user@sub.local.test",
            "554 5.7.1 <user@sub.local.test>: Relay access denied".into(),
        ),
        (
            "user@elsewhere@local.test",
            "554 5.7.1 <user@elsewhere@local.test>: Relay access denied".into(),
        ),
        (
            "\"user@elsewhere\"@local.test",
            "554 5.7.1 <user@elsewhere@local.test>: Relay access denied".into(),
        ),
        (
            "user%elsewhere@local.test",
            "554 5.7.1 <user%elsewhere@local.test>: Relay access denied".into(),
        ),
        (
            "elsewhere!user@local.test",
            "554 5.7.1 <elsewhere!user@local.test>: Relay access denied".into(),
        ),
        (
            "@local.test:user@elsewhere",
            "554 5.7.1 <user@elsewhere>: Relay access denied".into(),
        ),
        (
            "user@[192.0.2.2]",
            "554 5.7.1 <user@[192.0.2.2]>: Relay access denied".into(),
        ),
        ("user", "554 5.7.1 <user>: Relay access denied".into()),
        (
            "postmaster@elsewhere",
            "554 5.7.1 <postmaster@elsewhere>: Relay access denied".into(),
        ),
        (
            "user@sub.valias.test",
            "554 5.7.1 <user@sub.valias.test>: Relay access denied".into(),
        ),
        (
            "user%elsewhere@relay.test",
            "554 5.7.1 <user%elsewhere@relay.test>: Relay access denied".into(),
        ),
        (
            "elsewhere!user@relay.test",
            "554 5.7.1 <elsewhere!user@relay.test>: Relay access denied".into(),
        ),
        (
            "user@elsewhere@relay.test",
            "554 5.7.1 <user@elsewhere@relay.test>: Relay access denied".into(),
        ),
        (
            "\"user@elsewhere\"@relay.test",
            "554 5.7.1 <user@elsewhere@relay.test>: Relay access denied".into(),
        ),
    ] {
        assert_eq!(rcpt(&p, &c, to), want, "RCPT TO:<{to}>");
    }
    let p = policy(
        "forms-off",
        &format!("{BASE}inet_interfaces = loopback-only\nmynetworks = 127.0.0.0/8\nallow_percent_hack = no\nswap_bangpath = no\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &c, "user%local.test@local.test"),
        "554 5.7.1 <user%local.test@local.test>: Relay access denied"
    );
    assert_eq!(
        rcpt(&p, &c, "local.test!user@local.test"),
        "554 5.7.1 <local.test!user@local.test>: Relay access denied"
    );
}

#[test]
fn relay_before_recipient_order() {
    let conf = format!("{BASE}mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\nsmtpd_recipient_restrictions = check_recipient_access inline:{{{{u@elsewhere.example=REJECT rcpt-first}}}}\n");
    let p = policy("order36", &conf, &[]);
    assert_eq!(
        rcpt(&p, &who("203.0.113.9"), "u@elsewhere.example"),
        "554 5.7.1 <u@elsewhere.example>: Relay access denied"
    );
    let p = policy(
        "order-no",
        &format!("{conf}smtpd_relay_before_recipient_restrictions = no\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("203.0.113.9"), "u@elsewhere.example"),
        "554 5.7.1 <u@elsewhere.example>: Recipient address rejected: rcpt-first"
    );
    // An empty relay list with relay control in recipient restrictions.
    let p = policy("emptyrelay", &format!("{BASE}mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"), &[]);
    assert_eq!(
        rcpt(&p, &who("203.0.113.9"), "u@elsewhere.example"),
        "554 5.7.1 <u@elsewhere.example>: Relay access denied"
    );
    // OK in relay restrictions does not skip recipient restrictions (trap 2).
    let p = policy(
        "relayok",
        &format!("{BASE}mynetworks = 127.0.0.0/8\nsmtpd_recipient_restrictions = reject\n"),
        &[],
    );
    assert_eq!(
        rcpt(&p, &who("127.0.0.1"), "u@local.test"),
        "554 5.7.1 <u@local.test>: Recipient address rejected: Access denied"
    );
}

#[test]
fn reply_code_parameters() {
    let p = policy("codes", &format!("{BASE}mynetworks = 127.0.0.0/8\nrelay_domains_reject_code = 550\nsmtpd_relay_restrictions = reject_unauth_destination\n"), &[]);
    assert_eq!(
        rcpt(&p, &who("203.0.113.9"), "u@elsewhere.example"),
        "550 5.7.1 <u@elsewhere.example>: Relay access denied"
    );
    let p = policy("softb", &format!("{BASE}mynetworks = 127.0.0.0/8\nsoft_bounce = yes\nsmtpd_relay_restrictions = reject_unauth_destination\n"), &[]);
    assert_eq!(
        rcpt(&p, &who("203.0.113.9"), "u@elsewhere.example"),
        "454 4.7.1 <u@elsewhere.example>: Relay access denied"
    );
}

/// permit_inet_interfaces: OK for a client at one of inet_interfaces' addresses (loopback
/// here), not for proxy_interfaces' nor anyone else's (smtpd_check.c own_inet_addr).
#[test]
fn permit_inet_interfaces_is_the_server_s_own_addresses() {
    let p = policy(
        "inetif",
        "mydestination = local.test\nproxy_interfaces = 192.0.2.99\nsmtpd_relay_restrictions = permit_inet_interfaces, reject_unauth_destination\n",
        &[],
    );
    for own in ["127.0.0.1", "::1"] {
        assert_eq!(
            rcpt(&p, &who(own), "x@elsewhere.example"),
            "250 2.1.5 Ok",
            "{own}"
        );
    }
    for other in ["127.0.0.2", "192.0.2.99", "203.0.113.5"] {
        assert_eq!(
            rcpt(&p, &who(other), "x@elsewhere.example"),
            "554 5.7.1 <x@elsewhere.example>: Relay access denied",
            "{other}"
        );
    }
}
