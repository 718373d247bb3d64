//! Destination unreachable: its kinds, and the quote of the packet an error is about.

use alloc::vec::Vec;

/// Why a destination is unreachable: what a client's socket then reports.
///
/// | kind | ICMPv4 (type 3) | ICMPv6 (type 1) | Linux client, TCP `connect()` |
/// |---|---|---|---|
/// | `Network` | code 0 | code 0, no route | `ENETUNREACH` |
/// | `Host` | code 1 | code 3, address unreachable | `EHOSTUNREACH` |
/// | `Port` | code 3 | code 4, port unreachable | `ECONNREFUSED` |
/// | `AdminProhibited` | code 13 | code 1 | `EHOSTUNREACH` (v4), `EACCES` (v6) |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// No route to the destination network.
    Network,
    /// The destination host does not answer.
    Host,
    /// Nothing listens on the destination port.
    Port,
    /// A filter refuses the traffic.
    AdminProhibited,
}

impl Unreachable {
    pub(crate) fn icmpv4_code(self) -> u8 {
        match self {
            Unreachable::Network => 0,
            Unreachable::Host => 1,
            Unreachable::Port => 3,
            Unreachable::AdminProhibited => 13,
        }
    }

    pub(crate) fn icmpv6_code(self) -> u8 {
        match self {
            Unreachable::Network => 0,
            Unreachable::AdminProhibited => 1,
            Unreachable::Host => 3,
            Unreachable::Port => 4,
        }
    }
}

/// The start of a received packet, kept to quote in an ICMP error about it later (for
/// example by a relay that learns only afterwards that the packet's destination refused it).
/// Holds at most the bytes an error may quote (548 for IPv4, 1232 for IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorQuote {
    bytes: Vec<u8>,
}

/// Bytes of the offending packet an ICMPv4 error carries: 576 minus its IP and ICMP headers.
pub(crate) const QUOTE_V4: usize = 576 - 20 - 8;
/// The same for ICMPv6: the IPv6 minimum MTU minus its headers.
pub(crate) const QUOTE_V6: usize = 1280 - 40 - 8;

impl ErrorQuote {
    /// The quote of `packet` (a whole IP packet as the stack received it).
    pub(crate) fn of(packet: &[u8]) -> Self {
        let max = match packet.first().map(|b| b >> 4) {
            Some(6) => QUOTE_V6,
            _ => QUOTE_V4,
        };
        ErrorQuote {
            bytes: packet[..packet.len().min(max)].to_vec(),
        }
    }

    /// The quoted bytes, from the IP header on.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_keeps_at_most_what_an_error_carries() {
        let mut v4 = alloc::vec![0x45u8; 2000];
        assert_eq!(ErrorQuote::of(&v4).as_bytes().len(), QUOTE_V4);
        v4.truncate(100);
        assert_eq!(ErrorQuote::of(&v4).as_bytes().len(), 100);
        let v6 = alloc::vec![0x60u8; 2000];
        assert_eq!(ErrorQuote::of(&v6).as_bytes().len(), QUOTE_V6);
    }
}
