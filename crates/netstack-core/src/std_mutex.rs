//! [`StdRawMutex`]: a [`RawMutex`] over `std::sync::Mutex`, the lock of the `Send` flavour.
//!
//! embassy-sync's `CriticalSectionRawMutex` would serialise every stack in the process through
//! one global lock; this one is per stack and parks contended threads instead of spinning.
#![allow(unsafe_code)]

use std::sync::{Mutex, PoisonError};

use embassy_sync::blocking_mutex::raw::RawMutex;

/// A per-stack mutex for the `Send + Sync` flavour.
#[derive(Debug, Default)]
pub struct StdRawMutex(Mutex<()>);

// SAFETY: `RawMutex` requires that `lock` gives `f` exclusive access among all threads that
// lock the same instance. `std::sync::Mutex` provides exactly that; the guard is held for the
// whole call of `f` and released (also on unwind) after it. A poisoned lock only means an
// earlier `f` panicked; the protected data is a `RefCell` that rolls its borrow back on unwind,
// so continuing is sound.
unsafe impl RawMutex for StdRawMutex {
    #[allow(clippy::declare_interior_mutable_const)] // used only to initialise new instances
    const INIT: Self = StdRawMutex(Mutex::new(()));

    fn lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embassy_sync::blocking_mutex::Mutex as BlockingMutex;
    use std::cell::Cell;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn lock_gives_exclusive_access_across_threads() {
        let m = Arc::new(BlockingMutex::<StdRawMutex, Cell<u64>>::new(Cell::new(0)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        // A read-modify-write that would lose updates without exclusion.
                        m.lock(|c| {
                            let v = c.get();
                            std::hint::black_box(());
                            c.set(v + 1);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.lock(|c| c.get()), 40_000);
    }

    #[test]
    fn a_panic_under_the_lock_does_not_poison_it() {
        let m = Arc::new(BlockingMutex::<StdRawMutex, Cell<u64>>::new(Cell::new(1)));
        let m2 = m.clone();
        let r = std::thread::spawn(move || m2.lock(|_| panic!("inside the lock"))).join();
        assert!(r.is_err());
        assert_eq!(m.lock(|c| c.get()), 1);
    }
}
