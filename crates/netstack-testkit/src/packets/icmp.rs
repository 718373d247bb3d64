//! ICMP and ICMPv6 echo requests with a valid checksum.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol};

use super::ip_packet;

/// An echo request ("ping") from `src` to `dst` with identifier `ident`, sequence number `seq`
/// and `data`, as an IP packet: ICMP over IPv4, ICMPv6 over IPv6, valid checksums.
///
/// Panics if the addresses' families differ or the message does not fit an IP packet.
pub fn icmp_echo_request(
    src: impl Into<IpAddress>,
    dst: impl Into<IpAddress>,
    ident: u16,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    let (src, dst) = (src.into(), dst.into());
    let caps = ChecksumCapabilities::default();
    match (src, dst) {
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
            let repr = Icmpv6Repr::EchoRequest {
                ident,
                seq_no: seq,
                data,
            };
            ip_packet(src, dst, IpProtocol::Icmpv6, repr.buffer_len(), |b| {
                repr.emit(&s, &d, &mut Icmpv6Packet::new_unchecked(b), &caps)
            })
        }
        _ => {
            let repr = Icmpv4Repr::EchoRequest {
                ident,
                seq_no: seq,
                data,
            };
            // (Mixed families: ip_packet panics.)
            ip_packet(src, dst, IpProtocol::Icmp, repr.buffer_len(), |b| {
                repr.emit(&mut Icmpv4Packet::new_unchecked(b), &caps)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::tests::verified_ip;
    use smoltcp::wire::{Ipv4Address, Ipv6Address};

    #[test]
    fn echo_requests_of_both_families_parse_with_valid_checksums() {
        let caps = ChecksumCapabilities::default();
        let v4 = icmp_echo_request(
            Ipv4Address::new(198, 18, 0, 1),
            Ipv4Address::new(198, 18, 0, 2),
            7,
            9,
            b"ping",
        );
        let (_, _, protocol, body) = verified_ip(&v4);
        assert_eq!(protocol, IpProtocol::Icmp);
        let repr = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(body).unwrap(), &caps);
        assert_eq!(
            repr,
            Ok(Icmpv4Repr::EchoRequest {
                ident: 7,
                seq_no: 9,
                data: b"ping"
            })
        );

        let (s, d) = (
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        );
        let v6 = icmp_echo_request(s, d, 7, 9, b"ping6");
        let (_, _, protocol, body) = verified_ip(&v6);
        assert_eq!(protocol, IpProtocol::Icmpv6);
        let repr = Icmpv6Repr::parse(&s, &d, &Icmpv6Packet::new_checked(body).unwrap(), &caps);
        assert_eq!(
            repr,
            Ok(Icmpv6Repr::EchoRequest {
                ident: 7,
                seq_no: 9,
                data: b"ping6"
            })
        );
    }
}
