//! UDP datagrams for any destination, queued for the application without smoltcp sockets
//! (they cannot bind every port).
//!
//! Valid datagrams (checksum verified; a zero IPv4 checksum means "none") are queued whole —
//! the packet buffer itself, no copy — for the application, which receives each with its source
//! and original destination. The queue is bounded in datagrams and bytes; when the application
//! is slow, excess datagrams are dropped and counted (`drops.udp_queue_full`), never buffered
//! without limit. Replies are built with `smoltcp::wire`, with correct checksums and the
//! configured hop limit, and fragmented when they exceed the MTU.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;
use core::task::{Context, Poll};

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

    /// Bytes this datagram holds in memory.
    fn footprint(&self) -> usize {
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
}

impl UdpQueue {
    pub(crate) fn new(max_datagrams: usize, max_bytes: usize) -> Self {
        UdpQueue {
            queue: VecDeque::new(),
            bytes: 0,
            max_datagrams,
            max_bytes,
            readers: WakerList::default(),
        }
    }

    /// Queues a datagram; `false` (and the datagram dropped) if a limit would be exceeded.
    pub(crate) fn push(&mut self, d: UdpDatagram, wake: &mut WakeBatch) -> bool {
        let size = d.footprint();
        if self.queue.len() >= self.max_datagrams || self.bytes + size > self.max_bytes {
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
