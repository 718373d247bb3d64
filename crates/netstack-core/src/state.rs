//! Everything behind the stack lock, and the bookkeeping every part of the stack shares:
//! queues, counters, the shards and their service list.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use smoltcp::time::Instant;

use crate::classify::TcpSegment;
use crate::config::Config;
use crate::device::QueueDevice;
use crate::icmp::limit::ErrorLimit;
use crate::icmp::queue::IcmpQueue;
use crate::ip_builder::IpBuilder;
use crate::packet::Packet;
use crate::reassembly::Reassembler;
use crate::shard::Shard;
use crate::stats::DropReason;
use crate::stats::{DropStats, IcmpStats, IpStats, Stats, TcpStats, UdpStats};
use crate::tcp::accept_queue::AcceptQueue;
use crate::tcp::cookie::CookieJar;
use crate::tcp::pending::RequestQueue;
use crate::udp::queue::UdpQueue;
use crate::waker::{WakeBatch, WakerList, WakerSlot};

/// Counters that only ever grow (the gauges are read from the queues themselves).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) packets_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) packets_out: u64,
    pub(crate) bytes_out: u64,
    pub(crate) drops: DropStats,
    pub(crate) udp: UdpStats,
    pub(crate) icmp: IcmpStats,
    pub(crate) ip: IpStats,
}

/// Everything behind the stack lock.
pub(crate) struct Inner {
    pub(crate) config: Config,
    /// The TCP socket tables; a connection lives in the one its 4-tuple hashes to.
    pub(crate) shards: Vec<Shard>,
    /// Shards with work for the next runner pass (each at most once: see `Shard::dirty`).
    pub(crate) dirty: Vec<usize>,
    pub(crate) accept: AcceptQueue,
    /// Connection requests waiting to be handed to the application.
    pub(crate) requests: RequestQueue,
    /// The ICMP error rate limit.
    pub(crate) icmp_errors: ErrorLimit,
    /// SYN cookie keys and use.
    pub(crate) cookies: CookieJar,
    /// The smoltcp device: the egress queue, and the packet smoltcp is processing.
    pub(crate) device: QueueDevice,
    /// Classified TCP segments waiting for the runner (bounded by `ingress_queue`).
    pub(crate) tcp_ingress: VecDeque<TcpSegment>,
    /// Packet sources waiting for room in `tcp_ingress` (clones of a sink may wait at once).
    pub(crate) ingress_waiters: WakerList,
    /// Packet consumers waiting for egress packets.
    pub(crate) egress_waiters: WakerList,
    /// Tasks waiting for egress room to send a datagram.
    pub(crate) room_waiters: WakerList,
    pub(crate) runner_waker: WakerSlot,
    /// The runner stopped because the egress queue was full; popping a packet must wake it.
    pub(crate) egress_blocked: bool,
    pub(crate) udp: UdpQueue,
    pub(crate) icmp: IcmpQueue,
    pub(crate) reassembler: Reassembler,
    pub(crate) ip_out: IpBuilder,
    /// Whether an application handle receives UDP / ICMP (one receiver each).
    pub(crate) udp_claimed: bool,
    pub(crate) icmp_claimed: bool,
    /// Application handles alive (ports, listeners, sockets, streams); the runner finishes at 0.
    pub(crate) handles: usize,
    pub(crate) counters: Counters,
}

impl Inner {
    /// The state of a new stack: `config` must be sanitized.
    pub(crate) fn new(config: Config, now: Instant) -> Self {
        let mut device = QueueDevice::new(config.tcp_mtu(), config.egress_queue);
        let shards = (0..config.tcp_shards)
            .map(|i| Shard::new(i as u32, &config, &mut device, now))
            .collect();
        Inner {
            shards,
            dirty: Vec::new(),
            accept: AcceptQueue::new(config.accept_queue),
            requests: RequestQueue::default(),
            icmp_errors: ErrorLimit::new(config.icmp_errors_per_second),
            cookies: CookieJar::new(config.seed()),
            device,
            tcp_ingress: VecDeque::with_capacity(config.ingress_queue),
            ingress_waiters: WakerList::default(),
            egress_waiters: WakerList::default(),
            room_waiters: WakerList::default(),
            runner_waker: WakerSlot::default(),
            egress_blocked: false,
            udp: UdpQueue::new(config.udp_queue, config.udp_queue_bytes),
            icmp: IcmpQueue::new(config.icmp_queue),
            reassembler: Reassembler::new(
                config.reassembly_max_datagrams,
                config.reassembly_max_bytes,
                config.reassembly_timeout,
            ),
            ip_out: IpBuilder::new(config.mtu, config.hop_limit, config.seed()),
            udp_claimed: false,
            icmp_claimed: false,
            handles: 0,
            counters: Counters::default(),
            config,
        }
    }

