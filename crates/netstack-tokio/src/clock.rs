//! The clock of the tokio flavour: tokio's monotonic time (so paused test time works too).

use netstack_core::{Clock, Instant};

/// Time since the stack was built, read from `tokio::time::Instant`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }

    /// Converts a stack instant back into tokio time (for the runner's timer).
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        let micros = u64::try_from(at.total_micros()).unwrap_or(0);
        self.start + std::time::Duration::from_micros(micros)
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        let micros = self.start.elapsed().as_micros();
        Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}
