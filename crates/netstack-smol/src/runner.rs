//! [`Runner`]: the future that drives the stack, sleeping on one `async_io::Timer`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_io::Timer;

use crate::flavor::Flavor;

/// Drives the stack: processes packets and timers, then sleeps until the next packet,
/// application operation or TCP deadline. An idle stack is not woken at all: without a
/// deadline its timer is disarmed, there is no periodic tick.
///
/// Spawn it on the executor and detach it (`executor.spawn(runner).detach()`). It completes
/// once every other handle to the stack ([`Stack`](crate::generic::Stack),
/// [`TcpListener`](crate::generic::TcpListener), streams) is dropped.
#[must_use = "the stack does nothing unless its runner is spawned"]
pub struct Runner<F: Flavor> {
    stack: F::Ptr,
    timer: Timer,
    /// The deadline the timer is armed for, if any.
    armed: Option<std::time::Instant>,
}

impl<F: Flavor> Runner<F> {
    pub(crate) fn new(stack: F::Ptr) -> Self {
        Runner {
            stack,
            timer: Timer::never(),
            armed: None,
        }
    }
}

impl<F: Flavor> Future for Runner<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if F::handles(&this.stack) == 1 {
            return Poll::Ready(());
        }
        let status = this.stack.poll_runner(cx);
        if status.more {
            // Let the packet source and the application run before the next batch.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(deadline) = status.deadline else {
            if this.armed.take().is_some() {
                // Disarm, so that an old deadline cannot wake an idle stack.
                this.timer = Timer::never();
            }
            return Poll::Pending;
        };
        let at = this.stack.clock().to_std(deadline);
        if this.armed != Some(at) {
            this.timer.set_at(at);
            this.armed = Some(at);
        }
        if Pin::new(&mut this.timer).poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The timer fired and is spent; the next pass, after yielding to the tasks this
        // one woke, handles the deadline.
        this.armed = None;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
