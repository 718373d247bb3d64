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
use smoltcp::iface::PollResult;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, IpProtocol};

use crate::config::Config;
use crate::device::QueueDevice;
use crate::emit::Emitter;
use crate::error::{Error, TcpError};
use crate::icmp::{fill_echo_reply, IcmpEchoMode, IcmpKind, IcmpMessage, IcmpQueue};
use crate::ingress::{classify, Classified, DropReason, IcmpClass};
use crate::normalize::{normalize, Normalized};
use crate::reassembly::Reassembler;
use crate::shard::{shard_of, Shard};
use crate::stats::TcpStats;
use crate::stats::{DropStats, IcmpStats, IpStats, Stats, UdpStats};
use crate::tcp::{AcceptQueue, ConnId, SynOutcome, TcpConnection};
use crate::time::Clock;
use crate::udp::{fill_udp, UdpDatagram, UdpQueue};
use crate::waker::{WakeBatch, WakerList, WakerSlot};

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
    /// The TCP socket tables; a connection lives in the one its 4-tuple hashes to.
    shards: Vec<Shard>,
    /// Shards with work for the next runner pass (each at most once: see `Shard::dirty`).
    dirty: Vec<usize>,
    accept: AcceptQueue,
    device: QueueDevice,
    ingress: VecDeque<Packet>,
    /// Packet sources waiting for room in the ingress queue (clones of a sink may wait at once).
    ingress_waiters: WakerList,
    /// Packet consumers waiting for egress packets.
    egress_waiters: WakerList,
    runner_waker: WakerSlot,
    /// The runner stopped because the egress queue was full; popping a packet must wake it.
    egress_blocked: bool,
    udp: UdpQueue,
    icmp: IcmpQueue,
    reassembler: Reassembler,
    emitter: Emitter,
    /// Tasks waiting for egress room to send a datagram.
    room_waiters: WakerList,
    /// Whether an application handle receives UDP / ICMP (one receiver each).
    udp_claimed: bool,
    icmp_claimed: bool,
    udp_stats: UdpStats,
    icmp_stats: IcmpStats,
    ip_stats: IpStats,
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
        let mut device = QueueDevice::new(config.tcp_mtu(), config.egress_queue);
        let shards = (0..config.tcp_shards)
            .map(|i| Shard::new(i as u32, &config, &mut device, now))
            .collect();
        let inner = Inner {
            shards,
            dirty: Vec::new(),
            accept: AcceptQueue::new(config.accept_queue),
            udp: UdpQueue::new(config.udp_queue, config.udp_queue_bytes),
            icmp: IcmpQueue::new(config.icmp_queue),
            reassembler: Reassembler::new(
                config.reassembly_max_datagrams,
                config.reassembly_max_bytes,
                config.reassembly_timeout,
            ),
            emitter: Emitter::new(config.mtu, config.hop_limit, config.random_seed),
            room_waiters: WakerList::default(),
            udp_claimed: false,
            icmp_claimed: false,
            udp_stats: UdpStats::default(),
            icmp_stats: IcmpStats::default(),
            ip_stats: IpStats::default(),
            ingress: VecDeque::with_capacity(config.ingress_queue),
            config,
            device,
            ingress_waiters: WakerList::default(),
            egress_waiters: WakerList::default(),
            runner_waker: WakerSlot::default(),
            egress_blocked: false,
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
                ingress_queued: inner.ingress.len() as u64,
                egress_queued: inner.device.egress.len() as u64,
                egress_blocked: inner.egress_blocked,
                drops: DropStats {
                    reassembly: inner.drops.reassembly + inner.reassembler.expired,
                    ..inner.drops
                },
                tcp: inner
                    .shards
                    .iter()
                    .fold(TcpStats::default(), |mut sum, shard| {
                        sum.add(&shard.tcp.snapshot());
                        sum
                    }),
                udp: UdpStats {
                    queued: inner.udp.len() as u64,
                    queued_bytes: inner.udp.bytes() as u64,
                    ..inner.udp_stats
                },
                icmp: inner.icmp_stats,
                ip: IpStats {
                    fragments_out: inner.emitter.fragments_out,
                    ..inner.ip_stats
                },
            }
        })
    }

    /// Describes the stack's internal state to `f`, one line per item: each shard with work or
    /// a deadline, then every connection as (id, phase, state, recv queue, send queue, read
    /// waiting, write waiting, can recv, can send). For diagnosing stalls; the format is not
    /// stable.
    pub fn describe(&self, f: &mut dyn FnMut(&dyn core::fmt::Debug)) {
        let now = self.clock.now();
        self.inner.lock(|cell| {
            let inner = cell.borrow();
            f(&(
                "now",
                now,
                "runner waiting",
                inner.runner_waker.is_registered(),
            ));
            for (i, shard) in inner.shards.iter().enumerate() {
                if shard.dirty || shard.deadline.is_some() || shard.tcp.len() > 0 {
                    f(&("shard", i, shard.dirty, shard.deadline));
                    shard.tcp.describe(&shard.sockets, f);
                }
            }
        });
    }

    // ----- packets in -----

    /// `Ready` when the ingress queue has room for a packet; otherwise registers the waker,
    /// which is woken when the runner has made room.
    pub fn poll_ingress_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.with(|inner, wake| {
            if inner.ingress.len() < inner.config.ingress_queue {
                Poll::Ready(())
            } else {
                inner.ingress_waiters.register(cx.waker(), wake);
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

    /// Moves packets from the front of `packets` into the ingress queue, as many as fit, under
    /// one lock acquisition; returns how many it took. If the queue filled up before `packets`
    /// was empty, registers the waker (woken when the runner has made room). Nothing is dropped:
    /// what did not fit stays in `packets`.
    pub fn poll_push_ingress_batch(
        &self,
        cx: &mut Context<'_>,
        packets: &mut alloc::collections::VecDeque<Packet>,
    ) -> usize {
        self.with(|inner, wake| {
            let room = inner
                .config
                .ingress_queue
                .saturating_sub(inner.ingress.len());
            let n = room.min(packets.len());
            inner.ingress.extend(packets.drain(..n));
            if n > 0 {
                wake.take_from(&mut inner.runner_waker);
            }
            if !packets.is_empty() {
                inner.ingress_waiters.register(cx.waker(), wake);
            }
            n
        })
    }

    // ----- packets out -----

    /// Takes the next outgoing packet, or registers the waker until there is one.
    pub fn poll_egress(&self, cx: &mut Context<'_>) -> Poll<Packet> {
        self.with(|inner, wake| match inner.pop_egress(wake) {
            Some(p) => Poll::Ready(p),
            None => {
                inner.egress_waiters.register(cx.waker(), wake);
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
                inner.egress_waiters.register(cx.waker(), wake);
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

    // ----- UDP -----

    /// Claims the stack's one UDP receiver; `false` if it is already claimed. Adapters use it
    /// so that exactly one handle receives datagrams (the queue has a single reader waker).
    pub fn claim_udp(&self) -> bool {
        self.with(|inner, _| !core::mem::replace(&mut inner.udp_claimed, true))
    }

    /// Releases the UDP receiver claimed with [`claim_udp`](Self::claim_udp).
    pub fn release_udp(&self) {
        self.with(|inner, _| inner.udp_claimed = false);
    }

    /// Claims the stack's one ICMP receiver; `false` if it is already claimed.
    pub fn claim_icmp(&self) -> bool {
        self.with(|inner, _| !core::mem::replace(&mut inner.icmp_claimed, true))
    }

    /// Releases the ICMP receiver claimed with [`claim_icmp`](Self::claim_icmp).
    pub fn release_icmp(&self) {
        self.with(|inner, _| inner.icmp_claimed = false);
    }

    /// Takes the next UDP datagram received for any destination, or registers the waker.
    pub fn poll_udp_recv(&self, cx: &mut Context<'_>) -> Poll<UdpDatagram> {
        self.with(|inner, _| inner.udp.poll_pop(cx))
    }

    /// Sends a UDP datagram from `src` (typically the original destination of the datagram
    /// being answered) to `dst` (the device side), fragmenting it if it exceeds the MTU.
    /// `Pending` (waker registered) while the egress queue has no room.
    ///
    /// # Errors
    /// [`Error::TooLarge`] beyond 64 KiB, [`Error::AddressFamily`] if `src` and `dst` differ
    /// in IP version, [`Error::InvalidAddress`] for port 0 or an unspecified address.
    pub fn poll_udp_send(
        &self,
        cx: &mut Context<'_>,
        src: IpEndpoint,
        dst: IpEndpoint,
        payload: &[u8],
    ) -> Poll<Result<(), Error>> {
        self.with(|inner, wake| inner.poll_send_udp(cx, src, dst, payload, wake))
    }

    // ----- ICMP -----

    /// Takes the next ICMP message delivered to the application (echo requests with
    /// [`IcmpEchoMode::Deliver`], other messages with `icmp_deliver_other`), or registers the
    /// waker.
    pub fn poll_icmp_recv(&self, cx: &mut Context<'_>) -> Poll<IcmpMessage> {
        self.with(|inner, _| inner.icmp.poll_pop(cx))
    }

    /// Answers a delivered echo request (as its destination would have).
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] if `request` is not an echo request; [`Error::QueueFull`] if
    /// the egress queue has no room (the reply is dropped and counted).
    pub fn send_icmp_echo_reply(&self, request: &IcmpMessage) -> Result<(), Error> {
        if !matches!(request.kind(), IcmpKind::EchoRequest { .. }) {
            return Err(Error::InvalidAddress);
        }
        self.with(|inner, wake| {
            let r = inner.send_echo_reply(request.dst(), request.src(), request.message(), wake);
            if r == Err(Error::QueueFull) {
                inner.drops.egress_full += 1;
            }
            r
        })
    }

    // ----- TCP -----

    /// Takes the next established connection, or registers the waker until there is one.
    pub fn poll_accept<P>(this: &P, cx: &mut Context<'_>) -> Poll<TcpConnection<P>>
    where
        P: StackPtr<Mutex = M, Clock = C>,
    {
        this.with(|inner, _| loop {
            match inner.accept.poll_pop(cx) {
                Poll::Ready(id) => {
                    if let Some(accepted) = inner.shards[id.shard()].tcp.open(id) {
                        return Poll::Ready(accepted);
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        })
        .map(|accepted| TcpConnection::new(this.clone(), accepted))
    }

    pub(crate) fn tcp_poll_read_with(
        &self,
        id: ConnId,
        cx: &mut Context<'_>,
        max: usize,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Poll<Result<usize, TcpError>> {
        self.with(|inner, wake| {
            let mut window_update = false;
            let shard = &mut inner.shards[id.shard()];
            let r =
                shard
                    .tcp
                    .poll_read_with(id, cx, max, sink, &mut shard.sockets, &mut window_update);
            if window_update {
                inner.schedule(id.shard(), wake);
            }
            r
        })
    }

    pub(crate) fn tcp_poll_read_ready(&self, id: ConnId, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.lock(|cell| {
            let mut inner = cell.borrow_mut();
            let shard = &mut inner.shards[id.shard()];
            shard.tcp.poll_read_ready(id, cx, &mut shard.sockets)
        })
    }

    pub(crate) fn tcp_poll_write(
        &self,
        id: ConnId,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<Result<usize, TcpError>> {
        self.with(|inner, wake| {
            let shard = &mut inner.shards[id.shard()];
            let r = shard.tcp.poll_write(id, cx, buf, &mut shard.sockets);
            if let Poll::Ready(Ok(n)) = r {
                if n > 0 {
                    inner.schedule(id.shard(), wake);
                }
            }
            r
        })
    }

    pub(crate) fn tcp_send_queue(&self, id: ConnId) -> usize {
        self.inner.lock(|cell| {
            let inner = cell.borrow();
            let shard = &inner.shards[id.shard()];
            shard.tcp.send_queue(id, &shard.sockets)
        })
    }

    pub(crate) fn tcp_shutdown_write(&self, id: ConnId) -> Result<(), TcpError> {
        self.with(|inner, wake| {
            let shard = &mut inner.shards[id.shard()];
            let r = shard.tcp.shutdown_write(id, &mut shard.sockets);
            inner.schedule(id.shard(), wake);
            r
        })
    }

    pub(crate) fn tcp_abort(&self, id: ConnId) {
        self.with(|inner, wake| {
            let shard = &mut inner.shards[id.shard()];
            shard.tcp.abort(id, &mut shard.sockets, wake);
            inner.schedule(id.shard(), wake);
        })
    }

    pub(crate) fn tcp_release(&self, id: ConnId) {
        let now = self.clock.now();
        self.with(|inner, wake| {
            let shard = &mut inner.shards[id.shard()];
            shard.tcp.release(id, now, &mut shard.sockets);
            inner.schedule(id.shard(), wake);
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
        self.room_waiters.take_all(wake);
        Some(p)
    }

    fn count_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::Malformed => self.drops.malformed += 1,
            DropReason::BadChecksum => self.drops.bad_checksum += 1,
            DropReason::Unsupported => self.drops.unsupported += 1,
            DropReason::Reassembly => self.drops.reassembly += 1,
        }
    }

    /// Puts shard `i` on the list for the next runner pass.
    fn mark_dirty(&mut self, i: usize) {
        let shard = &mut self.shards[i];
        if !shard.dirty {
            shard.dirty = true;
            self.dirty.push(i);
        }
    }

    /// An application operation changed shard `i`: service it on the next runner pass.
    fn schedule(&mut self, i: usize, wake: &mut WakeBatch) {
        self.mark_dirty(i);
        wake.take_from(&mut self.runner_waker);
    }

    /// One runner pass (see [`Stack::poll_runner`]).
    fn run(&mut self, now: Instant, wake: &mut WakeBatch) -> RunnerStatus {
        if self.reassembler.deadline().is_some_and(|d| now >= d) {
            self.reassembler.expire(now);
        }
        for i in 0..self.shards.len() {
            if self.shards[i].deadline.is_some_and(|d| now >= d) {
                self.mark_dirty(i);
            }
        }

        // Ingress: normalise and classify each packet, then hand it to its transport.
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
            self.ingest(packet, now, wake);
        }
        if processed > 0 {
            self.ingress_waiters.take_all(wake);
        }

        // Service the shards with work: transmit, then run their connection tables.
        let mut serviced = 0;
        while serviced < self.dirty.len() && !self.egress_blocked {
            let i = self.dirty[serviced];
            if self.service(i, now, wake) {
                self.shards[i].dirty = false;
                serviced += 1;
            }
        }
        self.dirty.drain(..serviced);

        if !self.device.egress.is_empty() {
            self.egress_waiters.take_all(wake);
        }

        let more = (!self.ingress.is_empty() || !self.dirty.is_empty()) && !self.egress_blocked;
        // While the egress queue is full, only draining it (which wakes the runner) lets the
        // shards make progress; a deadline already due would only make the runner spin.
        let blocked = self.egress_blocked;
        let deadline = self
            .shards
            .iter()
            .filter_map(|s| s.deadline)
            .filter(|&d| !blocked || d > now)
            .chain(self.reassembler.deadline())
            .min();
        RunnerStatus { deadline, more }
    }

    /// Services shard `i`: lets its sockets transmit, runs its connection table (promotions,
    /// expiries, reaping, wakers) and computes its next deadline. Returns `false` if the egress
    /// queue filled up first (the shard stays dirty and is finished once it drains).
    fn service(&mut self, i: usize, now: Instant, wake: &mut WakeBatch) -> bool {
        let shard = &mut self.shards[i];
        if !egress(shard, &mut self.device, now) {
            self.egress_blocked = true;
            return false;
        }
        let aborted = shard.tcp.maintain(
            now,
            &self.config,
            &mut shard.sockets,
            &mut self.accept,
            wake,
        );
        if aborted {
            // Send the RSTs now, then remove what they closed.
            if !egress(shard, &mut self.device, now) {
                self.egress_blocked = true;
                return false;
            }
            shard.tcp.maintain(
                now,
                &self.config,
                &mut shard.sockets,
                &mut self.accept,
                wake,
            );
        }
        let iface_at = shard.iface.poll_at(now, &shard.sockets);
        shard.deadline = [iface_at, shard.tcp.deadline()].into_iter().flatten().min();
        true
    }

    /// Routes one ingress packet to its transport.
    fn ingest(&mut self, packet: Packet, now: Instant, wake: &mut WakeBatch) {
        let packet = match normalize(packet, &mut self.reassembler, now) {
            Normalized::Plain(p) => p,
            Normalized::Reassembled(p) => {
                self.ip_stats.fragments_in += 1;
                self.ip_stats.reassembled += 1;
                p
            }
            Normalized::Held => {
                self.ip_stats.fragments_in += 1;
                return;
            }
            Normalized::Drop(reason) => {
                self.count_drop(reason);
                return;
            }
        };
        let class = classify(&packet, self.config.verify_checksums);
        if !self.config.filter.is_open() {
            if let Some(flow) = class.flow() {
                if !self.config.filter.allows(&flow) {
                    self.drops.filtered += 1;
                    return;
                }
            }
        }
        match class {
            Classified::Tcp { tuple, syn, rst } => {
                let i = shard_of(&tuple, self.shards.len());
                let created = if syn {
                    let totals = self.shards.iter().fold((0, 0), |(n, s), shard| {
                        (n + shard.tcp.len(), s + shard.tcp.syn_received())
                    });
                    let shard = &mut self.shards[i];
                    match shard
                        .tcp
                        .on_syn(tuple, now, &self.config, &mut shard.sockets, totals)
                    {
                        SynOutcome::Listening(created) => created,
                        SynOutcome::Refused => None,
                    }
                } else {
                    None
                };
                let shard = &mut self.shards[i];
                self.device.rx = Some(packet);
                shard
                    .iface
                    .poll_ingress_single(now, &mut self.device, &mut shard.sockets);
                self.device.rx = None;
                if let Some(id) = created {
                    shard.tcp.after_new_syn(id, &mut shard.sockets);
                }
                if rst {
                    shard.tcp.after_rst(tuple, &mut shard.sockets);
                }
                self.mark_dirty(i);
            }
            Classified::Udp { src, dst, payload } => {
                let datagram = UdpDatagram::new(packet, payload, src, dst);
                if self.udp.push(datagram, wake) {
                    self.udp_stats.datagrams_in += 1;
                } else {
                    self.drops.udp_queue_full += 1;
                }
            }
            Classified::Icmp {
                src,
                dst,
                class,
                message,
            } => self.ingest_icmp(packet, src, dst, class, message, wake),
            Classified::Drop(reason) => self.count_drop(reason),
        }
    }

    fn ingest_icmp(
        &mut self,
        packet: Packet,
        src: IpAddress,
        dst: IpAddress,
        class: IcmpClass,
        message: core::ops::Range<usize>,
        wake: &mut WakeBatch,
    ) {
        let kind = match class {
            IcmpClass::EchoRequest { ident, seq } => {
                self.icmp_stats.echo_requests += 1;
                match self.config.icmp_echo {
                    IcmpEchoMode::Reply => {
                        let request = &packet[message];
                        match self.send_echo_reply(dst, src, request, wake) {
                            Ok(()) => {}
                            Err(_) => self.drops.egress_full += 1,
                        }
                        return;
                    }
                    IcmpEchoMode::Deliver => IcmpKind::EchoRequest { ident, seq },
                    IcmpEchoMode::Drop => {
                        self.drops.icmp_unhandled += 1;
                        return;
                    }
                }
            }
            IcmpClass::Other { icmp_type, code } => {
                if !self.config.icmp_deliver_other {
                    self.drops.icmp_unhandled += 1;
                    return;
                }
                IcmpKind::Other { icmp_type, code }
            }
        };
        let m = IcmpMessage::new(packet, message, src, dst, kind);
        if self.icmp.push(m, wake) {
            self.icmp_stats.delivered += 1;
        } else {
            self.drops.icmp_queue_full += 1;
        }
    }

    /// Whether `count` more packets fit the egress queue (an empty queue takes anything, so a
    /// datagram with more fragments than the queue's length can still leave).
    fn egress_has_room_for(&self, count: usize) -> bool {
        self.device.egress.is_empty()
            || self.device.egress.len() + count <= self.config.egress_queue
    }

    /// Builds and queues an echo reply from `src` to `dst` for the echo request `request`.
    fn send_echo_reply(
        &mut self,
        src: IpAddress,
        dst: IpAddress,
        request: &[u8],
        wake: &mut WakeBatch,
    ) -> Result<(), Error> {
        let protocol = match src {
            IpAddress::Ipv4(_) => IpProtocol::Icmp,
            IpAddress::Ipv6(_) => IpProtocol::Icmpv6,
        };
        if !self.egress_has_room_for(self.emitter.packet_count(src, request.len())) {
            return Err(Error::QueueFull);
        }
        self.emitter.emit(
            &mut self.device.egress,
            src,
            dst,
            protocol,
            request.len(),
            |buf| fill_echo_reply(buf, request, src, dst),
        )?;
        self.icmp_stats.echo_replies += 1;
        self.egress_waiters.take_all(wake);
        Ok(())
    }

    /// Queues a UDP datagram if the egress queue has room; otherwise registers `cx` to be woken
    /// when it has.
    fn poll_send_udp(
        &mut self,
        cx: &mut Context<'_>,
        src: IpEndpoint,
        dst: IpEndpoint,
        payload: &[u8],
        wake: &mut WakeBatch,
    ) -> Poll<Result<(), Error>> {
        if src.port == 0 || dst.port == 0 || src.addr.is_unspecified() || dst.addr.is_unspecified()
        {
            return Poll::Ready(Err(Error::InvalidAddress));
        }
        let l4_len = 8 + payload.len();
        if !self.egress_has_room_for(self.emitter.packet_count(src.addr, l4_len)) {
            self.room_waiters.register(cx.waker(), wake);
            return Poll::Pending;
        }
        let r = self.emitter.emit(
            &mut self.device.egress,
            src.addr,
            dst.addr,
            IpProtocol::Udp,
            l4_len,
            |buf| fill_udp(buf, src, dst, payload),
        );
        if r.is_ok() {
            self.udp_stats.datagrams_out += 1;
            self.egress_waiters.take_all(wake);
        }
        Poll::Ready(r)
    }
}

/// Lets the sockets of `shard` transmit until they have nothing to send; `false` if the
/// egress queue filled up first.
fn egress(shard: &mut Shard, device: &mut QueueDevice, now: Instant) -> bool {
    loop {
        if device.egress_is_full() {
            return false;
        }
        match shard.iface.poll_egress(now, device, &mut shard.sockets) {
            PollResult::None => return true,
            PollResult::SocketStateChanged => {}
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
