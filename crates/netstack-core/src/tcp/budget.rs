//! The TCP buffer budget of one runner group: the bytes its connections' buffers hold, counted
//! exactly (each connection's current receive and send capacities; each shard's table keeps
//! its sum), against the group's share of
//! [`Config::tcp_buffer_budget`](crate::Config::tcp_buffer_budget).
//!
//! A new connection is admitted while its first buffers fit the budget; a buffer grows while
//! the growth fits three quarters of it, so that buffers grown by bulk flows never take the
//! room that admits new connections, and while the group's buffers together exceed their
//! first sizes by at most [`Config::tcp_buffer_growth`](crate::Config::tcp_buffer_growth).

/// Bytes held by a group's TCP buffers, and its limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BufferBudget {
    used: usize,
    limit: usize,
    grown: usize,
    growth_limit: usize,
}

impl BufferBudget {
    /// A budget of `limit` bytes of which `used` are held (and no growth).
    pub(crate) fn new(used: usize, limit: usize) -> Self {
        BufferBudget {
            used,
            limit,
            grown: 0,
            growth_limit: 0,
        }
    }

    /// With `grown` of the bytes held being growth beyond first sizes, at most
    /// `growth_limit`.
    pub(crate) fn with_growth(mut self, grown: usize, growth_limit: usize) -> Self {
        self.grown = grown;
        self.growth_limit = growth_limit;
        self
    }

    /// Whether a new connection's buffers of `bytes` fit.
    pub(crate) fn admits(&self, bytes: usize) -> bool {
        self.used.saturating_add(bytes) <= self.limit
    }

    /// Whether buffers may grow by `bytes`: growth stops at three quarters of the limit, and
    /// at the growth limit.
    pub(crate) fn may_grow(&self, bytes: usize) -> bool {
        self.used.saturating_add(bytes) <= self.limit - self.limit / 4
            && self.grown.saturating_add(bytes) <= self.growth_limit
    }
}

#[cfg(test)]
mod tests {
    use super::BufferBudget;

    #[test]
    fn admission_uses_the_whole_budget_and_growth_three_quarters() {
        let empty = BufferBudget::new(0, 1000).with_growth(0, usize::MAX);
        assert!(empty.admits(1000));
        assert!(!empty.admits(1001));
        assert!(empty.may_grow(750));
        assert!(!empty.may_grow(751));
        let held = BufferBudget::new(700, 1000).with_growth(0, usize::MAX);
        assert!(held.may_grow(50));
        assert!(!held.may_grow(51), "growth stops at 750");
        assert!(held.admits(300));
        assert!(!held.admits(301));
        assert!(
            !BufferBudget::new(usize::MAX, 1000).admits(1),
            "no overflow"
        );
    }

    #[test]
    fn growth_stops_at_the_growth_limit() {
        let budget = BufferBudget::new(500, 10_000).with_growth(300, 400);
        assert!(budget.may_grow(100));
        assert!(!budget.may_grow(101));
        assert!(
            !BufferBudget::new(0, 10_000).may_grow(1),
            "no growth limit, no growth"
        );
    }
}
