//! The clock of the async-io adapter: `std::time::Instant`, the time base of `async_io::Timer`.

use netstack_core::{Clock, Instant};

/// Time since the stack was built, read from `std::time::Instant`.
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    start: std::time::Instant,
}

impl StdClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        StdClock {
            start: std::time::Instant::now(),
        }
    }

    /// Converts a stack instant back into `std` time (for the runner's timer).
    pub fn to_std(&self, at: Instant) -> std::time::Instant {
        let micros = u64::try_from(at.total_micros()).unwrap_or(0);
        self.start + std::time::Duration::from_micros(micros)
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> Instant {
        let micros = self.start.elapsed().as_micros();
        Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}
