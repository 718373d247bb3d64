//! Building the IP packets the stack sends itself (UDP datagrams, ICMP messages), and
//! fragmenting them when they exceed the MTU.
//!
//! TCP segments are built by smoltcp and always fit the MTU. Datagrams do not: a DNS answer
//! or an 8 KiB UDP reply must leave as IPv4 fragments (DF clear) or IPv6 fragments (fragment
//! extension header), exactly as a kernel would send them.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr};

use crate::error::Error;
use crate::packet::Packet;

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const IPV6_FRAGMENT_HEADER: usize = 8;
const FRAGMENT_NEXT_HEADER: u8 = 44;

/// Builds outgoing packets; owns the fragment identification counter.
pub(crate) struct IpBuilder {
    mtu: usize,
    hop_limit: u8,
    next_ident: u32,
    /// Fragments sent (for the counters).
    pub(crate) fragments_out: u64,
}

impl IpBuilder {
    pub(crate) fn new(mtu: usize, hop_limit: u8, seed: u64) -> Self {
        IpBuilder {
            mtu,
            hop_limit,
            next_ident: seed as u32,
            fragments_out: 0,
        }
    }

    /// The MTU packets are fragmented to.
    pub(crate) fn mtu(&self) -> usize {
        self.mtu
    }

    /// How many packets a transport message of `l4_len` bytes becomes.
    pub(crate) fn packet_count(&self, src: IpAddress, l4_len: usize) -> usize {
        match src {
            IpAddress::Ipv4(_) if IPV4_HEADER + l4_len <= self.mtu => 1,
            IpAddress::Ipv4(_) => l4_len.div_ceil(self.fragment_payload_v4()),
            IpAddress::Ipv6(_) if IPV6_HEADER + l4_len <= self.mtu => 1,
            IpAddress::Ipv6(_) => l4_len.div_ceil(self.fragment_payload_v6()),
        }
    }

    fn fragment_payload_v4(&self) -> usize {
        (self.mtu - IPV4_HEADER) / 8 * 8
    }

    fn fragment_payload_v6(&self) -> usize {
        (self.mtu - IPV6_HEADER - IPV6_FRAGMENT_HEADER) / 8 * 8
    }

    /// Builds an IP packet carrying a transport message of `l4_len` bytes that `fill` writes
    /// (it gets the message buffer and must set the transport checksum), and appends it, or its
    /// fragments, to `out`.
    ///
    /// # Errors
    /// [`Error::TooLarge`] if the message exceeds what one IP datagram can carry;
    /// [`Error::AddressFamily`] if `src` and `dst` differ in IP version.
    pub(crate) fn emit(
        &mut self,
        out: &mut VecDeque<Packet>,
        src: IpAddress,
        dst: IpAddress,
        protocol: IpProtocol,
        l4_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), Error> {
        let packet = self.build(src, dst, protocol, l4_len, fill)?;
        if packet.len() <= self.mtu {
            out.push_back(packet);
        } else if matches!(src, IpAddress::Ipv4(_)) {
            self.fragment_v4(out, &packet);
        } else {
            self.fragment_v6(out, &packet);
        }
        Ok(())
    }

