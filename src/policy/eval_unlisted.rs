//! reject_unlisted_recipient and reject_unlisted_sender, explicit or implied by
//! smtpd_reject_unlisted_recipient / smtpd_reject_unlisted_sender: smtpd_check.c's
//! check_rcpt_maps over the tables of `recipient_maps`.

use super::access::{printable, VoiceKind};
use super::address::resolve;
use super::eval::{Eval, Verdict};
use super::lookup::{addr_find, Stop};
use super::recipient_maps::{DomainClass, Maps};
use super::restriction::Restriction;
use super::Reason;
use crate::smtp::Reply;

impl Eval<'_, '_> {
    /// check_{recipient,sender}_rcpt_maps: `r` is the restriction that asked, or `None` for
    /// the implicit check at the end of the stage. Runs once per address and stage, as
    /// Postfix's *_rcptmap_checked flags have it (not counting a run under warn_if_reject).
    pub(crate) fn unlisted(&mut self, r: Option<&Restriction>, sender: bool) -> Verdict {
        // No class has a table to check and no alias domain can refuse: the common case of
        // a plain relay, answered before any address work.
        if !self.p.recipient_maps.can_refuse() && self.p.virtual_alias_domains.is_empty() {
            return Verdict::Dunno;
        }
        let addr = if sender { self.sender() } else { self.rcpt() };
        let Some(addr) = addr.filter(|a| !a.key.is_empty()).cloned() else {
            return Verdict::Dunno;
        };
        let warn = self.warning();
        let checked = if sender {
            &mut self.sender_listed
        } else {
            &mut self.rcpt_listed
        };
        if *checked {
            return Verdict::Dunno;
        }
        if !warn {
            *checked = true;
        }
        let p = self.p;
        let maps = &p.recipient_maps;
        let loc = self.locality();
        let (_, full) = resolve(&addr.key, p.rewrite, &p.myorigin, &loc);
        let class = full
            .rsplit_once('@')
            .map_or(DomainClass::Default, |(_, d)| loc.domain_class(d));
        let voice = if sender {
            VoiceKind::Sender
        } else {
            VoiceKind::Recipient
        };
        let reason = |ev: &Self, table: &str| match r {
            Some(r) => Reason {
                table: Some(table.into()),
                key: Some(full.clone()),
                ..ev.reason(r)
            },
            None => Reason {
                parameter: if sender {
                    "smtpd_reject_unlisted_sender"
                } else {
                    "smtpd_reject_unlisted_recipient"
                }
                .into(),
                restriction: if sender {
                    "reject_unlisted_sender"
                } else {
                    "reject_unlisted_recipient"
                }
                .into(),
                table: Some(table.into()),
                key: Some(full.clone()),
                ..Reason::default()
            },
        };
        if let Some((param, stop)) = loc.take() {
            let Some(r) = r else {
                return self.implicit_stopped(param, stop, &addr.reply);
            };
            return self.list_stopped(r, param, stop, &addr.reply);
        }
        // An address a rewriting map knows is taken as valid (the resolver does not yet
        // give the rewritten address, smtpd_check.c says).
        let sender_canonical: &Maps = if sender {
            &maps.sender_canonical
        } else {
            &Vec::new()
        };
        let rewriting = [
            &maps.recipient_canonical,
            sender_canonical,
            &maps.canonical,
            &maps.virtual_alias,
        ];
        for tables in rewriting {
            match self.known(tables, &full) {
                Ok(true) => return Verdict::Dunno,
                Ok(false) => {}
                Err(v) => return self.lookup_retry(v, &addr.reply),
            }
        }
        let (tables, code, table_name) = match class {
            // The resolver sends these to error:User unknown in virtual alias table.
            DomainClass::Alias => {
                let text = self.user_unknown("virtual alias");
                let reply = self.voice_reply(maps.codes.virtual_alias, (5, 1, 1), voice, &text);
                let reason = reason(self, "virtual_alias_maps");
                return self.reject(reply, reason);
            }
            DomainClass::Local => (&maps.local, maps.codes.local, "local recipient"),
            DomainClass::Virtual => (
                &maps.virtual_mailbox,
                maps.codes.virtual_mailbox,
                "virtual mailbox",
            ),
            DomainClass::Relay => (&maps.relay, maps.codes.relay, "relay recipient"),
            DomainClass::Default => return Verdict::Dunno,
        };
        if tables.is_empty() {
            return Verdict::Dunno;
        }
        if class == DomainClass::Local && self.always_local(&full) {
            return Verdict::Dunno;
        }
        match self.known(tables, &full) {
            Ok(true) => Verdict::Dunno,
            Ok(false) => {
                let dsn = if sender { (5, 1, 0) } else { (5, 1, 1) };
                let text = self.user_unknown(table_name);
                let reply = self.voice_reply(code, dsn, voice, &text);
                let param = match class {
                    DomainClass::Local => "local_recipient_maps",
                    DomainClass::Virtual => "virtual_mailbox_maps",
                    _ => "relay_recipient_maps",
                };
                let reason = reason(self, param);
                self.reject(reply, reason)
            }
            Err(stop) => self.lookup_retry(stop, &addr.reply),
        }
    }

