//! The restrictions that consult tables: check_*_access with access(5) actions, and the
//! sender-login map of reject_*sender_login_mismatch.

use super::access::{parse_action, Action, VoiceKind};
use super::eval::{wrap, Eval, Verdict, MAX_DEPTH};
use super::restriction::{LoginMismatch, Lookup, Restriction};
use super::table::Table;
use super::text::{AddrText, Lower};
use super::{Note, Reason};

impl Eval<'_, '_> {
    pub(crate) fn login_mismatch(&mut self, r: &Restriction, m: LoginMismatch) -> Verdict {
        let (Some(maps), true) = (self.p.sender_login_maps.as_ref(), self.p.sasl_auth_enable)
        else {
            return Verdict::Dunno;
        };
        let Some(sender) = self.sender().filter(|s| !s.key.is_empty()) else {
            return Verdict::Dunno;
        };
        let owners = super::lookup::login_owners(self.p, maps, sender);
        let text = match (self.facts.login, &owners) {
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
            table: Some(maps.spec().to_string()),
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
            Lookup::Helo => VoiceKind::Helo,
            Lookup::Sender => VoiceKind::Sender,
            Lookup::Recipient => VoiceKind::Recipient,
        };
        let hit = match lookup {
            Lookup::Client => {
                let name = Lower::new(&self.facts.client.name);
                super::lookup::client(self.p, table, name.as_str(), &AddrText::new(self.addr))
            }
            Lookup::Helo => match self.facts.helo {
                None => return Verdict::Dunno,
                Some(h) => super::lookup::helo(self.p, table, Lower::new(h).as_str()),
            },
            Lookup::Sender => match self.sender() {
                None => return Verdict::Dunno,
                Some(a) => super::lookup::mail(self.p, table, a, true),
            },
            Lookup::Recipient => match self.rcpt() {
                None => return Verdict::Dunno,
                Some(a) => super::lookup::mail(self.p, table, a, false),
            },
        };
        let Some((key, value)) = hit else {
            return Verdict::Dunno;
        };
        let reason = Reason {
            table: Some(table.spec().to_string()),
            key: Some(key),
            value: Some(value.clone()),
            ..self.reason(r)
        };
        let v = self.table_result(&value, voice, reason.clone(), table.spec());
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
        v
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
            Action::Unsupported(_) | Action::Table | Action::Invalid => {
                let why = format!("unknown smtpd restriction: \"{value}\" (from {table})");
                self.config_error(reason, why)
            }
        }
    }
}
