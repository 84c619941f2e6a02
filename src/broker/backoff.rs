//! Exponential backoff with jitter, for reconnection attempts and other growing schedules.
//!
//! Every transport reconnects with the same schedule: the first delay is about
//! [`Backoff::INITIAL`], each failure doubles it up to a cap, and every delay is jittered so that
//! a fleet of nodes that lost the same broker at the same moment does not come back in lockstep.
//! A connection whose subscriptions are all set up again resets the schedule. The AMQP queue check
//! (`amqp::queue_check`) and the owner's retries of subscriptions that failed to set up use the
//! same schedule from a later start ([`Backoff::starting_at`]).

use std::time::Duration;

use rand::Rng;

/// The reconnection schedule of one connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The un-jittered delay the next call to [`Backoff::next_delay`] is based on.
    base: Duration,
    /// Where [`Backoff::reset`] starts over.
    initial: Duration,
    cap: Duration,
}

impl Backoff {
    /// The first delay after a failure, before jitter.
    pub const INITIAL: Duration = Duration::from_millis(100);

    /// A schedule that starts at [`Backoff::INITIAL`] and never waits longer than `cap`.
    pub fn new(cap: Duration) -> Backoff {
        Backoff::starting_at(Backoff::INITIAL, cap)
    }

    /// A schedule whose first delay is about `initial` (jittered), doubling up to `cap`;
    /// [`Backoff::reset`] starts it over at `initial`.
    pub fn starting_at(initial: Duration, cap: Duration) -> Backoff {
        // A cap below the initial delay would make the schedule grow past it; clamp instead.
        let cap = cap.max(Duration::from_millis(1));
        let initial = initial.min(cap);
        Backoff { base: initial, initial, cap }
    }

    /// The delay before the next attempt: "equal jitter", i.e. uniformly in `[base/2, base]`,
    /// so consecutive delays still grow while nodes spread out. Doubles the base for next time.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = (self.base * 2).min(self.cap);
        let half = base / 2;
        let jitter_range_nanos = u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter =
            if jitter_range_nanos == 0 { 0 } else { rand::rng().random_range(0..=jitter_range_nanos) };
        half + Duration::from_nanos(jitter)
    }

    /// Starts the schedule over (after a connection that works).
    pub fn reset(&mut self) {
        self.base = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `steps` delays of a schedule capped at `cap_ms` and checks each lies in
    /// `[expected_base/2, expected_base]`.
    fn check(cap_ms: u64, expected_bases_ms: &[u64]) {
        let mut backoff = Backoff::new(Duration::from_millis(cap_ms));
        for (step, &base_ms) in expected_bases_ms.iter().enumerate() {
            let delay = backoff.next_delay();
            let base = Duration::from_millis(base_ms);
            assert!(
                delay >= base / 2 && delay <= base,
                "cap {cap_ms} ms, step {step}: delay {delay:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
    }

    #[test]
    fn doubles_from_100ms_up_to_the_cap() {
        check(30_000, &[100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        check(1_000, &[100, 200, 400, 800, 1000, 1000]);
        check(50, &[50, 50, 50]);
    }

    #[test]
    fn a_later_start_doubles_from_there() {
        let mut backoff = Backoff::starting_at(Duration::from_secs(5), Duration::from_secs(30));
        for base_secs in [5, 10, 20, 30, 30] {
            let delay = backoff.next_delay();
            let base = Duration::from_secs(base_secs);
            assert!(delay >= base / 2 && delay <= base, "delay {delay:?} outside [{:?}, {base:?}]", base / 2);
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new(Duration::from_secs(10));
        for _ in 0..8 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Backoff::INITIAL);
        let mut later = Backoff::starting_at(Duration::from_secs(2), Duration::from_secs(8));
        for _ in 0..8 {
            later.next_delay();
        }
        later.reset();
        let delay = later.next_delay();
        assert!(
            delay >= Duration::from_secs(1) && delay <= Duration::from_secs(2),
            "a later start starts over at itself: {delay:?}"
        );
    }
}
