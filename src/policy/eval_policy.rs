//! check_policy_service, as smtpd_check.c's check_policy_service does it: the request Postfix
//! 3.7 sends at this stage, asked for as a fact, and the server's `action=` read as an access(5)
//! value with the voice of the list the restriction sits in; after every attempt failed, the
//! service's default_action in its place.

use std::fmt::Write as _;

use rustc_hash::FxHashMap;

use super::access::{parse_action, Action, VoiceKind};
use super::eval::{wrap, Eval, Verdict, MAX_DEPTH};
use super::netlist::TableOpener;
use super::params::Origin;
use super::pending::{FactAnswer, FactRequest};
use super::policy_service::{PolicyService, DEFAULT_ACTION};
use super::restriction::{parse_list, ListContext, Restriction};
use super::{Facts, Note, PolicyError, Reason, Stage};

impl Eval<'_, '_> {
    pub(crate) fn policy_service(
        &mut self,
        r: &Restriction,
        service: &PolicyService,
        voice: VoiceKind,
    ) -> Verdict {
        let mut request = FactRequest::Policy {
            service: Box::new(service.clone()),
            request: request_text(self.stage, self.facts, service).into(),
            repeat: 0,
        };
        let repeat = self.policy_asked.iter().filter(|r| **r == request).count();
        self.policy_asked.push(request.clone());
        if let FactRequest::Policy { repeat: n, .. } = &mut request {
            *n = u32::try_from(repeat).unwrap_or(u32::MAX);
        }
        let Some(FactAnswer::Policy(answer)) = self.ask(request) else {
            return Verdict::Pending;
        };
        let (value, from_server) = match &answer.action {
            Some(action) => (&**action, true),
            None if self.in_default_action => (DEFAULT_ACTION, false),
            None => (&*service.settings.default_action, false),
        };
        let reason = Reason {
            table: Some(service.spec.to_string()),
            key: Some(if from_server {
                "policy query".into()
            } else {
                "default_action".into()
            }),
            value: Some(value.to_string()),
            ..self.reason(r)
        };
        let nested = std::mem::replace(&mut self.in_default_action, !from_server);
        let v = self.policy_action(value, voice, reason, &service.spec);
        self.in_default_action = nested;
        v
    }

    /// An `action=` value: what check_table_result makes of it, with the two cases a static
    /// table cannot have, an empty value and restriction names that were not seen at load.
    fn policy_action(
        &mut self,
        value: &str,
        voice: VoiceKind,
        reason: Reason,
        spec: &str,
    ) -> Verdict {
        if value.trim().is_empty() {
            // "In the dark ages, an empty right-hand side meant OK" (smtpd_check.c).
            self.notes.push(Note {
                action: "warning",
                text: format!("access table {spec} entry {value} has empty value"),
            });
            return Verdict::Ok(reason);
        }
        if let Action::Unsupported("PREPEND") = parse_action(value, &self.p.codes) {
            return self.prepend(value, spec);
        }
        self.live_result(value, voice, reason, spec)
    }

    /// An access value that arrived at run time (from a policy server or a remote table), as
    /// check_table_result reads it: restriction names no table held at load are parsed now,
    /// as Postfix parses them.
    pub(crate) fn live_result(
        &mut self,
        value: &str,
        voice: VoiceKind,
        reason: Reason,
        spec: &str,
    ) -> Verdict {
        let text = match parse_action(value, &self.p.codes) {
            Action::Restrictions(text) => text,
            _ => return self.table_result(value, voice, reason, spec),
        };
        if self.p.value_lists.contains_key(text.trim()) {
            return self.table_result(value, voice, reason, spec);
        }
        let list = match runtime_list(self.p, text) {
            Ok(list) => list,
            Err(word) => {
                let why = format!("unknown smtpd restriction: \"{word}\"");
                return self.config_error(reason, why);
            }
        };
        if self.depth >= MAX_DEPTH {
            return self.config_error(reason, format!("{text}: causes unreasonable recursion"));
        }
        self.depth += 1;
        let v = self.checks(&list, voice);
        self.depth -= 1;
        wrap(reason, v)
    }
}

impl Eval<'_, '_> {
    /// PREPEND, which both greylisting and SPF servers answer on a pass: the header goes out
    /// as a [`PREPEND_NOTE`] note for the session to put in front of the message, and the
    /// list goes on (smtpd_check.c check_table_result). Static tables refuse PREPEND at load,
    /// so only a server's answer gets here.
    fn prepend(&mut self, value: &str, spec: &str) -> Verdict {
        let header = value
            .trim()
            .get("PREPEND".len()..)
            .unwrap_or("")
            .trim_start();
        let why = if self.stage == Stage::EndOfData {
            format!("access table {spec}: action PREPEND must be used before smtpd_end_of_data_restrictions")
        } else if !is_header(header) {
            format!("access table {spec} entry \"policy query\" requires header: text")
        } else {
            self.notes.push(Note {
                action: PREPEND_NOTE,
                text: header.to_string(),
            });
            return Verdict::Dunno;
        };
        self.notes.push(Note {
            action: "warning",
            text: why,
        });
        Verdict::Dunno
    }
}

/// The note action that carries a header to prepend; the session does not log it (Postfix
/// logs nothing for PREPEND).
pub const PREPEND_NOTE: &str = "prepend";

