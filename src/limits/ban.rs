//! Bans: how many failures of a kind within a window ban a client, for how long (doubling for
//! repeat offenders), and what a banned client is told.
//!
//! Failures are counted per client and, for AUTH, per (client, username); the same bad
//! credentials tried again count once, so a client retrying one stale password does not ban
//! itself as fast as one guessing. Only clients are banned, never usernames: an attacker
//! hammering a user's name from elsewhere cannot lock that user out.

use std::fmt;
use std::time::Duration;

use super::Millis;
use crate::smtp::Reply;

/// What can count towards a ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// The upstream refused the credentials (535 and other final non-235 replies).
    Auth,
    /// AUTH refused by relayguard's network gate (smtpd_sasl_exceptions_networks and the like).
    AuthGate,
    /// A recipient refused as `Relay access denied`.
    Relay,
    /// A command relayguard does not know (`502 5.5.2 Error: command not recognized`).
    UnknownCommand,
    /// A protocol error: bad syntax, a command out of sequence, improper pipelining.
    Protocol,
    /// A client went over one of anvil's limits.
    Limit,
}

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Trigger::Auth,
        Trigger::AuthGate,
        Trigger::Relay,
        Trigger::UnknownCommand,
        Trigger::Protocol,
        Trigger::Limit,
    ];

    /// The name in `[bans.triggers]`, store keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Auth => "auth",
            Trigger::AuthGate => "auth_gate",
            Trigger::Relay => "relay",
            Trigger::UnknownCommand => "unknown_command",
            Trigger::Protocol => "protocol",
            Trigger::Limit => "limit",
        }
    }

    pub fn from_name(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// How the failures read in a log line: `5 failed AUTH attempts`.
    pub fn describe(self, count: u32) -> String {
        let what = match self {
            Trigger::Auth => "failed AUTH attempts",
            Trigger::AuthGate => "AUTH attempts from a network AUTH is closed to",
            Trigger::Relay => "rejected relay attempts",
            Trigger::UnknownCommand => "unknown commands",
            Trigger::Protocol => "protocol errors",
            Trigger::Limit => "connection or rate limits exceeded",
        };
        format!("{count} {what}")
    }
}

/// How a banned client is refused at connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanReply {
    /// `554 5.7.1`: a permanent refusal, then the connection is closed.
    Reject,
    /// `421 4.7.1`: come back later, then the connection is closed.
    Defer,
}

/// When failures ban a client and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanRule {
    /// Failures of each trigger (by [`Trigger::index`]) that ban; 0: the trigger is off.
    pub thresholds: [u32; 6],
    /// Failures count within this window, from the first one.
    pub window: Duration,
    /// The first ban's length; each repeat within `repeat_window` doubles it.
    pub ban_time: Duration,
    pub max_ban_time: Duration,
    /// How long a ban is remembered for escalation after it was imposed.
    pub repeat_window: Duration,
    pub reply: BanReply,
}

impl Default for BanRule {
    /// fail2ban's defaults for its postfix jails: 5 failures in 10 minutes ban for 10 minutes.
    fn default() -> Self {
        let mut thresholds = [0; 6];
        thresholds[Trigger::Auth.index()] = 5;
        BanRule {
            thresholds,
            window: Duration::from_secs(600),
            ban_time: Duration::from_secs(600),
            max_ban_time: Duration::from_secs(7 * 86_400),
            repeat_window: Duration::from_secs(7 * 86_400),
            reply: BanReply::Reject,
        }
    }
}

impl BanRule {
    /// The failures of `trigger` that ban (0: it is not a trigger).
    pub fn threshold(&self, trigger: Trigger) -> u32 {
        self.thresholds[trigger.index()]
    }

    pub fn counts(&self, trigger: Trigger) -> bool {
        self.threshold(trigger) > 0
    }

    /// Whether `failures` of `trigger` within the window ban the client.
    pub fn bans(&self, trigger: Trigger, failures: u32) -> bool {
        let t = self.threshold(trigger);
        t > 0 && failures >= t
    }

    /// The length of a client's `offence`-th ban (1 for the first): doubled each time,
    /// never past `max_ban_time`.
    pub fn length(&self, offence: u32) -> Duration {
        let doublings = offence.saturating_sub(1).min(32);
        self.ban_time
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max_ban_time)
            .min(self.max_ban_time)
    }

    /// The ban a client earns with its `offence`-th ban at `now`.
    pub fn ban(&self, now: Millis, offence: u32, reason: String) -> Ban {
        Ban {
            since: now,
            until: now.after(self.length(offence)),
            offence,
            reason,
        }
    }
}

/// A client's ban: in force from `since` until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub since: Millis,
    pub until: Millis,
    /// 1 for a first ban, 2 for the next within the repeat window, ...
    pub offence: u32,
    /// What earned it (`5 failed AUTH attempts`, `added by admin`).
    pub reason: String,
}

impl Ban {
    pub fn is_active(&self, now: Millis) -> bool {
        now < self.until
    }

