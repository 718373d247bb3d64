//! Linux TUN offloads (`IFF_VNET_HDR`): what the device's `virtio_net_hdr` says about a packet,
//! and the checksum work it leaves to the reader.
//!
//! With `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)` the kernel hands the reader TCP
//! "super-segments" of up to 64 KiB instead of MTU-sized ones (one read, one stack pass, one
//! ACK for up to ~44 segments' worth of data) and leaves the transport checksum of locally
//! generated packets partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the checksum field holds only the
//! pseudo-header sum, and the reader adds the sum over the bytes from `csum_start`. Every read
//! and write carries the 10-byte header in front of the IP packet.

/// Size of `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
pub(crate) const NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
const GSO_TCPV6: u8 = 4;
/// Offset of the checksum in a TCP header.
const TCP_CHECKSUM_OFFSET: usize = 16;

/// The fields of a `virtio_net_hdr` (`include/uapi/linux/virtio_net.h`) the reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `flags` (bit 0: checksum partial).
    pub flags: u8,
    /// `gso_type` (0 none, 1 TCPv4, 4 TCPv6, 3 UDP, 5 UDP L4; bit 7 ECN).
    pub gso_type: u8,
    /// `csum_start`: where the checksummed bytes begin (the transport header).
    pub csum_start: u16,
    /// `csum_offset`: where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Decodes a header as the kernel writes it: in host byte order, as long as nobody set
    /// `TUNSETVNETLE`/`TUNSETVNETBE` on the device (`Tun` never does).
    pub fn parse(raw: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u16_at = |i: usize| u16::from_ne_bytes([raw[i], raw[i + 1]]);
        VnetHdr {
            flags: raw[0],
            gso_type: raw[1],
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }
}

/// How to write a packet to an offloading device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// The `virtio_net_hdr` to write in front of it.
    pub hdr: [u8; VNET_HDR_LEN],
    /// Replace the two bytes at this offset with `checksum` (the partial checksum the kernel
    /// completes per segment), or `None` to write the packet as it is.
    pub checksum_at: Option<usize>,
    /// The replacement checksum bytes.
    pub checksum: [u8; 2],
}

/// Decides how to write `packet` to a device with MTU `mtu`: a TCP packet larger than the MTU
/// (the stack sends such super-segments with segmentation offload on) goes with a GSO header —
/// TCPv4/TCPv6, segment size `mtu` minus its headers, checksum partial — so that the kernel cuts
/// it to the MTU if it has to. Every other TCP packet goes with a checksum-partial header too,
/// without GSO: the stack (with `tcp_checksum_offload`) leaves TCP checksums to the device,
/// and the kernel trusts a partial checksum of a packet it delivers locally, so neither side
/// sums the bytes. Anything else goes with an all-zero header (complete packet).
///
/// The checksum field is replaced by the pseudo-header sum the kernel completes, so whatever
/// the stack left in it (nothing, or a full checksum) does not matter.
pub fn outgoing(packet: &[u8], mtu: usize) -> Outgoing {
    let plain = Outgoing {
        hdr: [0; VNET_HDR_LEN],
        checksum_at: None,
        checksum: [0; 2],
    };
    let segment = packet.len() > mtu;
    let Some((ip_len, gso_type, pseudo)) = tcp_pseudo_header_sum(packet) else {
        return plain;
    };
    let Some(&offset_byte) = packet.get(ip_len + 12) else {
        return plain;
    };
    let headers = ip_len + usize::from(offset_byte >> 4) * 4;
    if headers > packet.len() || (segment && headers >= mtu) {
        return plain;
    }
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[0] = NEEDS_CSUM;
    if segment {
        hdr[1] = gso_type;
        hdr[2..4].copy_from_slice(&(headers as u16).to_ne_bytes());
        hdr[4..6].copy_from_slice(&((mtu - headers) as u16).to_ne_bytes());
    }
    hdr[6..8].copy_from_slice(&(ip_len as u16).to_ne_bytes());
    hdr[8..10].copy_from_slice(&(TCP_CHECKSUM_OFFSET as u16).to_ne_bytes());
    Outgoing {
        hdr,
        checksum_at: Some(ip_len + TCP_CHECKSUM_OFFSET),
        checksum: fold(pseudo).to_be_bytes(),
    }
}

