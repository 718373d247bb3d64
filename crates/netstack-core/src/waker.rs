//! Waker bookkeeping that never wakes under the stack lock.
//!
//! Every waker the core stores lives in a [`WakerSlot`] (one waiting task) or a [`WakerList`]
//! (any number of tasks waiting for the same condition). Code that runs under the lock only
//! *takes* wakers into a [`WakeBatch`]; the batch is woken after the lock is released, so a waker
//! that re-enters the stack (or an executor that takes its own locks) cannot deadlock with it.

use alloc::collections::VecDeque;
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

/// Several tasks waiting for the same condition (room in a queue, a packet to take, a
/// connection to accept): each task is listed once, and all are woken together when the
/// condition may have changed. The list holds one entry per waiting *task*, so it is bounded by
/// the tasks the application runs; it never wakes a task that is still waiting just to make
/// room (a woken task that re-registers at once would spin).
#[derive(Default, Debug)]
pub(crate) struct WakerList {
    /// In registration order, so that [`take_first`](Self::take_first) is fair.
    wakers: VecDeque<Waker>,
}

impl WakerList {
    /// Adds `waker` unless a waker for the same task is listed.
    pub(crate) fn register(&mut self, waker: &Waker) {
        if !self.wakers.iter().any(|w| w.will_wake(waker)) {
            self.wakers.push_back(waker.clone());
        }
    }

    /// Moves the `n` longest-waiting wakers into `wake`: when a condition frees room for `n`
    /// items, waking every waiter would make all but `n` of them poll in vain.
    pub(crate) fn take_first(&mut self, n: usize, wake: &mut WakeBatch) {
        for w in self.wakers.drain(..n.min(self.wakers.len())) {
            wake.push(w);
        }
    }

    /// Whether no task is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.wakers.is_empty()
    }

    /// Moves every listed waker into `wake`.
    pub(crate) fn take_all(&mut self, wake: &mut WakeBatch) {
        for w in self.wakers.drain(..) {
            wake.push(w);
        }
    }

    /// Tasks listed now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.wakers.len()
    }
}

/// Wakers collected under the lock, woken after it is released.
///
/// Up to eight wakers need no allocation (the packet path rarely wakes more than two tasks at
/// once); beyond that they go to a vector.
#[derive(Default)]
pub(crate) struct WakeBatch {
    first: Option<Waker>,
    rest: heapless::Vec<Waker, 7>,
    overflow: Vec<Waker>,
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
        } else if let Err(w) = self.rest.push(w) {
            self.overflow.push(w);
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
        for w in self.overflow {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A task's waker that counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_thousand_waiting_tasks_are_listed_once_and_none_is_woken_before_the_condition() {
        let tasks: Vec<Arc<Counter>> = (0..1000)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        let wakers: Vec<Waker> = tasks.iter().map(|t| Waker::from(t.clone())).collect();
        let mut list = WakerList::default();
        // Every task registers, then polls spuriously and registers again.
        for _ in 0..3 {
            for w in &wakers {
                list.register(w);
            }
        }
        assert_eq!(list.len(), 1000);
        let woken: usize = tasks.iter().map(|t| t.0.load(Ordering::Relaxed)).sum();
        assert_eq!(woken, 0, "registering must not wake anybody");
        let mut batch = WakeBatch::default();
        list.take_all(&mut batch);
        batch.wake_all();
        assert!(tasks.iter().all(|t| t.0.load(Ordering::Relaxed) == 1));
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn take_first_wakes_the_longest_waiting_tasks_only() {
        let tasks: Vec<Arc<Counter>> = (0..10)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        let mut list = WakerList::default();
        for t in &tasks {
            list.register(&Waker::from(t.clone()));
        }
        let mut batch = WakeBatch::default();
        list.take_first(3, &mut batch);
        batch.wake_all();
        let woken: Vec<usize> = tasks.iter().map(|t| t.0.load(Ordering::Relaxed)).collect();
        assert_eq!(woken, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(list.len(), 7);
    }

    #[test]
    fn a_batch_keeps_every_waker_it_is_given() {
        let tasks: Vec<Arc<Counter>> = (0..20)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        let mut batch = WakeBatch::default();
        let mut list = WakerList::default();
        for (i, t) in tasks.iter().enumerate() {
            if i % 2 == 0 {
                batch.push(Waker::from(t.clone()));
            } else {
                list.register(&Waker::from(t.clone()));
            }
        }
        list.take_all(&mut batch);
        batch.wake_all();
        assert!(tasks.iter().all(|t| t.0.load(Ordering::Relaxed) == 1));
    }
}
