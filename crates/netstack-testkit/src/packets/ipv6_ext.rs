//! IPv6 extension headers (Hop-by-Hop, Routing, Destination Options, …) inserted into a packet.

use smoltcp::wire::{IpProtocol, Ipv6ExtHeader, Ipv6Packet};

/// `packet` (IPv6) with `headers` inserted right after its fixed header, in order: each
/// `(kind, body)` becomes one extension header of type `kind` whose bytes after its
/// next-header and length fields are `body`. The next-header chain and the payload length are
/// rewritten; transport checksums stay valid (they do not cover extension headers).
///
/// A body must be 6, 14, 22, … bytes (headers are whole 8-byte units). Zero bytes are Pad1
/// options in Hop-by-Hop and Destination Options headers, and a type-0 Routing header with no
/// segment left, which a receiver skips.
///
/// Panics if `packet` is not IPv6, a body has another length, or the result exceeds an IPv6
/// payload of 65,535 bytes.
pub fn with_ipv6_extensions(packet: &[u8], headers: &[(IpProtocol, &[u8])]) -> Vec<u8> {
    let ip = Ipv6Packet::new_checked(packet).expect("an IPv6 packet");
    let mut out = packet[..40].to_vec();
    let mut next_of_previous = 6; // the fixed header's next-header field
    for &(kind, body) in headers {
        assert!(
            body.len() % 8 == 6 && body.len() < 8 * 256,
            "an extension header body of {} bytes is not 8n - 2",
            body.len()
        );
        out[next_of_previous] = kind.into();
        next_of_previous = out.len();
        let start = out.len();
        out.resize(start + 2 + body.len(), 0);
        let mut ext = Ipv6ExtHeader::new_unchecked(&mut out[start..]);
        ext.set_header_len(((body.len() + 2) / 8 - 1) as u8);
        ext.payload_mut().copy_from_slice(body);
    }
    out[next_of_previous] = ip.next_header().into();
    out.extend_from_slice(ip.payload());
    let payload_len = u16::try_from(out.len() - 40).expect("an IPv6 payload over 65,535 bytes");
    Ipv6Packet::new_unchecked(&mut out[..]).set_payload_len(payload_len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::tests::verified_ip;
    use crate::packets::{ipv6_fragment, udp_datagram};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Ipv6Address, UdpPacket, UdpRepr};

    fn udp6() -> Vec<u8> {
        let src: std::net::SocketAddr = "[fd00::1]:1000".parse().unwrap();
        let dst: std::net::SocketAddr = "[fd00::2]:53".parse().unwrap();
        udp_datagram(src, dst, b"behind extension headers")
    }

    #[test]
    fn the_chain_is_walkable_and_the_transport_checksum_still_holds() {
        let plain = udp6();
        let options = [0u8; 14];
        let p = with_ipv6_extensions(
            &plain,
            &[
                (IpProtocol::HopByHop, &[0; 6]),
                (IpProtocol::Ipv6Route, &[0; 6]),
                (IpProtocol::Ipv6Opts, &options),
            ],
        );
        assert_eq!(p.len(), plain.len() + 8 + 8 + 16);
        let (src, dst, mut kind, mut rest) = verified_ip(&p);
        let mut seen = Vec::new();
        while kind != IpProtocol::Udp {
            let ext = Ipv6ExtHeader::new_checked(rest).expect("a whole extension header");
            seen.push(kind);
            kind = ext.next_header();
            rest = &rest[8 * (usize::from(ext.header_len()) + 1)..];
        }
        assert_eq!(
            seen,
            [
                IpProtocol::HopByHop,
                IpProtocol::Ipv6Route,
                IpProtocol::Ipv6Opts
            ]
        );
        let udp = UdpPacket::new_checked(rest).unwrap();
        UdpRepr::parse(&udp, &src, &dst, &ChecksumCapabilities::default())
            .expect("the UDP checksum is unchanged");
        assert_eq!(udp.payload(), b"behind extension headers");
    }

    #[test]
    fn headers_go_before_an_existing_fragment_header_and_none_is_the_packet() {
        let plain = udp6();
        assert_eq!(with_ipv6_extensions(&plain, &[]), plain);
        let fragment = ipv6_fragment(
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            IpProtocol::Udp,
            5,
            0,
            true,
            &[0; 16],
        );
        let p = with_ipv6_extensions(&fragment, &[(IpProtocol::HopByHop, &[0; 6])]);
        let (_, _, kind, rest) = verified_ip(&p);
        assert_eq!(kind, IpProtocol::HopByHop);
        let hbh = Ipv6ExtHeader::new_checked(rest).unwrap();
        assert_eq!(hbh.next_header(), IpProtocol::Ipv6Frag);
        let frag = Ipv6ExtHeader::new_checked(&rest[8..]).unwrap();
        assert_eq!(frag.next_header(), IpProtocol::Udp);
    }

    #[test]
    #[should_panic(expected = "not 8n - 2")]
    fn a_body_that_is_not_whole_units_is_a_test_bug() {
        with_ipv6_extensions(&udp6(), &[(IpProtocol::HopByHop, &[0; 8])]);
    }
}