    /// Builds one whole IP packet (never fragmented) carrying a transport message of
    /// `l4_len` bytes that `fill` writes.
    ///
    /// # Errors
    /// As [`Self::emit`].
    pub(crate) fn build(
        &self,
        src: IpAddress,
        dst: IpAddress,
        protocol: IpProtocol,
        l4_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Packet, Error> {
        match (src, dst) {
            (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) => {
                if IPV4_HEADER + l4_len > 65535 {
                    return Err(Error::TooLarge);
                }
                let repr = Ipv4Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: protocol,
                    payload_len: l4_len,
                    hop_limit: self.hop_limit,
                };
                let mut packet = vec![0u8; IPV4_HEADER + l4_len];
                let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
                repr.emit(&mut ip, &ChecksumCapabilities::default());
                fill(ip.payload_mut());
                Ok(packet)
            }
            (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
                if l4_len > 65535 {
                    return Err(Error::TooLarge);
                }
                let repr = Ipv6Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: protocol,
                    payload_len: l4_len,
                    hop_limit: self.hop_limit,
                };
                let mut packet = vec![0u8; IPV6_HEADER + l4_len];
                let mut ip = Ipv6Packet::new_unchecked(&mut packet[..]);
                repr.emit(&mut ip);
                fill(ip.payload_mut());
                Ok(packet)
            }
            _ => Err(Error::AddressFamily),
        }
    }

    fn ident(&mut self) -> u32 {
        self.next_ident = self.next_ident.wrapping_add(1);
        self.next_ident
    }

    fn fragment_v4(&mut self, out: &mut VecDeque<Packet>, whole: &[u8]) {
        let ident = self.ident() as u16;
        let payload = &whole[IPV4_HEADER..];
        let step = self.fragment_payload_v4();
        for (i, chunk) in payload.chunks(step).enumerate() {
            let offset = i * step;
            let mut frag = Vec::with_capacity(IPV4_HEADER + chunk.len());
            frag.extend_from_slice(&whole[..IPV4_HEADER]);
            frag.extend_from_slice(chunk);
            let mut ip = Ipv4Packet::new_unchecked(&mut frag[..]);
            ip.set_total_len((IPV4_HEADER + chunk.len()) as u16);
            ip.set_ident(ident);
            ip.set_dont_frag(false);
            ip.set_more_frags(offset + chunk.len() < payload.len());
            ip.set_frag_offset(offset as u16);
            ip.fill_checksum();
            out.push_back(frag);
            self.fragments_out += 1;
        }
    }

    fn fragment_v6(&mut self, out: &mut VecDeque<Packet>, whole: &[u8]) {
        let ident = self.ident();
        let next_header = whole[6];
        let payload = &whole[IPV6_HEADER..];
        let step = self.fragment_payload_v6();
        for (i, chunk) in payload.chunks(step).enumerate() {
            let offset = i * step;
            let more = offset + chunk.len() < payload.len();
            let mut frag = Vec::with_capacity(IPV6_HEADER + IPV6_FRAGMENT_HEADER + chunk.len());
            frag.extend_from_slice(&whole[..IPV6_HEADER]);
            frag.push(next_header);
            frag.push(0);
            frag.extend_from_slice(&((offset as u16) | u16::from(more)).to_be_bytes());
            frag.extend_from_slice(&ident.to_be_bytes());
            frag.extend_from_slice(chunk);
            let len = (IPV6_FRAGMENT_HEADER + chunk.len()) as u16;
            frag[4..6].copy_from_slice(&len.to_be_bytes());
            frag[6] = FRAGMENT_NEXT_HEADER;
            out.push_back(frag);
            self.fragments_out += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{normalize, Normalized};
    use crate::reassembly::Reassembler;
    use smoltcp::time::{Duration, Instant};
    use smoltcp::wire::{Ipv4Address, Ipv6Address};

    fn round_trip(src: IpAddress, dst: IpAddress) {
        let mut e = IpBuilder::new(1500, 64, 7);
        let mut out = VecDeque::new();
        let message: Vec<u8> = (0..9000u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(e.packet_count(src, message.len()), out_len(src));
        e.emit(&mut out, src, dst, IpProtocol::Udp, message.len(), |b| {
            b.copy_from_slice(&message)
        })
        .unwrap();
        assert_eq!(out.len(), out_len(src));
        assert!(out.iter().all(|p| p.len() <= 1500));
        // Our own reassembly puts them back together.
        let mut r = Reassembler::new(8, 1 << 20, Duration::from_secs(5));
        let mut whole = None;
        for p in out {
            match normalize(p, Some(&mut r), Instant::ZERO) {
                Normalized::Plain(p) | Normalized::Reassembled(p) => whole = Some(p),
                Normalized::Held => {}
                other @ (Normalized::Drop(_) | Normalized::Fragment(_)) => panic!("{other:?}"),
            }
        }
        let whole = whole.expect("reassembled");
        assert_eq!(&whole[whole.len() - message.len()..], &message[..]);
    }

    fn out_len(src: IpAddress) -> usize {
        match src {
            IpAddress::Ipv4(_) => 9000usize.div_ceil(1480),
            IpAddress::Ipv6(_) => 9000usize.div_ceil(1448),
        }
    }

    #[test]
    fn large_ipv4_datagram_is_fragmented_and_reassembles() {
        round_trip(
            Ipv4Address::new(198, 18, 0, 2).into(),
            Ipv4Address::new(198, 18, 0, 1).into(),
        );
    }

    #[test]
    fn large_ipv6_datagram_is_fragmented_and_reassembles() {
        round_trip(
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(),
        );
    }

    #[test]
    fn mixed_families_are_refused() {
        let mut e = IpBuilder::new(1500, 64, 0);
        let r = e.emit(
            &mut VecDeque::new(),
            Ipv4Address::new(1, 1, 1, 1).into(),
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(),
            IpProtocol::Udp,
            8,
            |_| {},
        );
        assert_eq!(r, Err(Error::AddressFamily));
    }
}
