//! The stack: the locks around its state and the `poll_*` primitives that handles and adapters
//! build futures and I/O traits from.
//!
//! The state is split so that work on different connections need not contend for one lock:
//! each runner [`Group`] (a share of the TCP shards, with its own ingress queue and outbox) has
//! a lock of its own, and the [`Shared`] side (accept and request queues, UDP and ICMP,
//! reassembly) has one. A group may take the shared lock while it holds its own; nothing holding
//! the shared lock takes a group's.
//!
//! Every operation takes a lock, does bounded work, collects the wakers it must wake into a
//! [`WakeBatch`], releases the lock, and only then wakes them. No application code runs under a
//! lock: the filter's hook runs before one is taken ([`ingest`](crate::ingest)), diagnostics
//! are handed out after release, and reads copy into the caller's buffer without calling back.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use smoltcp::iface::SocketSet;

use crate::config::Config;
use crate::group::Group;
use crate::ingest::Classifier;
use crate::pass::RunnerStatus;
use crate::shared::Shared;
use crate::stats::Stats;
use crate::tcp::connection::{Accepted, ConnId};
use crate::tcp::table::{Grow, TcpTable};
use crate::time::Clock;
use crate::waker::WakeBatch;

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
    pub(crate) config: Config,
    pub(crate) classifier: Classifier,
    shared: Mutex<M, RefCell<Shared>>,
    groups: Vec<Mutex<M, RefCell<Group>>>,
    /// Application handles alive (ports, listeners, sockets, streams); runners finish at 0.
    handles: AtomicUsize,
    /// Where the next egress batch starts looking, so that no outbox starves the others.
    pub(crate) egress_cursor: AtomicUsize,
    clock: C,
}

impl<M: RawMutex, C: Clock> Stack<M, C> {
    /// Creates a stack. Sizes in `config` are clamped to usable minimums.
    pub fn new(config: Config, clock: C) -> Self {
        let config = config.sanitized();
        let now = clock.now();
        let groups = config.tcp_runners;
        Stack {
            classifier: Classifier::new(&config),
            shared: Mutex::new(RefCell::new(Shared::new(&config))),
            groups: (0..groups)
                .map(|g| Mutex::new(RefCell::new(Group::new(g, groups, &config, now))))
                .collect(),
            handles: AtomicUsize::new(0),
            egress_cursor: AtomicUsize::new(0),
            config,
            clock,
        }
    }

    /// Runs `f` on the shared state under its lock, then wakes what it collected.
    pub(crate) fn with_shared<R>(&self, f: impl FnOnce(&mut Shared, &mut WakeBatch) -> R) -> R {
        let mut wake = WakeBatch::default();
        let r = self
            .shared
            .lock(|cell| f(&mut cell.borrow_mut(), &mut wake));
        wake.wake_all();
        r
    }

    /// Runs `f` on runner group `g` under its lock, then wakes what it collected.
    pub(crate) fn with_group<R>(
        &self,
        g: usize,
        f: impl FnOnce(&mut Group, &mut WakeBatch) -> R,
    ) -> R {
        let mut wake = WakeBatch::default();
        let r = self.groups[g].lock(|cell| f(&mut cell.borrow_mut(), &mut wake));
        wake.wake_all();
        r
    }

    /// The stack's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The stack's configuration (sanitized).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many runner groups the stack has ([`Config::tcp_runners`]).
    pub fn runner_groups(&self) -> usize {
        self.groups.len()
    }

    /// The runner group of global shard `shard`.
    pub(crate) fn group_of(&self, shard: usize) -> usize {
        shard % self.groups.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for g in 0..self.groups.len() {
            self.with_group(g, |group, _| group.add_stats(&mut stats));
        }
        self.with_shared(|shared, _| shared.add_stats(&mut stats));
        stats
    }