    /// A snapshot of every counter and gauge.
    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            packets_in: c.packets_in,
            bytes_in: c.bytes_in,
            packets_out: c.packets_out,
            bytes_out: c.bytes_out,
            ingress_queued: self.tcp_ingress.len() as u64,
            egress_queued: self.device.egress.len() as u64,
            egress_blocked: self.egress_blocked,
            drops: DropStats {
                reassembly: c.drops.reassembly + self.reassembler.expired,
                ..c.drops
            },
            tcp: self
                .shards
                .iter()
                .fold(TcpStats::default(), |mut sum, shard| {
                    sum.add(&shard.tcp.snapshot());
                    sum
                }),
            udp: UdpStats {
                queued: self.udp.len() as u64,
                queued_bytes: self.udp.bytes() as u64,
                ..c.udp
            },
            icmp: c.icmp,
            ip: IpStats {
                fragments_out: self.ip_out.fragments_out,
                ..c.ip
            },
        }
    }

    /// Counts a packet that entered the stack.
    pub(crate) fn count_in(&mut self, len: usize) {
        self.counters.packets_in += 1;
        self.counters.bytes_in += len as u64;
    }

    /// Counts a dropped packet under its reason.
    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        let d = &mut self.counters.drops;
        match reason {
            DropReason::Malformed => d.malformed += 1,
            DropReason::BadChecksum => d.bad_checksum += 1,
            DropReason::UnknownProtocol => d.unknown_protocol += 1,
            DropReason::Reassembly => d.reassembly += 1,
        }
    }

    /// Takes the next packet for the device.
    pub(crate) fn pop_egress(&mut self, wake: &mut WakeBatch) -> Option<Packet> {
        let p = self.device.egress.pop_front()?;
        self.counters.packets_out += 1;
        self.counters.bytes_out += p.len() as u64;
        if self.egress_blocked {
            self.egress_blocked = false;
            wake.take_from(&mut self.runner_waker);
        }
        if self.device.egress.is_empty() {
            // Room for anything: every waiter, also those woken earlier that then gave up.
            self.room_waiters.take_all(wake);
        } else {
            // One slot freed: one waiter (it wakes the next if room remains).
            self.room_waiters.take_first(1, wake);
        }
        Some(p)
    }

    /// Whether `count` more packets fit the egress queue (an empty queue takes anything, so a
    /// datagram with more fragments than the queue's length can still leave).
    pub(crate) fn egress_has_room_for(&self, count: usize) -> bool {
        self.device.egress.is_empty()
            || self.device.egress.len() + count <= self.config.egress_queue
    }

    /// Puts shard `i` on the list for the next runner pass.
    pub(crate) fn mark_dirty(&mut self, i: usize) {
        let shard = &mut self.shards[i];
        if !shard.dirty {
            shard.dirty = true;
            self.dirty.push(i);
        }
    }

    /// Something changed shard `i` outside the runner: service it on the next runner pass.
    pub(crate) fn schedule(&mut self, i: usize, wake: &mut WakeBatch) {
        self.mark_dirty(i);
        wake.take_from(&mut self.runner_waker);
    }

    /// One application handle fewer; the last one wakes the runner so that it can finish.
    pub(crate) fn detach_handle(&mut self, wake: &mut WakeBatch) {
        self.handles = self.handles.saturating_sub(1);
        if self.handles == 0 {
            wake.take_from(&mut self.runner_waker);
        }
    }
}
