//! UDP datagrams for any destination, queued for the application without smoltcp sockets
//! (they cannot bind every port).
//!
//! Valid datagrams (checksum verified; a zero IPv4 checksum means "none") are queued whole —
//! the packet buffer itself, no copy — for the application, which receives each with its source
//! and original destination. The queue is bounded in datagrams and bytes; when the application
//! is slow, the packet pump first waits for room for at most [`Config::udp_hold`] (so that a
//! flood the application cannot keep up with is dropped by the device's queue, in the kernel,
//! instead of being read, checked and dropped here); then excess datagrams are dropped and
//! counted (`drops.udp_queue_full`), never buffered without limit.
//!
//! [`Config::udp_hold`]: crate::Config::udp_hold Replies are built with `smoltcp::wire`, with correct checksums and the
//! configured hop limit, and fragmented when they exceed the MTU.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;
use core::task::{Context, Poll};

use core::task::Waker;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::icmp::unreachable::ErrorQuote;
use crate::packet::Packet;
use crate::waker::{WakeBatch, WakerList};

/// A UDP datagram received by the stack: payload, source (the device side) and original
/// destination.
pub struct UdpDatagram {
    packet: Packet,
    payload: Range<usize>,
    src: IpEndpoint,
    dst: IpEndpoint,
}

impl fmt::Debug for UdpDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpDatagram")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("len", &self.payload.len())
            .finish()
    }
}

impl UdpDatagram {
    pub(crate) fn new(
        packet: Packet,
        payload: Range<usize>,
        src: IpEndpoint,
        dst: IpEndpoint,
    ) -> Self {
        UdpDatagram {
            packet,
            payload,
            src,
            dst,
        }
    }

    /// The sender (an application behind the device).
    pub fn src(&self) -> IpEndpoint {
        self.src
    }

    /// The original destination.
    pub fn dst(&self) -> IpEndpoint {
        self.dst
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.packet[self.payload.clone()]
    }

    /// The payload as an owned buffer (reuses the packet's allocation).
    pub fn into_payload(self) -> Vec<u8> {
        let mut p = self.packet;
        p.truncate(self.payload.end);
        p.drain(..self.payload.start);
        p
    }

    /// The start of the packet the datagram came in, to quote in an ICMP error about it
    /// later (see [`UdpSocket::send_unreachable`](crate::UdpSocket::send_unreachable)).
    pub fn quote(&self) -> ErrorQuote {
        ErrorQuote::of(&self.packet)
    }

    /// The packet the datagram came in (to hand it back to the pump while ingress waits).
    pub(crate) fn into_packet(self) -> Packet {
        self.packet
    }

    /// Bytes this datagram holds in memory.
    pub(crate) fn footprint(&self) -> usize {
        self.packet.capacity()
    }
}

/// Datagrams waiting for the application.
pub(crate) struct UdpQueue {
    queue: VecDeque<UdpDatagram>,
    bytes: usize,
    max_datagrams: usize,
    max_bytes: usize,
    readers: WakerList,
    /// How long ingress may wait for room ([`Config::udp_hold`](crate::Config::udp_hold)).
    hold_limit: Option<Duration>,
    hold: Hold,
    /// Packet pumps waiting for room.
    room: WakerList,
    /// Times ingress started waiting for the reader.
    pub(crate) holds: u64,
    /// Times the reader did not make room within the hold limit.
    pub(crate) holds_expired: u64,
}

/// Whether ingress waits for room in a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Not full, or full and never waited on yet: the next datagram without room starts a
    /// wait.
    Open,
    /// Ingress waits for the reader to drain the queue to half, until the instant given.
    Waiting(Instant),
    /// The reader did not drain the queue in time: datagrams without room are dropped until
    /// it has drained it to half.
    Dropping,
}

/// What ingress does with a datagram (see [`UdpQueue::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// There is room: deliver it.
    Room,
    /// Keep it (and every later datagram) at the pump, which is registered for room;
    /// `started` if this datagram began the wait (the hold's deadline must be armed).
    Wait { started: bool },
    /// No room and no waiting: deliver it, which drops and counts it.
    Drop,
}

impl UdpQueue {
    pub(crate) fn new(
        max_datagrams: usize,
        max_bytes: usize,
        hold_limit: Option<Duration>,
    ) -> Self {
        UdpQueue {
            queue: VecDeque::new(),
            bytes: 0,
            max_datagrams,
            max_bytes,
            readers: WakerList::default(),
            hold_limit,
            hold: Hold::Open,
            room: WakerList::default(),
            holds: 0,
            holds_expired: 0,
        }
    }

