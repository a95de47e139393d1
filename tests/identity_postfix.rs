//! XCLIENT lines and PROXY headers from `upstream::identity` against a real, private Postfix 3.7:
//! the maillog must name the original client, never relayguard's loopback address.
//!
//! Needs root and Postfix (`apt-get install postfix`); fails, never skips, without them. The
//! instance lives in a temporary directory, listens on two free ports in 25000-25099, and is
//! stopped with `postfix -c DIR stop` when the test ends, however it ends.

// Test helpers panic on setup failures; clippy only exempts `#[test]` bodies by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use relayguard::net::resolve::HostName;
use relayguard::upstream::identity::{
    proxy_header_v1, proxy_header_v2, xclient_commands, ClientIdentity,
};

/// main.cf for the instance (after postfix-semantics 12.5): loopback only, nothing delivered,
/// relayguard's address authorized for XCLIENT, no DNS lookups of proxied clients (this
/// machine has no DNS, and the test must not wait for it), and pipelining after XCLIENT or a
/// PROXY header made fatal, so a violation fails the test instead of only being logged.
const MAIN_CF: &str = "\
compatibility_level = 3.6
queue_directory = @ROOT@/queue
data_directory = @ROOT@/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = @ROOT@/maillog
maillog_file_prefixes = /var, /dev/stdout, @ROOT@
inet_interfaces = loopback-only
inet_protocols = all
myhostname = mx.relayguard.test
mydomain = relayguard.test
myorigin = $myhostname
mydestination = local.test
relay_domains =
mynetworks = 127.0.0.0/8
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
smtpd_peername_lookup = no
smtpd_forbid_unauth_pipelining = yes
";

/// master.cf: one listener for XCLIENT, one expecting a PROXY header, and the services a
/// private instance needs (postlog for the maillog file).
const MASTER_CF: &str = "\
127.0.0.1:@XCLIENT_PORT@ inet n - n - - smtpd
127.0.0.1:@PROXY_PORT@ inet n - n - - smtpd
  -o smtpd_upstream_proxy_protocol=haproxy
  -o smtpd_upstream_proxy_timeout=5s
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

const GREETING: &str = "220 mx.relayguard.test ESMTP Postfix\r\n";

/// A running private Postfix; dropping it stops it and waits for its master to exit.
struct Postfix {
    dir: tempfile::TempDir,
    xclient: SocketAddr,
    proxy: SocketAddr,
}

