//! The restrictions that ask the DNS, as smtpd_check.c words and codes them:
//! reject_unknown_{client,reverse_client,helo}_hostname, reject_unknown_{sender,recipient}_domain
//! and the DNS allow and deny lists. Each answer comes from [`Eval::ask`]; a missing one makes
//! the restriction [`Verdict::Pending`].

use std::net::IpAddr;
use std::sync::Arc;

use super::access::{printable, Dsn, VoiceKind};
use super::address::{resolve, Destination};
use super::dnsxl::{join_txt, query_domain, Dnsxl, DnsxlKind, RblExpansion};
use super::eval::{Eval, Verdict};
use super::hostname::valid_helo_literal;
use super::params::expand_template;
use super::pending::{DnsAnswer, DnsRecord, FactAnswer, FactRequest, RecordType};
use super::restriction::Restriction;
use super::table::Table;
use super::{NameStatus, Note, Reason};
use crate::smtp::Reply;

/// The DNS restrictions' codes and texts (main.cf names in the comments).
#[derive(Clone, Debug)]
pub(crate) struct DnsRules {
    /// unknown_client_reject_code
    pub(crate) unknown_client: u16,
    /// unknown_hostname_reject_code
    pub(crate) unknown_hostname: u16,
    /// unknown_address_reject_code
    pub(crate) unknown_address: u16,
    /// maps_rbl_reject_code
    pub(crate) maps_rbl: u16,
    /// unknown_helo_hostname_tempfail_action is defer_if_permit (else defer).
    pub(crate) helo_tempfail_if_permit: bool,
    /// unknown_address_tempfail_action is defer_if_permit (else defer).
    pub(crate) address_tempfail_if_permit: bool,
    /// default_rbl_reply
    pub(crate) default_rbl_reply: Box<str>,
    /// rbl_reply_maps: a reply template per list domain.
    pub(crate) rbl_reply_maps: Option<Arc<Table>>,
}

impl Default for DnsRules {
    fn default() -> Self {
        DnsRules {
            unknown_client: 450,
            unknown_hostname: 450,
            unknown_address: 450,
            maps_rbl: 554,
            helo_tempfail_if_permit: true,
            address_tempfail_if_permit: true,
            default_rbl_reply: DEFAULT_RBL_REPLY.into(),
            rbl_reply_maps: None,
        }
    }
}

/// Postfix's default_rbl_reply.
pub(crate) const DEFAULT_RBL_REPLY: &str = "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}";

/// dns_lookup()'s status values, ordered as Postfix ranks them when several types fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    NotFound,
    NullMx,
    Fail,
    Retry,
    Ok,
}

fn status(answer: &DnsAnswer) -> Status {
    match answer {
        DnsAnswer::Records(_) => Status::Ok,
        DnsAnswer::NullMx => Status::NullMx,
        DnsAnswer::NoData | DnsAnswer::NxDomain => Status::NotFound,
        DnsAnswer::Refused(_) => Status::Fail,
        DnsAnswer::TryAgain(_) => Status::Retry,
    }
}

/// dns_lookup_l() over answers in the order the types were asked: the first OK (or, with
/// `stop_nullmx`, null MX) ends it; otherwise the highest-ranked failure.
fn combined(answers: &[&DnsAnswer], stop_nullmx: bool) -> Status {
    let mut worst = Status::NotFound;
    for a in answers {
        match status(a) {
            Status::Ok => return Status::Ok,
            Status::NullMx if stop_nullmx => return Status::NullMx,
            s => worst = worst.max(s),
        }
    }
    worst
}

/// A fixed-text reply: the class digit follows the code, the rest of the DSN is as given.
fn fixed_reply(code: u16, dsn: Dsn, text: String) -> Reply {
    Reply::new(code, ((code / 100) as u8, dsn.1, dsn.2), printable(text))
}

