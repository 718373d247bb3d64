//! Classification: the transport header of every plain packet, checked once and named.
//!
//! smoltcp silently ignores packets it cannot parse; a network stack facing a VPN's traffic
//! must count them instead. After [`normalize`](crate::normalize) (IP header checks, fragments,
//! IPv6 extension headers), this module checks the transport header and checksum once (so the
//! interface is configured not to verify TCP again), extracts the addresses and ports that the
//! SYN table, the UDP queue and the filter need, and names a drop reason for everything else.
//! It is pure: it reads the packet and nothing else, so it runs outside the stack lock.

use core::ops::Range;

use smoltcp::wire::{
    Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpAddress, IpEndpoint, IpProtocol,
    Ipv4Packet, Ipv6Packet, TcpOption, TcpPacket, UdpPacket,
};

use crate::filter::{FlowInfo, Protocol};
use crate::packet::Packet;
use crate::stats::DropReason;
use crate::tcp::tuple::FourTuple;

/// A valid TCP segment on its way to its shard: the packet and what the SYN table needs.
#[derive(Debug)]
pub(crate) struct TcpSegment {
    pub(crate) packet: Packet,
    pub(crate) tuple: FourTuple,
    pub(crate) header: TcpHeader,
}

/// The header fields the SYN table, connection requests and SYN cookies look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpHeader {
    pub(crate) seq: u32,
    /// The acknowledgement number, if the ACK flag is set.
    pub(crate) ack: Option<u32>,
    pub(crate) syn: bool,
    pub(crate) rst: bool,
    pub(crate) fin: bool,
    /// Payload bytes.
    pub(crate) payload_len: usize,
    /// The window field (unscaled).
    pub(crate) window: u16,
    /// Options, parsed only on SYN segments and on the ACKs a SYN cookie may validate.
    pub(crate) options: SynOptions,
}

impl TcpHeader {
    /// A connection request: SYN without ACK or RST.
    pub(crate) fn is_syn(&self) -> bool {
        self.syn && self.ack.is_none() && !self.rst
    }
}

/// The options a SYN carries that matter to the connection it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SynOptions {
    /// Maximum segment size the peer accepts.
    pub mss: Option<u16>,
    /// The peer's window-scale shift (RFC 7323); `None` if it does not scale.
    pub window_scale: Option<u8>,
    /// Whether the peer accepts selective acknowledgements (RFC 2018).
    pub sack_permitted: bool,
    /// The peer's timestamp (TSval, TSecr), if it sends timestamps (RFC 7323).
    pub timestamp: Option<(u32, u32)>,
}

impl SynOptions {
    /// Parses a TCP header's options; what cannot be parsed is left out.
    fn parse(mut options: &[u8]) -> Self {
        let mut out = SynOptions::default();
        while !options.is_empty() {
            let Ok((rest, option)) = TcpOption::parse(options) else {
                break;
            };
            match option {
                TcpOption::EndOfList => break,
                TcpOption::MaxSegmentSize(mss) => out.mss = Some(mss),
                TcpOption::WindowScale(shift) => out.window_scale = Some(shift),
                TcpOption::SackPermitted => out.sack_permitted = true,
                TcpOption::TimeStamp { tsval, tsecr } => out.timestamp = Some((tsval, tsecr)),
                _ => {}
            }
            options = rest;
        }
        out
    }
}

/// What kind of ICMP message a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpClass {
    /// An echo request with its identifier and sequence number.
    EchoRequest { ident: u16, seq: u16 },
    /// Anything else, with its type and code.
    Other { icmp_type: u8, code: u8 },
}

/// What the front end found in a plain packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Classified {
    /// A valid TCP segment.
    Tcp { tuple: FourTuple, header: TcpHeader },
    /// A valid UDP datagram; `payload` is its position in the packet.
    Udp {
        src: IpEndpoint,
        dst: IpEndpoint,
        payload: Range<usize>,
    },
    /// A valid ICMP or ICMPv6 message; `message` is its position in the packet (from its type
    /// byte to the end).
    Icmp {
        src: IpAddress,
        dst: IpAddress,
        class: IcmpClass,
        message: Range<usize>,
    },
    /// Drop it and count the reason.
    Drop(DropReason),
}

