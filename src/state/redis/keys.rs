//! The Redis key schema: every name the store reads or writes is made here.
//!
//! A client's keys carry its [`ClientKey`] as a cluster hash tag (`relayguard:{192.0.2.1}:…`),
//! so one client's keys share a slot and one script or MULTI can touch them all on a cluster.
//! The ban index is global and has a tag of its own (`{bans}`, never a client's display).

use std::net::IpAddr;

use crate::limits::{ClientKey, Event, Trigger};

/// Key names under one deployment's prefix.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// `P{client}:what`: one of the client's keys.
    fn client(&self, key: ClientKey, what: std::fmt::Arguments<'_>) -> String {
        format!("{}{{{key}}}:{what}", self.prefix)
    }

    /// The client's count of `event` on `listener` in its current window (INCR, PEXPIRE NX).
    /// The listener goes last: it is a name from the config and may hold anything.
    pub(super) fn rate(&self, key: ClientKey, event: Event, listener: &str) -> String {
        self.client(key, format_args!("rate:{}:{listener}", event.name()))
    }

    /// The client's open sessions on `listener`: session ids scored by when they stop counting.
    pub(super) fn concurrent(&self, key: ClientKey, listener: &str) -> String {
        self.client(key, format_args!("conc:{listener}"))
    }

    /// The client's failures of `trigger` in the current window: `s` = when it started,
    /// `d<digest>` = the username digest of each distinct failure.
    pub(super) fn failures(&self, key: ClientKey, trigger: Trigger) -> String {
        self.client(key, format_args!("fail:{}", trigger.name()))
    }

    /// The client's ban: `since`, `till`, `offence`, `reason`; gone when it ends.
    pub(super) fn ban(&self, key: ClientKey) -> String {
        self.client(key, format_args!("ban"))
    }

    /// How many bans the client had lately (`n`) and until when that is remembered (`till`).
    pub(super) fn offences(&self, key: ClientKey) -> String {
        self.client(key, format_args!("offences"))
    }

    /// Banned clients scored by the end of their ban, for pruning the listing.
    pub(super) fn ban_ends(&self) -> String {
        format!("{}{{bans}}:ends", self.prefix)
    }

    /// Banned clients and their bans (`since till offence reason`), for `bans()`.
    pub(super) fn ban_list(&self) -> String {
        format!("{}{{bans}}:list", self.prefix)
    }

    /// postscreen's results for one address (JSON of a `PostscreenPass`).
    pub(super) fn postscreen(&self, addr: IpAddr) -> String {
        format!("{}ps:{addr}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_keys_share_its_hash_tag() {
        let k = Keys::new("relayguard:");
        let v4 = ClientKey::parse("192.0.2.1", 64).unwrap();
        let v6 = ClientKey::parse("2001:db8::7", 64).unwrap();
        assert_eq!(
            k.rate(v4, Event::Message, "smtp"),
            "relayguard:{192.0.2.1}:rate:mail:smtp"
        );
        assert_eq!(
            k.concurrent(v6, "submission"),
            "relayguard:{2001:db8::/64}:conc:submission"
        );
        assert_eq!(
            k.failures(v4, Trigger::Auth),
            "relayguard:{192.0.2.1}:fail:auth"
        );
        assert_eq!(k.ban(v4), "relayguard:{192.0.2.1}:ban");
        assert_eq!(k.offences(v4), "relayguard:{192.0.2.1}:offences");
        assert_eq!(k.ban_ends(), "relayguard:{bans}:ends");
        assert_eq!(
            k.postscreen("2001:db8::7".parse().unwrap()),
            "relayguard:ps:2001:db8::7"
        );
    }
}