    /// Describes the stack's internal state to `f`, one line per item: each shard with work or
    /// a deadline, then every connection of it (id, phase, state, queues, waiting tasks). For
    /// diagnosing stalls; the format is not stable. `f` is called after the locks are released,
    /// so it may use the stack.
    pub fn describe(&self, f: &mut dyn FnMut(&str)) {
        let now = self.clock.now();
        let mut lines: Vec<String> = Vec::new();
        lines.push(alloc::format!(
            "now {now} handles {}",
            self.handles.load(Ordering::Relaxed)
        ));
        for g in 0..self.groups.len() {
            self.with_group(g, |group, _| {
                lines.push(alloc::format!(
                    "group {g} runner-waiting {} egress {} blocked {}",
                    group.runner_waker.is_registered(),
                    group.out.len(),
                    group.egress_blocked
                ));
                for shard in &group.shards {
                    if shard.dirty || shard.deadline.is_some() || shard.tcp.len() > 0 {
                        lines.push(alloc::format!(
                            "shard {} dirty {} deadline {:?}",
                            shard.tcp.shard(),
                            shard.dirty,
                            shard.deadline
                        ));
                        shard.tcp.describe(&shard.sockets, &mut lines);
                    }
                }
            });
        }
        for line in &lines {
            f(line);
        }
    }

    // ----- the runners -----

    /// Runs every runner group once (see [`Self::poll_runner_group`]) and merges their status:
    /// the earliest deadline, more work if any group has more.
    ///
    /// Registers `cx`'s waker: it is woken when a TCP segment arrives, the application reads,
    /// writes, closes or drops a connection, the last handle is dropped, or an outbox drains
    /// after it was full. The caller sleeps until then or until [`RunnerStatus::deadline`]. An
    /// idle stack returns `deadline: None` and is not woken at all. [`Runner`](crate::Runner)
    /// is a future that does all this.
    pub fn poll_runner(&self, cx: &mut Context<'_>) -> RunnerStatus {
        (0..self.groups.len())
            .map(|g| self.poll_runner_group(g, cx))
            .reduce(RunnerStatus::merge)
            .unwrap_or(RunnerStatus {
                deadline: None,
                more: false,
                finished: true,
            })
    }

    /// One pass of runner group `g`: processes its queued TCP segments (at most
    /// `runner_batch`), lets smoltcp transmit, runs its connection tables' timers, wakes the
    /// tasks whose sockets became ready, and hands new connections and requests to the shared
    /// queues. With one runner task per group, groups are serviced in parallel.
    pub fn poll_runner_group(&self, g: usize, cx: &mut Context<'_>) -> RunnerStatus {
        let now = self.clock.now();
        let (mut status, established, requests, expired) = self.with_group(g, |group, wake| {
            group.runner_waker.register(cx.waker());
            let status = group.run(now, wake);
            (
                status,
                core::mem::take(&mut group.established),
                core::mem::take(&mut group.new_requests),
                core::mem::take(&mut group.expired_requests),
            )
        });
        let mut overflow: Vec<ConnId> = Vec::new();
        if g == 0 || !established.is_empty() || !requests.is_empty() || !expired.is_empty() {
            let reassembly = self.with_shared(|shared, wake| {
                for id in &expired {
                    shared.requests.forget(*id);
                }
                for &id in &requests {
                    shared.requests.push(id, wake);
                }
                for &id in &established {
                    if !shared.accept.push(id, wake) {
                        overflow.push(id);
                    }
                }
                // Group 0's runner also expires fragment reassembly and ingress waits for the
                // UDP reader.
                if g == 0 {
                    let hold = shared.udp.expire_hold(now, wake);
                    [shared.expire(now), hold].into_iter().flatten().min()
                } else {
                    None
                }
            });
            status.deadline = [status.deadline, reassembly].into_iter().flatten().min();
        }
        if !overflow.is_empty() {
            // The accept queue is full: reset them (the next pass sends the RSTs).
            self.with_group(g, |group, wake| {
                for id in overflow {
                    let i = group.local(id.shard());
                    let shard = &mut group.shards[i];
                    shard
                        .tcp
                        .refuse_accept_overflow(id, now, &mut shard.sockets);
                    group.schedule(i, wake);
                }
            });
            status.more = true;
        }
        status.finished = self.handles.load(Ordering::Acquire) == 0;
        status
    }

