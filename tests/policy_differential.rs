//! Differential test: one scenario table, run against a real Postfix 3.7 and against relayguard
//! three ways: the engine's library trace (`Policy::trace`), the live binary through a PROXY
//! listener (the header sets the client, a private dnsmasq gives it its name), and the
//! `relayguard check --json` command line. Every reply (code, enhanced code, text) of every
//! step must be the same on every leg.
//!
//! Starts private Postfix instances on free loopback ports (needs root and the `postfix`
//! binary; skipped with a message otherwise), pretends to be each client with XCLIENT, and stops
//! each instance with its own `postfix stop`. Scenarios run on a few worker threads, each with
//! its own Postfix, so the file stays well under a minute. Nothing from `/work/shared` is read.
//!
//! The SASL gate is not a differential case: Postfix only hides AUTH from the clients in
//! smtpd_sasl_exceptions_networks, relayguard also refuses it; `sasl_exceptions_gate` asserts
//! that difference explicitly.

// Test code: a broken setup should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use relayguard::policy::main_cf::parse_main_cf;
use relayguard::policy::{Client, Policy};
use relayguard::session::phase::Rules;
use relayguard::session::trace::{trace, Script};
use support::client::{auth_plain, Client as SmtpClient};
use support::dns::{start_dnsmasq_with, Dnsmasq};
use support::postfix::Postfix as HarnessPostfix;
use support::process::{self, free_port};
use support::relayguard::{Identity, Relayguard, Role, TRUST_LOOPBACK_PROXY};

// ---------------------------------------------------------------------------------------------
// The scenario table
// ---------------------------------------------------------------------------------------------

/// One client session: connect as `addr` (named `name` when its DNS is forward-confirmed),
/// optionally EHLO `helo`, then MAIL FROM `from` and RCPT TO `rcpt`.
///
/// An address has one name in the whole table (or none): the live leg's dnsmasq serves the
/// table's names, and `dns_records` refuses an address with two.
struct Case {
    addr: &'static str,
    name: Option<&'static str>,
    helo: Option<&'static str>,
    from: &'static str,
    rcpt: &'static str,
}

const fn c(
    addr: &'static str,
    name: Option<&'static str>,
    helo: Option<&'static str>,
    from: &'static str,
    rcpt: &'static str,
) -> Case {
    Case {
        addr,
        name,
        helo,
        from,
        rcpt,
    }
}

/// main.cf lines (`@DIR@` = the table directory) and the table files they name. `hash:` and
/// `lmdb:` tables are compiled with postmap for Postfix; relayguard reads their source.
struct Scenario {
    name: &'static str,
    policy: &'static str,
    tables: &'static [(&'static str, &'static str)],
    cases: &'static [Case],
}

const H: Option<&str> = Some("c.example");
const LOCALHOST: Option<&str> = Some("localhost");
const XORG: Option<&str> = Some("x.example.org");

