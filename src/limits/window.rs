//! anvil's rate windows: a client's events are counted from its first one, and the count
//! starts again once a time unit (anvil_rate_time_unit) has passed since then.

use super::Millis;

/// Events in the current window of one client and one kind of event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateWindow {
    start: Millis,
    count: u32,
}

impl RateWindow {
    /// Counts one event at `now` and returns the count in its window, this one included
    /// (anvil reports the rate after the event; the limit is exceeded when it is greater).
    pub fn hit(&mut self, now: Millis, unit: std::time::Duration) -> u32 {
        if self.count == 0 || self.is_over(now, unit) {
            *self = RateWindow {
                start: now,
                count: 0,
            };
        }
        self.count = self.count.saturating_add(1);
        self.count
    }

    /// The count at `now` without counting anything.
    pub fn count_at(&self, now: Millis, unit: std::time::Duration) -> u32 {
        if self.is_over(now, unit) {
            0
        } else {
            self.count
        }
    }

    /// The window has run out: its counts no longer matter.
    pub fn is_over(&self, now: Millis, unit: std::time::Duration) -> bool {
        now >= self.start.after(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_window_runs_one_unit_from_its_first_event() {
        let unit = Duration::from_secs(60);
        let mut w = RateWindow::default();
        assert_eq!(w.hit(Millis(1_000), unit), 1);
        assert_eq!(w.hit(Millis(30_000), unit), 2);
        assert_eq!(w.hit(Millis(60_999), unit), 3);
        assert_eq!(w.count_at(Millis(60_999), unit), 3);
        // 60 s after the first event, not after the last: a new window.
        assert_eq!(w.count_at(Millis(61_000), unit), 0);
        assert_eq!(w.hit(Millis(61_000), unit), 1);
        assert!(!w.is_over(Millis(120_999), unit));
        assert!(w.is_over(Millis(121_000), unit));
    }
}
