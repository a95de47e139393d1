//! Decisions about rates and bans: anvil's per-client limits and relayguard's bans, as
//! arithmetic on counts that a [`crate::state`] store keeps.
//!
//! No I/O, no clock, no logging: `now` is an argument ([`Millis`]), counts come in as numbers
//! and verdicts go out as values whose replies and log words are Postfix's.

pub mod anvil;
pub mod ban;
pub mod key;
pub mod window;

pub use anvil::{AnvilLimits, Event, Exceeded};
pub use ban::{Ban, BanReply, BanRule, Trigger};
pub use key::ClientKey;
pub use window::RateWindow;

/// Wall-clock milliseconds since the Unix epoch: what replicas sharing one store agree on.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub fn after(self, d: std::time::Duration) -> Millis {
        Millis(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// Time left until `self`, from `now`; zero once passed.
    pub fn left_from(self, now: Millis) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.saturating_sub(now.0))
    }
}

/// The limiter stays arithmetic (STYLE.md 2): no runtime, no sockets, no clock, no logs.
#[cfg(test)]
#[test]
fn limits_module_does_no_io() {
    assert!(crate::purity::assert_no_io("limits", &crate::purity::IO_WORDS) >= 5);
}
