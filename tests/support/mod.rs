//! The integration-test harness: real processes on loopback, each stopped by PID when dropped.
//!
//! Every test file declares `mod support;` and uses the parts it needs; the rest is dead code for
//! that test crate, hence the `allow` below. The harness runs only inside tests, where a
//! panic is a test failure with its message, so it may unwrap like the tests themselves. Nothing here reads `/work/shared`: the Postfix
//! configuration and the fake Dovecot server are copied into `tests/support/postfix/`.
//!
//! - [`postfix::Postfix`]: a private Postfix 3.7 (XCLIENT and PROXY listeners, SASL, Maildir delivery).
//! - [`relayguard::Relayguard`]: the binary under test with a generated config.
//! - [`maildir::Maildir`]: delivered messages and their headers.
//! - [`client::Client`]: exact-reply SMTP client (plain, STARTTLS, implicit TLS).
//! - [`external`]: swaks and smtplib wrappers returning transcripts.
//! - [`flows`]: whole SMTP exchanges several test files repeat.
//! - [`scripted::ScriptedUpstream`]: an upstream whose every reply a test scripts.
//! - [`policy_daemons`]: postgrey and policyd-spf (with a dnsmasq of its own) on loopback.
//! - [`policy_server::PolicyServer`]: a Postfix policy server answering what the test says.
//! - [`tls::CertSet`]: a throwaway CA and a `localhost` leaf made with openssl.
//! - [`dns::DnsWorld`]: a dnsmasq zone a test composes, with SERVFAIL and slow domains
//!   ([`dns_faults`]); [`dns_reference`] holds the one tests/dns_postfix.rs recorded against.
//! - [`probe`]: one policy question (XCLIENT or PROXY, EHLO, MAIL, RCPT) and its replies.
//! - [`mariadb::Mariadb`], [`postgres::Postgres`], [`slapd::Slapd`]: private database and
//!   directory servers for the remote lookup tables.
//! - [`postmap`]: Postfix's own answer for a table key, the differential reference.
//! - [`scrape`]: `/metrics` fetched with curl and parsed by Prometheus' OpenMetrics parser.
//! - [`netns::NetNs`]: network namespaces and veth links a placement test builds, removed on
//!   drop; relayguard, Postfix and swaks run inside with `in_netns` / `run_in`.
//! - [`redis::RedisServer`], [`redis::RedisCluster`]: private Redis servers (one, a sentinel,
//!   a three-master cluster) for the shared state store, with outages on demand.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod client;
pub mod dns;
pub mod dns_faults;
pub mod dns_reference;
pub mod dnsmasq;
pub mod external;
pub mod flows;
pub mod maildir;
pub mod mariadb;
pub mod netns;
pub mod policy_daemons;
pub mod policy_server;
pub mod postfix;
pub mod postgres;
pub mod postmap;
pub mod probe;
pub mod process;
pub mod redis;
pub mod relayguard;
pub mod scrape;
pub mod scripted;
pub mod slapd;
pub mod table_server;
pub mod tls;