    /// `User unknown in TABLE table`, or without the table (show_user_unknown_table_name).
    fn user_unknown(&self, table: &str) -> String {
        if self.p.recipient_maps.show_table {
            format!("User unknown in {table} table")
        } else {
            "User unknown".into()
        }
    }

    /// The local parts check_rcpt_maps never rejects in a local domain: the double-bounce
    /// sender, postmaster and MAILER-DAEMON (the queue manager and bounce daemon use them).
    fn always_local(&self, full: &str) -> bool {
        let local = full.rsplit_once('@').map_or(full, |(l, _)| l);
        [
            &*self.p.recipient_maps.double_bounce,
            "postmaster",
            "mailer-daemon",
        ]
        .iter()
        .any(|n| local.eq_ignore_ascii_case(n))
    }

    /// Whether `tables` know `full` (mail_addr_find), or why it cannot be told yet.
    fn known(&self, tables: &Maps, full: &str) -> Result<bool, Stop> {
        if tables.is_empty() {
            return Ok(false);
        }
        let loc = self.locality();
        let found = addr_find(self.p, &loc, tables, full, &mut |t, k| self.table_get(t, k));
        if let Some((_, stop)) = loc.take() {
            return Err(stop);
        }
        found.map(|hit| hit.is_some())
    }

    /// check_mail_addr_find's failure: reject_dict_retry, `451 4.3.0 <ADDR>: Temporary
    /// lookup failure`, or wait for the answer.
    fn lookup_retry(&mut self, stop: Stop, name: &str) -> Verdict {
        match stop {
            Stop::Pending => Verdict::Pending,
            Stop::Failed { key, why } => {
                self.notes.push(super::Note {
                    action: "warning",
                    text: format!("table lookup problem for \"{key}\": {why}"),
                });
                let reply = Reply::new(
                    451,
                    (4, 3, 0),
                    printable(format!("<{name}>: Temporary lookup failure")),
                );
                let reason = Reason {
                    parameter: "smtpd_reject_unlisted_recipient".into(),
                    key: Some(key),
                    value: Some(format!("lookup failed: {why}")),
                    ..Reason::default()
                };
                self.reject(reply, reason)
            }
        }
    }

    /// An address class list that could not answer for the implicit check.
    fn implicit_stopped(&mut self, param: &'static str, stop: Stop, name: &str) -> Verdict {
        match stop {
            Stop::Pending => Verdict::Pending,
            Stop::Failed { key, why } => self.lookup_retry(
                Stop::Failed {
                    key,
                    why: format!("{param}: {why}"),
                },
                name,
            ),
        }
    }
}
