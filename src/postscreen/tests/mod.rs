//! postscreen's settings with Postfix 3.7's defaults and old names, the access list, the
//! weighted score and its TTL, the cache plan, and the words of its replies and log lines
//! (checked against a running postscreen 3.7: see `tests/postscreen.rs`). The DNSBL score is
//! in [`dnsbl`].

mod dnsbl;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::screen::{delay, escape, pregreet_line, soften};
use super::*;
use crate::policy::main_cf::parse_main_cf;
use crate::policy::Policy;

const BANNER: &str = "mx.test ESMTP relayguard";

fn map(main_cf: &str) -> ParamMap {
    parse_main_cf(main_cf, Path::new("/nonexistent/main.cf")).unwrap()
}

fn compile(main_cf: &str) -> PostscreenSettings {
    match PostscreenSettings::compile(&map(main_cf), BANNER) {
        Ok(Some(s)) => s,
        Ok(None) => panic!("postscreen is off for {main_cf:?}"),
        Err(e) => panic!("{e:?}"),
    }
}

fn errors(main_cf: &str) -> Vec<String> {
    match PostscreenSettings::compile(&map(main_cf), BANNER) {
        Err(e) => e.iter().map(ToString::to_string).collect(),
        Ok(_) => panic!("{main_cf:?} compiled"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn off_unless_a_postscreen_parameter_is_set() {
    let none = PostscreenSettings::compile(&map("smtpd_banner = x\n"), BANNER).unwrap();
    assert!(none.is_none());
}

#[test]
fn postfix_defaults() {
    let s = compile("postscreen_dnsbl_sites =\n");
    assert_eq!(s.greet_banner.as_deref(), Some(BANNER));
    assert_eq!(s.greet_wait, Duration::from_secs(6));
    assert_eq!(s.greet_action, Action::Ignore);
    assert_eq!(s.greet_ttl, Duration::from_secs(86_400));
    assert_eq!(s.denylist_action, Action::Ignore);
    assert!(s.dnsbl.is_none(), "no sites, no DNSBL test");
    assert!(s.respectful_logging);
    assert!(!s.soft_bounce);
    assert_eq!(&*s.tag, "postfix/postscreen");
    assert_eq!(&*s.dnsblog_tag, "postfix/dnsblog");
    // The stress-dependent default, pasted as postconf -d prints it, is the unstressed 6s.
    let s = compile("postscreen_greet_wait = ${stress?{2}:{6}}s\n");
    assert_eq!(s.greet_wait, Duration::from_secs(6));
    let s = compile("postscreen_dnsbl_sites = zen.test\n");
    let t = s.dnsbl.unwrap();
    assert_eq!((t.threshold, t.allowlist_threshold), (1, 0));
    assert_eq!(t.action, Action::Ignore);
    assert_eq!(t.min_ttl, Duration::from_secs(60));
    assert_eq!(t.max_ttl, Duration::from_secs(3600));
    assert_eq!(t.timeout, Duration::from_secs(10));
}

#[test]
fn old_and_new_names() {
    let s = compile(
        "postscreen_blacklist_action = drop\npostscreen_dnsbl_sites = a.test\n\
         postscreen_dnsbl_whitelist_threshold = -2\npostscreen_dnsbl_ttl = 5m\n",
    );
    assert_eq!(s.denylist_action, Action::Drop);
    let t = s.dnsbl.unwrap();
    assert_eq!(t.allowlist_threshold, -2);
    // `${postscreen_dnsbl_ttl?{$postscreen_dnsbl_ttl}:{1}}h` is `5mh`: 5 minutes to conv_time.
    assert_eq!(t.max_ttl, Duration::from_secs(300));
    let s = compile(
        "postscreen_blacklist_action = drop\npostscreen_denylist_action = enforce\n\
         postscreen_dnsbl_sites = a.test\npostscreen_dnsbl_whitelist_threshold = -2\n\
         postscreen_dnsbl_allowlist_threshold = -5\npostscreen_dnsbl_ttl = 5m\n\
         postscreen_dnsbl_max_ttl = 2h\n",
    );
    assert_eq!(s.denylist_action, Action::Enforce);
    let t = s.dnsbl.unwrap();
    assert_eq!(t.allowlist_threshold, -5);
    assert_eq!(t.max_ttl, Duration::from_secs(7200));
}

#[test]
fn banner_expands_and_an_empty_one_turns_pregreet_off() {
    let s = compile("postscreen_greet_banner = $myhostname screening\nmyhostname = mx.test\n");
    assert_eq!(s.greet_banner.as_deref(), Some("mx.test screening"));
    let s = compile("postscreen_greet_banner = $smtpd_banner\n");
    assert_eq!(s.greet_banner.as_deref(), Some(BANNER));
    let s = compile("postscreen_greet_banner =\n");
    assert_eq!(s.greet_banner, None);
    assert!(!s.has_tests());
}

#[test]
fn respectful_logging_follows_the_compatibility_level() {
    assert!(compile("postscreen_greet_wait = 1s\ncompatibility_level = 3.6\n").respectful_logging);
    assert!(!compile("postscreen_greet_wait = 1s\ncompatibility_level = 2\n").respectful_logging);
    assert!(!compile("postscreen_greet_wait = 1s\nrespectful_logging = no\n").respectful_logging);
    assert_eq!(screen::listed(true, true), "ALLOWLISTED");
    assert_eq!(screen::listed(true, false), "DENYLISTED");
    assert_eq!(screen::listed(false, true), "WHITELISTED");
    assert_eq!(screen::listed(false, false), "BLACKLISTED");
}

#[test]
fn mistakes_are_reported_with_their_line() {
    let e = errors("postscreen_greet_action = reject\npostscreen_greet_wait = soon\n");
    assert_eq!(
        e,
        [
            "/nonexistent/main.cf:2: bad value for `postscreen_greet_wait`: `soon` is not a time like 6s, 1h or 1d",
            "/nonexistent/main.cf:1: bad value for `postscreen_greet_action`: `reject`: use ignore, enforce or drop",
        ]
    );
    let e = errors("postscreen_dnsbl_sites = a.test*x\n");
    assert_eq!(
        e,
        ["/nonexistent/main.cf:1: bad value for `postscreen_dnsbl_sites`: bad DNSBL weight factor \"x\" in \"a.test*x\""]
    );
    let e = errors("postscreen_dnsbl_sites = a.test=127.0.0\n");
    assert!(e[0].contains("bad DNSBL filter syntax"), "{e:?}");
    let e = errors("postscreen_dnsbl_sites = bad_domain!\n");
    assert!(e[0].contains("bad DNSBL domain name"), "{e:?}");
    let e = errors("postscreen_access_list = permit_sasl_authenticated\n");
    assert!(
        e[0].contains("unknown command: permit_sasl_authenticated"),
        "{e:?}"
    );
    let e = errors("postscreen_pipelining_enable = yes\n");
    assert!(e[0].contains("deep protocol tests"), "{e:?}");
    // Off, as written in many a main.cf, they load.
    compile("postscreen_pipelining_enable = no\npostscreen_bare_newline_enable = no\n");
}

fn mynetworks(list: &str) -> Policy {
    Policy::compile(&map(&format!("mynetworks = {list}\n"))).unwrap()
}

#[test]
fn access_list_first_decision_wins() {
    let s = compile(
        "postscreen_access_list = permit_mynetworks,\n  cidr:{ {127.0.0.20 reject}, {127.0.0.21 permit}, {127.0.0.22 dunno}, {127.0.0.0/24 reject} }\n",
    );
    let p = mynetworks("192.0.2.0/24");
    let judge = |a: &str| {
        let mut w = Vec::new();
        let v = s.access.evaluate(ip(a), p.mynetworks(), &mut w);
        assert!(w.is_empty(), "{w:?}");
        v
    };
    assert_eq!(judge("192.0.2.7"), AclVerdict::Permit);
    assert_eq!(judge("::ffff:192.0.2.7"), AclVerdict::Permit);
    assert_eq!(judge("127.0.0.20"), AclVerdict::Reject);
    assert_eq!(judge("127.0.0.21"), AclVerdict::Permit);
    assert_eq!(
        judge("127.0.0.22"),
        AclVerdict::Dunno,
        "dunno ends the list"
    );
    assert_eq!(judge("127.0.0.23"), AclVerdict::Reject);
    assert_eq!(judge("198.51.100.1"), AclVerdict::Dunno);
    // The default list permits mynetworks only.
    let d = compile("postscreen_greet_wait = 1s\n");
    assert_eq!(
        d.access
            .evaluate(ip("192.0.2.1"), p.mynetworks(), &mut Vec::new()),
        AclVerdict::Permit
    );
    assert_eq!(
        d.access
            .evaluate(ip("127.0.0.1"), p.mynetworks(), &mut Vec::new()),
        AclVerdict::Dunno
    );
}

#[test]
fn access_table_values_cannot_name_tables() {
    let s = compile(
        "postscreen_access_list = cidr:{ {127.0.0.30 cidr:/x}, {127.0.0.31 bogus}, {127.0.0.32 permit_mynetworks} }, reject\n",
    );
    let p = mynetworks("127.0.0.32");
    let mut w = Vec::new();
    assert_eq!(
        s.access.evaluate(ip("127.0.0.30"), p.mynetworks(), &mut w),
        AclVerdict::Reject
    );
    assert_eq!(w, ["table cidr:{ {127.0.0.30 cidr:/x}, {127.0.0.31 bogus}, {127.0.0.32 permit_mynetworks} }: lookup result \"cidr:/x\" is not allowed -- ignoring remainder of access list"]);
    let mut w = Vec::new();
    assert_eq!(
        s.access.evaluate(ip("127.0.0.31"), p.mynetworks(), &mut w),
        AclVerdict::Error
    );
    assert!(
        w[0].ends_with(": unknown command: bogus -- ignoring the remainder of this access list"),
        "{w:?}"
    );
    assert_eq!(
        s.access
            .evaluate(ip("127.0.0.32"), p.mynetworks(), &mut Vec::new()),
        AclVerdict::Permit
    );
}

#[test]
fn plan_follows_the_cache() {
    let s = compile("postscreen_dnsbl_sites = bl.test\n");
    let now = Millis(1_000_000);
    let fresh = s.plan(None, now);
    assert_eq!((fresh.pregreet, fresh.dnsbl, fresh.new), (true, true, true));
    let passed = PostscreenPass {
        pregreet: Some(now),
        dnsbl: Some(Millis(now.0 + 1)),
        ..PostscreenPass::default()
    };
    let p = s.plan(Some(&passed), now);
    assert_eq!((p.pregreet, p.dnsbl, p.new), (false, false, false));
    let later = s.plan(Some(&passed), Millis(now.0 + 1));
    assert_eq!(
        (later.pregreet, later.dnsbl, later.new),
        (true, false, false)
    );
    let half = PostscreenPass {
        pregreet: Some(now),
        ..PostscreenPass::default()
    };
    let p = s.plan(Some(&half), now);
    assert_eq!((p.pregreet, p.dnsbl, p.new), (false, true, true));
}

#[test]
fn cache_entries_renew_and_allowlisting_extends() {
    let old = PostscreenPass {
        pregreet: Some(Millis(50)),
        pipelining: Some(Millis(900)),
        ..PostscreenPass::default()
    };
    let renewed = screen::renewed(Some(old), None, Some(Millis(100)));
    assert_eq!(renewed.pregreet, Some(Millis(50)));
    assert_eq!(renewed.dnsbl, Some(Millis(100)));
    let allowed = screen::allowlisted(renewed, Millis(200));
    assert_eq!(allowed.pregreet, Some(Millis(200)));
    assert_eq!(allowed.pipelining, Some(Millis(900)), "a longer pass stays");
    assert_eq!(allowed.dnsbl, Some(Millis(100)));
    assert_eq!(allowed.non_smtp, Some(Millis(200)));
}

#[test]
fn words_as_postscreen_writes_them() {
    assert_eq!(
        escape(b"EHLO \x01bot\\x\r\nQUIT\r\n"),
        "EHLO \\001bot\\\\x\\r\\nQUIT\\r\\n"
    );
    assert_eq!(
        escape(b"\x07\x08\x0c\t\x0b\x7f\xc3"),
        "\\a\\b\\f\\t\\v\\177\\303"
    );
    assert_eq!(delay(Duration::from_micros(300)), "0");
    assert_eq!(delay(Duration::from_millis(500)), "0.5");
    assert_eq!(delay(Duration::from_millis(53)), "0.05");
    assert_eq!(delay(Duration::from_millis(534)), "0.53");
    assert_eq!(delay(Duration::from_millis(1_234)), "1.2");
    assert_eq!(delay(Duration::from_millis(2_001)), "2");
    assert_eq!(delay(Duration::from_millis(15_400)), "15");
    assert_eq!(delay(Duration::from_millis(999)), "1");
    assert_eq!(
        pregreet_line(
            b"EHLO bot.example\r\n",
            Duration::ZERO,
            "[127.0.0.10]:44065"
        ),
        "PREGREET 18 after 0 from [127.0.0.10]:44065: EHLO bot.example\\r\\n"
    );
    let long = vec![b'\r'; 80];
    let line = pregreet_line(&long, Duration::ZERO, "[::1]:25");
    assert!(
        line.starts_with("PREGREET 80 after 0 from [::1]:25: \\r\\r"),
        "{line}"
    );
    assert_eq!(
        line.len() - "PREGREET 80 after 0 from [::1]:25: ".len(),
        100
    );
    assert_eq!(
        screen::pregreet_reply(521).to_string(),
        "521 5.5.1 Protocol error"
    );
    assert_eq!(
        screen::denylisted_reply(550).to_string(),
        "550 5.3.2 Service currently unavailable"
    );
    assert_eq!(
        soften(screen::pregreet_reply(521)).to_string(),
        "421 4.5.1 Protocol error"
    );
    assert_eq!(screen::client(ip("::ffff:192.0.2.1"), 25), "[192.0.2.1]:25");
}

#[test]
fn only_smtp_listeners_run_it() {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let config = |policy: &str| {
        format!(
            "[policy]\n{policy}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:0\"\nrole = \"smtp\"\n\
             [[listener]]\nname = \"sub\"\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n\
             [[listener]]\nname = \"smtps\"\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n\
             [upstream]\nkind = \"smtp\"\naddress = \"127.0.0.1:10025\"\n",
            certs.join("dev-cert.pem").display(),
            certs.join("dev-key.pem").display()
        )
    };
    let load = |text: &str| {
        crate::config::load_str(text, Path::new("/nonexistent/relayguard.toml"))
            .unwrap_or_else(|e| panic!("{e:?}"))
    };
    let on = load(&config("postscreen_dnsbl_sites = \"zen.test\""));
    assert!(on.listener("mx").unwrap().postscreen.is_some());
    assert!(on.listener("sub").unwrap().postscreen.is_none());
    assert!(on.listener("smtps").unwrap().postscreen.is_none());
    let off = load(&config(""));
    assert!(off.listener("mx").unwrap().postscreen.is_none());
    // A mistake is the config's, at its line.
    let errors = crate::config::load_str(
        &config("postscreen_greet_action = \"reject\""),
        Path::new("/nonexistent/relayguard.toml"),
    )
    .err()
    .unwrap_or_default();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["/nonexistent/relayguard.toml:2: bad value for `postscreen_greet_action`: `reject`: use ignore, enforce or drop"]
    );
}

/// Pure like `policy/`: no async runtime, no sockets, no clock, no logging (STYLE.md 2).
#[test]
fn postscreen_module_does_no_io() {
    assert!(crate::purity::assert_no_io("postscreen", &crate::purity::IO_WORDS) >= 4);
}
