//! check_*_{a,mx,ns}_access, as smtpd_check.c's check_server_access does it: the name's MX or
//! NS hosts (or, for A, the name itself), each looked up in the table by name and then by each
//! of its addresses; the first key found decides, and an OK is refused for safety.

use std::net::IpAddr;

use super::access::VoiceKind;
use super::eval::{Eval, Verdict};
use super::hostname::valid_hostaddr;
use super::lookup::Hit;
use super::pending::{DnsAnswer, DnsRecord, FactAnswer, RecordType};
use super::restriction::{Restriction, ServerCheck, Subject};
use super::text::{AddrText, Lower};
use super::{Note, Reason};

/// The hosts a check_*_{mx,ns}_access looks at.
enum Servers {
    Hosts(Vec<Box<str>>),
    /// The lookup is still to be fetched.
    Waiting,
    /// Nothing to check (a null MX, a failed lookup).
    None,
}

/// var_dns_rr_list_limit: at most this many server addresses are checked.
const ADDRESS_LIMIT: usize = 100;

impl Eval<'_, '_> {
    pub(crate) fn server_access(&mut self, r: &Restriction, check: &ServerCheck) -> Verdict {
        let c = self.facts.client;
        let unknown = |n: &str| n.eq_ignore_ascii_case("unknown");
        let (name, voice) = match check.subject {
            Subject::Client if !unknown(&c.name) => (c.name.clone(), VoiceKind::Client),
            Subject::ReverseClient if !unknown(&c.reverse_name) => {
                (c.reverse_name.clone(), VoiceKind::ReverseClient)
            }
            Subject::Helo => match self.facts.helo {
                Some(h) => (h.to_string(), VoiceKind::Helo),
                None => return Verdict::Dunno,
            },
            Subject::Sender => match self.facts.sender.filter(|s| !s.is_empty()) {
                Some(s) => (s.to_string(), VoiceKind::Sender),
                None => return Verdict::Dunno,
            },
            Subject::Recipient => match self.facts.recipient.filter(|s| !s.is_empty()) {
                Some(s) => (s.to_string(), VoiceKind::Recipient),
                None => return Verdict::Dunno,
            },
            Subject::Client | Subject::ReverseClient => return Verdict::Dunno,
        };
        let domain = name.rsplit_once('@').map_or(name.as_str(), |(_, d)| d);
        let v = if domain.starts_with('[') {
            // An address literal is its own MX host; it has no NS equivalent.
            match (check.rtype, literal(domain)) {
                (RecordType::Ns, _) | (_, None) => Verdict::Dunno,
                (_, Some(addr)) => self
                    .server_addr(r, check, voice, addr)
                    .unwrap_or(Verdict::Dunno),
            }
        } else {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            match self.servers(check.rtype, &domain) {
                Servers::Waiting => Verdict::Pending,
                Servers::None => Verdict::Dunno,
                Servers::Hosts(hosts) => self.check_servers(r, check, voice, &hosts),
            }
        };
        self.forbid_ok(r, v, &name)
    }

