//! Differential test: the same policy and the same clients against a real Postfix 3.7 and
//! against relayguard's engine; every reply line (greeting code, EHLO, MAIL, RCPT) must be identical.
//!
//! Starts its own private Postfix on loopback (needs root and the `postfix` binary; skipped with a
//! message otherwise), pretends to be each client with XCLIENT, and stops the instance by its own
//! `postfix stop` when done. Nothing from `/work/shared` is read at run time.

// Test code: a broken setup should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use relayguard::policy::main_cf::parse_main_cf;
use relayguard::policy::trace::Script;
use relayguard::policy::{Client, Policy};

const PORT: u16 = 24031;

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

/// The relayguard side reads only the policy lines plus what both sides share.
const SHARED: &str = "myhostname = mx.relayguard.test\nmydomain = relayguard.test\ninet_interfaces = loopback-only\n";

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

struct Scenario {
    name: &'static str,
    policy: &'static str,
    tables: &'static [(&'static str, &'static str)],
    cases: &'static [Case],
}

const H: Option<&str> = Some("c.example");

const SCENARIOS: &[Scenario] = &[
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
        name: "address forms",
        policy: "mydestination = local.test\nrelay_domains = relay.test\nvirtual_alias_domains = valias.test\nmynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
        tables: &[],
        cases: &[
            c("203.0.113.5", None, H, "s@sender.example", "user@local.test."),
            c("203.0.113.5", None, H, "s@sender.example", "user@sub.local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user@elsewhere@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "\"user@elsewhere\"@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user%elsewhere@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user%local.test@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "elsewhere!user@local.test"),
            c("203.0.113.5", None, H, "s@sender.example", "@local.test:user@elsewhere"),
            c("203.0.113.5", None, H, "s@sender.example", "user@[127.0.0.1]"),
            c("203.0.113.5", None, H, "s@sender.example", "user@[192.0.2.2]"),
            c("203.0.113.5", None, H, "s@sender.example", "user@sub.relay.test"),
            c("203.0.113.5", None, H, "s@sender.example", "user%elsewhere@relay.test"),
            // Not `user@valias.test`: Postfix answers `550 5.1.1 ... User unknown in virtual
            // alias table` (smtpd_reject_unlisted_recipient), which is the upstream's knowledge.
            c("2001:db8::5", None, H, "s@sender.example", "user@elsewhere.example"),
        ],
    },
    Scenario {
        name: "local_only class",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_restriction_classes = local_only\nlocal_only = check_recipient_access texthash:@DIR@/local_domains, reject\nsmtpd_recipient_restrictions = check_client_access texthash:@DIR@/rc_clients, check_sender_access texthash:@DIR@/rc_senders\n",
        tables: &[("local_domains", "local.test OK\n"), ("rc_clients", "127.0.0.1 local_only\n"), ("rc_senders", "foo@sender.example local_only\n")],
        cases: &[
            c("127.0.0.1", Some("localhost"), H, "a@b.example", "user@local.test"),
            c("127.0.0.1", Some("localhost"), H, "a@b.example", "user@remote.example"),
            c("127.0.0.1", Some("localhost"), H, "a@b.example", "user@sub.local.test"),
            c("127.0.0.2", None, H, "a@b.example", "user@remote.example"),
            c("127.0.0.2", None, H, "foo@sender.example", "user@remote.example"),
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
            ("rcpts.pcre", "/^(\\w+)\\.(\\w+)@local\\.test$/ REJECT $2 of $1\n"),
        ],
        cases: &[
            c("10.9.7.1", None, H, "a@b.example", "u@local.test"),
            c("2001:db8:1:9::9", None, H, "a@b.example", "u@local.test"),
            c("192.0.2.1", Some("mx.example.net"), H, "a@b.example", "u@local.test"),
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
            c("192.0.2.5", Some("x.example.org"), H, "a@b.example", "u@local.test"),
            c("192.0.2.20", None, H, "a@b.example", "u@local.test"),
            c("2001:db8::1", Some("x.example.org"), H, "a@b.example", "u@local.test"),
            c("172.16.9.9", Some("x.example.org"), H, "a@b.example", "u@local.test"),
            c("172.16.1.5", Some("x.example.org"), H, "a@b.example", "u@local.test"),
            c("203.0.113.1", None, H, "a@b.example", "u@local.test"),
            c("203.0.113.1", Some("x.example.org"), Some("[192.0.2.7]"), "a@b.example", "u@local.test"),
            c("203.0.113.1", Some("x.example.org"), H, "Joe@SPAM.example", "u@local.test"),
            c("203.0.113.1", Some("x.example.org"), H, "BIG@local.test", "u@local.test"),
            c("203.0.113.1", Some("x.example.org"), H, "a@spam.example.net", "u@local.test"),
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
            c("127.0.0.1", None, None, "a@b.example", "u@local"),
        ],
    },
    Scenario {
        name: "smtpd_delay_reject = no",
        policy: "mydestination = local.test\nmynetworks = 127.0.0.0/8\nsmtpd_delay_reject = no\nsmtpd_client_restrictions = check_client_access inline:{{10.9.8.7=REJECT full address}}\nsmtpd_helo_restrictions = check_helo_access inline:{{bad.helo.example=REJECT bad helo}}\nsmtpd_sender_restrictions = check_sender_access inline:{{bad@s.test=REJECT bad sender}}\n",
        tables: &[],
        cases: &[
            c("10.9.8.7", None, H, "a@b.example", "u@local.test"),
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

struct Postfix {
    dir: PathBuf,
    started: bool,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new("postfix")
                .arg("-c")
                .arg(self.dir.join("etc"))
                .arg("stop")
                .output();
        }
    }
}

impl Postfix {
    fn available() -> Result<(), String> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if !root {
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

    fn new() -> Postfix {
        let dir = std::env::temp_dir().join(format!("rg-pfdiff-{}", std::process::id()));
        for sub in ["etc", "queue", "data", "tables"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let _ = Command::new("chown")
            .arg("postfix")
            .arg(dir.join("data"))
            .status();
        let master = MASTER_CF.replace("@PORT@", &PORT.to_string());
        std::fs::write(dir.join("etc/master.cf"), master).unwrap();
        Postfix {
            dir,
            started: false,
        }
    }

    fn tables(&self) -> PathBuf {
        self.dir.join("tables")
    }

    /// Installs the scenario's policy and (re)starts so that new sessions use it.
    fn configure(&mut self, policy: &str) {
        let main = format!(
            "{}{}",
            MAIN_CF.replace("@DIR@", self.dir.to_str().unwrap()),
            policy
        );
        std::fs::write(self.dir.join("etc/main.cf"), main).unwrap();
        let etc = self.dir.join("etc");
        if self.started {
            // A reload lets running smtpd processes finish; stop/start gives a clean slate.
            let _ = Command::new("postfix")
                .arg("-c")
                .arg(&etc)
                .arg("stop")
                .output();
            std::thread::sleep(Duration::from_millis(500));
        }
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&etc)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postfix start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.started = true;
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", PORT)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix did not listen on {PORT}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One SMTP exchange; returns the RCPT reply's first line.
fn postfix_rcpt(case: &Case) -> String {
    let s = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let reply = |r: &mut BufReader<TcpStream>| -> String {
        let mut first = String::new();
        loop {
            let mut line = String::new();
            // A 421 closes the connection: later reads end or reset.
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return if first.is_empty() {
                    "EOF".into()
                } else {
                    first
                };
            }
            let line = line.trim_end().to_string();
            if first.is_empty() {
                first = line.clone();
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return if first.as_bytes().get(3) == Some(&b'-') {
                    first.replacen('-', " ", 1)
                } else {
                    line
                };
            }
        }
    };
    let send = |w: &mut TcpStream, r: &mut BufReader<TcpStream>, cmd: &str| -> String {
        if w.write_all(format!("{cmd}\r\n").as_bytes()).is_err() {
            return "EOF".into();
        }
        reply(r)
    };
    reply(&mut r);
    let addr: IpAddr = case.addr.parse().unwrap();
    let addr_attr = if addr.is_ipv6() {
        format!("IPV6:{addr}")
    } else {
        addr.to_string()
    };
    let name = case.name.unwrap_or("[UNAVAILABLE]");
    let x = send(
        &mut w,
        &mut r,
        &format!("XCLIENT ADDR={addr_attr} NAME={name} REVERSE_NAME={name}"),
    );
    // XCLIENT re-runs the connect-stage checks, so its reply is the client's greeting.
    let mut lines = vec![greeting(&x)];
    if let Some(h) = case.helo {
        lines.push(send(&mut w, &mut r, &format!("EHLO {h}")));
    }
    lines.push(send(&mut w, &mut r, &format!("MAIL FROM:<{}>", case.from)));
    lines.push(send(&mut w, &mut r, &format!("RCPT TO:<{}>", case.rcpt)));
    let _ = send(&mut w, &mut r, "QUIT");
    lines.join("\n")
}

/// The banner text is the session's business (`smtpd_banner`); compare only that it is a 220.
fn greeting(line: &str) -> String {
    if line.starts_with("220 ") {
        "220 (banner)".into()
    } else {
        line.to_string()
    }
}

fn relayguard_rcpt(policy: &Policy, case: &Case) -> String {
    let mut client = Client::unnamed(case.addr.parse().unwrap(), 40000);
    if let Some(n) = case.name {
        client.name = n.into();
        client.reverse_name = n.into();
    }
    let mut s = Script::new(client);
    s.helo = case.helo.map(Into::into);
    s.sender = Some(case.from.into());
    s.recipients = vec![case.rcpt.into()];
    let t = policy.trace(&s);
    t.steps
        .iter()
        .map(|s| {
            if s.stage == "CONNECT" {
                greeting(&s.reply.line)
            } else {
                s.reply.line.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn same_replies_as_postfix() {
    if let Err(why) = Postfix::available() {
        eprintln!("skipping the Postfix differential test: {why}");
        return;
    }
    let mut pf = Postfix::new();
    let mut diffs = Vec::new();
    let mut compared = 0;
    for sc in SCENARIOS {
        for (name, text) in sc.tables {
            std::fs::write(pf.tables().join(name), text).unwrap();
        }
        let policy_text = sc.policy.replace("@DIR@", pf.tables().to_str().unwrap());
        pf.configure(&policy_text);
        let map = parse_main_cf(&format!("{SHARED}{policy_text}"), Path::new("main.cf")).unwrap();
        let policy = Policy::compile(&map).unwrap_or_else(|e| panic!("{}: {e:?}", sc.name));
        for case in sc.cases {
            let want = postfix_rcpt(case);
            let got = relayguard_rcpt(&policy, case);
            compared += 1;
            if want != got {
                diffs.push(format!(
                    "[{}] {} {:?} MAIL<{}> RCPT<{}>:\n  postfix:    {want}\n  relayguard: {got}",
                    sc.name, case.addr, case.helo, case.from, case.rcpt
                ));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {compared} sessions differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    eprintln!("{compared} sessions identical to Postfix, every reply line");
}
