//! Time: the core has no clock of its own.
//!
//! The user supplies a [`Clock`]; the runner reads it once per poll and returns the next deadline
//! (see [`RunnerStatus`](crate::RunnerStatus)), which the user's [`Timer`](crate::Timer) sleeps
//! until. Simulated time in tests is just a `Clock` that a test advances by hand.
//!
//! Adapters count time from the moment their clock was made; [`since_start`] and
//! [`offset_of`] convert between the stack's [`Instant`] and such an offset.

use smoltcp::time::Instant;

/// A monotonic clock.
pub trait Clock {
    /// The current time. It must never go backwards.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// The stack instant `elapsed` after a clock's zero (saturating far in the future).
pub fn since_start(elapsed: core::time::Duration) -> Instant {
    Instant::from_micros(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
}

/// How long after a clock's zero the stack instant `at` is (zero for instants before it).
pub fn offset_of(at: Instant) -> core::time::Duration {
    core::time::Duration::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_saturate() {
        let d = core::time::Duration::from_micros(1_234_567);
        assert_eq!(offset_of(since_start(d)), d);
        assert_eq!(
            offset_of(Instant::from_micros(-5)),
            core::time::Duration::ZERO
        );
        assert_eq!(
            since_start(core::time::Duration::MAX),
            Instant::from_micros(i64::MAX)
        );
    }
}
