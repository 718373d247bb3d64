//! How handles reach their stack: a [`StackPtr`] (`Arc`, `Rc` or a plain reference), and the
//! counted [`Handle`] that lets the runner know when nobody is left to serve.

use alloc::rc::Rc;
use alloc::sync::Arc;
use core::ops::Deref;

use embassy_sync::blocking_mutex::raw::RawMutex;

use crate::stack::Stack;
use crate::time::Clock;

/// A shared pointer to a [`Stack`]: `Arc` for the `Send` flavour, `Rc` for the local one, or a
/// plain reference. Every handle (packet port, listener, sockets, streams) holds one.
pub trait StackPtr: Clone + Deref<Target = Stack<Self::Mutex, Self::Clock>> {
    /// The stack's lock type.
    type Mutex: RawMutex;
    /// The stack's clock type.
    type Clock: Clock;
}

impl<M: RawMutex, C: Clock> StackPtr for Arc<Stack<M, C>> {
    type Mutex = M;
    type Clock = C;
}

impl<M: RawMutex, C: Clock> StackPtr for Rc<Stack<M, C>> {
    type Mutex = M;
    type Clock = C;
}

impl<M: RawMutex, C: Clock> StackPtr for &Stack<M, C> {
    type Mutex = M;
    type Clock = C;
}

/// A stack pointer counted in the stack's handle count: the runner finishes once the count
/// drops to zero (see [`RunnerStatus::finished`](crate::RunnerStatus::finished)), and the last
/// handle to go wakes it so that it notices. TCP streams keep the count themselves, under the
/// lock sections they take anyway (accept, release).
pub(crate) struct Handle<P: StackPtr> {
    ptr: P,
}

impl<P: StackPtr> Handle<P> {
    /// Counts a new handle of the stack behind `ptr`.
    pub(crate) fn new(ptr: P) -> Self {
        ptr.attach_handle();
        Handle { ptr }
    }

    /// The pointer itself (for handles that create further handles).
    pub(crate) fn ptr(&self) -> &P {
        &self.ptr
    }
}

impl<P: StackPtr> Clone for Handle<P> {
    fn clone(&self) -> Self {
        Handle::new(self.ptr.clone())
    }
}

impl<P: StackPtr> Deref for Handle<P> {
    type Target = Stack<P::Mutex, P::Clock>;

    fn deref(&self) -> &Self::Target {
        &self.ptr
    }
}

impl<P: StackPtr> Drop for Handle<P> {
    fn drop(&mut self) {
        self.ptr.detach_handle();
    }
}
