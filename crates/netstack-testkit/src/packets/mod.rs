//! Packets for tests: builders for what a test injects, parsers for what the stack emits.
//!
//! Every builder writes its headers with `smoltcp::wire` (so checksums and lengths are the ones
//! smoltcp computes and verifies), picks IPv4 or IPv6 from its addresses, and returns one whole
//! IP packet as a TUN device carries it (no link-layer header):
//!
//! * [`Segment`]: a TCP segment with any flags, numbers and options ([`tcp_syn`] for a
//!   connection request as Linux sends it);
//! * [`udp_datagram`], [`icmp_echo_request`];
//! * [`ipv4_fragment`], [`ipv4_fragments`], [`ipv6_fragment`], [`ipv6_fragments`];
//! * [`with_ipv6_extensions`]: extension headers inserted into an IPv6 packet;
//! * [`ip_packet`]: any payload behind an IP header, for the cases above do not cover.
//!
//! Parsers: [`tcp_info`] (the fields of a TCP segment), [`is_syn`]; and [`repair_checksums`]
//! for packets a test (or a fuzzer) mutated.
//!
//! Builders panic on arguments no packet can carry (mixed address families, misaligned fragment
//! offsets, payloads larger than an IP packet): those are bugs in the test, not input.
//!
//! ```
//! use netstack_testkit::packets::{tcp_info, Segment};
//! use smoltcp::wire::TcpControl;
//!
//! let src = "198.18.0.1:40000".parse::<std::net::SocketAddr>().unwrap();
//! let dst = "198.18.0.2:80".parse::<std::net::SocketAddr>().unwrap();
//! let packet = Segment::new(src, dst).control(TcpControl::Psh).seq(1).ack(2).payload(b"hi").build();
//! let info = tcp_info(&packet).unwrap();
//! assert_eq!((info.payload_len, info.ack.map(|a| a.0)), (2, Some(2)));
//! ```

mod fragment;
mod icmp;
mod ipv6_ext;
mod parse;
mod tcp;
mod udp;

pub use fragment::{ipv4_fragment, ipv4_fragments, ipv6_fragment, ipv6_fragments};
pub use icmp::icmp_echo_request;
pub use ipv6_ext::with_ipv6_extensions;
pub use parse::{is_syn, repair_checksums, tcp_info, TcpInfo};
pub use tcp::{tcp_syn, Segment};
pub use udp::udp_datagram;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr};

/// The TTL / hop limit of every packet the builders make.
pub const HOP_LIMIT: u8 = 64;

/// An IP packet from `src` to `dst` whose payload is `payload_len` bytes of `protocol`,
/// written by `fill` (which gets exactly that many bytes, zeroed). IPv4 packets get a valid
/// header checksum, the Don't Fragment flag and identification 0 (as smoltcp emits them).
///
/// Panics if `src` and `dst` are of different families, or the packet would exceed 65,535
/// bytes (IPv4) or a payload of 65,535 bytes (IPv6).
pub fn ip_packet(
    src: IpAddress,
    dst: IpAddress,
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    match (src, dst) {
        (IpAddress::Ipv4(src_addr), IpAddress::Ipv4(dst_addr)) => {
            let ip = Ipv4Repr {
                src_addr,
                dst_addr,
                next_header: protocol,
                payload_len,
                hop_limit: HOP_LIMIT,
            };
            assert!(
                ip.buffer_len() + payload_len <= usize::from(u16::MAX),
                "an IPv4 packet of {payload_len} payload bytes does not fit its length field"
            );
            let mut buf = vec![0u8; ip.buffer_len() + payload_len];
            let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
            ip.emit(&mut packet, &ChecksumCapabilities::default());
            fill(packet.payload_mut());
            buf
        }
        (IpAddress::Ipv6(src_addr), IpAddress::Ipv6(dst_addr)) => {
            assert!(
                payload_len <= usize::from(u16::MAX),
                "an IPv6 payload of {payload_len} bytes needs a jumbogram"
            );
            let ip = Ipv6Repr {
                src_addr,
                dst_addr,
                next_header: protocol,
                payload_len,
                hop_limit: HOP_LIMIT,
            };
            let mut buf = vec![0u8; ip.buffer_len() + payload_len];
            let mut packet = Ipv6Packet::new_unchecked(&mut buf[..]);
            ip.emit(&mut packet);
            fill(packet.payload_mut());
            buf
        }
        _ => panic!("an IP packet from {src} to {dst}: the addresses' families differ"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Address, Ipv6Address};

    /// Parses an IP header the way smoltcp does on receive (the IPv4 header checksum
    /// verified): (source, destination, protocol, payload).
    pub(crate) fn verified_ip(packet: &[u8]) -> (IpAddress, IpAddress, IpProtocol, &[u8]) {
        match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let ip = Ipv4Packet::new_checked(packet).expect("an IPv4 header");
                let repr = Ipv4Repr::parse(&ip, &ChecksumCapabilities::default())
                    .expect("a valid IPv4 header and checksum");
                assert_eq!(repr.payload_len, ip.payload().len());
                let payload = &packet[ip.header_len().into()..usize::from(ip.total_len())];
                (
                    repr.src_addr.into(),
                    repr.dst_addr.into(),
                    repr.next_header,
                    payload,
                )
            }
            Some(6) => {
                let ip = Ipv6Packet::new_checked(packet).expect("an IPv6 header");
                let repr = Ipv6Repr::parse(&ip).expect("a valid IPv6 header");
                assert_eq!(repr.payload_len + 40, packet.len());
                (
                    repr.src_addr.into(),
                    repr.dst_addr.into(),
                    repr.next_header,
                    &packet[40..],
                )
            }
            _ => panic!("not an IP packet"),
        }
    }

    #[test]
    fn ip_packet_headers_parse_and_carry_the_payload() {
        let v4 = ip_packet(
            Ipv4Address::new(198, 18, 0, 1).into(),
            Ipv4Address::new(198, 18, 0, 2).into(),
            IpProtocol::Unknown(253),
            5,
            |b| b.copy_from_slice(b"hello"),
        );
        let p = Ipv4Packet::new_checked(&v4[..]).unwrap();
        let repr = Ipv4Repr::parse(&p, &ChecksumCapabilities::default()).expect("valid IPv4");
        assert_eq!(repr.next_header, IpProtocol::Unknown(253));
        assert_eq!((repr.hop_limit, p.payload()), (HOP_LIMIT, &b"hello"[..]));

        let v6 = ip_packet(
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(),
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
            IpProtocol::Ipv6NoNxt,
            3,
            |b| b.copy_from_slice(b"abc"),
        );
        let p = Ipv6Packet::new_checked(&v6[..]).unwrap();
        let repr = Ipv6Repr::parse(&p).expect("valid IPv6");
        assert_eq!((repr.payload_len, p.payload()), (3, &b"abc"[..]));
    }

    #[test]
    #[should_panic(expected = "families differ")]
    fn mixed_families_are_a_test_bug() {
        ip_packet(
            Ipv4Address::new(198, 18, 0, 1).into(),
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
            IpProtocol::Udp,
            0,
            |_| {},
        );
    }
}