    // ----- TCP and handles -----

    /// Takes the next established connection from the accept queue (counting its stream as a
    /// handle), or registers the waker.
    pub(crate) fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Accepted> {
        loop {
            let id = match self.with_shared(|shared, _| shared.accept.poll_pop(cx)) {
                Poll::Ready(id) => id,
                Poll::Pending => return Poll::Pending,
            };
            let g = self.group_of(id.shard());
            let opened = self.with_group(g, |group, _| {
                let i = group.local(id.shard());
                group.shards[i].tcp.open(id)
            });
            if let Some(accepted) = opened {
                self.handles.fetch_add(1, Ordering::AcqRel);
                return Poll::Ready(accepted);
            }
        }
    }

    /// Runs `f` on the table and sockets of connection `id`'s shard, under its group's lock;
    /// `f` returns its result and whether the runner must service the shard (something to
    /// send).
    pub(crate) fn with_connection<R>(
        &self,
        id: ConnId,
        f: impl FnOnce(&mut TcpTable, &mut SocketSet<'static>, &mut WakeBatch) -> (R, bool),
    ) -> R {
        self.with_group(self.group_of(id.shard()), |group, wake| {
            let i = group.local(id.shard());
            let shard = &mut group.shards[i];
            let (r, service) = f(&mut shard.tcp, &mut shard.sockets, wake);
            if service {
                group.schedule(i, wake);
            }
            r
        })
    }

    /// As [`Self::with_connection`], for a read or a write: `f` also says which buffer of the
    /// connection it found worth growing, and this grows it against the group's budget
    /// (a grown receive buffer has a window to announce: the runner services the shard).
    pub(crate) fn with_connection_growing<R>(
        &self,
        id: ConnId,
        f: impl FnOnce(&mut TcpTable, &mut SocketSet<'static>, &mut WakeBatch) -> (R, bool, Grow),
    ) -> R {
        self.with_group(self.group_of(id.shard()), |group, wake| {
            let i = group.local(id.shard());
            let shard = &mut group.shards[i];
            let (r, mut service, grow) = f(&mut shard.tcp, &mut shard.sockets, wake);
            if grow != Grow::No {
                let budget = group.buffer_budget();
                let shard = &mut group.shards[i];
                let grew =
                    shard
                        .tcp
                        .grow(id, grow, budget, &group.config, &mut shard.sockets, wake);
                service |= grew && grow == Grow::Recv;
            }
            if service {
                group.schedule(i, wake);
            }
            r
        })
    }

    /// A stream was split: one more handle holds connection `id`.
    pub(crate) fn tcp_add_handle(&self, id: ConnId) {
        self.with_connection(id, |table, _, _| {
            table.add_handle(id);
            ((), false)
        });
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    /// A stream (or half) of connection `id` was dropped.
    pub(crate) fn tcp_release(&self, id: ConnId) {
        let now = self.clock.now();
        self.with_connection(id, |table, sockets, _| {
            ((), table.release(id, now, sockets))
        });
        self.detach_handle();
    }

    /// Counts a new application handle (a packet port half, listener, socket or stream).
    pub(crate) fn attach_handle(&self) {
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    /// A stream created elsewhere (an accepted request's) counts as a handle.
    pub(crate) fn count_stream(&self) {
        self.attach_handle();
    }

    /// Uncounts an application handle; the last one wakes every runner so that it can finish.
    pub(crate) fn detach_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            for g in 0..self.groups.len() {
                self.with_group(g, |group, wake| wake.take_from(&mut group.runner_waker));
            }
        }
    }
}