    /// The refusal a banned client gets. The words are the ones fail2ban's stock postfix
    /// filter knows (`Service unavailable; Client host [ADDR] blocked`), so that a fail2ban
    /// kept beside relayguard sees who relayguard bans.
    pub fn reply(&self, kind: BanReply, addr: &str, now: Millis) -> Reply {
        let text = format!(
            "Service unavailable; Client host [{addr}] blocked by relayguard for {}s: {}",
            self.until.left_from(now).as_secs().max(1),
            self.reason
        );
        match kind {
            BanReply::Reject => Reply::new(554, (5, 7, 1), text),
            BanReply::Defer => Reply::new(421, (4, 7, 1), text),
        }
    }
}

impl fmt::Display for Ban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offence {}: {}", self.offence, self.reason)
    }
}

/// One client's failures of one trigger in the current window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureWindow {
    start: Millis,
    /// (credentials digest, username digest) of each counted failure; at most the threshold.
    seen: Vec<(u32, u32)>,
}

/// What one failure changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureCount {
    /// Distinct failures of the client in the window, this one included.
    pub client: u32,
    /// Of those, the ones for the same username.
    pub user: u32,
    /// The same credentials failed before in this window: not counted again.
    pub repeated: bool,
}

impl FailureWindow {
    /// Counts a failure at `now`: `digest` identifies the credentials (or is unique for a
    /// failure without any), `user` the username (0 for none). Keeps at most `cap` entries.
    pub fn record(
        &mut self,
        now: Millis,
        window: Duration,
        digest: u32,
        user: u32,
        cap: u32,
    ) -> FailureCount {
        if self.seen.is_empty() || now >= self.start.after(window) {
            self.start = now;
            self.seen.clear();
        }
        let repeated = self.seen.iter().any(|(d, _)| *d == digest);
        if !repeated && self.seen.len() < cap.max(1) as usize {
            self.seen.push((digest, user));
        }
        FailureCount {
            client: self.seen.len() as u32,
            user: self.seen.iter().filter(|(_, u)| *u == user).count() as u32,
            repeated,
        }
    }

    /// Forgets the window (a ban was imposed: the next one starts counting afresh).
    pub fn clear(&mut self) {
        self.seen.clear();
    }

    pub fn is_over(&self, now: Millis, window: Duration) -> bool {
        self.seen.is_empty() || now >= self.start.after(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_double_for_repeat_offenders_up_to_the_cap() {
        let rule = BanRule {
            ban_time: Duration::from_secs(600),
            max_ban_time: Duration::from_secs(3000),
            ..BanRule::default()
        };
        assert_eq!(rule.length(1), Duration::from_secs(600));
        assert_eq!(rule.length(2), Duration::from_secs(1200));
        assert_eq!(rule.length(3), Duration::from_secs(2400));
        assert_eq!(rule.length(4), Duration::from_secs(3000));
        assert_eq!(rule.length(400), Duration::from_secs(3000));
        let ban = rule.ban(Millis(1000), 2, "5 failed AUTH attempts".into());
        assert!(ban.is_active(Millis(1000 + 1_199_999)));
        assert!(!ban.is_active(Millis(1000 + 1_200_000)));
        assert!(rule.bans(Trigger::Auth, 5));
        assert!(!rule.bans(Trigger::Auth, 4));
        assert!(!rule.bans(Trigger::Relay, 1000), "off by default");
    }

    #[test]
    fn the_same_credentials_count_once_and_users_are_counted_apart() {
        let w = Duration::from_secs(600);
        let mut f = FailureWindow::default();
        let alice = 1;
        let bob = 2;
        assert_eq!(
            f.record(Millis(0), w, 100, alice, 5),
            FailureCount {
                client: 1,
                user: 1,
                repeated: false
            }
        );
        let again = f.record(Millis(10), w, 100, alice, 5);
        assert!(again.repeated);
        assert_eq!(again.client, 1);
        assert_eq!(f.record(Millis(20), w, 101, bob, 5).user, 1);
        assert_eq!(f.record(Millis(30), w, 102, alice, 5).user, 2);
        assert_eq!(f.record(Millis(40), w, 103, alice, 5).client, 4);
        // The window ends 600 s after its first failure.
        assert_eq!(f.record(Millis(600_000), w, 104, alice, 5).client, 1);
        // Bounded: a flood of distinct failures keeps at most `cap`.
        for d in 0..1000 {
            f.record(Millis(600_001), w, 1000 + d, alice, 5);
        }
        assert_eq!(f.seen.len(), 5);
    }

    #[test]
    fn a_banned_client_is_told_in_words_fail2ban_knows() {
        let ban = BanRule::default().ban(Millis(0), 1, "5 failed AUTH attempts".into());
        assert_eq!(
            ban.reply(BanReply::Reject, "192.0.2.9", Millis(1000)).to_string(),
            "554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked by relayguard for 599s: 5 failed AUTH attempts"
        );
        assert!(ban
            .reply(BanReply::Defer, "192.0.2.9", Millis(0))
            .to_string()
            .starts_with("421 4.7.1 Service unavailable; Client host [192.0.2.9] blocked"));
    }
}
