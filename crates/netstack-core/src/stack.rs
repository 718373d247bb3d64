//! The stack: one lock around the state ([`Inner`]) and the `poll_*` primitives that handles
//! and adapters build futures and I/O traits from.
//!
//! Locking: every operation takes the lock once (a batch of packets twice at most), does
//! bounded work, collects the wakers it must wake into a [`WakeBatch`], releases the lock, and
//! only then wakes them. No application code runs under the lock: the filter's hook runs before
//! it is taken ([`ingest`](crate::ingest)), diagnostics are handed out after it is released,
//! and reads copy into the caller's buffer without calling back.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use smoltcp::iface::SocketSet;
use smoltcp::time::Instant;

use crate::config::Config;
use crate::error::Error;
use crate::ingest::{Delivered, Front, Prepared};
use crate::packet::Packet;
use crate::pass::RunnerStatus;
use crate::state::Inner;
use crate::stats::Stats;
use crate::tcp::connection::{Accepted, ConnId};
use crate::tcp::table::TcpTable;
use crate::time::Clock;
use crate::waker::WakeBatch;

/// Packets prepared outside the lock and handed over under one acquisition.
const INGRESS_CHUNK: usize = 32;

/// A userspace TCP/IP stack, generic over the lock that guards it (`M`) and its clock (`C`).
///
/// With `M` = a real mutex the stack is `Send + Sync` and can be shared through an `Arc`; with
/// `M` = [`NoopRawMutex`](embassy_sync::blocking_mutex::raw::NoopRawMutex) it is neither, costs
/// no locking, and is shared through an `Rc`. The compiler decides; nothing here asserts it.
///
/// Most users build one with a [`StackBuilder`](crate::StackBuilder) (or an adapter's) and use
/// its handles. Used directly, the stack's user wires three things to it:
/// - a packet source: [`poll_ingress_ready`](Self::poll_ingress_ready) +
///   [`push_ingress`](Self::push_ingress), or [`poll_push_ingress_batch`](Self::poll_push_ingress_batch);
/// - a packet sink: [`poll_egress`](Self::poll_egress);
/// - a runner task: [`poll_runner`](Self::poll_runner), sleeping until the deadline it returns.
pub struct Stack<M: RawMutex, C: Clock> {
    inner: Mutex<M, RefCell<Inner>>,
    front: Front,
    clock: C,
}

impl<M: RawMutex, C: Clock> Stack<M, C> {
    /// Creates a stack. Sizes in `config` are clamped to usable minimums.
    pub fn new(config: Config, clock: C) -> Self {
        let config = config.sanitized();
        let now = clock.now();
        Stack {
            front: Front::new(&config),
            inner: Mutex::new(RefCell::new(Inner::new(config, now))),
            clock,
        }
    }