impl Classified {
    /// The flow the filter judges, if this is a usable packet.
    pub(crate) fn flow(&self) -> Option<FlowInfo> {
        match *self {
            Classified::Tcp { tuple, .. } => Some(FlowInfo {
                protocol: Protocol::Tcp,
                src: tuple.remote.addr,
                dst: tuple.local.addr,
                src_port: tuple.remote.port,
                dst_port: tuple.local.port,
            }),
            Classified::Udp { src, dst, .. } => Some(FlowInfo {
                protocol: Protocol::Udp,
                src: src.addr,
                dst: dst.addr,
                src_port: src.port,
                dst_port: dst.port,
            }),
            Classified::Icmp { src, dst, .. } => Some(FlowInfo {
                protocol: Protocol::Icmp,
                src,
                dst,
                src_port: 0,
                dst_port: 0,
            }),
            Classified::Drop(_) => None,
        }
    }
}

/// Classifies one plain IP packet (see [`normalize`](crate::normalize)). With `verify` false
/// the transport checksums (TCP, UDP, ICMP) are not checked: the device vouched for them
/// ([`Config::verify_checksums`](crate::Config::verify_checksums)).
pub(crate) fn classify(packet: &[u8], verify: bool) -> Classified {
    let (src, dst, protocol, start, end): (IpAddress, IpAddress, IpProtocol, usize, usize) =
        match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let Ok(ip) = Ipv4Packet::new_checked(packet) else {
                    return Classified::Drop(DropReason::Malformed);
                };
                // `normalize` reassembles fragments before anything is classified.
                if ip.more_frags() || ip.frag_offset() != 0 {
                    return Classified::Drop(DropReason::Malformed);
                }
                let start = usize::from(ip.header_len());
                let end = usize::from(ip.total_len());
                (
                    ip.src_addr().into(),
                    ip.dst_addr().into(),
                    ip.next_header(),
                    start,
                    end,
                )
            }
            Some(6) => {
                let Ok(ip) = Ipv6Packet::new_checked(packet) else {
                    return Classified::Drop(DropReason::Malformed);
                };
                let end = 40 + usize::from(ip.payload_len());
                (
                    ip.src_addr().into(),
                    ip.dst_addr().into(),
                    ip.next_header(),
                    40,
                    end,
                )
            }
            _ => return Classified::Drop(DropReason::Malformed),
        };
    if start > end || end > packet.len() {
        return Classified::Drop(DropReason::Malformed);
    }
    let body = &packet[start..end];
    match protocol {
        IpProtocol::Tcp => classify_tcp(src, dst, body, verify),
        IpProtocol::Udp => classify_udp(src, dst, body, start, verify),
        IpProtocol::Icmp if matches!(src, IpAddress::Ipv4(_)) => {
            classify_icmpv4(src, dst, body, start, verify)
        }
        IpProtocol::Icmpv6 if matches!(src, IpAddress::Ipv6(_)) => {
            classify_icmpv6(src, dst, body, start, verify)
        }
        _ => Classified::Drop(DropReason::UnknownProtocol),
    }
}

fn classify_tcp(src: IpAddress, dst: IpAddress, segment: &[u8], verify: bool) -> Classified {
    let Ok(tcp) = TcpPacket::new_checked(segment) else {
        return Classified::Drop(DropReason::Malformed);
    };
    if tcp.src_port() == 0 || tcp.dst_port() == 0 || !is_unicast(src) || !is_unicast(dst) {
        return Classified::Drop(DropReason::Malformed);
    }
    if verify && !tcp.verify_checksum(&src, &dst) {
        return Classified::Drop(DropReason::BadChecksum);
    }
    let tuple = FourTuple {
        remote: IpEndpoint::new(src, tcp.src_port()),
        local: IpEndpoint::new(dst, tcp.dst_port()),
    };
    let ack = tcp.ack().then(|| tcp.ack_number().0 as u32);
    // Options matter on SYNs, and on bare ACKs a SYN cookie may have to validate.
    let options = if tcp.syn() || (ack.is_some() && !tcp.rst() && !tcp.fin()) {
        SynOptions::parse(tcp.options())
    } else {
        SynOptions::default()
    };
    Classified::Tcp {
        tuple,
        header: TcpHeader {
            seq: tcp.seq_number().0 as u32,
            ack,
            syn: tcp.syn(),
            rst: tcp.rst(),
            fin: tcp.fin(),
            payload_len: tcp.payload().len(),
            window: tcp.window_len(),
            options,
        },
    }
}