impl<'f> Eval<'_, 'f> {
    /// The DNS answer for `name`/`rtype`, or `None` when it is still to be fetched.
    pub(crate) fn dns(&mut self, name: &str, rtype: RecordType) -> Option<&'f DnsAnswer> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self.ask(FactRequest::dns(name, rtype))? {
            FactAnswer::Dns(a) => Some(a),
            // A request is answered in its own kind; anything else is a caller's bug, read
            // as no records rather than trusted.
            FactAnswer::Policy(_) | FactAnswer::Table(_) => Some(&DnsAnswer::NoData),
        }
    }

    /// Several lookups at once, in order; `None` until all are fetched.
    fn dns_all(&mut self, name: &str, types: &[RecordType]) -> Option<Vec<&'f DnsAnswer>> {
        let answers: Vec<_> = types.iter().map(|&t| self.dns(name, t)).collect();
        answers.into_iter().collect()
    }

    pub(crate) fn unknown_client(&mut self, r: &Restriction, reverse: bool) -> Verdict {
        let c = self.facts.client;
        let (status, dsn, text) = if reverse {
            (
                c.reverse_status,
                (4, 7, 1),
                "Client host rejected: cannot find your reverse hostname",
            )
        } else {
            (
                c.name_status,
                (4, 7, 25),
                "Client host rejected: cannot find your hostname",
            )
        };
        let code = match status {
            NameStatus::Ok => return Verdict::Dunno,
            NameStatus::Permanent => self.p.dns.unknown_client,
            NameStatus::Temporary => 450,
        };
        let reply = fixed_reply(code, dsn, format!("{text}, [{}]", self.addr));
        let reason = Reason {
            key: Some(self.addr.to_string()),
            value: Some(format!("{status:?}").to_ascii_lowercase()),
            ..self.reason(r)
        };
        self.reject(reply, reason)
    }

    pub(crate) fn unknown_helo(&mut self, r: &Restriction) -> Verdict {
        let Some(helo) = self.facts.helo else {
            return Verdict::Dunno;
        };
        let reason = Reason {
            key: Some(helo.into()),
            ..self.reason(r)
        };
        if helo.starts_with('[') {
            if valid_helo_literal(helo) {
                return Verdict::Dunno;
            }
            let code = self.p.codes.invalid_hostname_reject;
            let reply = self.voice_reply(code, (5, 5, 2), VoiceKind::Helo, "invalid ip address");
            return self.reject(reply, reason);
        }
        use RecordType::{Aaaa, Mx, A};
        let Some(answers) = self.dns_all(helo, &[A, Aaaa, Mx]) else {
            return Verdict::Pending;
        };
        let text = match combined(&answers, false) {
            // MTA names may have a null MX.
            Status::Ok | Status::NullMx => return Verdict::Dunno,
            Status::Retry => {
                let reply = self.voice_reply(450, (4, 7, 1), VoiceKind::Helo, "Host not found");
                return self.tempfail(self.p.dns.helo_tempfail_if_permit, reply, reason);
            }
            Status::NotFound | Status::Fail => "Host not found",
        };
        let code = self.p.dns.unknown_hostname;
        let reply = self.voice_reply(code, (4, 7, 1), VoiceKind::Helo, text);
        self.reject(reply, reason)
    }

    /// reject_unknown_address: the envelope domain, unless it is one of ours or a literal.
    pub(crate) fn unknown_domain(&mut self, r: &Restriction, sender: bool) -> Verdict {
        let (addr, voice, dsn) = if sender {
            (self.sender(), VoiceKind::Sender, (4, 1, 8))
        } else {
            (self.rcpt(), VoiceKind::Recipient, (4, 1, 2))
        };
        let Some(addr) = addr.filter(|a| !a.key.is_empty()) else {
            return Verdict::Dunno;
        };
        let loc = self.locality();
        let (dest, full) = resolve(&addr.key, self.p.rewrite, &self.p.myorigin, &loc);
        if let Some((param, stop)) = loc.take() {
            let name = addr.reply.clone();
            return self.list_stopped(r, param, stop, &name);
        }
        let Some((_, domain)) = full.rsplit_once('@') else {
            return Verdict::Dunno;
        };
        if dest == Destination::Final || (domain.starts_with('[') && domain.ends_with(']')) {
            return Verdict::Dunno;
        }
        let domain = domain.to_string();
        let shown = addr.reply.clone();
        let reason = Reason {
            key: Some(domain.clone()),
            ..self.reason(r)
        };
        use RecordType::{Aaaa, Mx, A};
        let Some(answers) = self.dns_all(&domain, &[Mx, A, Aaaa]) else {
            return Verdict::Pending;
        };
        let class = voice.class();
        match combined(&answers, true) {
            Status::Ok => Verdict::Dunno,
            Status::NullMx => {
                let (code, dsn) = if sender {
                    (550, (5, 7, 27))
                } else {
                    (556, (5, 1, 10))
                };
                let text = format!(
                    "<{shown}>: {class} rejected: Domain {domain} does not accept mail (nullMX)"
                );
                self.reject(fixed_reply(code, dsn, text), reason)
            }
            Status::Retry => {
                let text = format!("<{shown}>: {class} rejected: Domain not found");
                let reply = fixed_reply(450, dsn, text);
                self.tempfail(self.p.dns.address_tempfail_if_permit, reply, reason)
            }
            Status::NotFound | Status::Fail => {
                let text = format!("<{shown}>: {class} rejected: Domain not found");
                let reply = fixed_reply(self.p.dns.unknown_address, dsn, text);
                self.reject(reply, reason)
            }
        }
    }

    /// DEFER_IF_PERMIT2: with the `defer_if_permit` tempfail action (and not under
    /// warn_if_reject) the reply is armed; with `defer` it is given now.
    fn tempfail(&mut self, if_permit: bool, reply: Reply, reason: Reason) -> Verdict {
        if if_permit && !self.warning() {
            Self::arm(&mut self.dip, reply, reason);
            Verdict::Dunno
        } else {
            self.reject(reply, reason)
        }
    }

    pub(crate) fn dnsxl(&mut self, r: &Restriction, list: &Dnsxl) -> Verdict {
        let c = self.facts.client;
        let (query, what, voice) = match list.kind {
            DnsxlKind::RblClient | DnsxlKind::DnswlClient => (
                list.address_query(self.addr),
                self.addr.to_string(),
                VoiceKind::Client,
            ),
            DnsxlKind::RhsblClient | DnsxlKind::RhswlClient | DnsxlKind::RhsblReverseClient => {
                let (name, voice) = if list.kind == DnsxlKind::RhsblReverseClient {
                    (&c.reverse_name, VoiceKind::ReverseClient)
                } else {
                    (&c.name, VoiceKind::Client)
                };
                if name.eq_ignore_ascii_case("unknown") {
                    return Verdict::Dunno;
                }
                match query_domain(name) {
                    Some(d) => (format!("{d}.{}", list.zone), name.clone(), voice),
                    None => return Verdict::Dunno,
                }
            }
            DnsxlKind::RhsblHelo | DnsxlKind::RhsblSender | DnsxlKind::RhsblRecipient => {
                let (what, voice) = match list.kind {
                    DnsxlKind::RhsblHelo => (self.facts.helo, VoiceKind::Helo),
                    DnsxlKind::RhsblSender => (self.facts.sender, VoiceKind::Sender),
                    _ => (self.facts.recipient, VoiceKind::Recipient),
                };
                let Some(what) = what.filter(|w| !w.is_empty()) else {
                    return Verdict::Dunno;
                };
                match query_domain(what) {
                    Some(d) => (format!("{d}.{}", list.zone), what.to_string(), voice),
                    None => return Verdict::Dunno,
                }
            }
        };
        // Safety: an allow list never lets an unauthorized recipient through (Postfix).
        if list.kind.permits() {
            match self.recipient_authorized() {
                Ok(true) => {}
                Ok(false) => return Verdict::Dunno,
                Err((param, stop)) => {
                    let name = self.rcpt().map(|a| a.reply.clone()).unwrap_or_default();
                    return self.list_stopped(r, param, stop, &name);
                }
            }
        }
        let Some(answer) = self.dns(&query, RecordType::A) else {
            return Verdict::Pending;
        };
        let reason = Reason {
            table: Some(list.spec.to_string()),
            key: Some(query.clone()),
            value: Some(FactAnswer::Dns(answer.clone()).describe()),
            ..self.reason(r)
        };
        let listed = match answer {
            DnsAnswer::Records(_) => {
                let addrs: Vec<IpAddr> = answer.addresses().collect();
                list.matches(&addrs)
            }
            DnsAnswer::NoData | DnsAnswer::NxDomain => false,
            DnsAnswer::NullMx | DnsAnswer::Refused(_) | DnsAnswer::TryAgain(_) => {
                self.notes.push(Note {
                    action: "warning",
                    text: format!(
                        "{query}: RBL lookup error: {}",
                        FactAnswer::Dns(answer.clone()).describe()
                    ),
                });
                if list.kind.permits() {
                    let text = format!("<{what}>: {} rejected: Service unavailable", voice.class());
                    let reply = fixed_reply(450, (4, 7, 1), text);
                    Self::arm(&mut self.dir, reply, reason);
                }
                return Verdict::Dunno;
            }
        };
        if !listed {
            return Verdict::Dunno;
        }
        if list.kind.permits() {
            return Verdict::Ok(reason);
        }
        let Some(txt) = self.dns(&query, RecordType::Txt) else {
            return Verdict::Pending;
        };
        let txt = join_txt(txt.records().iter().filter_map(|r| match r {
            DnsRecord::Text(t) => Some(&**t),
            _ => None,
        }));
        let reply = self.rbl_reply(list, &what, voice, &txt);
        self.reject(reply, reason)
    }

    /// permit_auth_destination for the RCPT being decided; true outside RCPT.
    fn recipient_authorized(&self) -> Result<bool, (&'static str, super::lookup::Stop)> {
        let Some(rcpt) = self.rcpt() else {
            return Ok(true);
        };
        let loc = self.locality();
        let dest = super::address::classify(&rcpt.key, self.p.rewrite, &self.p.myorigin, &loc);
        match loc.take() {
            Some(stopped) => Err(stopped),
            None => Ok(matches!(dest, Destination::Final | Destination::Relay)),
        }
    }

    /// rbl_reject_reply: the list's template from rbl_reply_maps or default_rbl_reply,
    /// expanded; a template that does not yield `4NN `/`5NN ` gives 450 Service unavailable.
    fn rbl_reply(&mut self, list: &Dnsxl, what: &str, voice: VoiceKind, txt: &str) -> Reply {
        let own = self.p.dns.rbl_reply_maps.as_ref().and_then(|t| {
            t.lookup(&list.spec.to_ascii_lowercase())
                .map(|v| v.into_owned())
        });
        let rbl = RblExpansion {
            code: self.p.dns.maps_rbl,
            domain: &list.zone,
            reason: txt,
            what,
            class: voice.class(),
        };
        let mut warnings = Vec::new();
        let text = {
            let lookup = |name: &str| rbl.value(name).or_else(|| self.session_value(name));
            let filtered = |name: &str| lookup(name).map(|v| expand_filter(&v));
            let own = own.and_then(|template| match expand_template(&template, &filtered) {
                Ok(t) => Some(t),
                Err(why) => {
                    warnings.push(format!(
                        "rbl_reject_reply: bad rbl reply template for domain {}: {template} ({why})",
                        list.spec
                    ));
                    None
                }
            });
            own.unwrap_or_else(|| {
                expand_template(&self.p.dns.default_rbl_reply, &filtered).unwrap_or_default()
            })
        };
        let b = text.as_bytes();
        let well_formed = b.len() > 4
            && matches!(b[0], b'4' | b'5')
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && b[3] == b' ';
        if !well_formed {
            warnings.push(format!("rbl response code configuration error: {text}"));
        }
        self.notes.extend(warnings.into_iter().map(|text| Note {
            action: "warning",
            text,
        }));
        if !well_formed {
            return Reply::new(450, (4, 7, 1), "Service unavailable");
        }
        let code =
            u16::from(b[0] - b'0') * 100 + u16::from(b[1] - b'0') * 10 + u16::from(b[2] - b'0');
        let rest = &text[4..];
        let (dsn, rest) = match split_dsn(rest) {
            Some((dsn, rest)) => (dsn, rest),
            None => ((4, 7, 1), rest),
        };
        let rest = if rest.is_empty() {
            "Service unavailable"
        } else {
            rest
        };
        Reply::new(
            code,
            super::access::dsn_fix(code, dsn, voice),
            printable(rest.to_string()),
        )
    }

    /// smtpd_expand_lookup's names for reply templates.
    fn session_value(&self, name: &str) -> Option<String> {
        let c = self.facts.client;
        let addr_part = |a: Option<&str>, part: &str| -> String {
            let a = a.unwrap_or("");
            match part {
                "" => a.to_string(),
                "_name" => a.rsplit_once('@').map_or(a, |(l, _)| l).to_string(),
                _ => a.rsplit_once('@').map_or("", |(_, d)| d).to_string(),
            }
        };
        Some(match name {
            "server_name" => self.p.myhostname.to_string(),
            "client" => format!("{}[{}]", c.name, self.addr),
            "client_address" => self.addr.to_string(),
            "client_port" => c.port.to_string(),
            "client_name" => c.name.clone(),
            "reverse_client_name" => c.reverse_name.clone(),
            "helo_name" => self.facts.helo.unwrap_or("").to_string(),
            "sender" | "sender_name" | "sender_domain" => {
                addr_part(self.facts.sender, &name["sender".len()..])
            }
            "recipient" | "recipient_name" | "recipient_domain" => {
                addr_part(self.facts.recipient, &name["recipient".len()..])
            }
            _ => return None,
        })
    }
}

/// smtpd_expand_filter's default: printable ASCII, space and tab; anything else becomes `_`.
fn expand_filter(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A leading `D.D.D ` status (dsn_split): the class digit 4 or 5.
fn split_dsn(text: &str) -> Option<(Dsn, &str)> {
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = word.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(class == 4 || class == 5) {
        return None;
    }
    Some(((class, subject, detail), rest.trim_start()))
}