impl Postfix {
    fn start() -> Self {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .expect("running `id -u`");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "tests/identity_postfix.rs must run as root: the Postfix master binds ports and drops to the postfix user"
        );
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "Postfix is not installed (/usr/sbin/postfix missing): apt-get install postfix"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The postfix user must reach the queue inside the directory tempfile made 0700.
        run("chmod", &["0755".as_ref(), root.as_os_str()]);
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        run(
            "chown",
            &["postfix".as_ref(), root.join("data").as_os_str()],
        );
        let [xclient, proxy] = free_ports();
        let fill = |text: &str| {
            text.replace("@ROOT@", &root.display().to_string())
                .replace("@XCLIENT_PORT@", &xclient.port().to_string())
                .replace("@PROXY_PORT@", &proxy.port().to_string())
        };
        std::fs::write(root.join("etc/main.cf"), fill(MAIN_CF)).unwrap();
        std::fs::write(root.join("etc/master.cf"), fill(MASTER_CF)).unwrap();
        let postfix = Postfix {
            dir,
            xclient,
            proxy,
        };
        postfix.postfix("check");
        postfix.postfix("start");
        postfix.wait_until_serving();
        postfix
    }

    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn postfix(&self, verb: &str) {
        let output = Command::new("postfix")
            .arg("-c")
            .arg(self.etc())
            .arg(verb)
            .output()
            .expect("running postfix");
        assert!(
            output.status.success(),
            "postfix {verb} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn wait_until_serving(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(stream) = TcpStream::connect(self.xclient) {
                let mut smtp = Smtp::new(stream);
                if smtp.reply() == GREETING {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Postfix did not greet on {} within 20 s", self.xclient);
    }

    /// Waits (at most 10 s) until the maillog holds a line containing every one of `parts`.
    fn log_line(&self, parts: &[&str]) -> String {
        let path = self.dir.path().join("maillog");
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no maillog line with {parts:?}; maillog:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid_file = self.dir.path().join("queue/pid/master.pid");
        let pid = std::fs::read_to_string(pid_file).unwrap_or_default();
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.etc())
            .arg("stop")
            .output();
        // Let the master finish before its queue directory is deleted.
        let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
        let started = Instant::now();
        while !pid.trim().is_empty()
            && proc_dir.exists()
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn run(program: &str, args: &[&std::ffi::OsStr]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

/// Two ports in 25000-25099 that are free now.
fn free_ports() -> [SocketAddr; 2] {
    let mut found = Vec::new();
    for port in 25000..25100u16 {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(addr).is_ok() {
            found.push(addr);
            if let [a, b] = found[..] {
                return [a, b];
            }
        }
    }
    panic!("no two free ports in 25000-25099");
}

/// A minimal SMTP client: one command, one complete reply, nothing pipelined.
struct Smtp {
    reader: BufReader<TcpStream>,
}

impl Smtp {
    fn new(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Reads one reply, all its lines, CRLFs kept.
    fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return reply;
            }
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

fn identity(addr: &str, name: HostName, helo: &str) -> ClientIdentity {
    ClientIdentity {
        addr: addr.parse().unwrap(),
        server: "192.0.2.25:25".parse().unwrap(),
        reverse_name: name.clone(),
        name,
        helo: Some(helo.to_owned()),
        login: None,
        esmtp: true,
    }
}

/// XCLIENT as the upstream leg will send it: each command alone, each answered by a fresh
/// greeting before the next; then (optionally) EHLO, a local and a relayed recipient.
fn xclient_session(postfix: &Postfix, id: &ClientIdentity, ehlo: bool) -> usize {
    let mut smtp = Smtp::new(TcpStream::connect(postfix.xclient).unwrap());
    assert_eq!(smtp.reply(), GREETING);
    let commands = xclient_commands(id);
    for command in &commands {
        smtp.send(command);
        assert_eq!(smtp.reply(), GREETING, "{}", command.escape_ascii());
    }
    if ehlo {
        let reply = smtp.cmd(&format!("EHLO {}", id.helo.as_deref().unwrap()));
        assert!(reply.starts_with("250-mx.relayguard.test\r\n"), "{reply}");
    }
    transaction(&mut smtp);
    commands.len()
}

/// MAIL, a local recipient (accepted), a foreign one (refused: the client is not in
/// mynetworks, whereas relayguard's 127.0.0.1 would be), QUIT.
fn transaction(smtp: &mut Smtp) {
    assert_eq!(smtp.cmd("MAIL FROM:<s@sender.example>"), "250 2.1.0 Ok\r\n");
    assert_eq!(smtp.cmd("RCPT TO:<u@local.test>"), "250 2.1.5 Ok\r\n");
    assert_eq!(
        smtp.cmd("RCPT TO:<u@elsewhere.example>"),
        "454 4.7.1 <u@elsewhere.example>: Relay access denied\r\n"
    );
    assert_eq!(smtp.cmd("QUIT"), "221 2.0.0 Bye\r\n");
}

fn proxy_session(postfix: &Postfix, header: &[u8]) {
    let mut smtp = Smtp::new(TcpStream::connect(postfix.proxy).unwrap());
    smtp.send(header);
    // The greeting comes only after Postfix has read the header; EHLO waits for it.
    assert_eq!(smtp.reply(), GREETING);
    let reply = smtp.cmd("EHLO client.example");
    assert!(reply.starts_with("250-mx.relayguard.test\r\n"), "{reply}");
    transaction(&mut smtp);
}

/// The tests here run one at a time: each picks free ports in the same range and would race.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn postfix_sees_the_original_client() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let postfix = Postfix::start();

    // XCLIENT, IPv4, named client.
    let v4 = identity(
        "198.51.100.7:40001",
        HostName::Known("client.example".into()),
        "client.example",
    );
    assert_eq!(xclient_session(&postfix, &v4, true), 1);
    postfix.log_line(&[": client=client.example[198.51.100.7]"]);
    postfix.log_line(&[
        ": reject: RCPT from client.example[198.51.100.7]: 454 4.7.1 \
         <u@elsewhere.example>: Relay access denied; from=<s@sender.example> \
         to=<u@elsewhere.example> proto=ESMTP helo=<client.example>",
    ]);
    postfix.log_line(&[
        // Postfix counts a successful XCLIENT as 0/1: it resets the counters it then reports.
        "disconnect from client.example[198.51.100.7] ehlo=1 xclient=0/1 mail=1 rcpt=1/2 \
         quit=1 commands=4/6",
    ]);

    // XCLIENT, IPv6, named client.
    let v6 = identity(
        "[2001:db8::7]:40002",
        HostName::Known("client6.example".into()),
        "client6.example",
    );
    assert_eq!(xclient_session(&postfix, &v6, true), 1);
    postfix.log_line(&[": client=client6.example[2001:db8::7]"]);
    postfix.log_line(&["reject: RCPT from client6.example[2001:db8::7]: 454 4.7.1"]);

    // XCLIENT with an unknown name: without NAME=[UNAVAILABLE] Postfix would say `localhost`.
    let unnamed = identity("198.51.100.9:40003", HostName::Unavailable, "c.example");
    assert_eq!(xclient_session(&postfix, &unnamed, true), 1);
    postfix.log_line(&[": client=unknown[198.51.100.9]"]);

    // Split XCLIENT (long names), no EHLO afterwards: HELO and PROTO must come from the last
    // command, NAME and ADDR apply, and the second command is still authorized.
    let long = format!(
        "{}.{}.{}.{}.example",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60),
        "d".repeat(60)
    );
    let split = identity(
        "198.51.100.10:40004",
        HostName::Known(long.clone()),
        "split-helo.example",
    );
    assert_eq!(xclient_session(&postfix, &split, false), 2);
    postfix.log_line(&[&format!(": client={long}[198.51.100.10]")]);
    postfix.log_line(&[
        &format!("reject: RCPT from {long}[198.51.100.10]: 454 4.7.1"),
        "proto=ESMTP helo=<split-helo.example>",
    ]);
    postfix.log_line(&[&format!(
        "disconnect from {long}[198.51.100.10] xclient=0/2 mail=1"
    )]);

    // PROXY v1 and v2, IPv4 and IPv6, on the haproxy listener. Postfix does its own lookups
    // (disabled here), so the name is `unknown`.
    let cases = [
        ("v1", "198.51.100.21:40021", "unknown[198.51.100.21]", 1),
        ("v1", "[2001:db8::21]:40022", "unknown[2001:db8::21]", 1),
        ("v2", "198.51.100.22:40023", "unknown[198.51.100.22]", 2),
        ("v2", "[2001:db8::22]:40024", "unknown[2001:db8::22]", 2),
    ];
    for (version, addr, shown, _) in cases {
        let mut id = identity(addr, HostName::Unavailable, "client.example");
        if id.addr.is_ipv6() {
            id.server = "[2001:db8::25]:25".parse().unwrap();
        }
        let header = if version == "v1" {
            proxy_header_v1(&id)
        } else {
            proxy_header_v2(&id)
        };
        proxy_session(&postfix, &header);
        postfix.log_line(&[&format!("connect from {shown}")]);
        postfix.log_line(&[&format!(": client={shown}")]);
        postfix.log_line(&[&format!("reject: RCPT from {shown}: 454 4.7.1")]);
    }

    let log = postfix.maillog();
    assert!(
        !log.contains("improper command pipelining"),
        "pipelining was flagged:\n{log}"
    );
    assert!(
        !log.contains("[127.0.0.1]: client=") && !log.contains("from localhost[127.0.0.1]: 454"),
        "a session ran as relayguard's own address:\n{log}"
    );
}

/// Why a client without HELO gets no EHLO after XCLIENT (`upstream::connect::introduce`):
/// Postfix takes the HELO from the last EHLO it read, even after `HELO=[UNAVAILABLE]`, while an
/// XCLIENT without HELO, after relayguard's own EHLO, leaves none.
#[test]
fn only_no_ehlo_after_xclient_leaves_a_client_without_helo() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let postfix = Postfix::start();
    let id = ClientIdentity {
        helo: None,
        esmtp: false,
        ..identity("198.51.100.31:40031", HostName::Unavailable, "unused")
    };
    let line = xclient_commands(&id).concat();
    let line = String::from_utf8(line).unwrap();
    let relay_denied = |client: &str, proto: &str| {
        format!(
            "reject: RCPT from unknown[{client}]: 454 4.7.1 <u@elsewhere.example>: Relay access \
             denied; from=<s@sender.example> to=<u@elsewhere.example> proto={proto}"
        )
    };

    // XCLIENT HELO=[UNAVAILABLE], then EHLO: the EHLO's name is the client's HELO.
    let mut smtp = Smtp::new(TcpStream::connect(postfix.xclient).unwrap());
    assert_eq!(smtp.reply(), GREETING);
    let unavailable = line.replace(" ADDR=", " HELO=[UNAVAILABLE] ADDR=");
    assert_eq!(smtp.cmd(unavailable.trim_end()), GREETING);
    assert!(smtp.cmd("EHLO relayguard.test").starts_with("250-"));
    transaction(&mut smtp);
    let seen = postfix.log_line(&[&relay_denied("198.51.100.31", "ESMTP")]);
    assert!(seen.ends_with(" helo=<relayguard.test>"), "{seen}");

    // EHLO as relayguard, then XCLIENT without HELO, and nothing after: no HELO at all.
    let id = ClientIdentity {
        addr: "198.51.100.32:40032".parse().unwrap(),
        ..id
    };
    let mut smtp = Smtp::new(TcpStream::connect(postfix.xclient).unwrap());
    assert_eq!(smtp.reply(), GREETING);
    assert!(smtp.cmd("EHLO relayguard.test").starts_with("250-"));
    for command in xclient_commands(&id) {
        smtp.send(&command);
        assert_eq!(smtp.reply(), GREETING);
    }
    transaction(&mut smtp);
    let seen = postfix.log_line(&[&relay_denied("198.51.100.32", "SMTP")]);
    assert!(!seen.contains("helo="), "{seen}");
}
