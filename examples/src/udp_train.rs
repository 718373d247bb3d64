//! UDP segmentation offload on a Linux TUN device's write side: consecutive UDP datagrams of
//! one flow with payloads of one size (the last may be shorter) go to the kernel as one "train",
//! a single write with a `virtio_net_hdr` of GSO type UDP_L4 (kernel 6.2 and later), which the
//! kernel cuts back into the datagrams it was made of. One system call and one socket buffer
//! per train instead of one of each per datagram; a receiver with `UDP_GRO` even gets the train
//! whole. The payloads are not copied: the write gathers them from the stack's packets.
//!
//! Only packets as the stack builds them join a train: IPv4 without options and not a
//! fragment, or IPv6 with UDP as the first next header; same addresses, ports and hop limit as
//! the first; a payload of the first's length (or shorter, which ends the train).

use crate::offload::{fold, sum_be_words, NEEDS_CSUM, VNET_HDR_LEN};

/// `VIRTIO_NET_HDR_GSO_UDP_L4`.
const GSO_UDP_L4: u8 = 5;
/// Most datagrams per train (the kernel segments at most 64 per UDP GSO packet, `UDP_MAX_SEGMENTS`
/// is 128 on 6.x; half of it leaves room).
pub const MAX_TRAIN: usize = 64;
/// Largest train: an IP packet's length field.
const MAX_TRAIN_BYTES: usize = 65_535;
/// The UDP header's length.
const UDP_HEADER: usize = 8;
/// The longest IP + UDP header a train has (IPv6).
pub const MAX_HEADER: usize = 40 + UDP_HEADER;

/// What makes a packet a possible train start: its IP header length and payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// IP header length (20 or 40).
    ip_len: usize,
    /// UDP payload length of the first datagram: every other one has this or less.
    segment: usize,
}

impl Head {
    /// Length of the IP and UDP headers in front of each datagram's payload.
    pub fn headers(&self) -> usize {
        self.ip_len + UDP_HEADER
    }

    /// The payload length of the train's first datagram.
    pub fn segment(&self) -> usize {
        self.segment
    }
}

/// Whether `packet` is a UDP datagram a train can start with.
pub fn head(packet: &[u8]) -> Option<Head> {
    let ip_len = match packet.first()? >> 4 {
        // No options, not a fragment (MF clear, offset 0), UDP, length field exact.
        4 if packet.len() >= 28
            && packet[0] & 0x0f == 5
            && packet[6] & 0x3f == 0
            && packet[7] == 0
            && packet[9] == 17
            && usize::from(u16::from_be_bytes([packet[2], packet[3]])) == packet.len() =>
        {
            20
        }
        6 if packet.len() >= 48
            && packet[6] == 17
            && usize::from(u16::from_be_bytes([packet[4], packet[5]])) + 40 == packet.len() =>
        {
            40
        }
        _ => return None,
    };
    let udp_len = usize::from(u16::from_be_bytes([packet[ip_len + 4], packet[ip_len + 5]]));
    if udp_len != packet.len() - ip_len {
        return None;
    }
    let segment = udp_len - UDP_HEADER;
    // An empty datagram would be an empty segment.
    (segment > 0).then_some(Head { ip_len, segment })
}

/// How `packet` relates to a train that starts with `first` (described by `head`) and holds
/// `count` datagrams of `bytes` payload bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joins {
    /// It does not belong: write the train, then start afresh with it.
    No,
    /// It joins, and more may follow.
    Yes,
    /// It joins as the last one (its payload is shorter).
    Last,
}

/// Whether `packet` joins the train that starts with `first`.
pub fn joins(head: Head, first: &[u8], count: usize, bytes: usize, packet: &[u8]) -> Joins {
    if count >= MAX_TRAIN || packet.len() <= head.ip_len + UDP_HEADER {
        return Joins::No;
    }
    let Some(h) = self::head(packet) else {
        return Joins::No;
    };
    let payload = h.segment;
    if h.ip_len != head.ip_len
        || payload > head.segment
        || head.ip_len + UDP_HEADER + bytes + payload > MAX_TRAIN_BYTES
    {
        return Joins::No;
    }
    // Same addresses, hop limit and (IPv4) TOS and DF; same ports.
    let same = if head.ip_len == 20 {
        first[1] == packet[1]
            && first[6] == packet[6]
            && first[8] == packet[8]
            && first[12..24] == packet[12..24]
    } else {
        first[..4] == packet[..4] && first[7..44] == packet[7..44]
    };
    match (same, payload == head.segment) {
        (false, _) => Joins::No,
        (true, true) => Joins::Yes,
        (true, false) => Joins::Last,
    }
}

