//! One timer per connection, moved only when it fires: a deadline on every read without a
//! timer-wheel insert and removal per read.
//!
//! `tokio::time::timeout` registers a fresh timer each time the read waits and removes it when
//! the read completes; on a session forwarding a message per round trip that was most of the
//! timer work. Here the armed timer stays put while deadlines only move later (each read's
//! deadline is "now + timeout"); when it fires early it is moved to the current deadline, so a
//! busy connection touches the wheel about once per timeout period.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

/// The deadline passed before the operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

#[derive(Default)]
pub struct Deadline {
    /// Armed at the earliest deadline not yet known to be stale; made on first use, so a
    /// connection built outside a runtime (or never read) has none.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    /// Runs `operation` until it completes or `deadline` passes. Cancel-safe as far as
    /// `operation` is: dropping the returned future leaves the timer armed for the next call.
    pub async fn within<F: Future>(
        &mut self,
        deadline: Instant,
        operation: F,
    ) -> Result<F::Output, Elapsed> {
        self.run(|| deadline, operation).await
    }

    /// [`Self::within`] a deadline `timeout` after the operation first has to wait: one that
    /// completes at once (most writes) costs no clock read.
    pub async fn after<F: Future>(
        &mut self,
        timeout: Duration,
        operation: F,
    ) -> Result<F::Output, Elapsed> {
        self.run(|| Instant::now() + timeout, operation).await
    }

    async fn run<F: Future>(
        &mut self,
        deadline: impl FnOnce() -> Instant,
        operation: F,
    ) -> Result<F::Output, Elapsed> {
        let mut operation = pin!(operation);
        let mut deadline_of = Some(deadline);
        let mut deadline = None;
        let slot = &mut self.timer;
        poll_fn(|cx| {
            if let Poll::Ready(output) = operation.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            let deadline = match (deadline, deadline_of.take()) {
                (Some(d), _) => d,
                (None, Some(of)) => *deadline.insert(of()),
                (None, None) => return Poll::Ready(Err(Elapsed)),
            };
            let timer = match slot {
                Some(timer) => {
                    if deadline < timer.deadline() {
                        timer.as_mut().reset(deadline);
                    }
                    timer
                }
                None => slot.insert(Box::pin(sleep_until(deadline))),
            };
            while timer.as_mut().poll(cx).is_ready() {
                if timer.deadline() >= deadline {
                    return Poll::Ready(Err(Elapsed));
                }
                // An earlier deadline fired; this operation's is later.
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_outlives_the_armed_one_and_an_earlier_one_cuts_it() {
        let mut d = Deadline::default();
        let start = Instant::now();
        let quick = d.within(start + Duration::from_secs(5), async { 7 }).await;
        assert_eq!(quick, Ok(7));
        // Armed at +5 s, asked for +10 s: it must not give up at +5 s.
        let slept = d
            .within(
                start + Duration::from_secs(10),
                tokio::time::sleep(Duration::from_secs(8)),
            )
            .await;
        assert_eq!(slept, Ok(()));
        assert_eq!(Instant::now() - start, Duration::from_secs(8));
        // A deadline before the armed one (+10 s) is kept.
        let cut = d
            .within(
                start + Duration::from_secs(9),
                tokio::time::sleep(Duration::from_secs(60)),
            )
            .await;
        assert_eq!(cut, Err(Elapsed));
        assert_eq!(Instant::now() - start, Duration::from_secs(9));
        // After firing, a new later deadline works again.
        let late = d
            .within(
                start + Duration::from_secs(20),
                tokio::time::sleep(Duration::from_secs(30)),
            )
            .await;
        assert_eq!(late, Err(Elapsed));
        assert_eq!(Instant::now() - start, Duration::from_secs(20));
        // `after` counts from the first wait.
        let waited = d
            .after(
                Duration::from_secs(3),
                tokio::time::sleep(Duration::from_secs(5)),
            )
            .await;
        assert_eq!(waited, Err(Elapsed));
        assert_eq!(Instant::now() - start, Duration::from_secs(23));
        assert_eq!(d.after(Duration::ZERO, async { 1 }).await, Ok(1));
    }
}
