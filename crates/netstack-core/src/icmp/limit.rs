//! The rate limit of the ICMP errors the stack sends (RFC 1812 4.3.2.8, RFC 4443 2.4(f)).

use smoltcp::time::{Duration, Instant};

/// A token bucket: at most `rate` errors per second on average, `rate` at once.
#[derive(Debug)]
pub(crate) struct ErrorLimit {
    rate: u32,
    tokens: u32,
    refilled: Instant,
}

impl ErrorLimit {
    pub(crate) fn new(rate: u32) -> Self {
        ErrorLimit {
            rate,
            tokens: rate,
            refilled: Instant::ZERO,
        }
    }

    /// Takes a token if one is left at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return false;
        }
        let per_token =
            Duration::from_micros(1_000_000 / u64::from(self.rate)).max(Duration::from_micros(1));
        if now > self.refilled {
            let earned = (now - self.refilled).total_micros() / per_token.total_micros();
            if earned > 0 {
                self.tokens = self
                    .tokens
                    .saturating_add(u32::try_from(earned).unwrap_or(u32::MAX))
                    .min(self.rate);
                self.refilled += per_token * earned as u32;
            }
        } else {
            self.refilled = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_its_rate_and_refills_with_time() {
        let mut limit = ErrorLimit::new(10);
        let t0 = Instant::from_secs(1);
        assert_eq!((0..20).filter(|_| limit.take(t0)).count(), 10);
        assert!(!limit.take(t0 + Duration::from_millis(50)));
        assert!(limit.take(t0 + Duration::from_millis(100)));
        assert_eq!(
            (0..20)
                .filter(|_| limit.take(t0 + Duration::from_secs(10)))
                .count(),
            10,
            "never more than one second's worth at once"
        );
        assert!(!ErrorLimit::new(0).take(t0), "a rate of 0 sends none");
    }
}
