//! How packets leave the stack: [`Stack::poll_egress`] and [`Stack::poll_egress_batch`] take
//! them from every outbox (each runner group's, and the shared one), in turn.

use core::sync::atomic::Ordering;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;

use crate::packet::Packet;
use crate::stack::Stack;
use crate::time::Clock;
use crate::waker::WakeBatch;

/// The egress primitives.
impl<M: RawMutex, C: Clock> Stack<M, C> {
    /// Takes back the buffers of packets the device has written, for the stack to build new
    /// packets in without allocating and zeroing them (one lock acquisition per call; the
    /// stack keeps a bounded number, drops the rest).
    pub fn recycle(&self, packets: impl IntoIterator<Item = Packet>) {
        let g = self.egress_cursor.load(Ordering::Relaxed) % self.runner_groups();
        self.with_group(g, |group, _| {
            for p in packets {
                group.out.recycle(p);
            }
        });
    }

    /// Takes the next outgoing packet, or registers the waker until there is one.
    pub fn poll_egress(&self, cx: &mut Context<'_>) -> Poll<Packet> {
        let mut one = One(None);
        match self.poll_egress_batch(cx, &mut one, 1) {
            Poll::Ready(_) => one.0.map_or(Poll::Pending, Poll::Ready),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Moves up to `max` outgoing packets into `out`, one lock acquisition per outbox with
    /// packets (each group's and the shared one, taken in turn so that none starves); registers
    /// the waker with every outbox and returns `Pending` if there are none.
    pub fn poll_egress_batch(
        &self,
        cx: &mut Context<'_>,
        out: &mut impl Extend<Packet>,
        max: usize,
    ) -> Poll<usize> {
        let outboxes = self.runner_groups() + 1;
        let start = self.egress_cursor.fetch_add(1, Ordering::Relaxed) % outboxes;
        let mut n = 0;
        for k in 0..outboxes {
            if n == max {
                break;
            }
            let o = (start + k) % outboxes;
            n += if o == self.runner_groups() {
                self.with_shared(|shared, wake| take(max - n, out, |w| shared.out.pop(w), wake))
            } else {
                self.with_group(o, |group, wake| {
                    take(max - n, out, |w| group.pop_egress(w), wake)
                })
            };
        }
        if n > 0 {
            return Poll::Ready(n);
        }
        // Nothing anywhere: register, then look once more (a packet may have arrived meanwhile).
        for g in 0..self.runner_groups() {
            let found = self.with_group(g, |group, wake| {
                group.out.register_consumer(cx.waker());
                take(max, out, |w| group.pop_egress(w), wake)
            });
            if found > 0 {
                return Poll::Ready(found);
            }
        }
        let found = self.with_shared(|shared, wake| {
            shared.out.register_consumer(cx.waker());
            take(max, out, |w| shared.out.pop(w), wake)
        });
        if found > 0 {
            Poll::Ready(found)
        } else {
            Poll::Pending
        }
    }
}

/// Room for one packet, as an `Extend` target.
struct One(Option<Packet>);

impl Extend<Packet> for One {
    fn extend<I: IntoIterator<Item = Packet>>(&mut self, iter: I) {
        if let Some(p) = iter.into_iter().next() {
            self.0 = Some(p);
        }
    }
}

/// Moves up to `max` packets from `pop` into `out`; how many it moved.
fn take(
    max: usize,
    out: &mut impl Extend<Packet>,
    mut pop: impl FnMut(&mut WakeBatch) -> Option<Packet>,
    wake: &mut WakeBatch,
) -> usize {
    let mut n = 0;
    while n < max {
        let Some(p) = pop(wake) else {
            break;
        };
        out.extend(core::iter::once(p));
        n += 1;
    }
    n
}
