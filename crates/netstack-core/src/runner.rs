//! [`Runner`]: the future that drives a stack, and the decision it makes after every pass —
//! yield (more work is ready), sleep until a deadline, or park until an event — over an
//! adapter's [`Timer`].

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use smoltcp::time::Instant;

use crate::ptr::StackPtr;

/// A one-shot timer the [`Runner`] sleeps on. The runner arms it only when the stack's next
/// deadline moves earlier, and disarms it when the stack has no deadline, so an idle stack is
/// never woken.
pub trait Timer: Unpin + 'static {
    /// Arms the timer for `at` (a stack instant, of the clock the timer was made with),
    /// replacing any earlier setting.
    fn set(&mut self, at: Instant);
    /// Disarms the timer: it does not fire until it is set again.
    fn clear(&mut self);
    /// `Ready` once the time it was set for has come; registers the waker otherwise (also
    /// while disarmed, when it never fires).
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// Drives the stack: processes packets and timers, then sleeps until the next packet,
/// application operation or TCP deadline. An idle stack is not woken at all: without a
/// deadline its timer is disarmed, there is no periodic tick.
///
/// Spawn it on the executor. It completes once every handle of the stack (packet port,
/// listener, sockets, streams) is dropped.
#[must_use = "the stack does nothing unless its runner is spawned"]
pub struct Runner<P: StackPtr, T: Timer> {
    stack: P,
    /// The runner group it serves, or `None` for all of them.
    group: Option<usize>,
    timer: T,
    /// The deadline the timer is armed for, if any.
    armed: Option<Instant>,
}

impl<P: StackPtr, T: Timer> Runner<P, T> {
    /// A runner for every group of the stack behind `stack`, sleeping on `timer` (disarmed,
    /// of the stack's clock): all the stack's work in one task.
    pub fn new(stack: P, timer: T) -> Self {
        Runner {
            stack,
            group: None,
            timer,
            armed: None,
        }
    }

    /// A runner for group `group` only (of [`Stack::runner_groups`](crate::Stack::runner_groups)):
    /// spawn one per group to serve them on several threads.
    pub fn for_group(stack: P, group: usize, timer: T) -> Self {
        Runner {
            stack,
            group: Some(group),
            timer,
            armed: None,
        }
    }
}

impl<P: StackPtr + Unpin, T: Timer> Future for Runner<P, T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let status = match this.group {
            None => this.stack.poll_runner(cx),
            Some(g) => this.stack.poll_runner_group(g, cx),
        };
        if status.finished {
            return Poll::Ready(());
        }
        if status.more {
            // Let the packet source and the application run before the next batch.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(deadline) = status.deadline else {
            if this.armed.take().is_some() {
                // Disarm, so that an old deadline cannot wake an idle stack.
                this.timer.clear();
            }
            return Poll::Pending;
        };
        // Re-arm only when the deadline moves earlier: a later one lets the armed timer fire
        // early once, and that pass arms the timer for the real deadline. Most passes move
        // the deadline later (every ACK pushes the retransmission timer), so this saves a
        // timer-wheel removal and insertion on nearly every pass.
        if this.armed.is_none_or(|armed| deadline < armed) {
            this.timer.set(deadline);
            this.armed = Some(deadline);
        }
        if this.timer.poll_fired(cx).is_pending() {
            return Poll::Pending;
        }
        // The timer fired and is spent. Run again, but only after yielding: looping inside
        // this poll would keep the tasks it just woke from running for as long as deadlines
        // keep falling due.
        this.armed = None;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