/// The `virtio_net_hdr` and the IP + UDP header of a train that starts with `first` and
/// carries `bytes` payload bytes in all: lengths for the whole train, the IPv4 header checksum
/// recomputed, and the UDP checksum field holding the pseudo-header sum the kernel completes
/// for each datagram it cuts. Returns the header's length in `header`.
pub fn train_header(
    head: Head,
    first: &[u8],
    bytes: usize,
    header: &mut [u8; MAX_HEADER],
) -> ([u8; VNET_HDR_LEN], usize) {
    let ip_len = head.ip_len;
    let len = ip_len + UDP_HEADER;
    header[..len].copy_from_slice(&first[..len]);
    let udp_len = (UDP_HEADER + bytes) as u16;
    let pseudo = if ip_len == 20 {
        header[2..4].copy_from_slice(&((ip_len + UDP_HEADER + bytes) as u16).to_be_bytes());
        header[10..12].copy_from_slice(&[0, 0]);
        let sum = !fold(sum_be_words(&header[..20], 0));
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        sum_be_words(&header[12..20], 17 + u64::from(udp_len))
    } else {
        header[4..6].copy_from_slice(&udp_len.to_be_bytes());
        sum_be_words(&header[8..40], 17 + u64::from(udp_len))
    };
    header[ip_len + 4..ip_len + 6].copy_from_slice(&udp_len.to_be_bytes());
    header[ip_len + 6..ip_len + 8].copy_from_slice(&fold(pseudo).to_be_bytes());
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[0] = NEEDS_CSUM;
    hdr[1] = GSO_UDP_L4;
    hdr[2..4].copy_from_slice(&(len as u16).to_ne_bytes());
    hdr[4..6].copy_from_slice(&(head.segment as u16).to_ne_bytes());
    hdr[6..8].copy_from_slice(&(ip_len as u16).to_ne_bytes());
    hdr[8..10].copy_from_slice(&6u16.to_ne_bytes());
    (hdr, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstack_testkit::packets::udp_datagram;
    use std::net::SocketAddr;

    fn dgram(src: &str, dst: &str, len: usize) -> Vec<u8> {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        udp_datagram(src, dst, &vec![7u8; len])
    }

    #[test]
    fn equal_datagrams_of_a_flow_join_and_a_shorter_one_ends_the_train() {
        for (a, b, c) in [
            ("198.19.0.10:53", "198.18.0.1:4000", "198.18.0.1:4001"),
            ("[fd00::10]:53", "[fd00::1]:4000", "[fd00::1]:4001"),
        ] {
            let first = dgram(a, b, 1200);
            let h = head(&first).expect("a train start");
            assert_eq!(h.segment, 1200);
            assert_eq!(joins(h, &first, 1, 1200, &dgram(a, b, 1200)), Joins::Yes);
            assert_eq!(joins(h, &first, 1, 1200, &dgram(a, b, 100)), Joins::Last);
            assert_eq!(joins(h, &first, 1, 1200, &dgram(a, b, 1300)), Joins::No);
            assert_eq!(
                joins(h, &first, 1, 1200, &dgram(a, c, 1200)),
                Joins::No,
                "another flow"
            );
            assert_eq!(joins(h, &first, 1, 1200, &dgram(a, b, 0)), Joins::No);
            assert_eq!(
                joins(h, &first, MAX_TRAIN, 1200, &dgram(a, b, 1200)),
                Joins::No
            );
            assert_eq!(
                joins(h, &first, 54, 54 * 1200, &dgram(a, b, 1200)),
                Joins::No,
                "64 KiB"
            );
        }
        assert_eq!(head(&dgram("198.19.0.10:53", "198.18.0.1:4000", 0)), None);
    }

    #[test]
    fn fragments_and_other_protocols_start_no_train() {
        let mut fragment = dgram("198.19.0.10:53", "198.18.0.1:4000", 1200);
        fragment[6] |= 0x20; // MF
        assert_eq!(head(&fragment), None);
        let mut tcp = dgram("198.19.0.10:53", "198.18.0.1:4000", 1200);
        tcp[9] = 6;
        assert_eq!(head(&tcp), None);
    }

    #[test]
    fn the_train_header_covers_every_datagram_and_its_checksum_completes_per_datagram() {
        let first = dgram("198.19.0.10:53", "198.18.0.1:4000", 1000);
        let h = head(&first).unwrap();
        let mut header = [0u8; MAX_HEADER];
        let (hdr, len) = train_header(h, &first, 2500, &mut header);
        assert_eq!(len, 28);
        assert_eq!(u16::from_be_bytes([header[2], header[3]]), 28 + 2500);
        assert_eq!(u16::from_be_bytes([header[24], header[25]]), 8 + 2500);
        // The IPv4 header checksum is valid.
        assert_eq!(fold(sum_be_words(&header[..20], 0)), 0xffff);
        assert_eq!(hdr[1], GSO_UDP_L4);
        assert_eq!(u16::from_ne_bytes([hdr[4], hdr[5]]), 1000);
        // What the kernel does per segment (`__udp_gso_segment`): swap the length in the
        // partial sum for the segment's, then complete it over the segment's UDP header and
        // payload; the result must be the datagram's real checksum.
        let partial = u16::from_be_bytes([header[26], header[27]]);
        let seg_len = 8 + 1000u16;
        let adjusted = fold(u64::from(partial) + u64::from(!(8 + 2500u16)) + u64::from(seg_len));
        let mut seg = first[20..].to_vec();
        seg[6..8].copy_from_slice(&[0, 0]);
        let full = !fold(sum_be_words(&seg, u64::from(adjusted)));
        assert_eq!(full.to_be_bytes(), [first[26], first[27]]);
    }
}