/// `Name: text` with a name of printable ASCII other than `:` (Postfix's is_header).
fn is_header(text: &str) -> bool {
    match text.split_once(':') {
        Some((name, _)) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        }
        None => false,
    }
}

/// Restriction names from a server's answer (`permit_mynetworks, reject`), parsed now since
/// no table held them at load. Tables are refused, as Postfix refuses them in access values;
/// `Err` is the first word Postfix would call an unknown restriction.
fn runtime_list(p: &super::Policy, text: &str) -> Result<Vec<Restriction>, String> {
    let classes: FxHashMap<String, u32> = p
        .classes
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.to_string(), i as u32))
        .collect();
    let mut refuse_tables: Box<TableOpener<'_>> = Box::new(|spec: &str, origin: &Origin| {
        Err(PolicyError::UnknownRestriction {
            name: "policy".into(),
            origin: origin.clone(),
            restriction: spec.to_string(),
            hint: super::Hint::none(),
        })
    });
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut cx = ListContext {
        classes: &classes,
        open: &mut *refuse_tables,
        errors: &mut errors,
        warnings: &mut warnings,
        policy_defaults: &p.policy_defaults,
        // Not kept past compilation: permit_tls_clientcerts in a policy server's answer
        // finds no relay_clientcerts and never matches.
        relay_clientcerts: None,
    };
    let list = parse_list("policy", text, &Origin::default(), None, &mut cx);
    match errors.into_iter().next() {
        None => Ok(list),
        Some(PolicyError::UnknownRestriction { restriction, .. }) => Err(restriction),
        Some(_) => Err(text.to_string()),
    }
}

/// The request smtpd_check.c's check_policy_service sends, attribute for attribute and in its
/// order (postfix-semantics 11.1), without the blank line that ends it.
pub(crate) fn request_text(stage: Stage, facts: &Facts<'_>, service: &PolicyService) -> String {
    let s = &facts.session;
    let state = match stage {
        Stage::Helo if facts.esmtp => "EHLO",
        other => other.log_word(),
    };
    let many = matches!(stage, Stage::Data | Stage::EndOfData);
    // At DATA and END-OF-MESSAGE Postfix names the recipient only when there is one.
    let recipient = match (facts.recipient, many, s.recipients) {
        (Some(r), _, _) => r,
        (None, true, [only]) => only.as_str(),
        _ => "",
    };
    let client = facts.client;
    let server = s.server.map(|a| (a.ip().to_canonical(), a.port()));
    let mut out = String::with_capacity(640);
    let mut put = |name: &str, value: &dyn std::fmt::Display| {
        // A value is one line: the protocol has no escape for a newline.
        let value = value.to_string().replace(['\r', '\n'], " ");
        let _ = writeln!(out, "{name}={value}");
    };
    put("request", &"smtpd_access_policy");
    put("protocol_state", &state);
    put("protocol_name", &if facts.esmtp { "ESMTP" } else { "SMTP" });
    put("client_address", &client.addr.to_canonical());
    put("client_name", &client.name);
    put("client_port", &client.port);
    put("reverse_client_name", &client.reverse_name);
    put(
        "server_address",
        &server.map_or(String::new(), |(a, _)| a.to_string()),
    );
    put(
        "server_port",
        &server.map_or(String::new(), |(_, p)| p.to_string()),
    );
    put("helo_name", &facts.helo.unwrap_or(""));
    put("sender", &facts.sender.unwrap_or(""));
    put("recipient", &recipient);
    put(
        "recipient_count",
        &if many { s.recipients.len() } else { 0 },
    );
    put("queue_id", &s.queue_id);
    put("instance", &s.instance);
    put("size", &s.size);
    put("etrn_domain", &"");
    put("stress", &"");
    let login = facts.login.unwrap_or("");
    put(
        "sasl_method",
        &if login.is_empty() {
            ""
        } else {
            s.sasl_method.unwrap_or("")
        },
    );
    put("sasl_username", &login);
    put("sasl_sender", &s.sasl_sender.unwrap_or(""));
    // smtpd_check.c: the names only for a verified certificate (xtext-encoded), the
    // fingerprints for any certificate.
    let cert = s.client_cert.filter(|_| facts.tls);
    let trusted_cn = |cn: fn(&super::ClientCert) -> &str| {
        cert.filter(|c| c.verified)
            .map(|c| crate::smtp::xtext::encode(cn(c).as_bytes()))
            .unwrap_or_default()
    };
    put("ccert_subject", &trusted_cn(|c| &c.subject_cn));
    put("ccert_issuer", &trusted_cn(|c| &c.issuer_cn));
    put(
        "ccert_fingerprint",
        &cert.map_or("", |c| c.fingerprint.as_str()),
    );
    put(
        "ccert_pubkey_fingerprint",
        &cert.map_or("", |c| c.pubkey_fingerprint.as_str()),
    );
    let tls = |v: Option<&str>| v.filter(|_| facts.tls).unwrap_or("").to_string();
    put("encryption_protocol", &tls(s.tls_protocol));
    put("encryption_cipher", &tls(s.tls_cipher));
    put(
        "encryption_keysize",
        &if facts.tls { s.tls_keysize } else { 0 },
    );
    put("policy_context", &service.settings.policy_context);
    out
}
