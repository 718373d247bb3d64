//! [`DialLimiter`]: bounds the upstream dials in flight, in all and per destination address.
//!
//! A flood of SYNs must not make the forwarder dial without bound, and a few destinations that
//! never answer (black holes, whose dials each wait for the whole dial timeout) must not stall
//! everyone else's dials: in gvisor-tap-vsock #676 ten pending dials to such destinations
//! stalled all new TCP connections. So a dial needs a permit, of which there are `max` in all
//! and `per_destination` for any one address. Waiters are served first come, first served
//! among those whose destination has room: a waiter for a saturated destination never holds up
//! one for another destination.
//!
//! Executor-neutral: a std mutex and `futures` oneshot channels.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::oneshot;

/// Bounds the dials in flight (see the [module documentation](self)).
#[derive(Debug)]
pub struct DialLimiter {
    max: usize,
    per_destination: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Permits out, in all.
    in_flight: usize,
    /// Permits out per destination (entries with a count of zero are removed).
    per: HashMap<IpAddr, usize>,
    /// Dials waiting for a permit, oldest first.
    waiting: VecDeque<(IpAddr, oneshot::Sender<Permit>)>,
}

impl State {
    fn has_room(&self, max: usize, per_destination: usize, dest: IpAddr) -> bool {
        self.in_flight < max && self.per.get(&dest).copied().unwrap_or(0) < per_destination
    }

    fn count(&mut self, dest: IpAddr) {
        self.in_flight += 1;
        *self.per.entry(dest).or_insert(0) += 1;
    }

    fn uncount(&mut self, dest: IpAddr) {
        self.in_flight -= 1;
        if let Some(n) = self.per.get_mut(&dest) {
            *n -= 1;
            if *n == 0 {
                self.per.remove(&dest);
            }
        }
    }
}

/// The right to dial `dest`; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<DialLimiter>,
    dest: IpAddr,
    /// Set when the permit was never handed out (its waiter was gone): dropping it then only
    /// un-counts it, under a lock its dropper already holds.
    defused: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.defused {
            self.limiter.release(self.dest);
        }
    }
}

impl DialLimiter {
    /// A limiter of `max` dials in all (at least 1) and `per_destination` per destination
    /// address (at least 1).
    pub fn new(max: usize, per_destination: usize) -> Arc<Self> {
        Arc::new(DialLimiter {
            max: max.max(1),
            per_destination: per_destination.max(1),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a permit to dial `dest`. Dropping the future gives up its place (and any
    /// permit it was just handed).
    pub async fn acquire(self: &Arc<Self>, dest: IpAddr) -> Permit {
        let receiver = {
            let mut state = self.lock();
            // Every queued waiter lacks room (`release` serves all that fit), so one with room
            // overtakes nobody who could go.
            if state.has_room(self.max, self.per_destination, dest) {
                state.count(dest);
                return self.permit(dest);
            }
            let (sender, receiver) = oneshot::channel();
            state.waiting.push_back((dest, sender));
            receiver
        };
        match receiver.await {
            Ok(permit) => permit,
            // Senders are only dropped unsent by `release`, which then hands the permit to
            // the next waiter; it never drops one of a live waiter.
            Err(oneshot::Canceled) => unreachable!("a live waiter lost its permit"),
        }
    }

    fn permit(self: &Arc<Self>, dest: IpAddr) -> Permit {
        Permit {
            limiter: self.clone(),
            dest,
            defused: false,
        }
    }

    /// Gives back a permit for `dest` and hands the freed room to the oldest waiters that fit.
    fn release(self: &Arc<Self>, dest: IpAddr) {
        let mut state = self.lock();
        state.uncount(dest);
        let mut i = 0;
        while i < state.waiting.len() && state.in_flight < self.max {
            let (waiter_dest, sender) = &state.waiting[i];
            if sender.is_canceled() {
                state.waiting.remove(i);
                continue;
            }
            let waiter_dest = *waiter_dest;
            if !state.has_room(self.max, self.per_destination, waiter_dest) {
                i += 1;
                continue;
            }
            let Some((_, sender)) = state.waiting.remove(i) else {
                break;
            };
            state.count(waiter_dest);
            if let Err(mut unsent) = sender.send(self.permit(waiter_dest)) {
                // The waiter went away between the check and the send.
                unsent.defused = true;
                state.uncount(waiter_dest);
            }
        }
    }

    /// Permits out now, in all.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Dials waiting for a permit now (including ones whose waiter already gave up and that
    /// were not cleaned up yet).
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 2));

    #[test]
    fn a_saturated_destination_does_not_hold_up_another() {
        let limiter = DialLimiter::new(4, 2);
        let a1 = limiter.acquire(A).now_or_never().expect("room");
        let _a2 = limiter.acquire(A).now_or_never().expect("room");
        // A is at its cap: a third dial to A waits...
        let mut a3 = Box::pin(limiter.acquire(A));
        assert!((&mut a3).now_or_never().is_none());
        // ...while dials to B, queued after it, go at once.
        let _b1 = limiter
            .acquire(B)
            .now_or_never()
            .expect("B is not held up by A");
        let _b2 = limiter
            .acquire(B)
            .now_or_never()
            .expect("B is not held up by A");
        // Now the total is reached too: B waits, behind A's waiter.
        let mut b3 = Box::pin(limiter.acquire(B));
        assert!((&mut b3).now_or_never().is_none());
        // A freed A permit goes to A's waiter, the oldest (B is at its cap anyway).
        drop(a1);
        let _a3 = (&mut a3)
            .now_or_never()
            .expect("A's waiter got the freed permit");
        assert!((&mut b3).now_or_never().is_none());
        assert_eq!(limiter.in_flight(), 4);
    }

    #[test]
    fn the_total_bound_holds_and_given_up_waiters_lose_nothing() {
        let limiter = DialLimiter::new(2, 2);
        let a = limiter.acquire(A).now_or_never().expect("room");
        let b = limiter.acquire(B).now_or_never().expect("room");
        let mut gave_up = Box::pin(limiter.acquire(A));
        assert!((&mut gave_up).now_or_never().is_none());
        let mut waits = Box::pin(limiter.acquire(B));
        assert!((&mut waits).now_or_never().is_none());
        drop(gave_up);
        drop(a);
        let got = (&mut waits)
            .now_or_never()
            .expect("the live waiter got the permit");
        assert_eq!(limiter.in_flight(), 2);
        drop((b, got));
        assert_eq!(limiter.in_flight(), 0);
        assert_eq!(limiter.waiting(), 0);
    }

    #[test]
    fn a_waiter_dropped_after_being_handed_a_permit_gives_it_back() {
        let limiter = DialLimiter::new(1, 1);
        let first = limiter.acquire(A).now_or_never().expect("room");
        let mut second = Box::pin(limiter.acquire(A));
        assert!((&mut second).now_or_never().is_none());
        drop(first); // handed to `second`, which never looks
        assert_eq!(limiter.in_flight(), 1);
        drop(second);
        assert_eq!(limiter.in_flight(), 0, "the unclaimed permit came back");
        assert!(limiter.acquire(B).now_or_never().is_some());
    }
}
