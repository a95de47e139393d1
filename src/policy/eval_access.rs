//! The restrictions that consult tables: check_*_access with access(5) actions, and the
//! sender-login map of reject_*sender_login_mismatch.

use std::borrow::Cow;

use super::access::{parse_action, printable, Action, VoiceKind, MTA_ACTIONS};
use super::eval::{wrap, Eval, Verdict, MAX_DEPTH};
use super::lookup::{Answer, Stop};
use super::pending::{FactAnswer, FactRequest, TableResult};
use super::restriction::{LoginMismatch, Lookup, Restriction};
use super::table::Table;
use super::text::{AddrText, Lower};
use super::{Note, Reason};
use crate::smtp::Reply;

/// The access value smtpd_check.c substitutes when a table lookup fails.
const TABLE_ERROR: &str = "451 4.3.5 Server configuration error";

/// A name as `table` wants its keys: folded, or (socketmap, tcp) as the client wrote it.
fn key_case<'a>(table: &Table, name: &'a str) -> Lower<'a> {
    if table.folds_keys() {
        Lower::new(name)
    } else {
        Lower::Borrowed(name)
    }
}

/// maps.c's warning for a failed lookup, with the backend's reason.
fn lookup_warning(table: &Table, key: &str, why: &str) -> Note {
    Note {
        action: "warning",
        text: format!("{} lookup error for \"{key}\": {why}", table.spec()),
    }
}

