//! Which restriction lists run at which stage, as smtpd_check.c orders them: smtpd_delay_reject,
//! the postmaster exception, relay before recipient restrictions, defer_if_permit carried across
//! stages.

use super::access::VoiceKind;
use super::eval::{Eval, Verdict};
use super::restriction::Restriction;
use super::{Policy, Reason, Stage, TransactionState};

impl Policy {
    pub(crate) fn stage(
        &self,
        stage: Stage,
        ev: &mut Eval<'_, '_>,
        state: &mut TransactionState,
    ) -> Verdict {
        if let (Some(reply), false) = (state.access_denied(), stage == Stage::Connect) {
            return Verdict::Reject(
                reply,
                Reason {
                    parameter: "smtpd_client_restrictions".into(),
                    restriction: "smtpd_delay_reject=no".into(),
                    ..Reason::default()
                },
            );
        }
        let l = &self.stages;
        match stage {
            Stage::Connect => {
                if self.delay_reject {
                    return Verdict::Dunno;
                }
                ev.dip = None;
                let v = ev.run_list("smtpd_client_restrictions", &l.client, VoiceKind::Client);
                state.after_client = ev.dip.clone();
                state.after_helo = ev.dip.clone();
                state.after_sender = ev.dip.clone();
                if let Verdict::Reject(..) = v {
                    state.client_rejected = Some(format!("{}[{}]", ev.facts.client.name, ev.addr));
                }
                v
            }
            Stage::Helo => {
                if self.delay_reject || ev.facts.helo.is_none() {
                    return Verdict::Dunno;
                }
                ev.dip = state.after_client.clone();
                let v = ev.run_list("smtpd_helo_restrictions", &l.helo, VoiceKind::Helo);
                if !matches!(v, Verdict::Reject(..)) {
                    state.after_helo = ev.dip.clone();
                    state.after_sender = ev.dip.clone();
                }
                v
            }
            Stage::Mail => {
                if self.delay_reject {
                    return Verdict::Dunno;
                }
                ev.dip = state.after_helo.clone();
                let v = ev.run_list("smtpd_sender_restrictions", &l.sender, VoiceKind::Sender);
                if !matches!(v, Verdict::Reject(..)) {
                    state.after_sender = ev.dip.clone();
                }
                self.implicit_unlisted_sender(ev, v)
            }
            Stage::Rcpt | Stage::Vrfy => self.rcpt_stage(ev, state),
            Stage::Data => {
                ev.dip = None;
                let v = ev.run_list("smtpd_data_restrictions", &l.data, VoiceKind::Data);
                self.finish_with_dip(ev, v)
            }
            Stage::EndOfData => {
                ev.dip = None;
                let v = ev.run_list(
                    "smtpd_end_of_data_restrictions",
                    &l.end_of_data,
                    VoiceKind::EndOfData,
                );
                self.finish_with_dip(ev, v)
            }
        }
    }

    fn rcpt_stage(&self, ev: &mut Eval<'_, '_>, state: &TransactionState) -> Verdict {
        let l = &self.stages;
        // `RCPT TO:<postmaster>` (bare, any case) is never checked (smtpd_check_rcpt).
        if ev
            .facts
            .recipient
            .is_some_and(|r| r.eq_ignore_ascii_case("postmaster"))
        {
            return Verdict::Ok(Reason {
                parameter: "smtpd_recipient_restrictions".into(),
                restriction: "postmaster".into(),
                key: Some("postmaster".into()),
                ..Reason::default()
            });
        }
        if self.delay_reject {
            ev.dip = None;
            let v = ev.run_list("smtpd_client_restrictions", &l.client, VoiceKind::Client);
            if let Verdict::Reject(..) = v {
                return v;
            }
            if ev.facts.helo.is_some() {
                let v = ev.run_list("smtpd_helo_restrictions", &l.helo, VoiceKind::Helo);
                if let Verdict::Reject(..) = v {
                    return v;
                }
            }
            if ev.facts.sender.is_some() {
                let v = ev.run_list("smtpd_sender_restrictions", &l.sender, VoiceKind::Sender);
                let v = self.implicit_unlisted_sender(ev, v);
                if let Verdict::Reject(..) | Verdict::Pending = v {
                    return v;
                }
            }
        } else {
            ev.dip = state.after_sender.clone();
        }
        let relay: (&'static str, &[Restriction]) = ("smtpd_relay_restrictions", &l.relay);
        let rcpt: (&'static str, &[Restriction]) = ("smtpd_recipient_restrictions", &l.recipient);
        let order = if self.relay_before_recipient {
            [relay, rcpt]
        } else {
            [rcpt, relay]
        };
        let mut permit: Option<Reason> = None;
        for (param, list) in order {
            match ev.run_list(param, list, VoiceKind::Recipient) {
                v @ Verdict::Reject(..) => return v,
                Verdict::Ok(r) => {
                    permit.get_or_insert(r);
                }
                // Still open: the next list may show what else is needed.
                Verdict::Dunno | Verdict::Pending => {}
            }
        }
        let v = permit.map(Verdict::Ok).unwrap_or(Verdict::Dunno);
        let v = self.finish_with_dip(ev, v);
        // smtpd_reject_unlisted_recipient: after every list, unless one rejected or
        // reject_unlisted_recipient already ran; a permit is checked too.
        if self.recipient_maps.implicit_recipient && !matches!(v, Verdict::Reject(..)) {
            match ev.unlisted(None, false) {
                Verdict::Dunno => v,
                other => other,
            }
        } else {
            v
        }
    }

    /// smtpd_reject_unlisted_sender, at the end of smtpd_check_mail (also when MAIL's
    /// restrictions are delayed to RCPT).
    fn implicit_unlisted_sender(&self, ev: &mut Eval<'_, '_>, v: Verdict) -> Verdict {
        if !self.recipient_maps.implicit_sender || matches!(v, Verdict::Reject(..)) {
            return v;
        }
        match ev.unlisted(None, true) {
            Verdict::Dunno => v,
            other => other,
        }
    }

    /// An armed defer_if_permit turns a final permit (or no decision) into its deferral.
    fn finish_with_dip(&self, ev: &mut Eval<'_, '_>, v: Verdict) -> Verdict {
        match (v, ev.dip.take()) {
            (v @ Verdict::Reject(..), _) => v,
            (_, Some(armed)) => Verdict::Reject(self.soften(armed.reply), armed.reason),
            (v, None) => v,
        }
    }
}
