//! Time: the core has no clock of its own.
//!
//! The user supplies a [`Clock`]; the runner reads it once per poll and returns the next deadline
//! (see [`RunnerStatus`](crate::RunnerStatus)), which the user's timer sleeps until. Simulated
//! time in tests is just a `Clock` that a test advances by hand.

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
