//! IP fragments: one at a time (any offset, any order, overlaps), or a whole packet cut up.

use smoltcp::wire::{
    IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6ExtHeader, Ipv6FragmentHeader,
    Ipv6FragmentRepr, Ipv6Packet,
};

use super::ip_packet;

/// The largest fragment offset either header can carry (13 bits of 8-byte units).
const MAX_OFFSET: usize = 8191 * 8;

/// One IPv4 fragment: `data` at byte `offset` of the original datagram's payload (a multiple
/// of 8), of protocol `protocol`, identification `ident`, More Fragments set if `more`; a
/// valid header checksum.
///
/// Panics if `offset` is not a multiple of 8 or beyond what the header can carry.
pub fn ipv4_fragment(
    src: Ipv4Address,
    dst: Ipv4Address,
    protocol: IpProtocol,
    ident: u16,
    offset: usize,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let offset = offset_field(offset);
    let mut packet = ip_packet(src.into(), dst.into(), protocol, data.len(), |b| {
        b.copy_from_slice(data)
    });
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.set_ident(ident);
    ip.set_dont_frag(false);
    ip.set_more_frags(more);
    ip.set_frag_offset(offset);
    ip.fill_checksum();
    packet
}

/// The IPv4 `packet` cut into fragments of `chunk` payload bytes (a multiple of 8; the last
/// fragment takes the rest), in order, with identification `ident`. Options in the original
/// header are not copied (the fragments' headers are 20 bytes).
///
/// Panics if `packet` is not IPv4, has no payload, or `chunk` is not a positive multiple of 8.
pub fn ipv4_fragments(packet: &[u8], chunk: usize, ident: u16) -> Vec<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(packet).expect("an IPv4 packet to fragment");
    let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    cut(ip.payload(), chunk, |offset, more, data| {
        ipv4_fragment(src, dst, protocol, ident, offset, more, data)
    })
}

/// One IPv6 fragment: a Fragment header (identification `ident`, byte `offset` of the
/// fragmentable part, a multiple of 8, More Fragments set if `more`) whose next header is
/// `next_header` (the fragmented part's first header), followed by `data`.
///
/// Panics if `offset` is not a multiple of 8 or beyond what the header can carry.
pub fn ipv6_fragment(
    src: Ipv6Address,
    dst: Ipv6Address,
    next_header: IpProtocol,
    ident: u32,
    offset: usize,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let offset = offset_field(offset);
    let repr = Ipv6FragmentRepr {
        frag_offset: offset / 8,
        more_frags: more,
        ident,
    };
    let header_len = 2 + repr.buffer_len();
    ip_packet(
        src.into(),
        dst.into(),
        IpProtocol::Ipv6Frag,
        header_len + data.len(),
        |b| {
            let (header, rest) = b.split_at_mut(header_len);
            let mut ext = Ipv6ExtHeader::new_unchecked(header);
            ext.set_next_header(next_header);
            ext.set_header_len(0);
            repr.emit(&mut Ipv6FragmentHeader::new_unchecked(ext.payload_mut()));
            rest.copy_from_slice(data);
        },
    )
}

/// The IPv6 `packet` cut into fragments of `chunk` bytes of everything after its fixed header
/// (a multiple of 8; the last takes the rest), in order, with identification `ident`. Any
/// extension headers of `packet` travel in the first fragment.
///
/// Panics if `packet` is not IPv6, has no payload, or `chunk` is not a positive multiple of 8.
pub fn ipv6_fragments(packet: &[u8], chunk: usize, ident: u32) -> Vec<Vec<u8>> {
    let ip = Ipv6Packet::new_checked(packet).expect("an IPv6 packet to fragment");
    let (src, dst, next) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    cut(ip.payload(), chunk, |offset, more, data| {
        ipv6_fragment(src, dst, next, ident, offset, more, data)
    })
}

/// `offset` (bytes) as a fragment header carries it; panics if it cannot.
fn offset_field(offset: usize) -> u16 {
    assert!(
        offset.is_multiple_of(8) && offset <= MAX_OFFSET,
        "fragment offset {offset}"
    );
    offset as u16
}

