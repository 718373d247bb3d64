//! The ingest path, top to bottom: every packet from the device is **normalised** (IP layer:
//! header checks, IPv6 extension headers, fragments), **classified** (transport header and
//! checksum), **filtered** (the configured [`IpFilter`]) and then handed to its **transport**:
//! TCP segments to the runner's queue (smoltcp and the SYN table take them from there), UDP
//! datagrams to the application's queue, ICMP messages to the echo responder or the
//! application.
//!
//! The first three steps need no stack state and run in the task that pushes the packet,
//! *outside* the stack's locks ([`Classifier::prepare`]): checksums cost no lock time, and the
//! filter's hook — application code — can call back into the stack without deadlocking. Only
//! the hand-over takes a lock: a TCP segment's runner group's, or the shared side's
//! ([`Shared::deliver`]) for the rest. Fragments are the exception: they need the reassembler,
//! so they are normalised under the shared lock, and a completed datagram comes back out to be
//! classified and filtered like any other packet.

use core::ops::Range;

use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpProtocol};

use crate::classify::{classify, Classified, IcmpClass, TcpSegment};
use crate::config::Config;
use crate::error::Error;
use crate::filter::IpFilter;
use crate::icmp::message::{fill_echo_reply, IcmpEchoMode, IcmpKind, IcmpMessage};
use crate::normalize::{normalize, Normalized};
use crate::packet::Packet;
use crate::shared::Shared;
use crate::stats::DropReason;
use crate::udp::queue::UdpDatagram;
use crate::waker::WakeBatch;

/// What the lock-free part of the path needs: fixed when the stack is built.
pub(crate) struct Classifier {
    verify_checksums: bool,
    filter: IpFilter,
}

/// A packet after the steps that need no stack state.
#[derive(Debug)]
pub(crate) enum Prepared {
    Tcp(TcpSegment),
    Udp(UdpDatagram),
    Icmp {
        packet: Packet,
        src: IpAddress,
        dst: IpAddress,
        class: IcmpClass,
        message: Range<usize>,
    },
    /// A fragment: it needs the reassembler, under the lock.
    Fragment(Packet),
    /// Refused by the filter.
    Filtered,
    Drop(DropReason),
}

/// What the hand-over did with a prepared packet.
#[derive(Debug)]
pub(crate) enum Delivered {
    /// Taken (queued, answered, or dropped and counted).
    Done,
    /// A fragment completed its datagram: prepare the whole datagram and deliver it.
    Reassembled(Packet),
}

impl Classifier {
    pub(crate) fn new(config: &Config) -> Self {
        Classifier {
            verify_checksums: config.verify_checksums,
            filter: config.filter.clone(),
        }
    }

    /// Normalises, classifies and filters `packet`, outside the lock.
    pub(crate) fn prepare(&self, packet: Packet, now: Instant) -> Prepared {
        let packet = match normalize(packet, None, now) {
            Normalized::Plain(p) | Normalized::Reassembled(p) => p,
            Normalized::Fragment(p) => return Prepared::Fragment(p),
            Normalized::Drop(reason) => return Prepared::Drop(reason),
            // Only a reassembler holds fragments; none was given.
            Normalized::Held => return Prepared::Drop(DropReason::Reassembly),
        };
        let class = classify(&packet, self.verify_checksums);
        if !self.filter.is_open() {
            if let Some(flow) = class.flow() {
                if !self.filter.allows(&flow) {
                    return Prepared::Filtered;
                }
            }
        }
        match class {
            Classified::Tcp { tuple, header } => Prepared::Tcp(TcpSegment {
                packet,
                tuple,
                header,
            }),
            Classified::Udp { src, dst, payload } => {
                Prepared::Udp(UdpDatagram::new(packet, payload, src, dst))
            }
            Classified::Icmp {
                src,
                dst,
                class,
                message,
            } => Prepared::Icmp {
                packet,
                src,
                dst,
                class,
                message,
            },
            Classified::Drop(reason) => Prepared::Drop(reason),
        }
    }
}

impl Shared {
    /// Hands a prepared packet that is not a TCP segment to its transport, under the shared
    /// lock. `device_len` is the size of the packet as the device delivered it, counted in
    /// `packets_in`/`bytes_in` unless it is `None` (a reassembled datagram, whose fragments
    /// were counted).
    pub(crate) fn deliver(
        &mut self,
        prepared: Prepared,
        device_len: Option<usize>,
        config: &Config,
        now: Instant,
        wake: &mut WakeBatch,
    ) -> Delivered {
        if let Some(len) = device_len {
            self.count_in(len);
        }
        match prepared {
            // Delivered to its group by the caller.
            Prepared::Tcp(_) => {}
            Prepared::Udp(datagram) => {
                if self.udp.push(datagram, wake) {
                    self.counters.udp.datagrams_in += 1;
                } else {
                    self.counters.drops.udp_queue_full += 1;
                }
            }
            Prepared::Icmp {
                packet,
                src,
                dst,
                class,
                message,
            } => self.deliver_icmp(packet, src, dst, class, message, config, wake),
            Prepared::Fragment(packet) => {
                self.counters.ip.fragments_in += 1;
                self.expire(now);
                match normalize(packet, Some(&mut self.reassembler), now) {
                    Normalized::Reassembled(p) | Normalized::Plain(p) => {
                        self.counters.ip.reassembled += 1;
                        return Delivered::Reassembled(p);
                    }
                    Normalized::Held | Normalized::Fragment(_) => {}
                    Normalized::Drop(reason) => self.count_drop(reason),
                }
            }
            Prepared::Filtered => self.counters.drops.filtered += 1,
            Prepared::Drop(reason) => self.count_drop(reason),
        }
        Delivered::Done
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_icmp(
        &mut self,
        packet: Packet,
        src: IpAddress,
        dst: IpAddress,
        class: IcmpClass,
        message: Range<usize>,
        config: &Config,
        wake: &mut WakeBatch,
    ) {
        let kind = match class {
            IcmpClass::EchoRequest { ident, seq } => {
                self.counters.icmp.echo_requests += 1;
                match config.icmp_echo {
                    IcmpEchoMode::Reply => {
                        // A full outbox drops the reply (counted there).
                        let _ = self.send_echo_reply(dst, src, &packet[message], wake);
                        return;
                    }
                    IcmpEchoMode::Deliver => IcmpKind::EchoRequest { ident, seq },
                    IcmpEchoMode::Drop => {
                        self.counters.drops.icmp_unhandled += 1;
                        return;
                    }
                }
            }
            IcmpClass::Other { icmp_type, code } => {
                if !config.icmp_deliver_other {
                    self.counters.drops.icmp_unhandled += 1;
                    return;
                }
                IcmpKind::Other { icmp_type, code }
            }
        };
        let m = IcmpMessage::new(packet, message, src, dst, kind);
        if self.icmp.push(m, wake) {
            self.counters.icmp.delivered += 1;
        } else {
            self.counters.drops.icmp_queue_full += 1;
        }
    }

    /// Builds and queues an echo reply from `src` to `dst` for the echo request `request`.
    pub(crate) fn send_echo_reply(
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
        self.out.emit(
            src,
            dst,
            protocol,
            request.len(),
            |buf| fill_echo_reply(buf, request, src, dst),
            wake,
        )?;
        self.counters.icmp.echo_replies += 1;
        Ok(())
    }
}
