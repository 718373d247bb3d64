//! Flavours: the one place where the `Send` stack and the non-`Send` stack differ.
//!
//! A [`Flavor`] picks the stack's lock and the pointer every handle shares it through:
//!
//! | flavour | lock | pointer | the handles are | for |
//! |---|---|---|---|---|
//! | [`SendFlavor`] (feature `std`) | [`StdRawMutex`](crate::StdRawMutex), one per stack | `Arc` | `Send + Sync` | multi-thread executors |
//! | [`LocalFlavor`] | [`NoopRawMutex`] (no locking, no atomics) | `Rc` | neither | one thread (`LocalSet`, `LocalExecutor`, firmware) |
//!
//! Nothing asserts `Send`: the compiler derives it from these two choices. A bare-metal user
//! can add a flavour of their own (e.g. `Arc` + a critical-section mutex) by implementing the
//! trait.

use alloc::rc::Rc;

use embassy_sync::blocking_mutex::raw::{NoopRawMutex, RawMutex};

use crate::ptr::StackPtr;
use crate::stack::Stack;
use crate::time::Clock;

/// Picks the lock of a stack and the pointer through which every handle shares it.
pub trait Flavor: 'static {
    /// The lock around the stack.
    type Mutex: RawMutex + 'static;
    /// The pointer to a stack with clock `C`.
    type Ptr<C: Clock + 'static>: StackPtr<Mutex = Self::Mutex, Clock = C> + Unpin + 'static;

    /// Puts a new stack behind its pointer.
    fn share<C: Clock + 'static>(stack: Stack<Self::Mutex, C>) -> Self::Ptr<C>;
}

/// The single-thread flavour: `Rc` and [`NoopRawMutex`], so no locking and no atomics.
#[derive(Debug, Clone, Copy)]
pub enum LocalFlavor {}

impl Flavor for LocalFlavor {
    type Mutex = NoopRawMutex;
    type Ptr<C: Clock + 'static> = Rc<Stack<NoopRawMutex, C>>;

    fn share<C: Clock + 'static>(stack: Stack<NoopRawMutex, C>) -> Self::Ptr<C> {
        Rc::new(stack)
    }
}

/// The `Send + Sync` flavour: `Arc` and a per-stack [`StdRawMutex`](crate::StdRawMutex).
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub enum SendFlavor {}

#[cfg(feature = "std")]
impl Flavor for SendFlavor {
    type Mutex = crate::std_mutex::StdRawMutex;
    type Ptr<C: Clock + 'static> = alloc::sync::Arc<Stack<crate::std_mutex::StdRawMutex, C>>;

    fn share<C: Clock + 'static>(stack: Stack<Self::Mutex, C>) -> Self::Ptr<C> {
        alloc::sync::Arc::new(stack)
    }
}
