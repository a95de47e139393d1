//! Network and domain lists whose entries may be remote tables: permit_mynetworks, and the
//! address classes (mydestination, virtual_*_domains, relay_domains) that
//! reject_unauth_destination and the envelope lookups resolve with.
//!
//! A list with no remote entry is matched at once, as before. One with a remote entry asks its
//! keys through the waiting engine; a pending key makes the restriction wait, and a failed one
//! is Postfix's reject_dict_retry: `451 4.3.0 <NAME>: Temporary lookup failure`
//! (smtpd_check.c, after a match_list "table lookup problem" or RESOLVE_FLAG_FAIL).

use std::cell::RefCell;

use super::access::{printable, VoiceKind};
use super::address::{literal_addr, Locality};
use super::eval::{Eval, Verdict};
use super::lookup::Stop;
use super::netlist::{ListMatch, NetList};
use super::recipient_maps::DomainClass;
use super::restriction::Restriction;
use super::text::Lower;
use super::{Note, Reason};
use crate::smtp::Reply;

/// The policy's address classes, asked through the evaluation's fact cache. The first list
/// that cannot answer is kept, with its parameter; every answer after it is `false`.
pub(crate) struct AskingLocality<'e, 'p, 'f> {
    ev: &'e Eval<'p, 'f>,
    stop: RefCell<Option<(&'static str, Stop)>>,
}

impl AskingLocality<'_, '_, '_> {
    #[inline]
    fn matches(&self, param: &'static str, list: &NetList, domain: &str) -> bool {
        if !list.has_remote() {
            return list.match_domain(domain).is_match();
        }
        if self.stop.borrow().is_some() {
            return false;
        }
        match list.match_waiting(domain, None, &mut |t, k| self.ev.table_get(t, k)) {
            Ok(m) => m.is_match(),
            Err(stop) => {
                *self.stop.borrow_mut() = Some((param, stop));
                false
            }
        }
    }

    /// trivial-rewrite's class for `domain`, in resolve.c's order.
    pub(crate) fn domain_class(&self, domain: &str) -> DomainClass {
        let p = self.ev.p;
        if self.is_local(domain) {
            DomainClass::Local
        } else if self.matches("virtual_alias_domains", &p.virtual_alias_domains, domain) {
            DomainClass::Alias
        } else if self.matches(
            "virtual_mailbox_domains",
            &p.virtual_mailbox_domains,
            domain,
        ) {
            DomainClass::Virtual
        } else if self.is_relay(domain) {
            DomainClass::Relay
        } else {
            DomainClass::Default
        }
    }

    /// The list that stopped, if one did.
    pub(crate) fn take(&self) -> Option<(&'static str, Stop)> {
        self.stop.borrow_mut().take()
    }
}

impl Locality for AskingLocality<'_, '_, '_> {
    fn is_local(&self, domain: &str) -> bool {
        if domain.starts_with('[') {
            return literal_addr(domain).is_some_and(|a| self.ev.p.local_literals.contains(&a));
        }
        self.matches("mydestination", &self.ev.p.mydestination, domain)
    }

    fn is_final(&self, domain: &str) -> bool {
        let p = self.ev.p;
        self.is_local(domain)
            || self.matches("virtual_alias_domains", &p.virtual_alias_domains, domain)
            || self.matches(
                "virtual_mailbox_domains",
                &p.virtual_mailbox_domains,
                domain,
            )
    }

    fn is_relay(&self, domain: &str) -> bool {
        self.matches("relay_domains", &self.ev.p.relay_domains, domain)
    }

    fn stopped(&self) -> bool {
        self.stop.borrow().is_some()
    }
}

impl<'p, 'f> Eval<'p, 'f> {
    /// The address classes, asking remote list entries as needed.
    pub(crate) fn locality(&self) -> AskingLocality<'_, 'p, 'f> {
        AskingLocality {
            ev: self,
            stop: RefCell::new(None),
        }
    }

    /// A list that could not answer: wait, or reject_dict_retry for `name`.
    pub(crate) fn list_stopped(
        &mut self,
        r: &Restriction,
        param: &'static str,
        stop: Stop,
        name: &str,
    ) -> Verdict {
        let Stop::Failed { key, why } = stop else {
            return Verdict::Pending;
        };
        self.notes.push(Note {
            action: "warning",
            text: format!("{param}: table lookup problem for \"{key}\": {why}"),
        });
        let reply = Reply::new(
            451,
            (4, 3, 0),
            printable(format!("<{name}>: Temporary lookup failure")),
        );
        let reason = Reason {
            table: Some(param.to_string()),
            key: Some(key),
            value: Some(format!("lookup failed: {why}")),
            ..self.reason(r)
        };
        self.reject(reply, reason)
    }

    /// permit_mynetworks: the client's name, then its address, against `mynetworks`.
    pub(crate) fn permit_mynetworks(&mut self, r: &Restriction, voice: VoiceKind) -> Verdict {
        let list = &self.p.mynetworks;
        let found = if list.has_remote() {
            let name = Lower::new(&self.facts.client.name);
            list.match_waiting(name.as_str(), Some(self.addr), &mut |t, k| {
                self.table_get(t, k)
            })
        } else {
            Ok(list.match_client(&self.facts.client.name, self.addr))
        };
        match found {
            Ok(ListMatch::Matched(i)) => Verdict::Ok(Reason {
                table: Some("mynetworks".into()),
                key: Some(self.addr.to_string()),
                value: Some(self.p.mynetworks.entry_text(i).to_string()),
                ..self.reason(r)
            }),
            Ok(_) => Verdict::Dunno,
            Err(stop) => {
                let name = self.reply_name(voice);
                self.list_stopped(r, "mynetworks", stop, &name)
            }
        }
    }
}
