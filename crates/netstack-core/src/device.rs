//! The smoltcp [`Device`] between the stack's packet queues and its interface.
//!
//! Ingress: the runner places one packet at a time in [`QueueDevice::rx`] and calls smoltcp's
//! `poll_ingress_single`, so every packet is classified by the front end (SYN table, counters)
//! before smoltcp sees it. Egress: smoltcp's transmit tokens append to the bounded egress queue;
//! when it is full the device reports no capacity and smoltcp keeps segments in the socket
//! buffers, so nothing is dropped and nothing grows.

use alloc::collections::VecDeque;
use alloc::vec;
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::packet::Packet;

/// Device over the stack's queues.
pub(crate) struct QueueDevice {
    /// The packet being processed now (taken by smoltcp through an `RxToken`).
    pub(crate) rx: Option<Packet>,
    /// Packets waiting to be written to the link.
    pub(crate) egress: VecDeque<Packet>,
    egress_capacity: usize,
    mtu: usize,
}

impl QueueDevice {
    pub(crate) fn new(mtu: usize, egress_capacity: usize) -> Self {
        QueueDevice {
            rx: None,
            egress: VecDeque::with_capacity(egress_capacity),
            egress_capacity,
            mtu,
        }
    }

    /// Whether the egress queue has room for another packet.
    pub(crate) fn egress_has_room(&self) -> bool {
        self.egress.len() < self.egress_capacity
    }

    /// Whether the egress queue is full.
    pub(crate) fn egress_is_full(&self) -> bool {
        !self.egress_has_room()
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        // A packet is only processed if its reply (if any) can be queued.
        if !self.egress_has_room() {
            return None;
        }
        let packet = self.rx.take()?;
        Some((
            RxToken(packet),
            TxToken {
                queue: &mut self.egress,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if !self.egress_has_room() {
            return None;
        }
        Some(TxToken {
            queue: &mut self.egress,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // The front end (`ingress`) already verified the IPv4 header and TCP checksums of every
        // packet it hands over; verifying again would read each payload twice.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

/// A received packet handed to smoltcp.
pub(crate) struct RxToken(Packet);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// A slot in the egress queue.
pub(crate) struct TxToken<'a> {
    queue: &'a mut VecDeque<Packet>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // One allocation per outgoing packet: the packet is handed to the caller by value.
        let mut packet = vec![0u8; len];
        let r = f(&mut packet);
        self.queue.push_back(packet);
        r
    }
}
