//! The weighted DNSBL score: weights, filters, allow lists, the site a reply names, the TTL
//! the result is cached for.

use std::time::Duration;

use super::{compile, ip};
use crate::postscreen::{screen, DomainReply};

fn listed(addrs: &[&str], ttl: u32) -> DomainReply {
    DomainReply {
        addrs: addrs.iter().map(|a| ip(a)).collect(),
        ttl: Some(ttl),
    }
}

fn not_listed(ttl: Option<u32>) -> DomainReply {
    DomainReply {
        addrs: Vec::new(),
        ttl,
    }
}

#[test]
fn weights_filters_and_allow_lists_add_up() {
    let s = compile(
        "postscreen_dnsbl_sites = bl1.test*2, bl2.test=127.0.0.[2..11]*3, wl.test=127.0.[0..255].[1..3]*-4\n\
         postscreen_dnsbl_threshold = 5\n",
    );
    let t = s.dnsbl.as_ref().unwrap();
    let names: Vec<_> = t.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["bl1.test", "bl2.test", "wl.test"]);
    assert_eq!(t.domains[1].query(ip("127.0.0.2")), "2.0.0.127.bl2.test");
    // One list alone is below the threshold, both reach it.
    let one = t.score(&[(0, listed(&["127.0.0.2"], 300))]);
    assert_eq!((one.total, t.fails(&one)), (2, false));
    let both = t.score(&[
        (0, listed(&["127.0.0.2"], 300)),
        (1, listed(&["127.0.0.4"], 300)),
    ]);
    assert_eq!((both.total, t.fails(&both)), (5, true));
    assert_eq!(
        both.name.as_deref(),
        Some("bl2.test"),
        "the largest weight names it"
    );
    // An answer outside the filter does not count.
    let out = t.score(&[
        (0, listed(&["127.0.0.2"], 300)),
        (1, listed(&["127.0.0.12"], 300)),
    ]);
    assert_eq!(out.total, 2);
    // An allow list cancels a listing.
    let allowed = t.score(&[
        (0, listed(&["127.0.0.2"], 300)),
        (1, listed(&["127.0.0.4"], 300)),
        (2, listed(&["127.0.9.2"], 300)),
    ]);
    assert_eq!((allowed.total, t.fails(&allowed)), (1, false));
    assert_eq!(allowed.name.as_deref(), Some("bl2.test"));
}

#[test]
fn equal_weights_name_the_first_reply() {
    let s = compile("postscreen_dnsbl_sites = a.test*2 b.test*2\npostscreen_dnsbl_threshold = 3\n");
    let t = s.dnsbl.unwrap();
    let score = t.score(&[
        (1, listed(&["127.0.0.2"], 60)),
        (0, listed(&["127.0.0.2"], 60)),
    ]);
    assert_eq!(score.name.as_deref(), Some("b.test"));
    assert_eq!(score.total, 4);
}

#[test]
fn a_domain_named_twice_is_asked_once_and_judged_by_each_filter() {
    let s = compile(
        "postscreen_dnsbl_sites = zen.test=127.0.0.[10..11]*3 zen.test=127.0.0.[2..3]*1\n\
         postscreen_dnsbl_threshold = 3\n",
    );
    let t = s.dnsbl.unwrap();
    assert_eq!(t.domains.len(), 1);
    assert_eq!(t.score(&[(0, listed(&["127.0.0.2"], 60))]).total, 1);
    assert_eq!(
        t.score(&[(0, listed(&["127.0.0.2", "127.0.0.10"], 60))])
            .total,
        4
    );
}

#[test]
fn the_reply_map_hides_a_secret_domain() {
    let s = compile(
        "postscreen_dnsbl_sites = key123.zen.dq.test*3\n\
         postscreen_dnsbl_reply_map = inline:{ key123.zen.dq.test=zen.dq.test }\n",
    );
    let t = s.dnsbl.unwrap();
    assert_eq!(t.domains[0].shown, "zen.dq.test");
    let score = t.score(&[(0, listed(&["127.0.0.2"], 60))]);
    assert_eq!(score.name.as_deref(), Some("zen.dq.test"));
    assert_eq!(
        screen::dnsbl_reply(550, ip("127.0.0.2"), score.name.as_deref()).to_string(),
        "550 5.7.1 Service unavailable; client [127.0.0.2] blocked using zen.dq.test"
    );
}

#[test]
fn ttl_is_the_deciding_replies_within_bounds() {
    let s = compile(
        "postscreen_dnsbl_sites = bl.test*2 wl.test*-1\npostscreen_dnsbl_threshold = 2\n\
         postscreen_dnsbl_min_ttl = 60s\npostscreen_dnsbl_max_ttl = 1h\n",
    );
    let t = s.dnsbl.unwrap();
    // Listed: the deny list's answer and the allow list's absence bound a fail.
    let fail = t.score(&[(0, listed(&["127.0.0.2"], 900)), (1, not_listed(Some(600)))]);
    assert_eq!(t.ttl(&fail), Duration::from_secs(600));
    // Not listed: the deny list's negative answer bounds the pass.
    let pass = t.score(&[(0, not_listed(Some(120))), (1, not_listed(Some(600)))]);
    assert_eq!(t.ttl(&pass), Duration::from_secs(120));
    // No TTL (or a failed lookup) means the minimum; a long one is cut to the maximum.
    assert_eq!(
        t.ttl(&t.score(&[(0, not_listed(None))])),
        Duration::from_secs(60)
    );
    assert_eq!(
        t.ttl(&t.score(&[(0, not_listed(Some(86_400)))])),
        Duration::from_secs(3600)
    );
    assert_eq!(t.ttl(&t.score(&[])), Duration::from_secs(60));
}

#[test]
fn a_low_enough_score_allowlists() {
    let s = compile(
        "postscreen_dnsbl_sites = wl.test*-5 bl.test*3\npostscreen_dnsbl_allowlist_threshold = -3\n",
    );
    let t = s.dnsbl.unwrap();
    let score = t.score(&[(0, listed(&["127.0.9.2"], 60))]);
    assert!(t.allowlists(&score, false));
    assert!(
        !t.allowlists(&score, true),
        "a failed test cannot be undone"
    );
    let score = t.score(&[
        (0, listed(&["127.0.9.2"], 60)),
        (1, listed(&["127.0.0.2"], 60)),
    ]);
    assert!(!t.allowlists(&score, false), "-2 is above -3: {score:?}");
}
