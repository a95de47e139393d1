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

#[cfg(test)]
mod tests {
    /// The limiter stays arithmetic (STYLE.md 2): no runtime, no sockets, no clock, no logs.
    #[test]
    fn limits_module_does_no_io() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/limits");
        let banned = [
            concat!("tok", "io"),
            concat!("TcpSt", "ream"),
            concat!("UdpSo", "cket"),
            concat!("Instant::", "now"),
            concat!("SystemTime::", "now"),
            concat!("trac", "ing::"),
            concat!("print", "ln!"),
        ];
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in banned {
                assert!(!text.contains(needle), "{} uses {needle}", path.display());
            }
            checked += 1;
        }
        assert!(checked >= 5);
    }
}
