//! Waker bookkeeping that never wakes under the stack lock.
//!
//! Every waker the core stores lives in a [`WakerSlot`]. Code that runs under the lock only
//! *takes* wakers into a [`WakeBatch`]; the batch is woken after the lock is released, so a waker
//! that re-enters the stack (or an executor that takes its own locks) cannot deadlock with it.

use alloc::vec::Vec;
use core::task::Waker;

/// One registered waker.
#[derive(Default, Debug)]
pub(crate) struct WakerSlot {
    waker: Option<Waker>,
}

impl WakerSlot {
    /// Stores `waker`, replacing a different one (cloning only when it changed).
    pub(crate) fn register(&mut self, waker: &Waker) {
        match &mut self.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// Takes the waker out, if one is registered.
    pub(crate) fn take(&mut self) -> Option<Waker> {
        self.waker.take()
    }

    /// Whether a waker is registered.
    pub(crate) fn is_registered(&self) -> bool {
        self.waker.is_some()
    }
}

/// Several tasks waiting for the same condition (room in a queue, a packet to take): each is
/// kept once, and all are woken together. Bounded: past `WAITERS` tasks the oldest is woken at
/// once to poll again, so the list never grows with the number of tasks, and no task is ever
/// forgotten (it is either listed or woken).
#[derive(Default, Debug)]
pub(crate) struct WakerList {
    wakers: Vec<Waker>,
}

/// Most tasks a [`WakerList`] holds.
const WAITERS: usize = 32;

impl WakerList {
    /// Adds `waker` unless a waker for the same task is listed.
    pub(crate) fn register(&mut self, waker: &Waker, wake: &mut WakeBatch) {
        if self.wakers.iter().any(|w| w.will_wake(waker)) {
            return;
        }
        if self.wakers.len() >= WAITERS {
            wake.push(self.wakers.remove(0));
        }
        self.wakers.push(waker.clone());
    }

    /// Moves every listed waker into `wake`.
    pub(crate) fn take_all(&mut self, wake: &mut WakeBatch) {
        for w in self.wakers.drain(..) {
            wake.push(w);
        }
    }
}

/// Wakers collected under the lock, woken after it is released.
///
/// It allocates only when it holds more than one waker, which is rare on the packet path.
#[derive(Default)]
pub(crate) struct WakeBatch {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl WakeBatch {
    /// Adds the waker in `slot`, if any.
    pub(crate) fn take_from(&mut self, slot: &mut WakerSlot) {
        if let Some(w) = slot.take() {
            self.push(w);
        }
    }

    /// Adds a waker taken from elsewhere.
    pub(crate) fn push(&mut self, w: Waker) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    /// Wakes everything collected. Call only after the stack lock is released.
    pub(crate) fn wake_all(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        for w in self.rest {
            w.wake();
        }
    }
}
