//! ICMP and ICMPv6 messages: what the stack does with echo requests, and the messages it
//! delivers to the application.
//!
//! With [`IcmpEchoMode::Reply`] (the default) the stack answers every echo request itself, for
//! any destination, with the same identifier, sequence number and data. With
//! [`IcmpEchoMode::Deliver`] requests are queued for the application (bounded), which can
//! forward the ping for real and answer with [`Stack::send_icmp_echo_reply`](crate::Stack::send_icmp_echo_reply)
//! only if the real destination answered. Other ICMP messages are counted and dropped, or
//! delivered too if [`Config::icmp_deliver_other`](crate::Config::icmp_deliver_other) is set.

use core::fmt;
use core::ops::Range;

use smoltcp::wire::{Icmpv4Packet, Icmpv6Packet, IpAddress};

use crate::packet::Packet;

/// What the stack does with ICMP echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcmpEchoMode {
    /// Answer every echo request locally (default).
    #[default]
    Reply,
    /// Queue echo requests for the application (see [`Stack::poll_icmp_recv`](crate::Stack::poll_icmp_recv)).
    Deliver,
    /// Drop echo requests (counted as `drops.icmp_unhandled`).
    Drop,
}

/// The kind of an ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// An echo request (ping).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
    /// Any other message.
    Other {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
}

/// An ICMP or ICMPv6 message received by the stack.
pub struct IcmpMessage {
    packet: Packet,
    message: Range<usize>,
    src: IpAddress,
    dst: IpAddress,
    kind: IcmpKind,
}

impl fmt::Debug for IcmpMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcmpMessage")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("kind", &self.kind)
            .field("len", &self.message.len())
            .finish()
    }
}

impl IcmpMessage {
    pub(crate) fn new(
        packet: Packet,
        message: Range<usize>,
        src: IpAddress,
        dst: IpAddress,
        kind: IcmpKind,
    ) -> Self {
        IcmpMessage {
            packet,
            message,
            src,
            dst,
            kind,
        }
    }

    /// The sender.
    pub fn src(&self) -> IpAddress {
        self.src
    }

    /// The destination it was sent to.
    pub fn dst(&self) -> IpAddress {
        self.dst
    }

    /// What it is.
    pub fn kind(&self) -> IcmpKind {
        self.kind
    }

    /// The whole ICMP message, from its type byte.
    pub fn message(&self) -> &[u8] {
        &self.packet[self.message.clone()]
    }

    /// For an echo request, its data (after the 8-byte header).
    pub fn echo_data(&self) -> Option<&[u8]> {
        match self.kind {
            IcmpKind::EchoRequest { .. } => self.message().get(8..),
            IcmpKind::Other { .. } => None,
        }
    }
}

/// Turns the echo request `request` (a whole ICMP message) into its reply in `buf`, for a
/// reply sent from `src` to `dst`.
pub(crate) fn fill_echo_reply(buf: &mut [u8], request: &[u8], src: IpAddress, dst: IpAddress) {
    buf.copy_from_slice(request);
    buf[2] = 0;
    buf[3] = 0;
    match (src, dst) {
        (IpAddress::Ipv4(_), _) => {
            buf[0] = 0; // echo reply
            Icmpv4Packet::new_unchecked(buf).fill_checksum();
        }
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
            buf[0] = 129; // echo reply
            Icmpv6Packet::new_unchecked(buf).fill_checksum(&s, &d);
        }
        // The emitter refuses mixed families before calling this.
        (IpAddress::Ipv6(_), IpAddress::Ipv4(_)) => {}
    }
}