    /// Runs `f` under the lock, then wakes what it collected.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner, &mut WakeBatch) -> R) -> R {
        let mut wake = WakeBatch::default();
        let r = self.inner.lock(|cell| f(&mut cell.borrow_mut(), &mut wake));
        wake.wake_all();
        r
    }

    /// The stack's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.with(|inner, _| inner.stats())
    }

    /// Describes the stack's internal state to `f`, one line per item: each shard with work or
    /// a deadline, then every connection of it (id, phase, state, queues, waiting tasks). For
    /// diagnosing stalls; the format is not stable. `f` is called after the lock is released,
    /// so it may use the stack.
    pub fn describe(&self, f: &mut dyn FnMut(&str)) {
        let now = self.clock.now();
        let lines = self.with(|inner, _| {
            let mut lines: Vec<String> = Vec::new();
            lines.push(alloc::format!(
                "now {now} runner-waiting {}",
                inner.runner_waker.is_registered()
            ));
            for (i, shard) in inner.shards.iter().enumerate() {
                if shard.dirty || shard.deadline.is_some() || shard.tcp.len() > 0 {
                    lines.push(alloc::format!(
                        "shard {i} dirty {} deadline {:?}",
                        shard.dirty,
                        shard.deadline
                    ));
                    shard.tcp.describe(&shard.sockets, &mut lines);
                }
            }
            lines
        });
        for line in &lines {
            f(line);
        }
    }

    // ----- packets in -----

    /// `Ready` when the ingress queue has room for a TCP segment; otherwise registers the
    /// waker, which is woken when the runner has made room.
    pub fn poll_ingress_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.with(|inner, _| {
            if inner.tcp_ingress.len() < inner.config.ingress_queue {
                Poll::Ready(())
            } else {
                inner.ingress_waiters.register(cx.waker());
                Poll::Pending
            }
        })
    }

    /// Takes a raw IP packet from the device: it is checked and classified at once, and handed
    /// to its transport (TCP segments wait for the runner in the ingress queue).
    ///
    /// # Errors
    /// [`Error::QueueFull`] if it is a TCP segment and the ingress queue is full; the packet is
    /// dropped and counted (`drops.ingress_full`). Use
    /// [`poll_ingress_ready`](Self::poll_ingress_ready) first to get back-pressure instead.
    pub fn push_ingress(&self, packet: Packet) -> Result<(), Error> {
        let mut one = VecDeque::from([packet]);
        self.push_chunk(&mut one, None);
        if one.is_empty() {
            return Ok(());
        }
        self.with(|inner, _| inner.counters.drops.ingress_full += 1);
        Err(Error::QueueFull)
    }

    /// Takes packets from the front of `packets`, as many as fit, checking and classifying them
    /// outside the lock and handing them over under one lock acquisition per 32; returns how
    /// many it took. If the ingress queue filled up before `packets` was empty, registers the
    /// waker (woken when the runner has made room). Nothing is dropped: what did not fit stays
    /// in `packets`, in order.
    pub fn poll_push_ingress_batch(
        &self,
        cx: &mut Context<'_>,
        packets: &mut VecDeque<Packet>,
    ) -> usize {
        let mut taken = 0;
        while !packets.is_empty() {
            let before = packets.len();
            let stopped = self.push_chunk(packets, Some(cx));
            taken += before - packets.len();
            if stopped {
                break;
            }
        }
        taken
    }

    /// Prepares up to [`INGRESS_CHUNK`] packets from the front of `packets` and delivers them.
    /// Returns `true` if a TCP segment found no room: it and the packets after it are back at
    /// the front of `packets`, and `cx` (if any) is registered for room.
    fn push_chunk(&self, packets: &mut VecDeque<Packet>, cx: Option<&mut Context<'_>>) -> bool {
        let now = self.clock.now();
        let mut chunk: heapless::Vec<(Prepared, usize), INGRESS_CHUNK> = heapless::Vec::new();
        while !chunk.is_full() {
            let Some(packet) = packets.pop_front() else {
                break;
            };
            let len = packet.len();
            // Checks, classification and the filter run here, outside the lock.
            let prepared = self.front.prepare(packet, now);
            if chunk.push((prepared, len)).is_err() {
                break; // cannot happen: the loop stops when the chunk is full
            }
        }
        let mut reassembled: Vec<Packet> = Vec::new();
        let mut refused: Vec<Packet> = Vec::new();
        self.with(|inner, wake| {
            for (prepared, len) in chunk {
                if !refused.is_empty() {
                    // Keep the order of what follows a refused segment; drops are counted now.
                    match prepared {
                        Prepared::Tcp(s) => refused.push(s.packet),
                        Prepared::Udp(d) => refused.push(d.into_packet()),
                        Prepared::Icmp { packet, .. } | Prepared::Fragment(packet) => {
                            refused.push(packet)
                        }
                        other => {
                            let _ = inner.deliver(other, Some(len), now, wake);
                        }
                    }
                    continue;
                }
                match inner.deliver(prepared, Some(len), now, wake) {
                    Delivered::Done => {}
                    Delivered::NoRoom(segment) => refused.push(segment.packet),
                    Delivered::Reassembled(p) => reassembled.push(p),
                }
            }
            if !refused.is_empty() {
                if let Some(cx) = cx {
                    inner.ingress_waiters.register(cx.waker());
                }
            }
        });
        let stopped = !refused.is_empty();
        for p in refused.into_iter().rev() {
            packets.push_front(p);
        }
        // Whole datagrams made from fragments: prepared like any packet, counted as fragments.
        for p in reassembled {
            let prepared = self.front.prepare(p, now);
            self.with(|inner, wake| {
                // Its fragments were taken already: a datagram with no room is dropped.
                if let Delivered::NoRoom(_) = inner.deliver(prepared, None, now, wake) {
                    inner.counters.drops.ingress_full += 1;
                }
            });
        }
        stopped
    }

    // ----- packets out -----

    /// Takes the next outgoing packet, or registers the waker until there is one.
    pub fn poll_egress(&self, cx: &mut Context<'_>) -> Poll<Packet> {
        self.with(|inner, wake| match inner.pop_egress(wake) {
            Some(p) => Poll::Ready(p),
            None => {
                inner.egress_waiters.register(cx.waker());
                Poll::Pending
            }
        })
    }

    /// Moves up to `max` outgoing packets into `out` under one lock acquisition; registers the
    /// waker and returns `Pending` if there are none.
    pub fn poll_egress_batch(
        &self,
        cx: &mut Context<'_>,
        out: &mut impl Extend<Packet>,
        max: usize,
    ) -> Poll<usize> {
        self.with(|inner, wake| {
            let mut n = 0;
            while n < max {
                let Some(p) = inner.pop_egress(wake) else {
                    break;
                };
                out.extend(core::iter::once(p));
                n += 1;
            }
            if n == 0 {
                inner.egress_waiters.register(cx.waker());
                Poll::Pending
            } else {
                Poll::Ready(n)
            }
        })
    }

    // ----- the runner -----

    /// Processes queued TCP segments (at most `runner_batch`), lets smoltcp transmit, runs the
    /// TCP tables' timers, and wakes the tasks whose sockets became ready.
    ///
    /// Registers `cx`'s waker: it is woken when a TCP segment arrives, the application reads,
    /// writes, closes or drops a connection, the last handle is dropped, or the egress queue
    /// drains after it was full. The caller sleeps until then or until
    /// [`RunnerStatus::deadline`]. An idle stack returns `deadline: None` and is not woken at
    /// all. [`Runner`](crate::Runner) is a future that does all this.
    pub fn poll_runner(&self, cx: &mut Context<'_>) -> RunnerStatus {
        let now = self.clock.now();
        self.with(|inner, wake| {
            inner.runner_waker.register(cx.waker());
            inner.run(now, wake)
        })
    }

    // ----- TCP and handles -----

    /// Takes the next established connection from the accept queue (counting its stream as a
    /// handle), or registers the waker.
    pub(crate) fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Accepted> {
        self.with(|inner, _| loop {
            let id = match inner.accept.poll_pop(cx) {
                Poll::Ready(id) => id,
                Poll::Pending => return Poll::Pending,
            };
            if let Some(accepted) = inner.shards[id.shard()].tcp.open(id) {
                inner.handles += 1;
                return Poll::Ready(accepted);
            }
        })
    }

    /// Runs `f` on the table and sockets of connection `id`'s shard, under the lock; `f`
    /// returns its result and whether the runner must service the shard (something to send).
    pub(crate) fn with_connection<R>(
        &self,
        id: ConnId,
        f: impl FnOnce(&mut TcpTable, &mut SocketSet<'static>, &mut WakeBatch) -> (R, bool),
    ) -> R {
        self.with(|inner, wake| {
            let shard = &mut inner.shards[id.shard()];
            let (r, service) = f(&mut shard.tcp, &mut shard.sockets, wake);
            if service {
                inner.schedule(id.shard(), wake);
            }
            r
        })
    }

    /// A stream was split: one more handle holds connection `id`.
    pub(crate) fn tcp_add_handle(&self, id: ConnId) {
        self.with(|inner, _| {
            inner.shards[id.shard()].tcp.add_handle(id);
            inner.handles += 1;
        });
    }

    /// A stream (or half) of connection `id` was dropped.
    pub(crate) fn tcp_release(&self, id: ConnId) {
        let now: Instant = self.clock.now();
        self.with(|inner, wake| {
            let shard = &mut inner.shards[id.shard()];
            if shard.tcp.release(id, now, &mut shard.sockets) {
                inner.schedule(id.shard(), wake);
            }
            inner.detach_handle(wake);
        });
    }

    /// Counts a new application handle (a packet port half, listener or socket).
    pub(crate) fn attach_handle(&self) {
        self.with(|inner, _| inner.handles += 1);
    }

    /// Uncounts an application handle; the last one wakes the runner.
    pub(crate) fn detach_handle(&self) {
        self.with(|inner, wake| inner.detach_handle(wake));
    }
}
