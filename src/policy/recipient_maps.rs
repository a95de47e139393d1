//! The address validation tables behind reject_unlisted_recipient and reject_unlisted_sender
//! (smtpd_check.c's check_rcpt_maps): which maps know an address, per address class, and the
//! replies for one they do not.
//!
//! Compiled once; the evaluation is in `eval_unlisted`. `local_recipient_maps` left unset is
//! Postfix's `proxy:unix:passwd.byname $alias_maps`: the passwd and aliases of the MTA's host,
//! which a proxy in front of it does not see. relayguard then leaves local recipients to the
//! MTA (it still answers each RCPT relayguard relays); set the parameter to tables relayguard
//! can read to have them checked at the front.

use std::sync::Arc;

use super::table::Table;

/// A Postfix map list (`hash:a, mysql:b`): each key is looked up in each table in turn.
pub(crate) type Maps = Vec<Arc<Table>>;

/// Every table check_rcpt_maps consults, and its codes and switches.
#[derive(Debug, Default)]
pub(crate) struct RecipientMaps {
    /// An address any of these rewrites is accepted as it is (canonical_maps,
    /// recipient_canonical_maps, virtual_alias_maps; sender_canonical_maps for a sender).
    pub(crate) canonical: Maps,
    pub(crate) recipient_canonical: Maps,
    pub(crate) sender_canonical: Maps,
    pub(crate) virtual_alias: Maps,
    /// Per address class: the users of local domains, virtual mailbox domains and relay domains.
    pub(crate) local: Maps,
    pub(crate) virtual_mailbox: Maps,
    pub(crate) relay: Maps,
    pub(crate) codes: UnknownCodes,
    /// show_user_unknown_table_name: `User unknown in local recipient table`, or `User unknown`.
    pub(crate) show_table: bool,
    /// smtpd_reject_unlisted_recipient / smtpd_reject_unlisted_sender: the implicit check at
    /// the end of the RCPT (MAIL) restrictions.
    pub(crate) implicit_recipient: bool,
    pub(crate) implicit_sender: bool,
    /// double_bounce_sender: never unknown in a local domain (the queue manager absorbs it).
    pub(crate) double_bounce: Box<str>,
}

/// unknown_{local,virtual_alias,virtual_mailbox,relay}_recipient_reject_code.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UnknownCodes {
    pub(crate) local: u16,
    pub(crate) virtual_alias: u16,
    pub(crate) virtual_mailbox: u16,
    pub(crate) relay: u16,
}

/// Which class trivial-rewrite resolves a domain to (resolve.c's RESOLVE_CLASS_*), in the
/// order it tests them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DomainClass {
    /// mydestination, or an address literal of inet_interfaces/proxy_interfaces.
    Local,
    /// virtual_alias_domains: only the aliases exist (`User unknown in virtual alias table`).
    Alias,
    Virtual,
    Relay,
    Default,
}

impl RecipientMaps {
    /// Some address class has a table an address can be missing from.
    pub(crate) fn can_refuse(&self) -> bool {
        !(self.local.is_empty() && self.virtual_mailbox.is_empty() && self.relay.is_empty())
    }

    pub(crate) fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        [
            &self.canonical,
            &self.recipient_canonical,
            &self.sender_canonical,
            &self.virtual_alias,
            &self.local,
            &self.virtual_mailbox,
            &self.relay,
        ]
        .into_iter()
        .flatten()
    }
}
