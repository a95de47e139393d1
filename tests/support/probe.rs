//! Asks an SMTP server one policy question as a chosen client: who the client is (XCLIENT to
//! a private Postfix, or a PROXY header to relayguard), then EHLO, MAIL FROM and RCPT TO,
//! keeping each reply's full text so that two servers' answers compare with `assert_eq!`.
//!
//! Every command is sent whatever the previous reply was: with Postfix's default
//! `smtpd_delay_reject = yes`, HELO and sender restrictions answer at RCPT TO, not before.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::client::Client;
use super::postfix::Postfix;

/// Long enough for a few lookups that each time out (the world's resolv.conf gives 2 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Who the client is and what it asks. Build with [`Question::from`] and the setters.
#[derive(Clone, Debug)]
pub struct Question {
    /// The client's address, IPv4 or IPv6, without brackets or `IPV6:`.
    pub addr: IpAddr,
    /// XCLIENT `NAME`: a hostname, `[UNAVAILABLE]` or `[TEMPUNAVAIL]`.
    pub name: String,
    /// XCLIENT `REVERSE_NAME`, likewise.
    pub reverse_name: String,
    /// The EHLO argument (also sent as XCLIENT `HELO`).
    pub helo: String,
    /// The MAIL FROM address, without angle brackets (empty for the null sender).
    pub sender: String,
    /// The RCPT TO address, without angle brackets.
    pub recipient: String,
}

/// The replies, each as [`Client::cmd`] returns it (lines joined with `\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answers {
    /// The reply to XCLIENT (Postfix's fresh greeting), or the greeting after the PROXY header.
    pub identity: String,
    pub ehlo: String,
    pub mail: String,
    pub rcpt: String,
}

impl Question {
    /// A client at `addr` with no name (`[UNAVAILABLE]`), HELO `client.example`, sender
    /// `sender@a-only.example`, recipient `u@local.test` (which the test Postfix accepts).
    pub fn from(addr: &str) -> Question {
        Question {
            addr: addr
                .parse()
                .unwrap_or_else(|e| panic!("client address {addr:?}: {e}")),
            name: "[UNAVAILABLE]".into(),
            reverse_name: "[UNAVAILABLE]".into(),
            helo: "client.example".into(),
            sender: "sender@a-only.example".into(),
            recipient: "u@local.test".into(),
        }
    }

    /// Sets both NAME and REVERSE_NAME (a forward-confirmed name).
    pub fn name(mut self, name: &str) -> Question {
        self.name = name.into();
        self.reverse_name = name.into();
        self
    }

    pub fn reverse_name(mut self, name: &str) -> Question {
        self.reverse_name = name.into();
        self
    }

    pub fn helo(mut self, helo: &str) -> Question {
        self.helo = helo.into();
        self
    }

    pub fn sender(mut self, sender: &str) -> Question {
        self.sender = sender.into();
        self
    }

    pub fn recipient(mut self, recipient: &str) -> Question {
        self.recipient = recipient.into();
        self
    }

    /// The XCLIENT command line. Values are hostnames or bracketed words, which need no xtext.
    pub fn xclient_line(&self) -> String {
        let addr = match self.addr {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("IPV6:{v6}"),
        };
        format!(
            "XCLIENT ADDR={addr} NAME={} REVERSE_NAME={} HELO={}",
            self.name, self.reverse_name, self.helo
        )
    }

    /// The PROXY v1 header that makes the client appear at this address.
    pub fn proxy_header(&self) -> String {
        match self.addr {
            IpAddr::V4(v4) => format!("PROXY TCP4 {v4} 127.0.0.1 40001 25\r\n"),
            IpAddr::V6(v6) => format!("PROXY TCP6 {v6} ::1 40001 25\r\n"),
        }
    }
}

/// Asks the private Postfix over its XCLIENT listener: EHLO, XCLIENT (must be answered 220),
/// EHLO `helo`, MAIL, RCPT, QUIT.
pub async fn ask_postfix(pf: &Postfix, q: &Question) -> Answers {
    let mut c = Client::greeted(pf.addr_xclient())
        .await
        .with_timeout(PROBE_TIMEOUT);
    let ehlo = c.ehlo("probe.relayguard.test").await;
    assert!(ehlo.starts_with("250"), "EHLO before XCLIENT: {ehlo:?}");
    let identity = c.cmd(&q.xclient_line()).await;
    assert!(
        identity.starts_with("220 "),
        "{}: {identity:?}",
        q.xclient_line()
    );
    ask_rest(c, q, identity).await
}

/// Asks a listener that takes a PROXY header from loopback (relayguard's `lb`): the header,
/// the greeting, then EHLO `helo`, MAIL, RCPT, QUIT. `name` and `reverse_name` are not sent:
/// the server looks the client up itself.
pub async fn ask_proxied(addr: SocketAddr, q: &Question) -> Answers {
    let mut c = Client::connect(addr).await.with_timeout(PROBE_TIMEOUT);
    c.send_raw(q.proxy_header().as_bytes()).await;
    let identity = c.greeting().await;
    ask_rest(c, q, identity).await
}

async fn ask_rest(mut c: Client, q: &Question, identity: String) -> Answers {
    let ehlo = c.ehlo(&q.helo).await;
    let mail = c.cmd(&format!("MAIL FROM:<{}>", q.sender)).await;
    let rcpt = c.cmd(&format!("RCPT TO:<{}>", q.recipient)).await;
    let quit = c.cmd("QUIT").await;
    assert!(quit.starts_with("221"), "QUIT: {quit:?}");
    Answers {
        identity,
        ehlo,
        mail,
        rcpt,
    }
}