/// `payload` in pieces of `chunk` bytes, each made into a fragment by `fragment(offset, more,
/// piece)`.
fn cut(
    payload: &[u8],
    chunk: usize,
    fragment: impl Fn(usize, bool, &[u8]) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    assert!(
        chunk > 0 && chunk.is_multiple_of(8),
        "fragment size {chunk}"
    );
    assert!(!payload.is_empty(), "an empty payload has no fragments");
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, piece)| {
            let offset = i * chunk;
            fragment(offset, offset + piece.len() < payload.len(), piece)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::tests::verified_ip;
    use crate::packets::udp_datagram;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, UdpPacket, UdpRepr};

    /// A UDP datagram of `len` payload bytes whose transport checksum the test verifies after
    /// reassembly.
    fn datagram(src: &str, dst: &str, len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
        let (src, dst): (std::net::SocketAddr, std::net::SocketAddr) =
            (src.parse().unwrap(), dst.parse().unwrap());
        udp_datagram(src, dst, &payload)
    }

    fn assert_valid_udp(src: IpAddress, dst: IpAddress, udp: &[u8]) {
        let udp = UdpPacket::new_checked(udp).unwrap();
        UdpRepr::parse(&udp, &src, &dst, &ChecksumCapabilities::default())
            .expect("the reassembled datagram's checksum");
    }

    #[test]
    fn ipv4_fragments_have_valid_headers_and_reassemble_to_the_original() {
        let original = datagram("198.18.0.1:1000", "198.18.0.2:53", 3000);
        let fragments = ipv4_fragments(&original, 1232, 0x4242);
        assert_eq!(fragments.len(), 3);
        let mut whole = Vec::new();
        for (i, f) in fragments.iter().enumerate() {
            let ip = Ipv4Packet::new_checked(&f[..]).unwrap();
            assert!(ip.verify_checksum(), "fragment {i}'s header checksum");
            assert_eq!(ip.ident(), 0x4242);
            assert!(!ip.dont_frag());
            assert_eq!(ip.more_frags(), i < 2);
            assert_eq!(usize::from(ip.frag_offset()), whole.len());
            assert_eq!(ip.next_header(), IpProtocol::Udp);
            whole.extend_from_slice(ip.payload());
        }
        let (src, dst, _, udp) = verified_ip(&original);
        assert_eq!(whole, udp);
        assert_valid_udp(src, dst, &whole);
    }

    #[test]
    fn ipv6_fragments_carry_fragment_headers_and_reassemble_to_the_original() {
        let original = datagram("[fd00::1]:1000", "[fd00::2]:53", 3000);
        let fragments = ipv6_fragments(&original, 1232, 77);
        assert_eq!(fragments.len(), 3);
        let mut whole = Vec::new();
        for (i, f) in fragments.iter().enumerate() {
            let (_, _, protocol, body) = verified_ip(f);
            assert_eq!(protocol, IpProtocol::Ipv6Frag);
            let ext = Ipv6ExtHeader::new_checked(body).unwrap();
            assert_eq!(ext.next_header(), IpProtocol::Udp);
            let frag = Ipv6FragmentHeader::new_checked(ext.payload()).unwrap();
            let repr = Ipv6FragmentRepr::parse(&frag).unwrap();
            assert_eq!(repr.ident, 77);
            assert_eq!(repr.more_frags, i < 2);
            assert_eq!(usize::from(repr.frag_offset) * 8, whole.len());
            whole.extend_from_slice(&body[8..]);
        }
        let (src, dst, _, udp) = verified_ip(&original);
        assert_eq!(whole, udp);
        assert_valid_udp(src, dst, &whole);
    }

    #[test]
    fn a_single_fragment_can_sit_anywhere() {
        let f = ipv4_fragment(
            Ipv4Address::new(198, 18, 0, 1),
            Ipv4Address::new(198, 18, 0, 2),
            IpProtocol::Udp,
            9,
            MAX_OFFSET,
            false,
            &[1; 8],
        );
        let ip = Ipv4Packet::new_checked(&f[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (usize::from(ip.frag_offset()), ip.more_frags()),
            (MAX_OFFSET, false)
        );
    }

    #[test]
    #[should_panic(expected = "fragment offset")]
    fn a_misaligned_offset_is_a_test_bug() {
        ipv6_fragment(
            Ipv6Address::LOCALHOST,
            Ipv6Address::LOCALHOST,
            IpProtocol::Udp,
            1,
            12,
            true,
            &[0; 8],
        );
    }
}
