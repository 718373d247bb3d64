//! The stack: one lock around the smoltcp interface, its sockets, the packet queues and the
//! TCP table, and the `poll_*` primitives that adapters build futures and I/O traits from.
//!
//! Locking: every operation takes the lock once, does bounded work, collects the wakers it must
//! wake into a [`WakeBatch`], releases the lock, and only then wakes them.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::Deref;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketSet,
};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address};

use crate::config::Config;
use crate::device::QueueDevice;
use crate::error::{Error, TcpError};
use crate::ingress::{classify, Classified, DropReason};
use crate::stats::{DropStats, Stats};
use crate::tcp::{ConnId, SynOutcome, TcpConnection, TcpTable};
use crate::time::Clock;
use crate::waker::{WakeBatch, WakerSlot};

/// A raw IP packet (IPv4 or IPv6, no link-layer header), as read from or written to a TUN
/// device.
pub type Packet = Vec<u8>;

/// What one call of [`Stack::poll_runner`] asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct RunnerStatus {
    /// Call `poll_runner` again at this time at the latest (a timer is due then), or `None`
    /// if only an event (packet, application operation) can create work. The runner's waker
    /// is registered either way.
    pub deadline: Option<Instant>,
    /// More work is ready now (the batch limit was reached): yield, then poll again.
    pub more: bool,
}

/// Everything behind the stack lock.
struct Inner {
    config: Config,
    iface: Interface,
    sockets: SocketSet<'static>,
    device: QueueDevice,
    ingress: VecDeque<Packet>,
    ingress_waker: WakerSlot,
    egress_waker: WakerSlot,
    runner_waker: WakerSlot,
    /// The runner stopped because the egress queue was full; popping a packet must wake it.
    egress_blocked: bool,
    /// The deadline last returned by the runner.
    deadline: Option<Instant>,
    tcp: TcpTable,
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
    drops: DropStats,
}

/// A userspace TCP/IP stack, generic over the lock that guards it (`M`) and its clock (`C`).
///
/// With `M` = a real mutex the stack is `Send + Sync` and can be shared through an `Arc`; with
/// `M` = [`NoopRawMutex`](embassy_sync::blocking_mutex::raw::NoopRawMutex) it is neither, costs
/// no locking, and is shared through an `Rc`. The compiler decides; nothing here asserts it.
///
/// The stack's user wires three things to it:
/// - a packet source: [`poll_ingress_ready`](Self::poll_ingress_ready) +
///   [`push_ingress`](Self::push_ingress);
/// - a packet sink: [`poll_egress`](Self::poll_egress);
/// - a runner task: [`poll_runner`](Self::poll_runner), sleeping until the deadline it returns.
pub struct Stack<M: RawMutex, C: Clock> {
    inner: Mutex<M, RefCell<Inner>>,
    clock: C,
}

impl<M: RawMutex, C: Clock> Stack<M, C> {
    /// Creates a stack. Sizes in `config` are clamped to usable minimums.
    pub fn new(config: Config, clock: C) -> Self {
        let config = config.sanitized();
        let now = clock.now();
        let mut device = QueueDevice::new(config.mtu, config.egress_queue);
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ip);
        iface_config.random_seed = config.random_seed;
        let mut iface = Interface::new(iface_config, &mut device, now);
        // Accept packets for every destination: each TCP socket listens on its exact endpoint.
        iface.set_any_ip(true);
        iface.update_ip_addrs(|addrs| {
            // Capacity for two addresses is smoltcp's minimum; these cannot fail.
            let _ = addrs.push(IpCidr::new(
                IpAddress::Ipv4(Ipv4Address::new(0, 0, 0, 1)),
                0,
            ));
            let _ = addrs.push(IpCidr::new(
                IpAddress::Ipv6(Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
                0,
            ));
        });
        let inner = Inner {
            tcp: TcpTable::new(&config),
            ingress: VecDeque::with_capacity(config.ingress_queue),
            config,
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            ingress_waker: WakerSlot::default(),
            egress_waker: WakerSlot::default(),
            runner_waker: WakerSlot::default(),
            egress_blocked: false,
            deadline: None,
            packets_in: 0,
            bytes_in: 0,
            packets_out: 0,
            bytes_out: 0,
            drops: DropStats::default(),
        };
        Stack {
            inner: Mutex::new(RefCell::new(inner)),
            clock,
        }
    }