/// For a TCP packet (IPv4 without options or IPv6 without extension headers, as the stack
/// builds them): its IP header length, GSO type and pseudo-header sum (unfolded).
fn tcp_pseudo_header_sum(packet: &[u8]) -> Option<(usize, u8, u64)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 40 && packet[0] & 0x0f == 5 && packet[9] == 6 => {
            let tcp_len = (packet.len() - 20) as u64;
            Some((20, GSO_TCPV4, sum_be_words(&packet[12..20], 6 + tcp_len)))
        }
        6 if packet.len() >= 60 && packet[6] == 6 => {
            let tcp_len = (packet.len() - 40) as u64;
            Some((40, GSO_TCPV6, sum_be_words(&packet[8..40], 6 + tcp_len)))
        }
        _ => None,
    }
}

/// Why a packet read from an offloading device was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// The checksum location lies outside the packet.
    BadChecksumLocation,
}

/// Finishes what the device left undone so that `packet` is an ordinary IP packet: completes a
/// partial transport checksum. A TCP super-segment needs nothing else: its IP length fields
/// and IPv4 header checksum cover the whole packet.
///
/// # Errors
/// [`OffloadError::BadChecksumLocation`] if the header points outside the packet.
pub fn finish_packet(hdr: &VnetHdr, packet: &mut [u8]) -> Result<(), OffloadError> {
    if hdr.flags & NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > packet.len() || start > at {
        return Err(OffloadError::BadChecksumLocation);
    }
    let partial = u16::from_be_bytes([packet[at], packet[at + 1]]);
    packet[at] = 0;
    packet[at + 1] = 0;
    let sum = !fold(sum_be_words(&packet[start..], u64::from(partial)));
    // 0 means "no checksum" for UDP; all ones is the same value in one's complement.
    let sum = if sum == 0 { 0xffff } else { sum };
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// The one's-complement sum of `data` as big-endian 16-bit words (odd length: padded with a
/// zero byte), added to `initial`, not yet folded. 32-bit words into a 64-bit accumulator sum
/// to the same folded result with half the additions.
pub(crate) fn sum_be_words(data: &[u8], initial: u64) -> u64 {
    let mut sum = initial;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    sum + u64::from(u32::from_be_bytes(tail))
}

/// Folds a 64-bit one's-complement sum to 16 bits.
pub(crate) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstack_testkit::packets::{udp_datagram, Segment};
    use smoltcp::wire::{Ipv4Packet, Ipv6Packet, TcpControl, TcpPacket, UdpPacket};
    use std::net::SocketAddr;

    /// A TCP/IPv4 packet with a correct checksum and `len` payload bytes.
    fn tcp_v4(len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let (src, dst): (SocketAddr, SocketAddr) = (
            "198.18.0.1:40000".parse().unwrap(),
            "198.19.0.9:80".parse().unwrap(),
        );
        Segment::new(src, dst)
            .control(TcpControl::Psh)
            .seq(123_456)
            .ack(654_321)
            .window(512)
            .payload(&payload)
            .build()
    }

    /// Turns the correct checksum at `start + offset` into what the kernel hands over with
    /// NEEDS_CSUM — the pseudo-header sum alone: ~checksum minus the sum over the transport
    /// bytes (with a zero checksum field), in one's complement — and returns the header that
    /// says so.
    fn make_partial(packet: &mut [u8], start: usize, offset: usize) -> VnetHdr {
        let at = start + offset;
        let real = u16::from_be_bytes([packet[at], packet[at + 1]]);
        packet[at] = 0;
        packet[at + 1] = 0;
        let data = fold(sum_be_words(&packet[start..], 0));
        let pseudo = fold(u64::from(!real) + u64::from(!data));
        packet[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
        VnetHdr {
            flags: NEEDS_CSUM,
            gso_type: 0,
            csum_start: start as u16,
            csum_offset: offset as u16,
        }
    }

    #[test]
    fn completing_a_partial_tcp_checksum_gives_the_real_one() {
        for len in [0, 1, 2, 3, 1460, 1461, 65_000] {
            let good = tcp_v4(len);
            let mut partial = good.clone();
            let hdr = make_partial(&mut partial, 20, 16);
            finish_packet(&hdr, &mut partial).unwrap();
            let p = Ipv4Packet::new_checked(&partial[..]).unwrap();
            let t = TcpPacket::new_checked(p.payload()).unwrap();
            assert!(
                t.verify_checksum(&p.src_addr().into(), &p.dst_addr().into()),
                "payload of {len} bytes"
            );
        }
    }

    #[test]
    fn a_tcp_super_segment_goes_out_with_a_gso_header_whose_checksum_completes() {
        let big = tcp_v4(60_000);
        let out = outgoing(&big, 1500);
        let hdr = VnetHdr::parse(&out.hdr);
        assert_eq!(hdr.flags, NEEDS_CSUM);
        assert_eq!(hdr.gso_type, GSO_TCPV4);
        assert_eq!((hdr.csum_start, hdr.csum_offset), (20, 16));
        assert_eq!(u16::from_ne_bytes([out.hdr[2], out.hdr[3]]), 40, "headers");
        assert_eq!(
            u16::from_ne_bytes([out.hdr[4], out.hdr[5]]),
            1460,
            "segment size"
        );
        // What the kernel does with it: add the sum over the TCP bytes to the partial value.
        let at = out.checksum_at.expect("checksum replaced");
        let mut written = big.clone();
        written[at..at + 2].copy_from_slice(&out.checksum);
        finish_packet(&hdr, &mut written).unwrap();
        assert_eq!(written, big, "the completed checksum is the real one");
        // Non-TCP packets go as they are.
        let mut udp_like = big.clone();
        udp_like[9] = 17;
        assert_eq!(outgoing(&udp_like, 1500).checksum_at, None);
        assert_eq!(outgoing(&udp_like, 1500).hdr, [0; VNET_HDR_LEN]);
    }

    #[test]
    fn every_tcp_packet_goes_checksum_partial_and_its_checksum_completes() {
        for len in [0, 1, 100, 1460] {
            let good = tcp_v4(len);
            // The stack left the checksum to the device (zero), or computed it: either way
            // the header makes the kernel complete the real one.
            let mut left = good.clone();
            left[36] = 0;
            left[37] = 0;
            for sent in [left, good.clone()] {
                let out = outgoing(&sent, 1500);
                let hdr = VnetHdr::parse(&out.hdr);
                assert_eq!(hdr.flags, NEEDS_CSUM);
                assert_eq!(hdr.gso_type, 0, "no segmentation below the MTU");
                assert_eq!((hdr.csum_start, hdr.csum_offset), (20, 16));
                let at = out.checksum_at.expect("checksum replaced");
                let mut written = sent.clone();
                written[at..at + 2].copy_from_slice(&out.checksum);
                finish_packet(&hdr, &mut written).unwrap();
                assert_eq!(written, good, "payload of {len} bytes");
            }
        }
        // Over the MTU: still segmented.
        let out = outgoing(&tcp_v4(60_000), 1500);
        assert_eq!(VnetHdr::parse(&out.hdr).gso_type, GSO_TCPV4);
    }

    #[test]
    fn packets_without_needs_csum_are_untouched_and_bad_locations_are_refused() {
        let good = tcp_v4(100);
        let mut same = good.clone();
        finish_packet(&VnetHdr::default(), &mut same).unwrap();
        assert_eq!(same, good);
        let hdr = VnetHdr {
            flags: NEEDS_CSUM,
            gso_type: 0,
            csum_start: 20,
            csum_offset: 200,
        };
        assert_eq!(
            finish_packet(&hdr, &mut same),
            Err(OffloadError::BadChecksumLocation)
        );
    }

    #[test]
    fn completing_a_partial_udp_checksum_over_ipv6_gives_a_valid_one() {
        let (src, dst): (SocketAddr, SocketAddr) = (
            "[fd00::1]:5353".parse().unwrap(),
            "[fd00::2]:53".parse().unwrap(),
        );
        let mut buf = udp_datagram(src, dst, b"offload");
        let hdr = make_partial(&mut buf, 40, 6);
        finish_packet(&hdr, &mut buf).unwrap();
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        let u = UdpPacket::new_checked(p.payload()).unwrap();
        assert!(u.verify_checksum(&p.src_addr().into(), &p.dst_addr().into()));
        assert_ne!(u.checksum(), 0);
    }
}