    /// Whether a datagram holding `size` bytes fits now.
    fn has_room(&self, size: usize) -> bool {
        self.queue.len() < self.max_datagrams && self.bytes + size <= self.max_bytes
    }

    /// Decides what ingress does with a datagram of `size` bytes arriving at `now`. `pump` is
    /// the waker of a pump that can wait (none for a single packet pushed without a context,
    /// or while no reader has claimed the queue): it is registered for room when the answer
    /// is [`Admit::Wait`].
    pub(crate) fn admit(&mut self, size: usize, now: Instant, pump: Option<&Waker>) -> Admit {
        if self.has_room(size) {
            return Admit::Room;
        }
        let (Some(limit), Some(pump)) = (self.hold_limit, pump) else {
            return Admit::Drop;
        };
        let started = match self.hold {
            Hold::Dropping => return Admit::Drop,
            Hold::Waiting(_) => false,
            Hold::Open => {
                self.hold = Hold::Waiting(now + limit);
                self.holds += 1;
                true
            }
        };
        self.room.register(pump);
        Admit::Wait { started }
    }

    /// Registers `pump` for room while a wait is on (for the datagrams behind a held one).
    pub(crate) fn wait_behind(&mut self, pump: &Waker) {
        self.room.register(pump);
    }

    /// After the reader took datagrams: once the queue is at most half full (in datagrams
    /// and bytes), the pumps are woken and the next full queue may be waited on again.
    pub(crate) fn made_room(&mut self, wake: &mut WakeBatch) {
        if self.hold != Hold::Open
            && self.queue.len() <= self.max_datagrams / 2
            && self.bytes <= self.max_bytes / 2
        {
            self.hold = Hold::Open;
            self.room.take_all(wake);
        }
    }

    /// Ends a wait whose deadline passed at `now` (the pumps are woken and later datagrams
    /// without room dropped); returns the deadline of a wait still on, for the runner's timer.
    pub(crate) fn expire_hold(&mut self, now: Instant, wake: &mut WakeBatch) -> Option<Instant> {
        match self.hold {
            Hold::Waiting(until) if now >= until => {
                self.hold = Hold::Dropping;
                self.holds_expired += 1;
                self.room.take_all(wake);
                None
            }
            Hold::Waiting(until) => Some(until),
            _ => None,
        }
    }

    /// The reader is gone: nobody will make room, so no pump may wait.
    pub(crate) fn reader_gone(&mut self, wake: &mut WakeBatch) {
        self.hold = Hold::Open;
        self.room.take_all(wake);
    }

    /// Queues a datagram; `false` (and the datagram dropped) if a limit would be exceeded.
    pub(crate) fn push(&mut self, d: UdpDatagram, wake: &mut WakeBatch) -> bool {
        let size = d.footprint();
        if !self.has_room(size) {
            return false;
        }
        self.bytes += size;
        self.queue.push_back(d);
        self.readers.take_all(wake);
        true
    }

    /// Takes the next datagram, or registers the waker.
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<UdpDatagram> {
        match self.queue.pop_front() {
            Some(d) => {
                self.bytes -= d.footprint();
                Poll::Ready(d)
            }
            None => {
                self.readers.register(cx.waker());
                Poll::Pending
            }
        }
    }

    /// Datagrams queued now.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Bytes queued now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Writes a UDP header and payload into `buf` (exactly `8 + payload.len()` bytes) with the
/// checksum for `src` → `dst`.
pub(crate) fn fill_udp(buf: &mut [u8], src: IpEndpoint, dst: IpEndpoint, payload: &[u8]) {
    let mut udp = smoltcp::wire::UdpPacket::new_unchecked(buf);
    udp.set_src_port(src.port);
    udp.set_dst_port(dst.port);
    udp.set_len((8 + payload.len()) as u16);
    udp.payload_mut()[..payload.len()].copy_from_slice(payload);
    udp.fill_checksum(&src.addr, &dst.addr);
    // A computed checksum of 0 is sent as 0xffff (RFC 768): 0 would mean "no checksum".
    if udp.checksum() == 0 {
        udp.set_checksum(0xffff);
    }
}