    /// Runs `f` under the lock, then wakes what it collected.
    fn with<R>(&self, f: impl FnOnce(&mut Inner, &mut WakeBatch) -> R) -> R {
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
        self.inner.lock(|cell| {
            let inner = cell.borrow();
            Stats {
                packets_in: inner.packets_in,
                bytes_in: inner.bytes_in,
                packets_out: inner.packets_out,
                bytes_out: inner.bytes_out,
                drops: inner.drops,
                tcp: inner.tcp.snapshot(),
            }
        })
    }

    // ----- packets in -----

    /// `Ready` when the ingress queue has room for a packet; otherwise registers the waker,
    /// which is woken when the runner has made room.
    pub fn poll_ingress_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.with(|inner, _| {
            if inner.ingress.len() < inner.config.ingress_queue {
                Poll::Ready(())
            } else {
                inner.ingress_waker.register(cx.waker());
                Poll::Pending
            }
        })
    }

    /// Queues a raw IP packet for the runner.
    ///
    /// # Errors
    /// [`Error::QueueFull`] if the ingress queue is full; the packet is dropped and counted
    /// (`drops.ingress_full`). Use [`poll_ingress_ready`](Self::poll_ingress_ready) first to
    /// get back-pressure instead.
    pub fn push_ingress(&self, packet: Packet) -> Result<(), Error> {
        self.with(|inner, wake| {
            if inner.ingress.len() >= inner.config.ingress_queue {
                inner.drops.ingress_full += 1;
                return Err(Error::QueueFull);
            }
            inner.ingress.push_back(packet);
            wake.take_from(&mut inner.runner_waker);
            Ok(())
        })
    }

    // ----- packets out -----

    /// Takes the next outgoing packet, or registers the waker until there is one.
    pub fn poll_egress(&self, cx: &mut Context<'_>) -> Poll<Packet> {
        self.with(|inner, wake| match inner.pop_egress(wake) {
            Some(p) => Poll::Ready(p),
            None => {
                inner.egress_waker.register(cx.waker());
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
                match inner.pop_egress(wake) {
                    Some(p) => {
                        out.extend(core::iter::once(p));
                        n += 1;
                    }
                    None => break,
                }
            }
            if n == 0 {
                inner.egress_waker.register(cx.waker());
                Poll::Pending
            } else {
                Poll::Ready(n)
            }
        })
    }

    // ----- the runner -----

    /// Processes queued packets (at most `runner_batch`), lets smoltcp transmit, runs the TCP
    /// table's timers, and wakes the tasks whose sockets became ready.
    ///
    /// Registers `cx`'s waker: it is woken when a packet arrives, the application reads, writes,
    /// closes or drops a connection, or the egress queue drains after it was full. The caller
    /// sleeps until then or until [`RunnerStatus::deadline`]. An idle stack returns
    /// `deadline: None` and is not woken at all.
    pub fn poll_runner(&self, cx: &mut Context<'_>) -> RunnerStatus {
        let now = self.clock.now();
        self.with(|inner, wake| {
            inner.runner_waker.register(cx.waker());
            inner.run(now, wake)
        })
    }

    // ----- TCP -----

    /// Takes the next established connection, or registers the waker until there is one.
    pub fn poll_accept<P>(this: &P, cx: &mut Context<'_>) -> Poll<TcpConnection<P>>
    where
        P: StackPtr<Mutex = M, Clock = C>,
    {
        this.with(|inner, _| inner.tcp.poll_accept(cx))
            .map(|accepted| TcpConnection::new(this.clone(), accepted))
    }

    pub(crate) fn tcp_poll_read(
        &self,
        id: ConnId,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, TcpError>> {
        self.with(|inner, wake| {
            let mut window_update = false;
            let r = inner
                .tcp
                .poll_read(id, cx, buf, &mut inner.sockets, &mut window_update);
            if window_update {
                wake.take_from(&mut inner.runner_waker);
            }
            r
        })
    }

    pub(crate) fn tcp_poll_write(
        &self,
        id: ConnId,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<Result<usize, TcpError>> {
        self.with(|inner, wake| {
            let r = inner.tcp.poll_write(id, cx, buf, &mut inner.sockets);
            if let Poll::Ready(Ok(n)) = r {
                if n > 0 {
                    wake.take_from(&mut inner.runner_waker);
                }
            }
            r
        })
    }

    pub(crate) fn tcp_shutdown_write(&self, id: ConnId) -> Result<(), TcpError> {
        self.with(|inner, wake| {
            let r = inner.tcp.shutdown_write(id, &mut inner.sockets);
            wake.take_from(&mut inner.runner_waker);
            r
        })
    }

    pub(crate) fn tcp_abort(&self, id: ConnId) {
        self.with(|inner, wake| {
            inner.tcp.abort(id, &mut inner.sockets, wake);
            wake.take_from(&mut inner.runner_waker);
        })
    }

    pub(crate) fn tcp_release(&self, id: ConnId) {
        let now = self.clock.now();
        self.with(|inner, wake| {
            inner.tcp.release(id, now, &mut inner.sockets);
            wake.take_from(&mut inner.runner_waker);
        })
    }
}

impl Inner {
    fn pop_egress(&mut self, wake: &mut WakeBatch) -> Option<Packet> {
        let p = self.device.egress.pop_front()?;
        self.packets_out += 1;
        self.bytes_out += p.len() as u64;
        if self.egress_blocked {
            self.egress_blocked = false;
            wake.take_from(&mut self.runner_waker);
        }
        Some(p)
    }

    fn count_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::Malformed => self.drops.malformed += 1,
            DropReason::BadChecksum => self.drops.bad_checksum += 1,
            DropReason::Unsupported => self.drops.unsupported += 1,
        }
    }

    /// One runner pass (see [`Stack::poll_runner`]).
    fn run(&mut self, now: Instant, wake: &mut WakeBatch) -> RunnerStatus {
        // A deadline passed: smoltcp's (returned last time) or the TCP table's (which an
        // application operation such as dropping a stream may have moved earlier since).
        let timer_due = self.deadline.is_some_and(|d| now >= d)
            || self.tcp.deadline().is_some_and(|d| now >= d);
        let mut changed = false;
        let egress_before = self.device.egress.len();

        // Ingress: classify each packet, let the SYN table prepare a socket, hand it to smoltcp.
        let mut processed = 0;
        while processed < self.config.runner_batch {
            if self.device.egress_is_full() {
                self.egress_blocked = true;
                break;
            }
            let Some(packet) = self.ingress.pop_front() else {
                break;
            };
            processed += 1;
            self.packets_in += 1;
            self.bytes_in += packet.len() as u64;
            let (tuple, syn) = match classify(&packet) {
                Classified::Tcp { tuple, syn } => (tuple, syn),
                Classified::Drop(reason) => {
                    self.count_drop(reason);
                    continue;
                }
            };
            let created = if syn {
                match self.tcp.on_syn(tuple, now, &self.config, &mut self.sockets) {
                    SynOutcome::Listening(created) => created,
                    SynOutcome::Refused => None,
                }
            } else {
                None
            };
            self.device.rx = Some(packet);
            let result = self
                .iface
                .poll_ingress_single(now, &mut self.device, &mut self.sockets);
            self.device.rx = None;
            if result == PollIngressSingleResult::SocketStateChanged {
                changed = true;
            }
            if let Some(id) = created {
                self.tcp.after_new_syn(id, &mut self.sockets);
            }
        }
        if processed > 0 {
            wake.take_from(&mut self.ingress_waker);
        }

        // Egress: let every socket transmit until it has nothing to send or the queue is full.
        self.egress(now, &mut changed);

        if changed || timer_due {
            self.tcp
                .maintain(now, &self.config, &mut self.sockets, wake);
            // Maintenance may have aborted connections; their RSTs go out now.
            self.egress(now, &mut changed);
        }

        if self.device.egress.len() > egress_before || !self.device.egress.is_empty() {
            wake.take_from(&mut self.egress_waker);
        }

        let more = !self.ingress.is_empty() && !self.egress_blocked;
        let iface_at = self.iface.poll_at(now, &self.sockets);
        let deadline = match (iface_at, self.tcp.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.deadline = deadline;
        RunnerStatus { deadline, more }
    }

    fn egress(&mut self, now: Instant, changed: &mut bool) {
        loop {
            if self.device.egress_is_full() {
                self.egress_blocked = true;
                break;
            }
            match self
                .iface
                .poll_egress(now, &mut self.device, &mut self.sockets)
            {
                PollResult::None => break,
                PollResult::SocketStateChanged => *changed = true,
            }
        }
    }
}

/// A shared pointer to a [`Stack`]: `Arc` for the `Send` flavour, `Rc` for the local one, or a
/// plain reference. Connections hold one to reach their stack.
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
