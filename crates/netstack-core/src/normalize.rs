//! The IP layer of the front end: every packet the transports see is *plain*.
//!
//! Plain means: a valid IPv4 header with a correct checksum and no fragmentation, or an IPv6
//! fixed header directly followed by the transport header. Fragments are collected by the
//! [`Reassembler`] and come out as one plain packet; IPv6 extension headers (hop-by-hop,
//! routing, destination options, fragment) are walked and removed. Plain packets without any
//! of these pass through untouched (no copy).
//!
//! Normalising a packet that is not a fragment needs no state, so the stack does it outside its
//! lock, with no reassembler: a fragment then comes back as [`Normalized::Fragment`], and only
//! fragments are normalised again under the lock, with the stack's reassembler.

use alloc::vec::Vec;

use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Packet, Ipv6Packet, IPV4_HEADER_LEN};

use crate::packet::Packet;
use crate::reassembly::{FragKey, Reassembler, ReassemblyError};
use crate::stats::DropReason;

/// IPv6 next-header values of the extension headers the front end walks.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DESTINATION_OPTIONS: u8 = 60;
const IPV6_HEADER_LEN: usize = 40;
/// More extension headers than this in one packet is treated as an attack.
const MAX_EXTENSION_HEADERS: usize = 8;

/// The outcome of normalising one packet.
#[derive(Debug)]
pub(crate) enum Normalized {
    /// A plain packet, ready for the transports.
    Plain(Packet),
    /// The last fragment of a datagram arrived: the whole datagram, as a plain packet.
    Reassembled(Packet),
    /// A fragment was stored; nothing to do until the rest arrives.
    Held,
    /// A fragment, returned untouched because no reassembler was given.
    Fragment(Packet),
    /// Drop it, for this reason.
    Drop(DropReason),
}

/// Normalises `packet` (see the module documentation). Without a `reassembler`, fragments
/// come back as [`Normalized::Fragment`].
pub(crate) fn normalize(
    packet: Packet,
    mut reassembler: Option<&mut Reassembler>,
    now: Instant,
) -> Normalized {
    match packet.first().map(|b| b >> 4) {
        Some(4) => normalize_ipv4(packet, reassembler, now),
        Some(6) => match normalize_ipv6(packet, reassembler.as_deref_mut(), now) {
            // Extension headers may follow the fragment header inside the reassembled payload.
            Normalized::Plain(p) if has_extension_header(&p) => normalize_ipv6(p, reassembler, now),
            Normalized::Reassembled(p) if has_extension_header(&p) => {
                match normalize_ipv6(p, reassembler, now) {
                    Normalized::Plain(p) => Normalized::Reassembled(p),
                    other => other,
                }
            }
            other => other,
        },
        _ => Normalized::Drop(DropReason::Malformed),
    }
}

fn normalize_ipv4(
    packet: Packet,
    reassembler: Option<&mut Reassembler>,
    now: Instant,
) -> Normalized {
    let Ok(ip) = Ipv4Packet::new_checked(&packet[..]) else {
        return Normalized::Drop(DropReason::Malformed);
    };
    let header_len = usize::from(ip.header_len());
    if header_len < IPV4_HEADER_LEN {
        return Normalized::Drop(DropReason::Malformed);
    }
    if !ip.verify_checksum() {
        return Normalized::Drop(DropReason::BadChecksum);
    }
    if !ip.more_frags() && ip.frag_offset() == 0 {
        return Normalized::Plain(packet);
    }
    let Some(reassembler) = reassembler else {
        return Normalized::Fragment(packet);
    };
    let key = FragKey::V4 {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        ident: ip.ident(),
        protocol: ip.next_header().into(),
    };
    let result = reassembler.add(
        key,
        &packet[..header_len],
        ip.next_header().into(),
        usize::from(ip.frag_offset()),
        ip.more_frags(),
        ip.payload(),
        now,
    );
    match result {
        Ok(None) => Normalized::Held,
        Ok(Some(done)) => {
            let mut out = Vec::with_capacity(done.header.len() + done.payload.len());
            out.extend_from_slice(&done.header);
            out.extend_from_slice(&done.payload);
            let Ok(total) = u16::try_from(out.len()) else {
                return Normalized::Drop(DropReason::Reassembly);
            };
            let mut ip = Ipv4Packet::new_unchecked(&mut out[..]);
            ip.set_total_len(total);
            ip.set_more_frags(false);
            ip.set_frag_offset(0);
            ip.fill_checksum();
            Normalized::Reassembled(out)
        }
        Err(ReassemblyError::Invalid) => Normalized::Drop(DropReason::Malformed),
        Err(ReassemblyError::Full) => Normalized::Drop(DropReason::Reassembly),
    }
}

