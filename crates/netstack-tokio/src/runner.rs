//! [`Runner`]: the future that drives the stack.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Sleep;

use crate::flavor::Flavor;

/// How far away "never" is for the runner's timer when the stack has no deadline.
const IDLE: std::time::Duration = std::time::Duration::from_secs(86_400 * 365);

/// Drives the stack: processes packets and timers, then sleeps until the next packet,
/// application operation or TCP deadline. An idle stack is not woken at all.
///
/// Spawn it on the runtime (`tokio::spawn(runner)`, or `tokio::task::spawn_local(runner)` in
/// the [`local`](crate::local) flavour). It completes once every other handle to
/// the stack ([`Stack`](crate::Stack), [`TcpListener`](crate::TcpListener), streams) is dropped.
#[must_use = "the stack does nothing unless its runner is spawned"]
pub struct Runner<F: Flavor> {
    stack: F::Ptr,
    timer: Pin<Box<Sleep>>,
}

impl<F: Flavor> Runner<F> {
    pub(crate) fn new(stack: F::Ptr) -> Self {
        Runner {
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now() + IDLE)),
            stack,
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
            // Park the timer far away so that an old deadline cannot wake an idle stack.
            this.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + IDLE);
            return Poll::Pending;
        };
        let at = this.stack.clock().to_tokio(deadline);
        if this.timer.deadline() != at {
            this.timer.as_mut().reset(at);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The deadline is due: run again, but only after yielding. Looping inside this
        // poll would keep the tasks it just woke (queued behind it on this worker) from
        // running for as long as deadlines keep falling due.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
