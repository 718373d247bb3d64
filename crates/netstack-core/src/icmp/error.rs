//! ICMP and ICMPv6 errors the stack sends about packets it received: destination unreachable
//! (network, host, port, administratively prohibited), so that a refused connection or a
//! datagram to a closed port fails on the client as it would against a real host.
//!
//! Following RFC 1812 4.3.2.7 and RFC 4443 2.4, no error is sent about an ICMP error, a
//! packet to a multicast or broadcast address, a packet from an address that does not name a
//! single host, or a fragment other than the first; errors are rate-limited (a token bucket,
//! [`Config::icmp_errors_per_second`](crate::Config::icmp_errors_per_second)); and the error
//! quotes as much of the offending packet as fits in 576 bytes (IPv4) or 1280 bytes (IPv6).

use smoltcp::time::Instant;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv6Packet, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address,
    Ipv6Packet,
};

use crate::error::Error;
use crate::icmp::unreachable::{Unreachable, QUOTE_V4, QUOTE_V6};
use crate::outbox::Outbox;
use crate::waker::WakeBatch;

/// The addresses of `packet` if an error may be sent about it (RFC 1812 4.3.2.7, RFC 4443
/// 2.4(e)); `None` otherwise.
fn may_answer(packet: &[u8]) -> Option<(IpAddress, IpAddress)> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let single_host =
                |a: Ipv4Address| !(a.is_unspecified() || a.is_broadcast() || a.is_multicast());
            if !single_host(src) || !single_host(dst) || ip.frag_offset() != 0 {
                return None;
            }
            if ip.next_header() == IpProtocol::Icmp {
                let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
                // Only echo requests and replies are not errors among what a peer sends.
                if !matches!(u8::from(icmp.msg_type()), 0 | 8) {
                    return None;
                }
            }
            Some((src.into(), dst.into()))
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let single_host = |a: Ipv6Address| !(a.is_unspecified() || a.is_multicast());
            if !single_host(src) || !single_host(dst) {
                return None;
            }
            if ip.next_header() == IpProtocol::Icmpv6 {
                let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
                // Types below 128 are errors.
                if u8::from(icmp.msg_type()) < 128 {
                    return None;
                }
            }
            Some((src.into(), dst.into()))
        }
        _ => None,
    }
}

impl Outbox {
    /// Sends a destination-unreachable error of `kind` about `offending` (a packet the stack
    /// received, from its IP header on), from the packet's destination to its source.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] if no error may be sent about that packet (RFC 1812 / 4443),
    /// [`Error::RateLimited`] beyond `icmp_errors_per_second`, [`Error::QueueFull`] if the
    /// egress queue is full; each is counted.
    pub(crate) fn send_unreachable(
        &mut self,
        offending: &[u8],
        kind: Unreachable,
        now: Instant,
        wake: &mut WakeBatch,
    ) -> Result<(), Error> {
        let Some((src, dst)) = may_answer(offending) else {
            self.counters.icmp_errors_not_allowed += 1;
            return Err(Error::NotAllowed);
        };
        if !self.icmp_errors.take(now) {
            self.counters.icmp_rate_limited += 1;
            return Err(Error::RateLimited);
        }
        let mtu = self.ip.mtu();
        let (protocol, max_quote) = match dst {
            IpAddress::Ipv4(_) => (IpProtocol::Icmp, QUOTE_V4.min(mtu - 28)),
            IpAddress::Ipv6(_) => (IpProtocol::Icmpv6, QUOTE_V6.min(mtu - 48)),
        };
        let quote = &offending[..offending.len().min(max_quote)];
        // From the unreachable destination back to the sender.
        let (from, to) = (dst, src);
        self.emit(
            from,
            to,
            protocol,
            8 + quote.len(),
            |buf| {
                buf[..4].fill(0);
                buf[4..8].fill(0); // unused
                buf[8..].copy_from_slice(quote);
                match (from, to) {
                    (IpAddress::Ipv4(_), _) => {
                        buf[0] = 3;
                        buf[1] = kind.icmpv4_code();
                        Icmpv4Packet::new_unchecked(buf).fill_checksum();
                    }
                    (IpAddress::Ipv6(f), IpAddress::Ipv6(t)) => {
                        buf[0] = 1;
                        buf[1] = kind.icmpv6_code();
                        Icmpv6Packet::new_unchecked(buf).fill_checksum(&f, &t);
                    }
                    // `may_answer` took both addresses from one IPv6 header.
                    (IpAddress::Ipv6(_), IpAddress::Ipv4(_)) => {}
                }
            },
            wake,
        )?;
        self.counters.icmp_errors_sent += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_error_about_errors_multicast_or_later_fragments() {
        // IPv4 UDP from 198.18.0.1 to 198.19.0.10.
        let mut udp = [0u8; 28];
        let mut ip = Ipv4Packet::new_unchecked(&mut udp[..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(28);
        ip.set_next_header(IpProtocol::Udp);
        ip.set_src_addr(Ipv4Address::new(198, 18, 0, 1));
        ip.set_dst_addr(Ipv4Address::new(198, 19, 0, 10));
        ip.set_hop_limit(64);
        ip.fill_checksum();
        assert!(may_answer(&udp).is_some());
        let mut multicast = udp;
        Ipv4Packet::new_unchecked(&mut multicast[..]).set_dst_addr(Ipv4Address::new(224, 0, 0, 9));
        assert!(may_answer(&multicast).is_none());
        let mut broadcast = udp;
        Ipv4Packet::new_unchecked(&mut broadcast[..]).set_dst_addr(Ipv4Address::BROADCAST);
        assert!(may_answer(&broadcast).is_none());
        let mut later = udp;
        Ipv4Packet::new_unchecked(&mut later[..]).set_frag_offset(1480);
        assert!(may_answer(&later).is_none());
        let mut icmp_error = udp;
        let mut p = Ipv4Packet::new_unchecked(&mut icmp_error[..]);
        p.set_next_header(IpProtocol::Icmp);
        p.payload_mut()[0] = 3; // destination unreachable
        assert!(may_answer(&icmp_error).is_none());
        let mut echo = udp;
        let mut p = Ipv4Packet::new_unchecked(&mut echo[..]);
        p.set_next_header(IpProtocol::Icmp);
        p.payload_mut()[0] = 8; // echo request
        assert!(may_answer(&echo).is_some());
    }
}