fn has_extension_header(packet: &[u8]) -> bool {
    matches!(
        packet.get(6),
        Some(&(HOP_BY_HOP | ROUTING | FRAGMENT | DESTINATION_OPTIONS))
    )
}

fn normalize_ipv6(
    packet: Packet,
    reassembler: Option<&mut Reassembler>,
    now: Instant,
) -> Normalized {
    let Ok(ip) = Ipv6Packet::new_checked(&packet[..]) else {
        return Normalized::Drop(DropReason::Malformed);
    };
    if !has_extension_header(&packet) {
        return Normalized::Plain(packet);
    }
    let end = IPV6_HEADER_LEN + usize::from(ip.payload_len());
    let mut next = packet[6];
    let mut at = IPV6_HEADER_LEN;
    let mut fragment = None;
    for _ in 0..=MAX_EXTENSION_HEADERS {
        match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS => {
                let (Some(&nh), Some(&len)) = (packet.get(at), packet.get(at + 1)) else {
                    return Normalized::Drop(DropReason::Malformed);
                };
                at += (usize::from(len) + 1) * 8;
                if at > end {
                    return Normalized::Drop(DropReason::Malformed);
                }
                next = nh;
            }
            FRAGMENT => {
                let Some(h) = packet.get(at..at + 8) else {
                    return Normalized::Drop(DropReason::Malformed);
                };
                let word = u16::from_be_bytes([h[2], h[3]]);
                let ident = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                fragment = Some((h[0], usize::from(word & 0xfff8), word & 1 == 1, ident));
                at += 8;
                if at > end {
                    return Normalized::Drop(DropReason::Malformed);
                }
                break;
            }
            _ => break,
        }
    }
    if matches!(next, HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS) && fragment.is_none() {
        return Normalized::Drop(DropReason::Malformed); // too many extension headers
    }
    let mut reassembled = false;
    let (payload, next_header) = match fragment {
        // An atomic fragment (offset 0, no more) is a whole datagram.
        Some((nh, 0, false, _)) => (packet[at..end].to_vec(), nh),
        Some((nh, offset, more, ident)) => {
            let Some(reassembler) = reassembler else {
                return Normalized::Fragment(packet);
            };
            let key = FragKey::V6 {
                src: ip.src_addr().into(),
                dst: ip.dst_addr().into(),
                ident,
            };
            match reassembler.add(
                key,
                &packet[..IPV6_HEADER_LEN],
                nh,
                offset,
                more,
                &packet[at..end],
                now,
            ) {
                Ok(None) => return Normalized::Held,
                Ok(Some(done)) => {
                    reassembled = true;
                    (done.payload, done.next_header)
                }
                Err(ReassemblyError::Invalid) => return Normalized::Drop(DropReason::Malformed),
                Err(ReassemblyError::Full) => return Normalized::Drop(DropReason::Reassembly),
            }
        }
        None => (packet[at..end].to_vec(), next),
    };
    let Ok(payload_len) = u16::try_from(payload.len()) else {
        return Normalized::Drop(DropReason::Reassembly);
    };
    let mut out = Vec::with_capacity(IPV6_HEADER_LEN + payload.len());
    out.extend_from_slice(&packet[..IPV6_HEADER_LEN]);
    out.extend_from_slice(&payload);
    out[4..6].copy_from_slice(&payload_len.to_be_bytes());
    out[6] = next_header;
    if reassembled {
        Normalized::Reassembled(out)
    } else {
        Normalized::Plain(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstack_testkit::packets::{
        ipv4_fragments, ipv6_fragments, udp_datagram, with_ipv6_extensions,
    };
    use smoltcp::time::Duration;
    use smoltcp::wire::{IpProtocol, Ipv4Address, Ipv6Address};

    /// A UDP/IPv6 datagram carrying `payload`, fd00::1 to fd00::2.
    fn udp6(payload: &[u8]) -> Packet {
        let src = (Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 1000);
        let dst = (Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2), 53);
        udp_datagram(src, dst, payload)
    }

    fn normalize_one(p: Packet) -> Normalized {
        let mut r = Reassembler::new(4, 1 << 16, Duration::from_secs(1));
        normalize(p, Some(&mut r), Instant::ZERO)
    }

    /// Six zero bytes: with the next-header and length fields, one 8-byte extension header
    /// (Pad1 options; a routing header with no segment left).
    const SIX: [u8; 6] = [0; 6];

    #[test]
    fn hop_by_hop_routing_and_destination_options_are_walked_and_removed() {
        let plain = udp6(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let p = with_ipv6_extensions(
            &plain,
            &[
                (IpProtocol::HopByHop, &SIX),
                (IpProtocol::Ipv6Route, &SIX),
                (IpProtocol::Ipv6Opts, &SIX),
            ],
        );
        match normalize_one(p) {
            Normalized::Plain(out) => assert_eq!(
                out, plain,
                "the transport follows the fixed header, whose length and next header say so"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn endless_or_truncated_extension_chains_are_malformed() {
        let chain: Vec<(IpProtocol, &[u8])> = (0..MAX_EXTENSION_HEADERS + 2)
            .map(|_| (IpProtocol::Ipv6Opts, &SIX[..]))
            .collect();
        assert!(matches!(
            normalize_one(with_ipv6_extensions(&udp6(&[]), &chain)),
            Normalized::Drop(DropReason::Malformed)
        ));
        // A header length pointing past the end of the packet.
        let mut p = with_ipv6_extensions(&udp6(&[]), &[(IpProtocol::HopByHop, &SIX)]);
        p[41] = 200;
        assert!(matches!(
            normalize_one(p),
            Normalized::Drop(DropReason::Malformed)
        ));
    }

    #[test]
    fn plain_packets_pass_through_untouched() {
        let p = udp6(&[9u8; 8]);
        match normalize_one(p.clone()) {
            Normalized::Plain(out) => assert_eq!(out, p),
            other => panic!("{other:?}"),
        }
    }

    /// Feeds `fragments` last first to one reassembler; the whole datagram comes out of the
    /// last call.
    fn reassemble_in_reverse(fragments: Vec<Packet>) -> Packet {
        let mut r = Reassembler::new(4, 1 << 16, Duration::from_secs(1));
        let mut whole = None;
        for f in fragments.into_iter().rev() {
            assert!(whole.is_none(), "a datagram before its last fragment");
            match normalize(f, Some(&mut r), Instant::ZERO) {
                Normalized::Held => {}
                Normalized::Reassembled(p) => whole = Some(p),
                other => panic!("{other:?}"),
            }
        }
        whole.expect("reassembled")
    }

    #[test]
    fn fragments_cut_by_another_builder_reassemble_in_reverse_order() {
        // Fragments the core did not make itself (the test kit cuts them): IPv6 ones behind a
        // hop-by-hop header, which the core's own fragmenter never writes.
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 11) as u8).collect();
        let whole6 = udp6(&payload);
        let fragments: Vec<Packet> = ipv6_fragments(&whole6, 1232, 0x1234)
            .iter()
            .map(|f| with_ipv6_extensions(f, &[(IpProtocol::HopByHop, &SIX)]))
            .collect();
        assert_eq!(reassemble_in_reverse(fragments), whole6);

        let src = (Ipv4Address::new(198, 18, 0, 1), 1000);
        let dst = (Ipv4Address::new(198, 18, 0, 2), 53);
        let whole4 = udp_datagram(src, dst, &payload);
        let out = reassemble_in_reverse(ipv4_fragments(&whole4, 1232, 0x1234));
        let ip = Ipv4Packet::new_checked(&out[..]).expect("IPv4");
        assert!(ip.verify_checksum());
        assert!(!ip.more_frags() && ip.frag_offset() == 0);
        assert_eq!(&out[20..], &whole4[20..]);
    }
}
