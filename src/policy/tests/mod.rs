//! Engine tests: exact replies (taken from the reference's [live] rows) and the reason that decided.

mod access;
mod config;
mod dns;
mod helo;
mod params;
mod policy_service;
mod relay;
mod remote;
mod stages;
mod tables;
mod unlisted;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::main_cf::parse_main_cf;
use super::*;

/// A scratch directory for table files, unique per test.
pub(crate) fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relayguard-policy-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `files` into a scratch dir, then compiles `main_cf` as if it were `DIR/main.cf`, so
/// relative table names resolve there.
pub(crate) fn try_policy(
    test: &str,
    main_cf: &str,
    files: &[(&str, &str)],
) -> Result<Policy, Vec<PolicyError>> {
    let dir = scratch(test);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let main = main_cf.replace("@DIR@", dir.to_str().unwrap());
    let map = parse_main_cf(&main, &dir.join("main.cf")).unwrap();
    Policy::compile(&map)
}

/// The load errors of `main_cf`, as `check-config` prints them.
pub(crate) fn errors(test: &str, main_cf: &str) -> Vec<String> {
    match try_policy(test, main_cf, &[]) {
        Ok(_) => panic!("{test}: compiled without errors"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

pub(crate) fn policy(test: &str, main_cf: &str, files: &[(&str, &str)]) -> Policy {
    match try_policy(test, main_cf, files) {
        Ok(p) => p,
        Err(e) => panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A scripted client for one command.
#[derive(Clone)]
pub(crate) struct Who {
    pub(crate) client: Client,
    pub(crate) helo: Option<String>,
    pub(crate) login: Option<String>,
    pub(crate) sender: Option<String>,
    pub(crate) pipelining: bool,
}

pub(crate) fn who(addr: &str) -> Who {
    Who {
        client: Client::unnamed(addr.parse::<IpAddr>().unwrap(), 40000),
        helo: Some("c.example".into()),
        login: None,
        sender: Some("s@sender.example".into()),
        pipelining: false,
    }
}

impl Who {
    pub(crate) fn named(mut self, name: &str) -> Self {
        self.client.name = name.into();
        self
    }
    pub(crate) fn helo(mut self, h: Option<&str>) -> Self {
        self.helo = h.map(Into::into);
        self
    }
    pub(crate) fn from(mut self, s: &str) -> Self {
        self.sender = Some(s.into());
        self
    }
    pub(crate) fn login(mut self, l: &str) -> Self {
        self.login = Some(l.into());
        self
    }

    pub(crate) fn facts<'a>(&'a self, rcpt: Option<&'a str>) -> Facts<'a> {
        Facts {
            client: &self.client,
            helo: self.helo.as_deref(),
            esmtp: true,
            login: self.login.as_deref(),
            tls: false,
            sender: self.sender.as_deref(),
            recipient: rcpt,
            listener: "smtp",
            improper_pipelining: self.pipelining,
            session: SessionFacts::default(),
        }
    }
}

/// The RCPT decision as the client sees it: `250 2.1.5 Ok` or the reply line.
pub(crate) fn rcpt(p: &Policy, w: &Who, to: &str) -> String {
    let d = p.evaluate(
        Stage::Rcpt,
        &w.facts(Some(to)),
        &mut TransactionState::default(),
    );
    shown(&d, "250 2.1.5 Ok")
}

pub(crate) fn rcpt_decision(p: &Policy, w: &Who, to: &str) -> Decision {
    p.evaluate(
        Stage::Rcpt,
        &w.facts(Some(to)),
        &mut TransactionState::default(),
    )
}

pub(crate) fn shown(d: &Decision, ok: &str) -> String {
    match &d.outcome {
        Outcome::Accept => ok.to_string(),
        Outcome::Reject(r) => r.to_string(),
    }
}

pub(crate) fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The engine stays pure: no async runtime, no sockets, no clock, no logging (STYLE.md 2).
#[test]
fn policy_module_does_no_io() {
    assert!(crate::purity::assert_no_io("policy", &crate::purity::IO_WORDS) > 10);
}
