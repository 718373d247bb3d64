//! The ingress front end: validates and classifies every packet before smoltcp sees it.
//!
//! smoltcp silently ignores packets it cannot parse; a network stack facing a VPN's traffic
//! must count them instead. The front end checks the IP header and the TCP checksum once (so the
//! interface is configured not to verify them again), extracts the TCP 4-tuple and flags that the
//! SYN table needs, and names a drop reason for everything else.

use smoltcp::wire::{
    IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, IPV4_HEADER_LEN,
};

/// A TCP connection's identity, seen from the stack: `remote` is the peer on the link (the
/// application that opened the connection), `local` its original destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FourTuple {
    pub(crate) remote: IpEndpoint,
    pub(crate) local: IpEndpoint,
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    Malformed,
    BadChecksum,
    Unsupported,
}

/// What the front end found in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Classified {
    /// A valid TCP segment; `syn` is set for a connection request (SYN without ACK or RST).
    Tcp { tuple: FourTuple, syn: bool },
    /// Drop it and count the reason.
    Drop(DropReason),
}

/// Classifies one raw IP packet.
pub(crate) fn classify(packet: &[u8]) -> Classified {
    match packet.first().map(|b| b >> 4) {
        Some(4) => classify_ipv4(packet),
        Some(6) => classify_ipv6(packet),
        _ => Classified::Drop(DropReason::Malformed),
    }
}

fn classify_ipv4(packet: &[u8]) -> Classified {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return Classified::Drop(DropReason::Malformed);
    };
    if usize::from(ip.header_len()) < IPV4_HEADER_LEN {
        return Classified::Drop(DropReason::Malformed);
    }
    if !ip.verify_checksum() {
        return Classified::Drop(DropReason::BadChecksum);
    }
    if ip.more_frags() || ip.frag_offset() != 0 || ip.next_header() != IpProtocol::Tcp {
        return Classified::Drop(DropReason::Unsupported);
    }
    classify_tcp(ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
}

fn classify_ipv6(packet: &[u8]) -> Classified {
    let Ok(ip) = Ipv6Packet::new_checked(packet) else {
        return Classified::Drop(DropReason::Malformed);
    };
    if ip.next_header() != IpProtocol::Tcp {
        return Classified::Drop(DropReason::Unsupported);
    }
    classify_tcp(ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
}

fn classify_tcp(src: IpAddress, dst: IpAddress, segment: &[u8]) -> Classified {
    let Ok(tcp) = TcpPacket::new_checked(segment) else {
        return Classified::Drop(DropReason::Malformed);
    };
    if tcp.src_port() == 0 || tcp.dst_port() == 0 || !is_unicast(src) || !is_unicast(dst) {
        return Classified::Drop(DropReason::Malformed);
    }
    if !tcp.verify_checksum(&src, &dst) {
        return Classified::Drop(DropReason::BadChecksum);
    }
    let tuple = FourTuple {
        remote: IpEndpoint::new(src, tcp.src_port()),
        local: IpEndpoint::new(dst, tcp.dst_port()),
    };
    let syn = tcp.syn() && !tcp.ack() && !tcp.rst();
    Classified::Tcp { tuple, syn }
}

/// TCP only runs between unicast addresses.
fn is_unicast(addr: IpAddress) -> bool {
    match addr {
        IpAddress::Ipv4(a) => {
            !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.octets()[0] == 0)
        }
        IpAddress::Ipv6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        Ipv4Address, Ipv4Repr, Ipv6Address, Ipv6Repr, TcpControl, TcpRepr, TcpSeqNumber,
    };

    fn tcp_repr(control: TcpControl) -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            control,
            seq_number: TcpSeqNumber(1),
            ack_number: None,
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        }
    }

    pub(crate) fn ipv4_tcp(control: TcpControl) -> Vec<u8> {
        let src = Ipv4Address::new(198, 18, 0, 1);
        let dst = Ipv4Address::new(198, 18, 0, 2);
        let tcp = tcp_repr(control);
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &src.into(),
            &dst.into(),
            &caps,
        );
        buf
    }

    #[test]
    fn syn_is_classified_with_its_tuple() {
        let c = classify(&ipv4_tcp(TcpControl::Syn));
        let Classified::Tcp { tuple, syn } = c else {
            panic!("{c:?}")
        };
        assert!(syn);
        assert_eq!(tuple.local.port, 80);
        assert_eq!(tuple.remote.port, 40000);
        assert_eq!(
            tuple.local.addr,
            IpAddress::Ipv4(Ipv4Address::new(198, 18, 0, 2))
        );
    }

    #[test]
    fn truncated_packets_are_malformed() {
        let p = ipv4_tcp(TcpControl::Syn);
        for len in 0..p.len() {
            assert_eq!(
                classify(&p[..len]),
                Classified::Drop(DropReason::Malformed),
                "len {len}"
            );
        }
    }

    #[test]
    fn corrupted_tcp_checksum_is_counted_as_bad_checksum() {
        let mut p = ipv4_tcp(TcpControl::None);
        let last = p.len() - 1;
        p[last] ^= 0x55; // urgent pointer byte: a header field covered only by the TCP checksum
        assert_eq!(classify(&p), Classified::Drop(DropReason::BadChecksum));
    }

    #[test]
    fn ipv6_syn_is_classified() {
        let src = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        let dst = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        let tcp = tcp_repr(TcpControl::Syn);
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p);
        tcp.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &src.into(),
            &dst.into(),
            &ChecksumCapabilities::default(),
        );
        assert!(matches!(classify(&buf), Classified::Tcp { syn: true, .. }));
    }

    #[test]
    fn udp_and_garbage_are_not_tcp() {
        assert_eq!(classify(&[]), Classified::Drop(DropReason::Malformed));
        assert_eq!(
            classify(&[0x70, 0, 0]),
            Classified::Drop(DropReason::Malformed)
        );
        let mut p = ipv4_tcp(TcpControl::Syn);
        p[9] = 17; // protocol UDP; fix the header checksum so only the protocol differs
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.fill_checksum();
        assert_eq!(classify(&p), Classified::Drop(DropReason::Unsupported));
    }
}
