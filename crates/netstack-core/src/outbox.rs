//! An [`Outbox`]: one bounded queue of packets for the device, and what builds the packets the
//! stack sends itself (UDP datagrams, ICMP replies and errors, resets, SYN cookies).
//!
//! Each runner group has one (smoltcp's segments and the TCP path's own packets), and the
//! datagram side has one; the packet stream drains them all. A full queue pushes back: smoltcp
//! keeps its segments in the socket buffers, datagram senders wait for room, and the packets
//! the stack answers with by itself are dropped and counted.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::wire::{IpAddress, IpProtocol};

use crate::error::Error;
use crate::icmp::limit::ErrorLimit;
use crate::ip_builder::IpBuilder;
use crate::packet::Packet;
use crate::waker::{WakeBatch, WakerList};

/// Counters of an outbox.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OutboxCounters {
    pub(crate) packets_out: u64,
    pub(crate) bytes_out: u64,
    /// Packets the stack built itself and dropped because the queue was full.
    pub(crate) egress_full: u64,
    pub(crate) icmp_rate_limited: u64,
    pub(crate) icmp_errors_sent: u64,
    pub(crate) icmp_errors_not_allowed: u64,
}

/// Packet buffers up to this size are pooled apart from larger ones (TCP super-segments).
const SMALL_BUFFER: usize = 2048;
/// Spare buffers kept per size class: small ones (acknowledgements, MTU-sized segments), large
/// ones (up to 64 KiB each, with segmentation offload). At most 64 × 2 KiB + 16 × 64 KiB.
const SPARE_SMALL: usize = 64;
const SPARE_LARGE: usize = 16;

/// A bounded queue of packets for the device, with the builder of the stack's own packets.
pub(crate) struct Outbox {
    packets: VecDeque<Packet>,
    capacity: usize,
    /// Builds (and fragments) the packets the stack makes itself.
    pub(crate) ip: IpBuilder,
    /// The rate limit of the ICMP errors sent through this outbox.
    pub(crate) icmp_errors: ErrorLimit,
    /// Packet consumers waiting for packets.
    consumers: WakerList,
    /// Datagram senders waiting for room.
    room: WakerList,
    pub(crate) counters: OutboxCounters,
    /// Buffers of packets the device has written, returned by the application for reuse.
    spare_small: Vec<Packet>,
    spare_large: Vec<Packet>,
}

impl Outbox {
    pub(crate) fn new(capacity: usize, ip: IpBuilder, icmp_errors: ErrorLimit) -> Self {
        Outbox {
            packets: VecDeque::with_capacity(capacity),
            capacity,
            ip,
            icmp_errors,
            consumers: WakerList::default(),
            room: WakerList::default(),
            counters: OutboxCounters::default(),
            spare_small: Vec::new(),
            spare_large: Vec::new(),
        }
    }

    /// A buffer of `len` bytes for a packet smoltcp is about to write: a recycled one where
    /// there is one (only bytes beyond its old length are zeroed: smoltcp overwrites the
    /// whole packet), a new zeroed one otherwise.
    pub(crate) fn buffer(&mut self, len: usize) -> Packet {
        let pool = if len <= SMALL_BUFFER {
            &mut self.spare_small
        } else {
            &mut self.spare_large
        };
        match pool.pop() {
            Some(mut p) => {
                if p.len() >= len {
                    p.truncate(len);
                } else {
                    p.resize(len, 0);
                }
                p
            }
            None => vec![0u8; len],
        }
    }

    /// Keeps `packet`'s buffer for reuse, if its size class has room.
    pub(crate) fn recycle(&mut self, packet: Packet) {
        let (pool, max) = if packet.capacity() <= SMALL_BUFFER {
            (&mut self.spare_small, SPARE_SMALL)
        } else {
            (&mut self.spare_large, SPARE_LARGE)
        };
        if pool.len() < max {
            pool.push(packet);
        }
    }

    /// Packets queued now.
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether another packet would not fit.
    pub(crate) fn is_full(&self) -> bool {
        self.packets.len() >= self.capacity
    }

    /// Whether `count` more packets fit (an empty queue takes anything, so a datagram with more
    /// fragments than the queue's length can still leave).
    pub(crate) fn has_room_for(&self, count: usize) -> bool {
        self.packets.is_empty() || self.packets.len() + count <= self.capacity
    }

    /// Appends a packet smoltcp built (through the device; the pass wakes consumers after).
    pub(crate) fn push(&mut self, packet: Packet) {
        self.packets.push_back(packet);
    }

    /// Wakes the consumers if there is something to take.
    pub(crate) fn wake_consumers(&mut self, wake: &mut WakeBatch) {
        if !self.packets.is_empty() {
            self.consumers.take_all(wake);
        }
    }

    /// Takes the next packet for the device, counting it; room it frees wakes one waiting
    /// sender (every one when the queue becomes empty).
    pub(crate) fn pop(&mut self, wake: &mut WakeBatch) -> Option<Packet> {
        let p = self.packets.pop_front()?;
        self.counters.packets_out += 1;
        self.counters.bytes_out += p.len() as u64;
        if self.packets.is_empty() {
            // Room for anything: every waiter, also those woken earlier that then gave up.
            self.room.take_all(wake);
        } else {
            // One slot freed: one waiter (it wakes the next if room remains).
            self.room.take_first(1, wake);
        }
        Some(p)
    }

    /// Registers a consumer to be woken when a packet is queued.
    pub(crate) fn register_consumer(&mut self, waker: &core::task::Waker) {
        self.consumers.register(waker);
    }

    /// Registers a sender to be woken when room frees up.
    pub(crate) fn register_for_room(&mut self, waker: &core::task::Waker) {
        self.room.register(waker);
    }

    /// After a send that may have left room: pass it on to the next waiting sender.
    pub(crate) fn pass_room_on(&mut self, wake: &mut WakeBatch) {
        if !self.room.is_empty() && self.has_room_for(1) {
            self.room.take_first(1, wake);
        }
    }

    /// Builds a packet from `src` to `dst` carrying `l4_len` bytes of `protocol` that `fill`
    /// writes (with its checksum), fragmented beyond the MTU, and queues it for the device if
    /// it fits; otherwise drops it and counts `egress_full`.
    ///
    /// # Errors
    /// [`Error::QueueFull`], or the builder's ([`Error::TooLarge`], [`Error::AddressFamily`]).
    pub(crate) fn emit(
        &mut self,
        src: IpAddress,
        dst: IpAddress,
        protocol: IpProtocol,
        l4_len: usize,
        fill: impl FnOnce(&mut [u8]),
        wake: &mut WakeBatch,
    ) -> Result<(), Error> {
        if !self.has_room_for(self.ip.packet_count(src, l4_len)) {
            self.counters.egress_full += 1;
            return Err(Error::QueueFull);
        }
        self.ip
            .emit(&mut self.packets, src, dst, protocol, l4_len, fill)?;
        self.consumers.take_all(wake);
        Ok(())
    }
}