    /// The hosts to check: the name itself for A; its MX hosts (the name itself when it has
    /// none); its NS hosts, or its nearest parent's.
    fn servers(&mut self, rtype: RecordType, domain: &str) -> Servers {
        if rtype == RecordType::A {
            return Servers::Hosts(vec![domain.into()]);
        }
        let mut at = domain;
        let answer = loop {
            let Some(answer) = self.dns(at, rtype) else {
                return Servers::Waiting;
            };
            match (answer, rtype) {
                (DnsAnswer::NoData | DnsAnswer::NxDomain, RecordType::Mx) => {
                    return Servers::Hosts(vec![domain.into()])
                }
                (DnsAnswer::NoData | DnsAnswer::NxDomain, RecordType::Ns) => {
                    match at.split_once('.') {
                        Some((_, parent)) if !parent.is_empty() => at = parent,
                        _ => break answer,
                    }
                }
                _ => break answer,
            }
        };
        match answer {
            DnsAnswer::Records(records) => Servers::Hosts(
                records
                    .iter()
                    .filter_map(|r| match r {
                        DnsRecord::Host { name, .. } => Some(name.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            DnsAnswer::NullMx => Servers::None,
            other => {
                self.notes.push(Note {
                    action: "warning",
                    text: format!(
                        "Unable to look up {} host for {at}: {}",
                        rtype.as_str(),
                        FactAnswer::Dns(other.clone()).describe()
                    ),
                });
                Servers::None
            }
        }
    }

    fn check_servers(
        &mut self,
        r: &Restriction,
        check: &ServerCheck,
        voice: VoiceKind,
        servers: &[Box<str>],
    ) -> Verdict {
        let mut pending = false;
        let mut checked = 0usize;
        for server in servers {
            let found = if let Some(addr) = server
                .parse::<IpAddr>()
                .ok()
                .filter(|_| valid_hostaddr(server))
            {
                self.server_addr(r, check, voice, addr)
            } else {
                let by_name = match check.rtype {
                    RecordType::A | RecordType::Aaaa => None,
                    _ => self.server_name(r, check, voice, server),
                };
                match by_name {
                    Some(v) => Some(v),
                    None => {
                        let Some(addrs) = self.host_addresses(server, check.rtype, voice) else {
                            pending = true;
                            continue;
                        };
                        let mut found = None;
                        for addr in addrs {
                            checked += 1;
                            if checked > ADDRESS_LIMIT {
                                return if pending {
                                    Verdict::Pending
                                } else {
                                    Verdict::Dunno
                                };
                            }
                            found = self.server_addr(r, check, voice, addr);
                            if found.is_some() {
                                break;
                            }
                        }
                        found
                    }
                }
            };
            if let Some(v) = found {
                return if pending { Verdict::Pending } else { v };
            }
        }
        if pending {
            Verdict::Pending
        } else {
            Verdict::Dunno
        }
    }

    /// A server's A and AAAA addresses; `None` until both are fetched. A host that does not
    /// resolve is skipped (with a warning, except for the name's own A lookup).
    fn host_addresses(
        &mut self,
        host: &str,
        rtype: RecordType,
        voice: VoiceKind,
    ) -> Option<Vec<IpAddr>> {
        let v4 = self.dns(host, RecordType::A);
        let v6 = self.dns(host, RecordType::Aaaa);
        let (v4, v6) = (v4?, v6?);
        let addrs: Vec<IpAddr> = [v4, v6].iter().flat_map(|a| a.addresses()).collect();
        if addrs.is_empty() && rtype != RecordType::A {
            let what = match voice {
                VoiceKind::Sender => self.facts.sender,
                VoiceKind::Recipient => self.facts.recipient,
                VoiceKind::Helo => self.facts.helo,
                _ => Some(self.facts.client.name.as_str()),
            };
            self.notes.push(Note {
                action: "warning",
                text: format!(
                    "Unable to look up {} host {host} for {} {}: {}",
                    rtype.as_str(),
                    voice.class(),
                    what.unwrap_or(""),
                    FactAnswer::Dns(v4.clone()).describe()
                ),
            });
        }
        Some(addrs)
    }

    /// check_domain_access on a server name; `Some` when a key was found.
    fn server_name(
        &mut self,
        r: &Restriction,
        check: &ServerCheck,
        voice: VoiceKind,
        host: &str,
    ) -> Option<Verdict> {
        let host = Lower::new(host);
        let table = &check.table;
        let found = super::lookup::domain(self.p, table, host.as_str(), &mut |k| {
            self.table_get(table, k)
        });
        self.server_found(r, check, voice, found)
    }

    /// check_addr_access on a server address; `Some` when a key was found.
    fn server_addr(
        &mut self,
        r: &Restriction,
        check: &ServerCheck,
        voice: VoiceKind,
        addr: IpAddr,
    ) -> Option<Verdict> {
        let text = AddrText::new(addr.to_canonical());
        let table = &check.table;
        let found = super::lookup::address(table, &text, &mut |k| self.table_get(table, k));
        self.server_found(r, check, voice, found)
    }

    /// A key's verdict; `Some(Pending)` ends the server loop until the key is fetched.
    fn server_found(
        &mut self,
        r: &Restriction,
        check: &ServerCheck,
        voice: VoiceKind,
        found: Hit,
    ) -> Option<Verdict> {
        match found {
            Ok(hit) => {
                let (key, value) = hit?;
                Some(self.server_result(r, check, voice, key, value))
            }
            Err(stop) => Some(self.lookup_stopped(r, voice, &check.table, stop)),
        }
    }

    fn server_result(
        &mut self,
        r: &Restriction,
        check: &ServerCheck,
        voice: VoiceKind,
        key: String,
        value: String,
    ) -> Verdict {
        let reason = Reason {
            table: Some(check.table.spec().to_string()),
            key: Some(key),
            value: Some(value.clone()),
            ..self.reason(r)
        };
        self.table_result(&value, voice, reason, check.table.spec())
    }

    /// forbid_allowlist: these restrictions may reject or pass, never permit.
    pub(crate) fn forbid_ok(&mut self, r: &Restriction, v: Verdict, target: &str) -> Verdict {
        let Verdict::Ok(reason) = v else {
            return v;
        };
        let written = r.name(&self.p.classes);
        let name = written.split_whitespace().next().unwrap_or_default();
        for text in [
            format!("restriction {name} returns OK for {target}"),
            "this is not allowed for security reasons".to_string(),
            "use DUNNO instead of OK if you want to make an exception".to_string(),
        ] {
            self.notes.push(Note {
                action: "warning",
                text,
            });
        }
        Verdict::Reject(super::access::config_error(), reason)
    }
}

/// `[addr]` or `[IPv6:addr]` as valid_mailhost_addr reads it.
fn literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let bare = match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => &inner[5..],
        _ => inner,
    };
    bare.parse().ok()
}
