//! UDP datagrams with a valid checksum.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpEndpoint, IpProtocol, UdpPacket, UdpRepr};

use super::ip_packet;

/// A UDP datagram from `src` to `dst` carrying `payload`, as an IP packet (IPv4 or IPv6 after
/// the addresses) with valid IP and UDP checksums.
///
/// Panics if the addresses' families differ or the datagram does not fit an IP packet.
pub fn udp_datagram(
    src: impl Into<IpEndpoint>,
    dst: impl Into<IpEndpoint>,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = (src.into(), dst.into());
    let repr = UdpRepr {
        src_port: src.port,
        dst_port: dst.port,
    };
    let len = repr.header_len() + payload.len();
    ip_packet(src.addr, dst.addr, IpProtocol::Udp, len, |b| {
        repr.emit(
            &mut UdpPacket::new_unchecked(b),
            &src.addr,
            &dst.addr,
            payload.len(),
            |out| out.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::tests::verified_ip;
    use std::net::SocketAddr;

    #[test]
    fn datagrams_of_both_families_parse_with_valid_checksums() {
        for (src, dst) in [
            ("198.18.0.1:4444", "198.18.0.2:53"),
            ("[fd00::1]:4444", "[fd00::2]:53"),
        ] {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            for payload in [&b""[..], b"x", b"an odd-length payload"] {
                let packet = udp_datagram(src, dst, payload);
                let (s, d, protocol, body) = verified_ip(&packet);
                assert_eq!(protocol, IpProtocol::Udp);
                let udp = UdpPacket::new_checked(body).unwrap();
                assert_ne!(udp.checksum(), 0, "a checksum was computed");
                let repr = UdpRepr::parse(&udp, &s, &d, &ChecksumCapabilities::default())
                    .expect("valid UDP checksum");
                assert_eq!((repr.src_port, repr.dst_port), (4444, 53));
                assert_eq!(udp.payload(), payload);
            }
        }
    }
}
