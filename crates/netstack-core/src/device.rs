//! The smoltcp [`Device`](phy::Device) between a runner group's outbox and its interfaces.
//!
//! Ingress: the runner places one packet at a time in the group's `rx` slot and calls smoltcp's
//! `poll_ingress_single`, so every packet passes the SYN table and the counters before smoltcp
//! sees it. Egress: smoltcp's transmit tokens append to the group's bounded [`Outbox`]; when it
//! is full the device reports no capacity and smoltcp keeps segments in the socket buffers, so
//! nothing is dropped and nothing grows.

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::outbox::Outbox;
use crate::packet::Packet;

/// A device over one group's packet slot and outbox, made for one call into smoltcp.
pub(crate) struct LinkDevice<'a> {
    /// The packet being processed now (taken by smoltcp through an `RxToken`).
    pub(crate) rx: &'a mut Option<Packet>,
    pub(crate) out: &'a mut Outbox,
    pub(crate) mtu: usize,
    /// Whether smoltcp computes TCP checksums (not when the device completes them:
    /// [`Config::tcp_checksum_offload`](crate::Config::tcp_checksum_offload)).
    pub(crate) tcp_checksum: bool,
}

impl phy::Device for LinkDevice<'_> {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        // A packet is only processed if its reply (if any) can be queued.
        if self.out.is_full() {
            return None;
        }
        let packet = self.rx.take()?;
        Some((RxToken(packet), TxToken { out: self.out }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if self.out.is_full() {
            return None;
        }
        Some(TxToken { out: self.out })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // The front end (`ingest`) already verified the IPv4 header and TCP checksums of every
        // packet it hands over; verifying again would read each payload twice. A device that
        // completes TCP checksums itself gets them zero: computing one would be another pass
        // over every byte sent.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = if self.tcp_checksum {
            Checksum::Tx
        } else {
            Checksum::None
        };
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

/// A slot in the outbox.
pub(crate) struct TxToken<'a> {
    out: &'a mut Outbox,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // The packet is handed to the application by value; its buffer comes back through
        // `PacketStream::recycle` (or is a new one).
        let mut packet = self.out.buffer(len);
        let r = f(&mut packet);
        self.out.push(packet);
        r
    }
}
