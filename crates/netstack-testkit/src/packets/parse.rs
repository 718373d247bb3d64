//! Reading what the stack emits, and repairing what a test mutated.

use smoltcp::wire::{
    IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, TcpSeqNumber,
};

/// The fields of a TCP segment that tests look at ([`tcp_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Source address and port.
    pub src: IpEndpoint,
    /// Destination address and port.
    pub dst: IpEndpoint,
    /// The sequence number.
    pub seq: TcpSeqNumber,
    /// The acknowledgement number, if the ACK flag is set.
    pub ack: Option<TcpSeqNumber>,
    /// The SYN flag.
    pub syn: bool,
    /// The FIN flag.
    pub fin: bool,
    /// The RST flag.
    pub rst: bool,
    /// The window field, as sent (unscaled).
    pub window: u16,
    /// Bytes of data.
    pub payload_len: usize,
    /// The sequence space the segment takes: its data, plus one for SYN and one for FIN.
    pub segment_len: usize,
}

/// The TCP fields of `packet` if it is a whole (unfragmented) TCP segment over IPv4 or IPv6
/// without extension headers; `None` for anything else, truncated packets included.
/// Checksums are not verified (see [`repair_checksums`] for the other direction).
pub fn tcp_info(packet: &[u8]) -> Option<TcpInfo> {
    let (src, dst, segment) = match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                ip.payload(),
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip.payload(),
            )
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(segment).ok()?;
    Some(TcpInfo {
        src: IpEndpoint::new(src, tcp.src_port()),
        dst: IpEndpoint::new(dst, tcp.dst_port()),
        seq: tcp.seq_number(),
        ack: tcp.ack().then(|| tcp.ack_number()),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        window: tcp.window_len(),
        payload_len: tcp.payload().len(),
        segment_len: tcp.segment_len(),
    })
}

/// Whether `packet` is a TCP SYN without ACK (a connection request), over IPv4 or IPv6.
pub fn is_syn(packet: &[u8]) -> bool {
    tcp_info(packet).is_some_and(|t| t.syn && t.ack.is_none())
}

/// Recomputes the IPv4 header checksum and, where the TCP header parses, the TCP checksum of
/// `packet` (IPv4 or IPv6), so that a mutated packet passes the receiver's checks and reaches
/// its TCP state machine. Leaves what does not parse as it is.
pub fn repair_checksums(packet: &mut [u8]) {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(mut ip) = Ipv4Packet::new_checked(&mut packet[..]) else {
                return;
            };
            ip.fill_checksum();
            if ip.next_header() != IpProtocol::Tcp {
                return;
            }
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            if let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) {
                tcp.fill_checksum(&src, &dst);
            }
        }
        Some(6) => {
            let Ok(mut ip) = Ipv6Packet::new_checked(&mut packet[..]) else {
                return;
            };
            if ip.next_header() != IpProtocol::Tcp {
                return;
            }
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            if let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) {
                tcp.fill_checksum(&src, &dst);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::{ipv4_fragments, udp_datagram, Segment};
    use smoltcp::wire::{TcpControl, TcpPacket};
    use std::net::SocketAddr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_info_reads_what_the_builder_wrote() {
        let (src, dst) = (addr("[fd00::1]:40000"), addr("[fd00::2]:443"));
        let p = Segment::new(src, dst)
            .control(TcpControl::Fin)
            .seq(10)
            .ack(20)
            .window(99)
            .payload(b"bye")
            .build();
        let info = tcp_info(&p).expect("a TCP segment");
        assert_eq!(
            info,
            TcpInfo {
                src: src.into(),
                dst: dst.into(),
                seq: TcpSeqNumber(10),
                ack: Some(TcpSeqNumber(20)),
                syn: false,
                fin: true,
                rst: false,
                window: 99,
                payload_len: 3,
                segment_len: 4,
            }
        );
        assert!(!is_syn(&p));
    }

    #[test]
    fn only_a_syn_without_ack_is_a_syn() {
        let (src, dst) = (addr("198.18.0.1:1"), addr("198.18.0.2:2"));
        assert!(is_syn(&Segment::syn(src, dst, 1).build()));
        assert!(!is_syn(&Segment::syn(src, dst, 1).ack(5).build()));
        assert!(!is_syn(&udp_datagram(src, dst, &[0; 40])));
        let syn = Segment::syn(src, dst, 1).build();
        for len in 0..syn.len() {
            assert!(!is_syn(&syn[..len]), "truncated to {len}");
        }
        // The first fragment of a TCP segment is not a whole segment.
        let big = Segment::syn(src, dst, 1).payload(&[1; 100]).build();
        assert!(tcp_info(&ipv4_fragments(&big, 48, 1)[0]).is_none());
    }

    #[test]
    fn repaired_checksums_verify_again() {
        for (src, dst) in [
            (addr("198.18.0.1:1"), addr("198.18.0.2:2")),
            (addr("[fd00::1]:1"), addr("[fd00::2]:2")),
        ] {
            let mut p = Segment::new(src, dst).seq(3).payload(b"data").build();
            let at = p.len() - 1;
            p[at] ^= 0xff;
            if p[0] >> 4 == 4 {
                p[8] = 1; // the TTL, covered by the IPv4 header checksum
                assert!(!Ipv4Packet::new_checked(&p[..]).unwrap().verify_checksum());
            }
            repair_checksums(&mut p);
            let (s, d) = (IpAddress::from(src.ip()), IpAddress::from(dst.ip()));
            let hdr = if p[0] >> 4 == 4 {
                assert!(Ipv4Packet::new_checked(&p[..]).unwrap().verify_checksum());
                20
            } else {
                40
            };
            assert!(TcpPacket::new_checked(&p[hdr..])
                .unwrap()
                .verify_checksum(&s, &d));
        }
        // Garbage stays garbage, and nothing panics.
        let mut junk = vec![0x45, 0, 0];
        repair_checksums(&mut junk);
        assert_eq!(junk, [0x45, 0, 0]);
    }
}