impl<'f> Eval<'_, 'f> {
    /// One key of `t`: from memory at once, or for a remote table from the fetched answers
    /// (asking for it when it is not there yet). An empty value is an error, as maps.c has it.
    #[inline]
    pub(crate) fn table_get<'a>(&self, t: &'a Table, key: &str) -> Answer<'a>
    where
        'f: 'a,
    {
        if !t.is_remote() {
            return t.lookup(key).map_or(Answer::NotFound, Answer::Found);
        }
        self.remote_get(t, key)
    }

    /// [`Eval::table_get`] for a remote table, kept out of line so the in-memory path stays
    /// small where it is inlined.
    #[inline(never)]
    fn remote_get<'a>(&self, t: &'a Table, key: &str) -> Answer<'a>
    where
        'f: 'a,
    {
        match self.ask(FactRequest::table(t.spec(), key)) {
            None => Answer::Pending,
            Some(FactAnswer::Table(TableResult::Found(v))) if v.is_empty() => {
                Answer::Failed(format!(
                    "{} lookup of {key} returns an empty string result",
                    t.spec()
                ))
            }
            Some(FactAnswer::Table(TableResult::Found(v))) => Answer::Found(Cow::Borrowed(v)),
            Some(FactAnswer::Table(TableResult::NotFound)) => Answer::NotFound,
            Some(FactAnswer::Table(TableResult::Failed(why))) => Answer::Failed(why.clone()),
            Some(other) => Answer::Failed(format!("not a table answer: {}", other.describe())),
        }
    }

    pub(crate) fn login_mismatch(&mut self, r: &Restriction, m: LoginMismatch) -> Verdict {
        if !self.p.sasl_auth_enable {
            return Verdict::Dunno;
        }
        let Some(sender) = self.sender().filter(|s| !s.key.is_empty()) else {
            return Verdict::Dunno;
        };
        // smtpd_check.c looks the sender up only for the check that applies: the owners of a
        // logged-in client's sender, or whether an anonymous client's sender has an owner.
        let login = self.facts.login;
        if !((login.is_some() && m.authenticated) || (login.is_none() && m.unauthenticated)) {
            return Verdict::Dunno;
        }
        // An unset smtpd_sender_login_maps is an empty map to smtpd (maps_create of ""):
        // no sender has an owner, so a logged-in client owns none.
        // An unset smtpd_sender_login_maps is an empty map to smtpd (maps_create of ""):
        // no sender has an owner, so a logged-in client owns none.
        let p = self.p;
        let owners = match p.sender_login_maps.as_ref() {
            None => None,
            Some(maps) => {
                let loc = self.locality();
                let found = super::lookup::login_owners(p, &loc, maps, sender, &mut |k| {
                    self.table_get(maps, k)
                });
                if let Some((param, stop)) = loc.take() {
                    let name = sender.reply.clone();
                    return self.list_stopped(r, param, stop, &name);
                }
                match found {
                    Ok(hit) => hit.map(|(_, owners)| owners),
                    Err(Stop::Pending) => return Verdict::Pending,
                    Err(Stop::Failed { key, why }) => {
                        // check_mail_addr_find: reject_dict_retry, the sender's own 451 4.3.0.
                        let reply = Reply::new(
                            451,
                            (4, 3, 0),
                            printable(format!("<{}>: Temporary lookup failure", sender.reply)),
                        );
                        let reason = Reason {
                            table: Some(maps.spec().to_string()),
                            key: Some(key.clone()),
                            value: Some(format!("lookup failed: {why}")),
                            ..self.reason(r)
                        };
                        self.notes.push(lookup_warning(maps, &key, &why));
                        return self.reject(reply, reason);
                    }
                }
            }
        };
        let text = match (login, &owners) {
            (Some(login), Some(owners)) if m.authenticated => {
                let owned = owners
                    .split([',', ' ', '\t'])
                    .any(|o| o.eq_ignore_ascii_case(login));
                (!owned).then(|| format!("not owned by user {login}"))
            }
            (Some(login), None) if m.authenticated && !m.known_only => {
                Some(format!("not owned by user {login}"))
            }
            (None, Some(_)) if m.unauthenticated => Some("not logged in".to_string()),
            _ => None,
        };
        let Some(text) = text else {
            return Verdict::Dunno;
        };
        let reason = Reason {
            table: p.sender_login_maps.as_ref().map(|m| m.spec().to_string()),
            key: Some(sender.key.clone()),
            value: owners,
            ..self.reason(r)
        };
        let reply = self.voice_reply(553, (5, 7, 1), VoiceKind::Sender, &text);
        self.reject(reply, reason)
    }

    pub(crate) fn check_access(
        &mut self,
        r: &Restriction,
        lookup: Lookup,
        table: &Table,
    ) -> Verdict {
        let voice = match lookup {
            Lookup::Client => VoiceKind::Client,
            Lookup::ReverseClient => VoiceKind::ReverseClient,
            Lookup::Helo => VoiceKind::Helo,
            Lookup::Sender => VoiceKind::Sender,
            Lookup::Recipient => VoiceKind::Recipient,
            Lookup::Sasl => VoiceKind::Sasl,
        };
        let p = self.p;
        let loc = self.locality();
        let mut get = |k: &str| self.table_get(table, k);
        let hit = match lookup {
            Lookup::Client => {
                let name = key_case(table, &self.facts.client.name);
                let addr = AddrText::new(self.addr);
                super::lookup::client(p, table, name.as_str(), &addr, &mut get)
            }
            Lookup::ReverseClient => {
                let name = key_case(table, &self.facts.client.reverse_name);
                let addr = AddrText::new(self.addr);
                super::lookup::client(p, table, name.as_str(), &addr, &mut get)
            }
            Lookup::Helo => match self.facts.helo {
                None => return Verdict::Dunno,
                Some(h) => super::lookup::helo(p, table, key_case(table, h).as_str(), &mut get),
            },
            Lookup::Sender => match self.sender() {
                None => return Verdict::Dunno,
                Some(a) => super::lookup::mail(p, &loc, table, a, true, &mut get),
            },
            Lookup::Recipient => match self.rcpt() {
                None => return Verdict::Dunno,
                Some(a) => super::lookup::mail(p, &loc, table, a, false, &mut get),
            },
            Lookup::Sasl if !p.sasl_auth_enable => {
                self.notes.push(Note {
                    action: "warning",
                    text: "restriction `check_sasl_access' ignored: no SASL support".into(),
                });
                return Verdict::Dunno;
            }
            Lookup::Sasl => match self.facts.login.filter(|l| !l.is_empty()) {
                None => return Verdict::Dunno,
                Some(login) => super::lookup::single(key_case(table, login).as_str(), &mut get),
            },
        };
        // A domain list that stopped the address's resolution speaks first (RESOLVE_FLAG_FAIL
        // is reject_dict_retry for the address, before any table key).
        if let Some((param, stop)) = loc.take() {
            let name = match lookup {
                Lookup::Sender => self.sender(),
                _ => self.rcpt(),
            };
            let name = name.map(|a| a.reply.clone()).unwrap_or_default();
            return self.list_stopped(r, param, stop, &name);
        }
        let (key, value) = match hit {
            Ok(Some(hit)) => hit,
            Ok(None) => return Verdict::Dunno,
            Err(stop) => return self.lookup_stopped(r, voice, table, stop),
        };
        let reason = Reason {
            table: Some(table.spec().to_string()),
            entry: table.entry_for(&key),
            key: Some(key),
            value: Some(value.clone()),
            ..self.reason(r)
        };
        // A remote table's values are first seen now; Postfix parses them now too.
        let v = if table.is_remote() {
            self.live_result(&value, voice, reason.clone(), table.spec())
        } else {
            self.table_result(&value, voice, reason.clone(), table.spec())
        };
        // permit from check_recipient_access is ignored for a source-routed recipient unless
        // allow_untrusted_routing (smtpd_check.c check_mail_access).
        if let (Verdict::Ok(_), Lookup::Recipient) = (&v, lookup) {
            let routed = self
                .rcpt()
                .is_some_and(|a| a.split().0.contains(['@', '%', '!']));
            if routed && !self.p.allow_untrusted_routing {
                return Verdict::Dunno;
            }
        }
        if lookup == Lookup::ReverseClient {
            // An unverified name is the client's to choose: it may reject, never permit.
            let target = self.facts.client.reverse_name.clone();
            return self.forbid_ok(r, v, &target);
        }
        v
    }

    /// A lookup order that could not finish: wait, or answer a failed table as
    /// smtpd_check.c's check_*_access do (maps->error: the value "451 4.3.5 Server
    /// configuration error" through check_table_result, in this lookup's voice).
    pub(crate) fn lookup_stopped(
        &mut self,
        r: &Restriction,
        voice: VoiceKind,
        table: &Table,
        stop: Stop,
    ) -> Verdict {
        let Stop::Failed { key, why } = stop else {
            return Verdict::Pending;
        };
        self.notes.push(lookup_warning(table, &key, &why));
        let reason = Reason {
            table: Some(table.spec().to_string()),
            key: Some(key),
            value: Some(format!("lookup failed: {why}")),
            ..self.reason(r)
        };
        self.table_result(TABLE_ERROR, voice, reason, table.spec())
    }

    /// An access(5) value found in `table` (its spec, for warnings), as check_table_result
    /// turns it into a verdict with the voice of the list it sits in.
    pub(crate) fn table_result(
        &mut self,
        value: &str,
        voice: VoiceKind,
        reason: Reason,
        table: &str,
    ) -> Verdict {
        let codes = self.p.codes;
        match parse_action(value, &codes) {
            Action::Ok => Verdict::Ok(reason),
            Action::Dunno => Verdict::Dunno,
            Action::Reply { code, dsn, text } => {
                let reply = self.voice_reply(code, dsn, voice, text);
                self.reject(reply, reason)
            }
            Action::DeferIfPermit { dsn, text } => {
                let reply = self.voice_reply(codes.access_map_defer, dsn, voice, text);
                Self::arm(&mut self.dip, reply, reason);
                Verdict::Dunno
            }
            Action::DeferIfReject { dsn, text } => {
                let reply = self.voice_reply(codes.access_map_defer, dsn, voice, text);
                Self::arm(&mut self.dir, reply, reason);
                Verdict::Dunno
            }
            Action::Log { action, text } => {
                let text = if text.is_empty() {
                    String::new()
                } else {
                    text.to_string()
                };
                self.notes.push(Note { action, text });
                Verdict::Dunno
            }
            Action::Restrictions(text) => {
                let Some(list) = self.p.value_lists.get(text.trim()) else {
                    let why = format!("unknown smtpd restriction: \"{text}\" (from {table})");
                    return self.config_error(reason, why);
                };
                if self.depth >= MAX_DEPTH {
                    return self
                        .config_error(reason, format!("{text}: causes unreasonable recursion"));
                }
                self.depth += 1;
                let v = self.checks(list, voice);
                self.depth -= 1;
                wrap(reason, v)
            }
            // The MTA behind relayguard applies it; Postfix's verdict for it is DUNNO.
            Action::Unsupported(word)
                if MTA_ACTIONS.contains(&word)
                    && self.p.mta_action_tables.iter().any(|t| **t == *table) =>
            {
                Verdict::Dunno
            }
            Action::Unsupported(_) | Action::Table | Action::Invalid => {
                let why = format!("unknown smtpd restriction: \"{value}\" (from {table})");
                self.config_error(reason, why)
            }
        }
    }
}
