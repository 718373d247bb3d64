//! Flavours: the one place where the `Send` stack and the non-`Send` stack differ.
//!
//! Every adapter type ([`generic::Stack`](crate::generic::Stack),
//! [`generic::TcpStream`](crate::generic::TcpStream), ...) is generic over a [`Flavor`], which
//! picks the core stack's lock and the pointer that shares it:
//!
//! | flavour | lock | pointer | the types are | names |
//! |---|---|---|---|---|
//! | [`SendFlavor`] | [`StdRawMutex`] (one per stack) | `Arc` | `Send + Sync` | crate root |
//! | [`LocalFlavor`] | [`NoopRawMutex`] (no locking) | `Rc` | neither | [`local`](crate::local) |
//!
//! Nothing asserts `Send`: the compiler derives it from these two choices. Users name the
//! aliases at the crate root or in [`local`](crate::local), never the flavour.

use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;

use embassy_sync::blocking_mutex::raw::{NoopRawMutex, RawMutex};
use netstack_core::StackPtr;

use crate::{StdClock, StdRawMutex};

mod sealed {
    /// Keeps the set of flavours closed: only this crate's two markers implement `Flavor`.
    pub trait Sealed {}
}

/// The core stack of flavour `F`.
pub type CoreStack<F> = netstack_core::Stack<<F as Flavor>::Mutex, StdClock>;

/// Picks the lock and the shared pointer of a stack; implemented by [`SendFlavor`] and
/// [`LocalFlavor`] only.
pub trait Flavor: sealed::Sealed + Sized + 'static {
    /// The lock around the core stack.
    type Mutex: RawMutex + 'static;
    /// The pointer through which every handle (packet side, listener, runner, streams) shares
    /// the core stack.
    type Ptr: StackPtr<Mutex = Self::Mutex, Clock = StdClock> + Unpin + 'static;
    /// A shared pointer for adapter state held by several handles (the halves of a stream).
    type Shared<T>: Clone + Deref<Target = T>;

    /// Puts a new core stack behind its pointer.
    fn new_ptr(stack: CoreStack<Self>) -> Self::Ptr;
    /// How many handles share `ptr` (the runner ends when it holds the last one).
    fn handles(ptr: &Self::Ptr) -> usize;
    /// Shares `value` between handles.
    fn share<T>(value: T) -> Self::Shared<T>;
}

/// The `Send + Sync` flavour: `Arc` and a per-stack [`StdRawMutex`]. For a multi-thread
/// executor (`smol::Executor` run on several threads); its types are at the crate root.
#[derive(Debug, Clone, Copy)]
pub enum SendFlavor {}

impl sealed::Sealed for SendFlavor {}

impl Flavor for SendFlavor {
    type Mutex = StdRawMutex;
    type Ptr = Arc<CoreStack<Self>>;
    type Shared<T> = Arc<T>;

    fn new_ptr(stack: CoreStack<Self>) -> Self::Ptr {
        Arc::new(stack)
    }

    fn handles(ptr: &Self::Ptr) -> usize {
        Arc::strong_count(ptr)
    }

    fn share<T>(value: T) -> Arc<T> {
        Arc::new(value)
    }
}

/// The single-thread flavour: `Rc` and [`NoopRawMutex`], so no locking and no atomics. For a
/// `LocalExecutor` or `async_io::block_on`; its types are in [`local`](crate::local).
#[derive(Debug, Clone, Copy)]
pub enum LocalFlavor {}

impl sealed::Sealed for LocalFlavor {}

impl Flavor for LocalFlavor {
    type Mutex = NoopRawMutex;
    type Ptr = Rc<CoreStack<Self>>;
    type Shared<T> = Rc<T>;

    fn new_ptr(stack: CoreStack<Self>) -> Self::Ptr {
        Rc::new(stack)
    }

    fn handles(ptr: &Self::Ptr) -> usize {
        Rc::strong_count(ptr)
    }

    fn share<T>(value: T) -> Rc<T> {
        Rc::new(value)
    }
}

#[cfg(test)]
mod tests {
    //! The flavours' `Send`-ness, checked at compile time.
    use static_assertions::{assert_impl_all, assert_not_impl_any};

    assert_impl_all!(crate::StackBuilder: Send, Sync);
    assert_impl_all!(crate::Stack: Send, Sync);
    assert_impl_all!(crate::PacketSink: Send, Sync);
    assert_impl_all!(crate::PacketStream: Send, Sync);
    assert_impl_all!(crate::Runner: Send, Sync);
    assert_impl_all!(crate::TcpListener: Send, Sync);
    assert_impl_all!(crate::TcpStream: Send, Sync);
    assert_impl_all!(crate::OwnedReadHalf: Send, Sync);
    assert_impl_all!(crate::OwnedWriteHalf: Send, Sync);

    assert_not_impl_any!(crate::local::Stack: Send, Sync);
    assert_not_impl_any!(crate::local::PacketSink: Send, Sync);
    assert_not_impl_any!(crate::local::PacketStream: Send, Sync);
    assert_not_impl_any!(crate::local::Runner: Send, Sync);
    assert_not_impl_any!(crate::local::TcpListener: Send, Sync);
    assert_not_impl_any!(crate::local::TcpStream: Send, Sync);
    assert_not_impl_any!(crate::local::OwnedReadHalf: Send, Sync);
    assert_not_impl_any!(crate::local::OwnedWriteHalf: Send, Sync);
}
