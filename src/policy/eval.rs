//! Runs restriction lists against the facts of one command, the way smtpd_check.c's
//! generic_checks and smtpd_check_reject do: first OK or REJECT ends a list, OK ends only its
//! stage, `defer_if_permit`/`defer_if_reject`/`warn_if_reject` as Postfix scopes them.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::net::IpAddr;

use super::access::{config_error, dsn_fix, printable, Dsn, VoiceKind};
use super::address::{classify, literal_addr, Address, Destination};
use super::hostname::{truncate_dot, valid_helo_literal, valid_hostaddr, valid_hostname};
use super::pending::{FactAnswer, FactCache, FactRequest, MAX_REQUESTS_PER_ROUND};
use super::restriction::Restriction;
use super::{Facts, ListTrace, Note, Policy, Reason, Stage};
use crate::smtp::Reply;

/// What one restriction or list says.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    Ok(Reason),
    Dunno,
    Reject(Reply, Reason),
    /// The restriction needs a fact that is not fetched yet ([`Eval::ask`] recorded it).
    Pending,
}

/// A deferral waiting for the end of the stage (`defer_if_permit`) or for a 5xx (`defer_if_reject`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Armed {
    pub(crate) reply: Reply,
    pub(crate) reason: Reason,
}

/// Class recursion limit, as smtpd's 100.
pub(crate) const MAX_DEPTH: u32 = 100;

pub(crate) struct Eval<'p, 'f> {
    pub(crate) p: &'p Policy,
    pub(crate) stage: Stage,
    pub(crate) facts: &'f Facts<'f>,
    pub(crate) addr: IpAddr,
    /// Parsed on first use: most restriction lists never look at an address.
    sender: OnceCell<Option<Address>>,
    rcpt: OnceCell<Option<Address>>,
    pub(crate) notes: Vec<Note>,
    pub(crate) dip: Option<Armed>,
    pub(crate) dir: Option<Armed>,
    warn: bool,
    pub(crate) depth: u32,
    param: &'static str,
    pub(crate) trace: Option<Vec<ListTrace>>,
    /// Facts fetched for this command, and those still missing (a cell, so that a lookup
    /// order can ask while the envelope addresses it reads from `self` are borrowed).
    answers: &'f FactCache,
    pub(crate) needs: RefCell<Vec<FactRequest>>,
    /// A policy service's default_action is being applied: one that fails again inside it
    /// falls back to the built-in default (smtpd_check.c's nesting_level).
    pub(crate) in_default_action: bool,
    /// The policy requests reached so far in this evaluation, to number repeats.
    pub(crate) policy_asked: Vec<FactRequest>,
    /// The sender / recipient was checked against its class's tables in this stage
    /// (smtpd's sender_rcptmap_checked / recipient_rcptmap_checked).
    pub(crate) sender_listed: bool,
    pub(crate) rcpt_listed: bool,
}

impl<'p, 'f> Eval<'p, 'f> {
    pub(crate) fn new(
        p: &'p Policy,
        stage: Stage,
        facts: &'f Facts<'f>,
        answers: &'f FactCache,
        explain: bool,
    ) -> Self {
        Eval {
            p,
            stage,
            facts,
            addr: facts.client.addr.to_canonical(),
            sender: OnceCell::new(),
            rcpt: OnceCell::new(),
            notes: Vec::new(),
            dip: None,
            dir: None,
            warn: false,
            depth: 0,
            param: "",
            trace: explain.then(Vec::new),
            answers,
            needs: RefCell::new(Vec::new()),
            in_default_action: false,
            policy_asked: Vec::new(),
            sender_listed: false,
            rcpt_listed: false,
        }
    }