const SCENARIOS: &[Scenario] = &[
    // Forum problem 1: "exclude one host of my LAN from relaying". `!` entries must come first.
    Scenario {
        name: "forum mynetworks exclusion",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8 !192.168.87.9 192.168.87.0/24\nsmtpd_relay_restrictions = permit_mynetworks, reject\n",
        tables: &[],
        cases: &[
            c("192.168.87.9", None, H, "a@b.example", "x@elsewhere.example"),
            c("192.168.87.10", None, H, "a@b.example", "x@elsewhere.example"),
            c("203.0.113.9", None, H, "a@b.example", "postmaster"),
        ],
    },
    Scenario {
        name: "mynetworks first match, IPv6",
        policy: "mydestination = local.test\nmynetworks = 10.0.0.0/8 !10.1.0.0/16 ![2001:db8:bad::]/48 [2001:db8::]/32 [::1]/128\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
        tables: &[],
        cases: &[
            // 10/8 matches first: the exclusion after it is dead.
            c("10.1.2.3", None, H, "a@b.example", "x@elsewhere.example"),
            c("10.2.0.1", None, H, "a@b.example", "x@elsewhere.example"),
            c("2001:db8:bad::1", None, H, "a@b.example", "x@elsewhere.example"),
            c("2001:db8:bad::1", None, H, "a@b.example", "x@local.test"),
            c("2001:db8:1::1", None, H, "a@b.example", "x@elsewhere.example"),
            c("2001:db9::1", None, H, "a@b.example", "x@elsewhere.example"),
        ],
    },
    // Issue 12: virtual_alias_domains and virtual_mailbox_domains default to the maps, whose
    // domain keys make a domain final (only listed users: Postfix's
    // smtpd_reject_unlisted_recipient would answer the others).
    Scenario {
        name: "virtual maps as the virtual domains' default",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nvirtual_alias_maps = texthash:@DIR@/valiases\nvirtual_mailbox_maps = texthash:@DIR@/vmailboxes\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
        tables: &[
            ("valiases", "valias.test whatever\nalias@valias.test someone@local.test\n"),
            ("vmailboxes", "vbox.test whatever\nuser@vbox.test vbox/user/\n"),
        ],
        cases: &[
            c("203.0.113.5", None, H, "a@b.example", "alias@valias.test"),
            c("203.0.113.5", None, H, "a@b.example", "user@vbox.test"),
            c("203.0.113.5", None, H, "a@b.example", "x@elsewhere.example"),
            c("203.0.113.5", None, H, "a@b.example", "x@sub.valias.test"),
        ],
    },
    // Issue 12: permit_inet_interfaces, the client at one of the server's own addresses. Only
    // loopback clients here: Postfix judges the socket's peer (own_inet_addr on
    // state->sockaddr), which XCLIENT does not change, so the reference permits every XCLIENT
    // client; behind a PROXY header (smtpd_peer_hostaddr_to_sockaddr) it judges the real
    // client, as relayguard does. The refusal of other clients is a unit test.
    Scenario {
        name: "permit_inet_interfaces",
        policy: "mydestination = local.test\nmynetworks = 192.0.2.0/24\nsmtpd_relay_restrictions = permit_inet_interfaces, reject_unauth_destination\n",
        tables: &[],
        cases: &[
            c("127.0.0.1", LOCALHOST, H, "a@b.example", "x@elsewhere.example"),
            c("::1", LOCALHOST, H, "a@b.example", "x@elsewhere.example"),
        ],
    },
    // The open-relay address forms (postfix-semantics 6.2).
    // Issue 12: reject_unlisted_recipient, implied by smtpd_reject_unlisted_recipient = yes:
    // each address class checked against its own table (check_rcpt_maps), the addresses a
    // rewriting map knows taken as valid, the local parts never refused in a local domain.
    Scenario {
        name: "unlisted recipients per address class",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nrecipient_delimiter = +\nlocal_recipient_maps = texthash:@DIR@/local_users\ncanonical_maps = texthash:@DIR@/canonical\nvirtual_alias_domains = valias.test\nvirtual_alias_maps = texthash:@DIR@/valiases\nvirtual_mailbox_domains = vbox.test\nvirtual_mailbox_maps = texthash:@DIR@/vmailboxes\nrelay_domains = relay.test\nrelay_recipient_maps = texthash:@DIR@/relay_users\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
        tables: &[
            ("local_users", "alice x\ncarol+list x\n"),
            ("canonical", "bob@local.test alice@local.test\n"),
            ("valiases", "alias@valias.test someone@local.test\n"),
            ("vmailboxes", "user@vbox.test vbox/user/\n@vall.test x\n"),
            ("relay_users", "known@relay.test x\n"),
        ],
        cases: &[
            c("203.0.113.5", None, H, "a@b.example", "alice@local.test"),
            c("203.0.113.5", None, H, "a@b.example", "Alice+tag@Local.Test"),
            c("203.0.113.5", None, H, "a@b.example", "carol+list@local.test"),
            c("203.0.113.5", None, H, "a@b.example", "carol@local.test"),
            c("203.0.113.5", None, H, "a@b.example", "nobody@local.test"),
            c("203.0.113.5", None, H, "a@b.example", "bob@local.test"),
            c("203.0.113.5", None, H, "a@b.example", "postmaster@local.test"),
            c("203.0.113.5", None, H, "a@b.example", "MAILER-DAEMON@local.test"),
            c("203.0.113.5", None, H, "a@b.example", "double-bounce@local.test"),
            c("203.0.113.5", None, H, "a@b.example", "alias@valias.test"),
            c("203.0.113.5", None, H, "a@b.example", "nobody@valias.test"),
            c("203.0.113.5", None, H, "a@b.example", "user@vbox.test"),
            c("203.0.113.5", None, H, "a@b.example", "other@vbox.test"),
            c("127.0.0.1", LOCALHOST, H, "a@b.example", "other@vbox.test"),
            c("127.0.0.1", LOCALHOST, H, "a@b.example", "x@elsewhere.example"),
            c("203.0.113.5", None, H, "a@b.example", "known@relay.test"),
            c("203.0.113.5", None, H, "a@b.example", "unknown@relay.test"),
        ],
    },
    // The explicit restrictions, the sender side, codes and table names.
    Scenario {
        name: "reject_unlisted_sender and the explicit forms",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nlocal_recipient_maps = texthash:@DIR@/local_users\nsmtpd_reject_unlisted_sender = yes\nsmtpd_reject_unlisted_recipient = no\nshow_user_unknown_table_name = no\nunknown_local_recipient_reject_code = 450\nsmtpd_sender_restrictions = warn_if_reject reject_unlisted_sender\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\nsmtpd_recipient_restrictions = check_recipient_access texthash:@DIR@/strict, permit\nstrict_class = reject_unlisted_recipient\nsmtpd_restriction_classes = strict_class\n",
        tables: &[
            ("local_users", "alice x\n"),
            ("strict", "strict.example strict_class\nlocal.test strict_class\n"),
        ],
        cases: &[
            c("203.0.113.5", None, H, "alice@local.test", "nobody@local.test"),
            c("203.0.113.5", None, H, "ghost@local.test", "alice@local.test"),
            c("203.0.113.5", None, H, "", "alice@local.test"),
            c("127.0.0.1", LOCALHOST, H, "alice@local.test", "x@elsewhere.example"),
        ],
    },
    Scenario {
        name: "address forms",
        policy: "mydestination = local.test\nrelay_domains = relay.test\nvirtual_alias_domains = valias.test\nmynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
        tables: &[],
        cases: &[
            c("203.0.113.5", None, H, "s@sender.example", "USER@LOCAL.TEST"),
            c("203.0.113.5", None, H, "s@sender.example", "user@local.test."),
            c("203.0.113.5", None, H, "s@sender.example", "user@sub.local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user@elsewhere@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "\"user@elsewhere\"@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "\"user\"@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user%elsewhere@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user%local.test@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "elsewhere!user@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "local.test!user@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "@local.test:user@elsewhere"),
            c("203.0.113.5", None, H, "s@sender.example", "@elsewhere:user@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "@a,@b:user@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user@[127.0.0.1]"),
            c("203.0.113.5", None, H, "s@sender.example", "user@[IPv6:::1]"),
            c("203.0.113.5", None, H, "s@sender.example", "user@[192.0.2.2]"),
            c("203.0.113.5", None, H, "s@sender.example", "user@sub.relay.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user%elsewhere@relay.test"),
            c("203.0.113.5", None, H, "s@sender.example", "\"user@elsewhere\"@relay.test"),
            c("203.0.113.5", None, H, "s@sender.example", "postmaster@elsewhere"),
            c("203.0.113.5", None, H, "s@sender.example", "user"),
            // Not `user@valias.test`: Postfix answers `550 5.1.1 ... User unknown in virtual
            // alias table` (smtpd_reject_unlisted_recipient), which is the upstream's knowledge.
            c("2001:db8::5", None, H, "s@sender.example", "user@elsewhere.example"),
        ],
    },
    Scenario {
        name: "address forms without percent hack and bang swap",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nallow_percent_hack = no\nswap_bangpath = no\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
        tables: &[],
        cases: &[
            c("203.0.113.5", None, H, "s@sender.example", "user%local.test@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "local.test!user@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "@elsewhere:user@local.test"),
        ],
    },
    // Forum problem 3: localhost may only send to local domains (RESTRICTION_CLASS_README).
    Scenario {
        name: "local_only class",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8 [::1]/128\nsmtpd_restriction_classes = local_only\nlocal_only = check_recipient_access texthash:@DIR@/local_domains, reject\nsmtpd_recipient_restrictions = check_client_access texthash:@DIR@/rc_clients, check_sender_access texthash:@DIR@/rc_senders\n",
        tables: &[("local_domains", "local.test OK\n"), ("rc_clients", "127.0.0.1 local_only\n::1 local_only\n"), ("rc_senders", "foo@sender.example local_only\n")],
        cases: &[
            c("127.0.0.1", LOCALHOST, H, "a@b.example", "user@local.test"),
            c("127.0.0.1", LOCALHOST, H, "a@b.example", "user@remote.example"),
            c("127.0.0.1", LOCALHOST, H, "a@b.example", "user@sub.local.test"),
            c("::1", LOCALHOST, H, "a@b.example", "user@local.test"),
            c("::1", LOCALHOST, H, "a@b.example", "user@remote.example"),
            c("127.0.0.2", None, H, "a@b.example", "user@remote.example"),
            c("127.0.0.2", None, H, "foo@sender.example", "user@remote.example"),
        ],
    },
    // A class named directly in a restriction list, answering with the list's voice.
    Scenario {
        name: "class in a list",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_restriction_classes = partners\npartners = check_client_access cidr:@DIR@/partners.cidr, reject_unauth_destination\nsmtpd_relay_restrictions = permit_mynetworks, partners\n",
        tables: &[("partners.cidr", "198.51.100.64/26 OK\n[2001:db8:77::]/48 OK\n")],
        cases: &[
            c("198.51.100.77", None, H, "a@b.example", "x@elsewhere.example"),
            c("2001:db8:77::9", None, H, "a@b.example", "x@elsewhere.example"),
            c("198.51.100.7", None, H, "a@b.example", "x@elsewhere.example"),
            c("198.51.100.7", None, H, "a@b.example", "x@local.test"),
        ],
    },
    Scenario {
        name: "access actions and lookup order",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nrecipient_delimiter = +\nsmtpd_client_restrictions = check_client_access texthash:@DIR@/clients\nsmtpd_helo_restrictions = check_helo_access texthash:@DIR@/helos\nsmtpd_sender_restrictions = check_sender_access texthash:@DIR@/senders\nsmtpd_recipient_restrictions = check_recipient_access texthash:@DIR@/rcpts, check_recipient_access pcre:@DIR@/rcpts.pcre\nsmtpd_relay_restrictions = permit_mynetworks, permit_auth_destination, reject\n",
        tables: &[
            ("clients", "10.9.7 REJECT net 10.9.7\n2001:db8:1 REJECT v6 3 groups\nexample.net REJECT parent\n"),
            ("helos", "bad.helo.example REJECT bad helo\n"),
            ("senders", "<> REJECT null sender key\nc550dsn@s.test 550 5.1.1 txt\n"),
            ("rcpts", "n550@local.test 550 nope\nd550@local.test 550\nrej4@local.test REJECT 4.7.9 txt\nr418@local.test REJECT 4.1.8 four\nrej9@local.test REJECT 5.7.9\nn421@local.test 421 closing\ndip@local.test DEFER_IF_PERMIT 4.7.5 dip text\next@local.test REJECT no ext\nsomeuser@ REJECT user at\n"),
            ("rcpts.pcre", "/^(\\w+)\\.(\\w+)@local\\.test$$/ REJECT $2 of $1\n"),
        ],
        cases: &[
            c("10.9.7.1", None, H, "a@b.example", "u@local.test"),
            c("2001:db8:1:9::9", None, H, "a@b.example", "u@local.test"),
            c("192.0.2.31", Some("mx.example.net"), H, "a@b.example", "u@local.test"),
            c("192.0.2.1", None, Some("BAD.HELO.EXAMPLE."), "a@b.example", "u@local.test"),
            c("192.0.2.1", None, Some("BAD.HELO.EXAMPLE"), "a@b.example", "u@local.test"),
            c("192.0.2.1", None, H, "", "u@local.test"),
            c("192.0.2.1", None, H, "c550dsn@s.test", "u@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "n550@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "d550@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "rej4@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "r418@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "rej9@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "n421@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "dip@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "ext+foo@local.test"),
            c("192.0.2.1", None, H, "a@b.example", "SomeUser@Other.Where"),
            c("192.0.2.1", None, H, "a@b.example", "Joe.Promo@local.test"),
        ],
    },
    Scenario {
        name: "pattern tables",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_client_restrictions = check_client_access cidr:@DIR@/c.cidr, check_client_access regexp:@DIR@/c.re\nsmtpd_helo_restrictions = check_helo_access pcre:@DIR@/h.pcre\nsmtpd_sender_restrictions = check_sender_access regexp:@DIR@/s.re\n",
        tables: &[
            ("c.cidr", "192.0.2.0/28 REJECT first block\n192.0.2.0/24 OK\n[2001:db8::]/32 REJECT v6 block\nif 172.16.0.0/12\n!172.16.1.0/24 REJECT in 172.16/12 but not 172.16.1/24\nendif\n"),
            ("c.re", "/^unknown$/ REJECT no rdns\n"),
            ("h.pcre", "/^\\[?192\\.0\\.2\\.\\d+\\]?$/ REJECT literal helo\n"),
            ("s.re", "/^(.*)@spam\\.example$/ REJECT user $1 is spam\n/^BIG@/i REJECT case-sensitive\n/^spam\\.example$/ REJECT domain only\n"),
        ],
        cases: &[
            c("192.0.2.5", XORG, H, "a@b.example", "u@local.test"),
            c("192.0.2.20", None, H, "a@b.example", "u@local.test"),
            c("2001:db8::1", XORG, H, "a@b.example", "u@local.test"),
            c("172.16.9.9", XORG, H, "a@b.example", "u@local.test"),
            c("172.16.1.5", XORG, H, "a@b.example", "u@local.test"),
            c("203.0.113.2", None, H, "a@b.example", "u@local.test"),
            c("203.0.113.1", XORG, Some("[192.0.2.7]"), "a@b.example", "u@local.test"),
            c("203.0.113.1", XORG, H, "Joe@SPAM.example", "u@local.test"),
            c("203.0.113.1", XORG, H, "BIG@local.test", "u@local.test"),
            c("203.0.113.1", XORG, H, "a@spam.example.net", "u@local.test"),
        ],
    },
    // The remaining table types: hash and lmdb (postmap for Postfix, the source for
    // relayguard), static, inline.
    Scenario {
        name: "hash, lmdb, static and inline tables",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_recipient_restrictions = check_recipient_access hash:@DIR@/rcpt_hash, check_sender_access lmdb:@DIR@/snd_lmdb, check_helo_access inline:{{ok.example=OK}, {bad.example=REJECT inline says no}}, permit_mynetworks, check_client_access static:{REJECT static says no}\n",
        tables: &[
            ("rcpt_hash", "blocked@local.test REJECT hash says no\nsub.local.test 550 5.1.1 no subdomains\n"),
            ("snd_lmdb", "spam.example REJECT lmdb domain\nBoss@Local.Test OK\n"),
        ],
        cases: &[
            c("203.0.113.7", None, H, "a@b.example", "blocked@local.test"),
            c("203.0.113.7", None, H, "a@b.example", "u@a.sub.local.test"),
            c("203.0.113.7", None, H, "a@mail.spam.example", "u@local.test"),
            c("203.0.113.7", None, H, "boss@local.test", "u@local.test"),
            c("203.0.113.7", None, Some("ok.example"), "a@b.example", "u@local.test"),
            c("203.0.113.7", None, Some("bad.example"), "a@b.example", "u@local.test"),
            c("203.0.113.7", None, H, "a@b.example", "u@local.test"),
            c("127.0.0.5", None, H, "a@b.example", "u@local.test"),
            c("2001:db8:7::7", None, H, "a@b.example", "u@local.test"),
        ],
    },
    // Postfix 3.7's inline form for the pattern tables (issue 10): rules in braces in main.cf.
    Scenario {
        name: "inline cidr, regexp and pcre tables",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_client_restrictions = check_client_access cidr:{ {192.0.2.0/24 REJECT cidr  inline}, {0.0.0.0/0 OK} }\nsmtpd_helo_restrictions = check_helo_access regexp:{{/^bad\\.example$$/ REJECT regexp inline}, {if /\\.test$$/}, {/^a\\./ REJECT in if}, {endif}}\nsmtpd_sender_restrictions = check_sender_access pcre:{ { /^(\\w+)@spam\\.example$$/ REJECT spammer $$1 } }\n",
        tables: &[],
        cases: &[
            c("192.0.2.7", None, H, "a@b.example", "u@local.test"),
            c("198.51.100.7", None, Some("bad.example"), "a@b.example", "u@local.test"),
            c("198.51.100.7", None, Some("a.b.test"), "a@b.example", "u@local.test"),
            c("198.51.100.7", None, Some("b.b.test"), "joe@spam.example", "u@local.test"),
            c("198.51.100.7", None, H, "a@b.example", "u@local.test"),
        ],
    },
    // readllines() keeps the whitespace around a continuation break (issue 10).
    Scenario {
        name: "continuation lines in tables",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_recipient_restrictions = check_recipient_access texthash:@DIR@/cont, check_client_access cidr:@DIR@/cont.cidr\n",
        tables: &[
            ("cont", "retired@local.test REJECT This address\n    is retired\nfoo@local.test REJECT x # not a comment  \n  continued\n# comment\n\tmore\n"),
            ("cont.cidr", "192.0.2.0/24 REJECT cidr\n    continued   text\n"),
        ],
        cases: &[
            c("198.51.100.9", None, H, "a@b.example", "retired@local.test"),
            c("198.51.100.9", None, H, "a@b.example", "foo@local.test"),
            c("192.0.2.9", None, H, "a@b.example", "u@local.test"),
        ],
    },
    // The admin's own parameters, referred to as $name and $(name) (issue 10).
    Scenario {
        name: "user-defined parameters",
        policy: "mydestination = local.test\noffice_nets = 192.0.2.0/24\nmynetworks = 127.0.0.0/8 $office_nets\nmy_sender_checks = check_sender_access inline:{{bad@s.test=REJECT user defined}}\nsmtpd_sender_restrictions = $(my_sender_checks)\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
        tables: &[],
        cases: &[
            c("192.0.2.9", None, H, "a@b.example", "u@elsewhere.example"),
            c("198.51.100.9", None, H, "a@b.example", "u@elsewhere.example"),
            c("198.51.100.9", None, H, "bad@s.test", "u@local.test"),
        ],
    },
    Scenario {
        name: "helo syntax and fqdn",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname\nsmtpd_sender_restrictions = reject_non_fqdn_sender\nsmtpd_recipient_restrictions = warn_if_reject reject_non_fqdn_recipient, defer_if_reject, permit_mynetworks, reject\n",
        tables: &[],
        cases: &[
            c("192.0.2.1", None, Some("bad_helo!"), "a@b.example", "u@local.test"),
            c("192.0.2.1", None, Some("[1.2.3.999]"), "a@b.example", "u@local.test"),
            c("192.0.2.1", None, Some("nodots"), "a@b.example", "u@local.test"),
            c("192.0.2.1", None, Some("1.2.3.4"), "a@b.example", "u@local.test"),
            c("192.0.2.1", None, Some("host.example."), "user@host", "u@local.test"),
            c("192.0.2.1", None, None, "a@b.example", "u@local"),
            c("127.0.0.1", LOCALHOST, None, "a@b.example", "u@local"),
        ],
    },
    // Address literals as Postfix's valid_mailhost_addr() judges them (issue 10): both HELO
    // syntax restrictions answer a bad literal with `invalid ip address`.
    Scenario {
        name: "helo address literals, reject_invalid_helo_hostname",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_helo_restrictions = reject_invalid_helo_hostname\n",
        tables: &[],
        cases: HELO_LITERALS,
    },
    Scenario {
        name: "helo address literals, reject_non_fqdn_helo_hostname",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n",
        tables: &[],
        cases: HELO_LITERALS,
    },
    // The same client, HELO and sender rejects with smtpd_delay_reject yes and no: the reply
    // moves from RCPT to the connect, EHLO and MAIL stages, and everything after gets 503.
    Scenario {
        name: "smtpd_delay_reject = yes",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_delay_reject = yes\nsmtpd_client_restrictions = check_client_access inline:{{10.9.8.7=REJECT full address}, {2001:db8:98::7=REJECT v6 address}}\nsmtpd_helo_restrictions = check_helo_access inline:{{bad.helo.example=REJECT bad helo}}\nsmtpd_sender_restrictions = check_sender_access inline:{{bad@s.test=REJECT bad sender}}\n",
        tables: &[],
        cases: &[
            c("10.9.8.7", None, H, "a@b.example", "u@local.test"),
            c("2001:db8:98::7", None, H, "a@b.example", "u@local.test"),
            c("192.0.2.50", None, Some("bad.helo.example"), "a@b.example", "u@local.test"),
            c("192.0.2.50", None, H, "bad@s.test", "u@local.test"),
            c("10.9.8.7", None, H, "a@b.example", "postmaster"),
        ],
    },
    Scenario {
        name: "smtpd_delay_reject = no",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_delay_reject = no\nsmtpd_client_restrictions = check_client_access inline:{{10.9.8.7=REJECT full address}, {2001:db8:98::7=REJECT v6 address}}\nsmtpd_helo_restrictions = check_helo_access inline:{{bad.helo.example=REJECT bad helo}}\nsmtpd_sender_restrictions = check_sender_access inline:{{bad@s.test=REJECT bad sender}}\n",
        tables: &[],
        cases: &[
            c("10.9.8.7", None, H, "a@b.example", "u@local.test"),
            c("2001:db8:98::7", None, H, "a@b.example", "u@local.test"),
            c("192.0.2.50", None, Some("bad.helo.example"), "a@b.example", "u@local.test"),
            c("192.0.2.50", None, H, "bad@s.test", "u@local.test"),
            c("192.0.2.50", None, H, "a@b.example", "u@elsewhere.example"),
        ],
    },
    Scenario {
        name: "defer_if_permit across stages",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_client_restrictions = defer_if_permit\n",
        tables: &[],
        cases: &[
            c("203.0.113.9", None, H, "a@b.example", "u@local.test"),
            c("203.0.113.9", None, H, "a@b.example", "u@elsewhere.example"),
        ],
    },
];

/// HELO arguments around Postfix's address-literal rules: leading zeros pass, a zero first
/// octet, a misplaced dot, a wrong octet count or an IPv6 literal without `IPv6:` do not;
/// `[IPv6:...]` follows valid_ipv6_hostaddr() (which takes `1:2:3`); bare addresses and a
/// trailing dot as reject_invalid_hostname() sees them.
const HELO_LITERALS: &[Case] = &[
    c(
        "192.0.2.1",
        None,
        Some("[321.255.255.255]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[0.255.255.255]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[1.2.3.321]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[1.2.3]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[1.2.3.4.5]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[1..2.3.4]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[.1.2.3.4]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[1.2.3.4.5.]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[1.2.3.4"),
        "a@b.example",
        "u@local.test",
    ),
    c("192.0.2.1", None, Some("[]"), "a@b.example", "u@local.test"),
    c(
        "192.0.2.1",
        None,
        Some("[01.2.3.4]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[0.0.0.0]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[::1]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[IPv6:::1]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[ipv6:2001:db8::1]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[IPv6:1:2:3]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[IPv6:1:2]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[IPv6:1::2::3]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[IPv6:::ffff:1.2.3.4]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[IPv6:1:2:3:4:5:6:7:1.2.3.4]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("[IPv6:1.2.3.4]"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("1.2.3.4."),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("0.1.2.3"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("::1"),
        "a@b.example",
        "u@local.test",
    ),
    c(
        "192.0.2.1",
        None,
        Some("host.example."),
        "a@b.example",
        "u@local.test",
    ),
];

/// Both sides share these; Postfix gets them from its template, relayguard from here.
const SHARED: &[(&str, &str)] = &[
    ("myhostname", "mx.relayguard.test"),
    ("mydomain", "relayguard.test"),
    ("inet_interfaces", "loopback-only"),
];

/// The `name = value` pairs of a scenario's policy, with `@DIR@/` replaced by `dir`.
fn policy_params(sc: &Scenario, dir: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = SHARED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for line in sc.policy.replace("@DIR@/", dir).lines() {
        let (k, v) = line.split_once('=').expect("name = value");
        out.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

/// The live leg's dnsmasq records: every named address of the table, forward and reverse.
fn dns_records() -> Vec<String> {
    let mut names: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for case in SCENARIOS.iter().flat_map(|s| s.cases) {
        let before = *names.entry(case.addr).or_insert(case.name);
        assert_eq!(
            before, case.name,
            "{} has two names in the table; the live leg's DNS can give it only one",
            case.addr
        );
    }
    names
        .into_iter()
        .filter_map(|(addr, name)| name.map(|n| format!("--host-record={n},{addr}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What is compared: every reply as code, enhanced code and text
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    code: u16,
    enhanced: Option<String>,
    text: String,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.enhanced {
            Some(e) => write!(f, "{} {e} {}", self.code, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}

impl Seen {
    /// The greeting's text is the banner (`smtpd_banner`), the session's business: a 220
    /// compares as its code only.
    fn greeting(self) -> Seen {
        if self.code == 220 {
            Seen {
                code: 220,
                enhanced: None,
                text: "(banner)".into(),
            }
        } else {
            self
        }
    }

    /// A reply line from the wire: `554 5.7.1 <x>: text`, `250-mx.example`, or `EOF`.
    fn parse(line: &str) -> Seen {
        let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        let rest = line.get(4..).unwrap_or("");
        let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
        let is_enhanced = first.split('.').count() == 3
            && first
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if code != 0 && is_enhanced {
            Seen {
                code,
                enhanced: Some(first.into()),
                text: after.into(),
            }
        } else if code != 0 {
            Seen {
                code,
                enhanced: None,
                text: rest.into(),
            }
        } else {
            Seen {
                code: 0,
                enhanced: None,
                text: line.into(),
            }
        }
    }
}

fn show(t: &[Seen]) -> String {
    t.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

// ---------------------------------------------------------------------------------------------
// The reference: a private Postfix with discard transports
// ---------------------------------------------------------------------------------------------

const MAIN_CF: &str = "compatibility_level = 3.6
queue_directory = @DIR@/queue
data_directory = @DIR@/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = all
myhostname = mx.relayguard.test
mydomain = relayguard.test
myorigin = $myhostname
smtpd_authorized_xclient_hosts = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
default_transport = discard:
local_transport = discard:
relay_transport = discard:
virtual_transport = discard:
smtpd_error_sleep_time = 0
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
";

const MASTER_CF: &str = "127.0.0.1:@PORT@ inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
";

/// One worker's private Postfix; reconfigured (stop, start) per scenario.
struct Reference {
    dir: tempfile::TempDir,
    port: u16,
    started: bool,
}

impl Drop for Reference {
    fn drop(&mut self) {
        if self.started {
            self.stop();
        }
    }
}

impl Reference {
    fn available() -> Result<(), String> {
        if !process::is_root() {
            return Err("not root".into());
        }
        if Command::new("postconf")
            .arg("mail_version")
            .output()
            .is_err()
        {
            return Err("postfix is not installed".into());
        }
        Ok(())
    }

    fn new() -> Reference {
        let dir = tempfile::Builder::new()
            .prefix("rg-pfdiff-")
            .tempdir()
            .unwrap();
        // smtpd runs as `postfix` and reads the tables.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["etc", "queue", "data", "tables"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let _ = Command::new("chown")
            .arg("postfix")
            .arg(dir.path().join("data"))
            .status();
        let port = free_port();
        let master = MASTER_CF.replace("@PORT@", &port.to_string());
        std::fs::write(dir.path().join("etc/master.cf"), master).unwrap();
        Reference {
            dir,
            port,
            started: false,
        }
    }

    fn tables(&self) -> PathBuf {
        self.dir.path().join("tables")
    }

    fn postfix(&self, what: &str) -> std::process::Output {
        Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg(what)
            .output()
            .unwrap()
    }

    fn stop(&mut self) {
        let pid_file = self.dir.path().join("queue/pid/master.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let _ = self.postfix("stop");
        let deadline = Instant::now() + Duration::from_secs(15);
        while pid.is_some_and(process::pid_alive) && Instant::now() < deadline {
            std::thread::sleep(process::POLL);
        }
        self.started = false;
    }

    /// Writes the scenario's tables (compiling hash/lmdb ones), installs its policy and
    /// (re)starts so that new sessions use it. A stop/start gives a clean slate where a
    /// reload would let old smtpd processes serve one more session.
    fn configure(&mut self, sc: &Scenario) {
        let tables = self.tables();
        for (name, text) in sc.tables {
            std::fs::write(tables.join(name), text).unwrap();
        }
        for word in sc.policy.split([' ', ',', '\n']) {
            for ty in ["hash", "lmdb"] {
                if let Some(name) = word.strip_prefix(&format!("{ty}:@DIR@/")) {
                    let out = Command::new("postmap")
                        .arg(format!("{ty}:{}", tables.join(name).display()))
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "postmap {ty}:{name}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        let dir = format!("{}/", tables.display());
        let mut main = MAIN_CF.replace("@DIR@", self.dir.path().to_str().unwrap());
        for (k, v) in policy_params(sc, &dir).iter().skip(SHARED.len()) {
            main.push_str(&format!("{k} = {v}\n"));
        }
        std::fs::write(self.dir.path().join("etc/main.cf"), main).unwrap();
        if self.started {
            self.stop();
        }
        let out = self.postfix("start");
        assert!(
            out.status.success(),
            "postfix start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.started = true;
        assert!(
            process::wait_listening(self.port, Duration::from_secs(15), || true),
            "postfix did not listen on {}",
            self.port
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The four legs: each returns the replies of one session, in order
// ---------------------------------------------------------------------------------------------

/// How the far side learns who the client is.
enum Introduce {
    /// Postfix: XCLIENT after the greeting; its reply is the client's greeting.
    Xclient,
    /// relayguard: a PROXY v1 header before the greeting.
    Proxy,
}

/// One SMTP session over a blocking socket: greeting, EHLO (if any), MAIL, RCPT, QUIT. Only
/// each reply's first line counts (the EHLO keywords are compared in `sasl_exceptions_gate`).
fn dialogue(port: u16, case: &Case, how: Introduce) -> Vec<Seen> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let addr: IpAddr = case.addr.parse().unwrap();
    let greeting = match how {
        Introduce::Xclient => {
            read_reply(&mut r);
            let addr_attr = if addr.is_ipv6() {
                format!("IPV6:{addr}")
            } else {
                addr.to_string()
            };
            let name = case.name.unwrap_or("[UNAVAILABLE]");
            send(
                &mut w,
                &mut r,
                &format!("XCLIENT ADDR={addr_attr} NAME={name} REVERSE_NAME={name}"),
            )
        }
        Introduce::Proxy => {
            let header = match addr {
                IpAddr::V4(a) => format!("PROXY TCP4 {a} 127.0.0.1 40000 25\r\n"),
                IpAddr::V6(a) => format!("PROXY TCP6 {a} ::1 40000 25\r\n"),
            };
            w.write_all(header.as_bytes()).unwrap();
            read_reply(&mut r)
        }
    };
    let mut out = vec![Seen::parse(&greeting).greeting()];
    if let Some(h) = case.helo {
        out.push(Seen::parse(&send(&mut w, &mut r, &format!("EHLO {h}"))));
    }
    out.push(Seen::parse(&send(
        &mut w,
        &mut r,
        &format!("MAIL FROM:<{}>", case.from),
    )));
    out.push(Seen::parse(&send(
        &mut w,
        &mut r,
        &format!("RCPT TO:<{}>", case.rcpt),
    )));
    let _ = send(&mut w, &mut r, "QUIT");
    out
}

/// A reply's first line (`250-x` made `250 x`), or `EOF` if the server closed (after a 421).
fn read_reply(r: &mut BufReader<TcpStream>) -> String {
    let mut first = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return if first.is_empty() {
                "EOF".into()
            } else {
                first
            };
        }
        let line = line.trim_end().to_string();
        if first.is_empty() {
            first = line.replacen('-', " ", usize::from(line.as_bytes().get(3) == Some(&b'-')));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return first;
        }
    }
}

fn send(w: &mut TcpStream, r: &mut BufReader<TcpStream>, cmd: &str) -> String {
    if w.write_all(format!("{cmd}\r\n").as_bytes()).is_err() {
        return "EOF".into();
    }
    read_reply(r)
}

/// The engine as a library: `Policy::trace` on the scripted session.
fn trace_leg(policy: &Policy, case: &Case) -> Vec<Seen> {
    let mut client = Client::unnamed(case.addr.parse().unwrap(), 40000);
    if let Some(n) = case.name {
        client.name = n.into();
        client.reverse_name = n.into();
    }
    let mut s = Script::new(client);
    s.helo = case.helo.map(Into::into);
    s.sender = Some(case.from.into());
    s.recipients = vec![case.rcpt.into()];
    trace(policy, &Rules::default(), &s)
        .steps
        .iter()
        .map(|step| {
            let seen = Seen {
                code: step.reply.code,
                enhanced: step.reply.enhanced.clone(),
                text: step.reply.text.clone(),
            };
            if step.stage == "CONNECT" {
                seen.greeting()
            } else {
                seen
            }
        })
        .collect()
}

/// The command line: `relayguard check --json`, the replies read from the JSON fields.
fn check_leg(config: &Path, case: &Case) -> Vec<Seen> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relayguard"));
    cmd.arg("check")
        .arg("--config")
        .arg(config)
        .arg(format!("--client={}", case.addr))
        .arg(format!("--from={}", case.from))
        .arg(format!("--rcpt={}", case.rcpt))
        .arg("--json");
    if let Some(n) = case.name {
        cmd.arg(format!("--client-name={n}"));
    }
    if let Some(h) = case.helo {
        cmd.arg(format!("--helo={h}"));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 0: everything accepted, 1: something refused; 2 would be a config error.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "check exited with {:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("check --json: {e}: {stdout}"));
    let steps = json["steps"].as_array().expect("steps[]");
    let any_refused = steps.iter().any(|s| s["accepted"] == false);
    assert_eq!(
        out.status.code() == Some(1),
        any_refused,
        "exit code vs steps"
    );
    steps
        .iter()
        .map(|step| {
            let reply = &step["reply"];
            let seen = Seen {
                code: reply["code"].as_u64().expect("reply.code") as u16,
                enhanced: reply["enhanced"].as_str().map(str::to_owned),
                text: reply["text"].as_str().expect("reply.text").to_owned(),
            };
            assert_eq!(
                reply["line"].as_str(),
                Some(seen.to_string().as_str()),
                "reply.line agrees with its parts"
            );
            if step["stage"] == "CONNECT" {
                seen.greeting()
            } else {
                seen
            }
        })
        .collect()
}

/// The config the `check` leg reads: in the table directory, with relative table names, so
/// that they resolve against the config file's directory.
fn write_check_config(dir: &Path, sc: &Scenario) -> PathBuf {
    let mut t = String::from("[policy]\n");
    for (k, v) in policy_params(sc, "") {
        t.push_str(&format!("{k} = {}\n", toml::Value::String(v)));
    }
    t.push_str("\n[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:25\"\nrole = \"smtp\"\n");
    t.push_str("\n[upstream]\nkind = \"maildir\"\npath = \"maildir\"\n");
    let path = dir.join("check.toml");
    std::fs::write(&path, t).unwrap();
    path
}

/// The binary behind a PROXY listener, names from `dns`, a Maildir upstream that accepts
/// every command relayguard lets through (so a 250 to RCPT is the upstream's).
fn start_live(sc: &Scenario, dir: &str, dns: &Dnsmasq) -> Relayguard {
    let mut b = Relayguard::builder();
    for (k, v) in policy_params(sc, dir) {
        b = b.policy(&k, &v);
    }
    b.listener("mx", Role::Smtp)
        .listener_toml("mx", TRUST_LOOPBACK_PROXY)
        .upstream_maildir()
        .extra_toml(&format!(
            "[dns]\nlookups = \"always\"\nnameservers = [\"{}\"]\ntimeout = \"2s\"",
            dns.addr
        ))
        .start()
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    sessions: usize,
    diffs: Vec<String>,
}

/// Runs one scenario on every leg; Postfix is the reference.
fn run_scenario(pf: &mut Reference, sc: &Scenario, dns: &Dnsmasq, tally: &mut Tally) {
    pf.configure(sc);
    let dir = format!("{}/", pf.tables().display());
    let main_cf: String = policy_params(sc, &dir)
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let map = parse_main_cf(&main_cf, Path::new("main.cf")).unwrap();
    let policy = Policy::compile(&map).unwrap_or_else(|e| panic!("{}: {e:?}", sc.name));
    let check_config = write_check_config(&pf.tables(), sc);
    let live = start_live(sc, &dir, dns);
    for case in sc.cases {
        let want = dialogue(pf.port, case, Introduce::Xclient);
        let legs = [
            ("trace", trace_leg(&policy, case)),
            ("live", dialogue(live.port("mx"), case, Introduce::Proxy)),
            ("check", check_leg(&check_config, case)),
        ];
        tally.sessions += 1;
        for (leg, got) in legs {
            if got != want {
                tally.diffs.push(format!(
                    "[{}] {leg}: {} {:?} {:?} MAIL<{}> RCPT<{}>:\n  postfix:    {}\n  relayguard: {}",
                    sc.name,
                    case.addr,
                    case.name,
                    case.helo,
                    case.from,
                    case.rcpt,
                    show(&want),
                    show(&got)
                ));
            }
        }
    }
}

/// Worker threads, each with its own Postfix: restarts dominate the run time.
const WORKERS: usize = 3;

#[test]
fn same_replies_on_every_leg() {
    if let Err(why) = Reference::available() {
        eprintln!("skipping the Postfix differential test: {why}");
        return;
    }
    let started = Instant::now();
    let dns = start_dnsmasq_with(&dns_records());
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let dns = &dns;
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                s.spawn(move || {
                    let mut pf = Reference::new();
                    let mut tally = Tally::default();
                    for sc in SCENARIOS.iter().skip(w).step_by(WORKERS) {
                        run_scenario(&mut pf, sc, dns, &mut tally);
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sessions: usize = tallies.iter().map(|t| t.sessions).sum();
    let diffs: Vec<&String> = tallies.iter().flat_map(|t| &t.diffs).collect();
    let expected: usize = SCENARIOS.iter().map(|s| s.cases.len()).sum();
    assert_eq!(sessions, expected, "every case ran");
    assert!(
        diffs.is_empty(),
        "{} of {} leg comparisons differ:\n{}",
        diffs.len(),
        sessions * 3,
        diffs
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "{sessions} sessions in {} scenarios identical to Postfix on the trace, live and check legs ({:?})",
        SCENARIOS.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Forum problem 2: AUTH only from known networks (smtpd_sasl_exceptions_networks)
// ---------------------------------------------------------------------------------------------

/// `!` first, then everything: AUTH only for 192.168.0.0/16 (first match wins).
const SASL_EXCEPTIONS: &str = "!192.168.0.0/16, 0.0.0.0/0, [::]/0";

fn offers_auth(capabilities: &[String]) -> bool {
    capabilities.iter().any(|k| k.starts_with("AUTH "))
}

/// Postfix only hides AUTH from an excepted client (an AUTH it sends anyway succeeds);
/// relayguard hides it too, and refuses the AUTH here, logged as its own event, so that the
/// password never reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_exceptions_gate() {
    if !process::is_root() {
        eprintln!("skipping: a private Postfix needs root");
        return;
    }
    // The upstream offers AUTH to relayguard itself: relayguard learns the upstream's
    // extensions from its own EHLO at start, so an upstream that hid AUTH from relayguard's
    // address would make relayguard offer it to nobody. The gate is relayguard's job here.
    let pf = HarnessPostfix::builder().sasl(true).start();
    let rg = Relayguard::builder()
        .policy("mydestination", "local.test")
        .policy("smtpd_sasl_auth_enable", "yes")
        .policy("smtpd_sasl_exceptions_networks", SASL_EXCEPTIONS)
        .listener("mx", Role::Smtp)
        .listener_toml("mx", TRUST_LOOPBACK_PROXY)
        .upstream_postfix(&pf, Identity::Xclient)
        .start();
    let plain = format!("AUTH PLAIN {}", auth_plain("alice", "secret"));

    // relayguard, excepted client: no AUTH keyword, AUTH refused here.
    let mut c = SmtpClient::connect(rg.addr("mx")).await;
    c.send_raw(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 25\r\n")
        .await;
    c.greeting().await;
    c.ehlo("c.example").await;
    assert!(!offers_auth(&c.capabilities), "{:?}", c.capabilities);
    assert_eq!(
        c.cmd(&plain).await,
        "503 5.5.1 Error: authentication not enabled"
    );
    // The session goes on unauthenticated: the upstream sees the client without a login.
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    rg.wait_for_log(
        "reject: AUTH from unknown[203.0.113.9]: 503 5.5.1 Error: authentication not enabled",
        Duration::from_secs(20),
    );
    let seen = pf.wait_for_log("client=unknown[203.0.113.9]", Duration::from_secs(20));
    assert!(
        !seen.contains("sasl_username"),
        "the upstream saw a login: {seen}"
    );

    // relayguard, known network: AUTH offered and relayed; the upstream has the login.
    let mut c = SmtpClient::connect(rg.addr("mx")).await;
    c.send_raw(b"PROXY TCP4 192.168.1.5 127.0.0.1 40002 25\r\n")
        .await;
    c.greeting().await;
    c.ehlo("c.example").await;
    assert!(offers_auth(&c.capabilities), "{:?}", c.capabilities);
    assert_eq!(c.cmd(&plain).await, "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await, "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@local.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    pf.wait_for_log(
        "client=unknown[192.168.1.5], sasl_method=PLAIN, sasl_username=alice",
        Duration::from_secs(20),
    );

    // Postfix itself with the same setting, same kind of clients by XCLIENT: the keyword is
    // hidden the same way, but the excepted client's AUTH still succeeds there. That is the
    // difference relayguard makes.
    pf.postconf(&[("smtpd_sasl_exceptions_networks", SASL_EXCEPTIONS)]);
    pf.reload();
    for (addr, offered, auth_reply) in [
        ("192.168.1.6", true, "235 2.7.0 Authentication successful"),
        ("203.0.113.10", false, "235 2.7.0 Authentication successful"),
    ] {
        let mut c = SmtpClient::connect(pf.addr_xclient()).await;
        c.greeting().await;
        let x = c
            .cmd(&format!("XCLIENT ADDR={addr} NAME=[UNAVAILABLE]"))
            .await;
        assert!(x.starts_with("220 "), "{x}");
        c.ehlo("c.example").await;
        assert_eq!(
            offers_auth(&c.capabilities),
            offered,
            "{addr}: {:?}",
            c.capabilities
        );
        assert_eq!(c.cmd(&plain).await, auth_reply, "{addr}");
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    }
}