fn classify_udp(
    src: IpAddress,
    dst: IpAddress,
    body: &[u8],
    start: usize,
    verify: bool,
) -> Classified {
    let Ok(udp) = UdpPacket::new_checked(body) else {
        return Classified::Drop(DropReason::Malformed);
    };
    if udp.dst_port() == 0 || !is_unicast(src) || !is_unicast(dst) {
        return Classified::Drop(DropReason::Malformed);
    }
    // IPv4 allows "no checksum" (0); IPv6 requires one (RFC 8200 §8.1).
    let checksum_ok = match src {
        _ if !verify => true,
        IpAddress::Ipv4(_) if udp.checksum() == 0 => true,
        _ => udp.checksum() != 0 && udp.verify_checksum(&src, &dst),
    };
    if !checksum_ok {
        return Classified::Drop(DropReason::BadChecksum);
    }
    let payload_start = start + 8;
    Classified::Udp {
        src: IpEndpoint::new(src, udp.src_port()),
        dst: IpEndpoint::new(dst, udp.dst_port()),
        payload: payload_start..start + usize::from(udp.len()),
    }
}

fn classify_icmpv4(
    src: IpAddress,
    dst: IpAddress,
    body: &[u8],
    start: usize,
    verify: bool,
) -> Classified {
    let Ok(icmp) = Icmpv4Packet::new_checked(body) else {
        return Classified::Drop(DropReason::Malformed);
    };
    if verify && !icmp.verify_checksum() {
        return Classified::Drop(DropReason::BadChecksum);
    }
    let class = match icmp.msg_type() {
        Icmpv4Message::EchoRequest if icmp.msg_code() == 0 => IcmpClass::EchoRequest {
            ident: icmp.echo_ident(),
            seq: icmp.echo_seq_no(),
        },
        other => IcmpClass::Other {
            icmp_type: other.into(),
            code: icmp.msg_code(),
        },
    };
    Classified::Icmp {
        src,
        dst,
        class,
        message: start..start + body.len(),
    }
}

fn classify_icmpv6(
    src: IpAddress,
    dst: IpAddress,
    body: &[u8],
    start: usize,
    verify: bool,
) -> Classified {
    let (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) = (src, dst) else {
        return Classified::Drop(DropReason::Malformed);
    };
    let Ok(icmp) = Icmpv6Packet::new_checked(body) else {
        return Classified::Drop(DropReason::Malformed);
    };
    if verify && !icmp.verify_checksum(&s, &d) {
        return Classified::Drop(DropReason::BadChecksum);
    }
    let class = match icmp.msg_type() {
        Icmpv6Message::EchoRequest if icmp.msg_code() == 0 => IcmpClass::EchoRequest {
            ident: icmp.echo_ident(),
            seq: icmp.echo_seq_no(),
        },
        other => IcmpClass::Other {
            icmp_type: other.into(),
            code: icmp.msg_code(),
        },
    };
    Classified::Icmp {
        src,
        dst,
        class,
        message: start..start + body.len(),
    }
}

/// Unicast addresses only: TCP, UDP to broadcast/multicast groups are not served.
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
    use alloc::vec::Vec;
    use netstack_testkit::packets::Segment;
    use smoltcp::wire::{Ipv4Address, Ipv6Address, TcpControl};

    /// A 40-byte TCP/IPv4 segment (no option, no data) from 198.18.0.1:40000 to 198.18.0.2:80.
    fn ipv4_tcp(control: TcpControl) -> Vec<u8> {
        let src = (Ipv4Address::new(198, 18, 0, 1), 40000);
        let dst = (Ipv4Address::new(198, 18, 0, 2), 80);
        Segment::new(src, dst)
            .control(control)
            .seq(1)
            .window(1000)
            .build()
    }

    #[test]
    fn syn_is_classified_with_its_tuple() {
        let c = classify(&ipv4_tcp(TcpControl::Syn), true);
        let Classified::Tcp { tuple, header } = c else {
            panic!("{c:?}")
        };
        assert!(header.is_syn());
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
                classify(&p[..len], true),
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
        assert_eq!(
            classify(&p, true),
            Classified::Drop(DropReason::BadChecksum)
        );
        // Unless the device vouched for its checksums.
        assert!(matches!(classify(&p, false), Classified::Tcp { .. }));
    }

    #[test]
    fn ipv6_syn_is_classified() {
        let src = (Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 40000);
        let dst = (Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2), 80);
        let buf = Segment::new(src, dst).control(TcpControl::Syn).build();
        assert!(matches!(
            classify(&buf, true),
            Classified::Tcp {
                header: TcpHeader { syn: true, .. },
                ..
            }
        ));
    }

    #[test]
    fn garbage_is_malformed_and_unknown_protocols_unsupported() {
        assert_eq!(classify(&[], true), Classified::Drop(DropReason::Malformed));
        assert_eq!(
            classify(&[0x70, 0, 0], true),
            Classified::Drop(DropReason::Malformed)
        );
        let mut p = ipv4_tcp(TcpControl::Syn);
        p[9] = 47; // GRE
        assert_eq!(
            classify(&p, true),
            Classified::Drop(DropReason::UnknownProtocol)
        );
    }
}