    /// The answer to `request`, or `None` after noting that it is needed (see
    /// [`super::pending`]): the caller then returns [`Verdict::Pending`]. A request with effects
    /// on the other side is only noted when nothing else is open, so that it is made in
    /// Postfix's order and only when Postfix would make it.
    pub(crate) fn ask(&self, request: FactRequest) -> Option<&'f FactAnswer> {
        if let Some(answer) = self.answers.get(&request) {
            return Some(answer);
        }
        let mut needs = self.needs.borrow_mut();
        let speculating = !needs.is_empty();
        let may_note = !speculating
            || (request.is_speculative()
                && needs.iter().all(FactRequest::is_speculative)
                && needs.len() < MAX_REQUESTS_PER_ROUND);
        if may_note && !needs.contains(&request) {
            needs.push(request);
        }
        None
    }

    /// True under warn_if_reject: a reject becomes a logged warning.
    pub(crate) fn warning(&self) -> bool {
        self.warn
    }

    /// The MAIL FROM address in lookup form, if the stage has one.
    pub(crate) fn sender(&self) -> Option<&Address> {
        self.sender
            .get_or_init(|| self.facts.sender.map(Address::new))
            .as_ref()
    }

    /// The RCPT TO address in lookup form, if the stage has one.
    pub(crate) fn rcpt(&self) -> Option<&Address> {
        self.rcpt
            .get_or_init(|| self.facts.recipient.map(Address::new))
            .as_ref()
    }

    /// One stage's list with Postfix's SMTPD_CHECK_RESET (defer_if_reject and warn_if_reject do
    /// not carry across stages; defer_if_permit does).
    pub(crate) fn run_list(
        &mut self,
        param: &'static str,
        list: &[Restriction],
        voice: VoiceKind,
    ) -> Verdict {
        self.dir = None;
        self.warn = false;
        self.depth = 0;
        self.param = param;
        let v = self.checks(list, voice);
        if let Some(t) = self.trace.as_mut() {
            t.push(ListTrace::new(param, &v));
        }
        v
    }

    pub(crate) fn checks(&mut self, list: &[Restriction], voice: VoiceKind) -> Verdict {
        let mut pending = false;
        for r in list {
            match self.apply(r, voice) {
                Verdict::Dunno => {
                    if self.dip.is_some() && self.dir.is_some() {
                        break;
                    }
                }
                // Go on as if it said DUNNO, to learn what else this command will need.
                Verdict::Pending => pending = true,
                _ if pending => return Verdict::Pending,
                decided => return decided,
            }
        }
        if pending {
            Verdict::Pending
        } else {
            Verdict::Dunno
        }
    }

    pub(crate) fn reason(&self, r: &Restriction) -> Reason {
        Reason {
            parameter: Cow::Borrowed(self.param),
            restriction: r.name(&self.p.classes),
            ..Reason::default()
        }
    }

    /// The `<NAME>` of a voice.
    pub(crate) fn reply_name(&self, voice: VoiceKind) -> String {
        match voice {
            VoiceKind::Client => format!("{}[{}]", self.facts.client.name, self.addr),
            VoiceKind::ReverseClient => self.facts.client.reverse_name.clone(),
            VoiceKind::Helo => self.facts.helo.unwrap_or("").to_string(),
            VoiceKind::Sender => self.sender().map(|a| a.reply.clone()).unwrap_or_default(),
            VoiceKind::Recipient => self.rcpt().map(|a| a.reply.clone()).unwrap_or_default(),
            // check_sasl_access's sane_username: printable(), with `_` for the rest.
            VoiceKind::Sasl => self
                .facts
                .login
                .unwrap_or("")
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
            VoiceKind::Data => "DATA".into(),
            VoiceKind::EndOfData => "END-OF-MESSAGE".into(),
            // smtpd_check.c check_ccert_access names the certificate's CN (peer_CN).
            VoiceKind::ClientCert => self
                .facts
                .session
                .client_cert
                .map(|c| c.subject_cn.clone())
                .unwrap_or_default(),
        }
    }

    /// `CODE D.D.D <NAME>: CLASS rejected: TEXT`.
    pub(crate) fn voice_reply(&self, code: u16, dsn: Dsn, voice: VoiceKind, text: &str) -> Reply {
        let (a, b, c) = dsn_fix(code, dsn, voice);
        let body = format!(
            "<{}>: {} rejected: {}",
            self.reply_name(voice),
            voice.class(),
            text
        );
        Reply::new(code, (a, b, c), printable(body))
    }

    /// A reply with restriction-specific text: `CODE D.D.D <NAME>: TEXT`-style, built by caller.
    fn plain_reply(&self, code: u16, dsn: Dsn, voice: VoiceKind, text: String) -> Reply {
        let (a, b, c) = dsn_fix(code, dsn, voice);
        Reply::new(code, (a, b, c), printable(text))
    }

    /// smtpd_check_reject: warn_if_reject turns a reject into a note, an armed defer_if_reject
    /// replaces a 5xx, soft_bounce softens.
    pub(crate) fn reject(&mut self, reply: Reply, reason: Reason) -> Verdict {
        if self.warn {
            self.notes.push(Note {
                action: "reject_warning",
                text: reply.to_string(),
            });
            return Verdict::Dunno;
        }
        let (reply, reason) = match (&self.dir, reply.code >= 500) {
            (Some(armed), true) => {
                let mut r = armed.reason.clone();
                r.via.push(format!("replaces: {reply}"));
                (armed.reply.clone(), r)
            }
            _ => (reply, reason),
        };
        Verdict::Reject(self.p.soften(reply), reason)
    }

    /// `451 4.3.5 Server configuration error`: never turned into a warning.
    pub(crate) fn config_error(&mut self, reason: Reason, why: String) -> Verdict {
        self.notes.push(Note {
            action: "warning",
            text: why,
        });
        Verdict::Reject(config_error(), reason)
    }

    pub(crate) fn arm(slot: &mut Option<Armed>, reply: Reply, reason: Reason) {
        if slot.is_none() {
            *slot = Some(Armed { reply, reason });
        }
    }

    fn apply(&mut self, r: &Restriction, voice: VoiceKind) -> Verdict {
        let codes = self.p.codes;
        match r {
            Restriction::Permit => Verdict::Ok(self.reason(r)),
            Restriction::Reject => {
                let reply = self.voice_reply(codes.reject, (5, 7, 1), voice, "Access denied");
                self.reject(reply, self.reason(r))
            }
            Restriction::Defer => {
                let reply = self.voice_reply(codes.defer, (4, 3, 2), voice, "Try again later");
                self.reject(reply, self.reason(r))
            }
            Restriction::DeferIfPermit => {
                let reply =
                    self.voice_reply(codes.defer, (4, 7, 0), voice, "defer_if_permit requested");
                let reason = self.reason(r);
                Self::arm(&mut self.dip, reply, reason);
                Verdict::Dunno
            }
            Restriction::DeferIfReject => {
                let reply =
                    self.voice_reply(codes.defer, (4, 7, 0), voice, "defer_if_reject requested");
                let reason = self.reason(r);
                Self::arm(&mut self.dir, reply, reason);
                Verdict::Dunno
            }
            Restriction::WarnIfReject(inner) => {
                let saved = self.warn;
                self.warn = true;
                let v = self.apply(inner, voice);
                self.warn = saved;
                v
            }
            Restriction::PermitMynetworks => self.permit_mynetworks(r, voice),
            // own_inet_addr(): the client is one of the addresses relayguard listens on
            // (inet_interfaces; proxy_interfaces do not count).
            Restriction::PermitInetInterfaces => {
                let own = &self.p.local_literals[..self.p.inet_count];
                if own.contains(&self.addr) {
                    Verdict::Ok(Reason {
                        key: Some(self.addr.to_string()),
                        value: Some("inet_interfaces".into()),
                        ..self.reason(r)
                    })
                } else {
                    Verdict::Dunno
                }
            }
            Restriction::PermitSaslAuthenticated => match self.facts.login {
                Some(login) if self.p.sasl_auth_enable => Verdict::Ok(Reason {
                    key: Some(login.to_string()),
                    ..self.reason(r)
                }),
                _ => Verdict::Dunno,
            },
            Restriction::RejectUnauthDestination
            | Restriction::DeferUnauthDestination
            | Restriction::PermitAuthDestination => {
                let Some(rcpt) = self.rcpt() else {
                    return Verdict::Dunno;
                };
                let loc = self.locality();
                let dest = classify(&rcpt.key, self.p.rewrite, &self.p.myorigin, &loc);
                if let Some((param, stop)) = loc.take() {
                    let name = rcpt.reply.clone();
                    return self.list_stopped(r, param, stop, &name);
                }
                let authorized = matches!(dest, Destination::Final | Destination::Relay);
                let reason = Reason {
                    key: Some(rcpt.reply.clone()),
                    value: Some(format!("{dest:?}").to_ascii_lowercase()),
                    ..self.reason(r)
                };
                match (r, authorized) {
                    (Restriction::PermitAuthDestination, true) => Verdict::Ok(reason),
                    (Restriction::PermitAuthDestination, false) | (_, true) => Verdict::Dunno,
                    _ => {
                        let code = if matches!(r, Restriction::DeferUnauthDestination) {
                            codes.relay_domains_reject.saturating_sub(100)
                        } else {
                            codes.relay_domains_reject
                        };
                        let text = format!("<{}>: Relay access denied", rcpt.reply);
                        let reply = self.plain_reply(code, (5, 7, 1), VoiceKind::Recipient, text);
                        self.reject(reply, reason)
                    }
                }
            }
            Restriction::RejectUnauthPipelining => {
                if !self.facts.improper_pipelining {
                    return Verdict::Dunno;
                }
                let reply = self.voice_reply(
                    503,
                    (5, 5, 0),
                    voice,
                    "Improper use of SMTP command pipelining",
                );
                self.reject(reply, self.reason(r))
            }
            Restriction::Check { lookup, table } => self.check_access(r, *lookup, table),
            Restriction::RejectNonFqdnHelo { .. } | Restriction::RejectInvalidHelo { .. } => {
                let Some(helo) = self.facts.helo else {
                    return Verdict::Dunno;
                };
                // smtpd_check.c: a HELO that starts with `[` is an address literal for both
                // restrictions, refused with the invalid-name code; a name is cut of one
                // trailing dot first (dup_if_truncate).
                let name = truncate_dot(helo);
                let refusal = if helo.starts_with('[') {
                    (!valid_helo_literal(helo))
                        .then_some((codes.invalid_hostname_reject, "invalid ip address"))
                } else if matches!(r, Restriction::RejectInvalidHelo { .. }) {
                    // "XXX back compat" in Postfix: a bare address is a valid name here.
                    (!valid_hostname(name) && !valid_hostaddr(name))
                        .then_some((codes.invalid_hostname_reject, "Invalid name"))
                } else {
                    (!valid_hostname(name) || !name.contains('.'))
                        .then_some((codes.non_fqdn_reject, "need fully-qualified hostname"))
                };
                let Some((code, text)) = refusal else {
                    return Verdict::Dunno;
                };
                let reply = self.voice_reply(code, (5, 5, 2), VoiceKind::Helo, text);
                self.reject(
                    reply,
                    Reason {
                        key: Some(helo.into()),
                        ..self.reason(r)
                    },
                )
            }
            Restriction::RejectNonFqdnSender | Restriction::RejectNonFqdnRecipient => {
                let (addr, voice) = if matches!(r, Restriction::RejectNonFqdnSender) {
                    (self.sender(), VoiceKind::Sender)
                } else {
                    (self.rcpt(), VoiceKind::Recipient)
                };
                let Some(addr) = addr.filter(|a| !a.reply.is_empty()) else {
                    return Verdict::Dunno;
                };
                let fqdn = match addr.key.rsplit_once('@') {
                    None => false,
                    Some((_, d)) if d.starts_with('[') => literal_addr(d).is_some(),
                    Some((_, d)) => valid_hostname(d) && d.trim_end_matches('.').contains('.'),
                };
                if fqdn {
                    return Verdict::Dunno;
                }
                let key = addr.reply.clone();
                let reply = self.voice_reply(
                    codes.non_fqdn_reject,
                    (5, 5, 2),
                    voice,
                    "need fully-qualified address",
                );
                self.reject(
                    reply,
                    Reason {
                        key: Some(key),
                        ..self.reason(r)
                    },
                )
            }
            Restriction::SenderLoginMismatch(m) => self.login_mismatch(r, *m),
            Restriction::RejectUnknownClient { reverse, .. } => self.unknown_client(r, *reverse),
            Restriction::RejectUnknownHelo { .. } => self.unknown_helo(r),
            Restriction::RejectUnknownDomain { sender, .. } => self.unknown_domain(r, *sender),
            Restriction::RejectUnlisted { sender, .. } => self.unlisted(Some(r), *sender),
            Restriction::Dnsxl(list) => self.dnsxl(r, list),
            Restriction::CheckServer(check) => self.server_access(r, check),
            Restriction::PolicyService(service) => self.policy_service(r, service, voice),
            Restriction::ClientCert(c) => self.client_cert(r, c),
            Restriction::Class(i) => {
                let Some((_, list)) = self.p.classes.get(*i as usize) else {
                    return Verdict::Dunno;
                };
                if self.depth >= MAX_DEPTH {
                    let why = format!("{}: causes unreasonable recursion", r.name(&self.p.classes));
                    return self.config_error(self.reason(r), why);
                }
                self.depth += 1;
                let v = self.checks(list, voice);
                self.depth -= 1;
                wrap(self.reason(r), v)
            }
        }
    }
}

/// Passes an inner verdict out through a table value or class, keeping the outer reason first.
pub(crate) fn wrap(mut outer: Reason, inner: Verdict) -> Verdict {
    let describe = |r: Reason| {
        let mut via = vec![r.describe()];
        via.extend(r.via);
        outer.via = via;
        outer
    };
    match inner {
        Verdict::Dunno => Verdict::Dunno,
        Verdict::Pending => Verdict::Pending,
        Verdict::Ok(r) => Verdict::Ok(describe(r)),
        Verdict::Reject(reply, r) => Verdict::Reject(reply, describe(r)),
    }
}
