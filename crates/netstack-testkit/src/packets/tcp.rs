//! TCP segments: any flags, sequence numbers, window and options, with a valid checksum.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpEndpoint, IpProtocol, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

use super::ip_packet;

/// The fields of a TCP segment to build; [`Segment::build`] makes the IP packet.
///
/// Start from [`Segment::new`] (no flag, no option, sequence number 0) or [`Segment::syn`] and
/// set what the test needs; the fields are public for a test that sets them all at once.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Source address and port (its family picks IPv4 or IPv6).
    pub src: IpEndpoint,
    /// Destination address and port (of the same family as `src`).
    pub dst: IpEndpoint,
    /// SYN, FIN, RST, PSH or none (smoltcp's model: at most one of them per segment).
    pub control: TcpControl,
    /// The sequence number.
    pub seq: TcpSeqNumber,
    /// The acknowledgement number; `Some` sets the ACK flag.
    pub ack: Option<TcpSeqNumber>,
    /// The window field, as sent (unscaled).
    pub window: u16,
    /// The window scale option (SYN segments).
    pub window_scale: Option<u8>,
    /// The maximum segment size option (SYN segments).
    pub mss: Option<u16>,
    /// The SACK-permitted option (SYN segments).
    pub sack_permitted: bool,
    /// SACK blocks (left and right edges), at most three.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    /// The timestamp option.
    pub timestamp: Option<TcpTimestampRepr>,
    /// The data the segment carries.
    pub payload: &'a [u8],
}

impl<'a> Segment<'a> {
    /// The window [`Segment::new`] and [`Segment::syn`] advertise (Linux's initial window for
    /// an MSS of 1460).
    pub const DEFAULT_WINDOW: u16 = 64240;

    /// A segment from `src` to `dst` with no flag, sequence number 0, no ACK, a window of
    /// [`Segment::DEFAULT_WINDOW`], no option and no data.
    pub fn new(src: impl Into<IpEndpoint>, dst: impl Into<IpEndpoint>) -> Segment<'static> {
        Segment {
            src: src.into(),
            dst: dst.into(),
            control: TcpControl::None,
            seq: TcpSeqNumber(0),
            ack: None,
            window: Self::DEFAULT_WINDOW,
            window_scale: None,
            mss: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        }
    }

    /// A connection request as Linux sends one (without its timestamp and SACK options): SYN
    /// with sequence number `seq`, window scale 7, MSS 1460.
    pub fn syn(
        src: impl Into<IpEndpoint>,
        dst: impl Into<IpEndpoint>,
        seq: i32,
    ) -> Segment<'static> {
        Segment::new(src, dst)
            .control(TcpControl::Syn)
            .seq(seq)
            .window_scale(7)
            .mss(1460)
    }

    /// With the control flag `control`.
    pub fn control(self, control: TcpControl) -> Self {
        Segment { control, ..self }
    }

    /// With sequence number `seq`.
    pub fn seq(self, seq: i32) -> Self {
        Segment {
            seq: TcpSeqNumber(seq),
            ..self
        }
    }

    /// With the ACK flag and acknowledgement number `ack`.
    pub fn ack(self, ack: i32) -> Self {
        Segment {
            ack: Some(TcpSeqNumber(ack)),
            ..self
        }
    }

    /// With the window field `window`.
    pub fn window(self, window: u16) -> Self {
        Segment { window, ..self }
    }

    /// With the window scale option `shift`.
    pub fn window_scale(self, shift: u8) -> Self {
        Segment {
            window_scale: Some(shift),
            ..self
        }
    }

    /// With the MSS option `mss`.
    pub fn mss(self, mss: u16) -> Self {
        Segment {
            mss: Some(mss),
            ..self
        }
    }

    /// With the SACK-permitted option.
    pub fn sack_permitted(self) -> Self {
        Segment {
            sack_permitted: true,
            ..self
        }
    }

    /// With the timestamp option (`tsval`, `tsecr`).
    pub fn timestamp(self, tsval: u32, tsecr: u32) -> Self {
        Segment {
            timestamp: Some(TcpTimestampRepr::new(tsval, tsecr)),
            ..self
        }
    }

    /// Carrying `payload`.
    pub fn payload<'b>(self, payload: &'b [u8]) -> Segment<'b> {
        Segment { payload, ..self }
    }

    /// The IP packet: IPv4 or IPv6 after the addresses, valid IP and TCP checksums.
    ///
    /// Panics if the addresses' families differ or the segment does not fit an IP packet.
    pub fn build(&self) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: self.src.port,
            dst_port: self.dst.port,
            control: self.control,
            seq_number: self.seq,
            ack_number: self.ack,
            window_len: self.window,
            window_scale: self.window_scale,
            max_seg_size: self.mss,
            sack_permitted: self.sack_permitted,
            sack_ranges: self.sack_ranges,
            timestamp: self.timestamp,
            payload: self.payload,
        };
        let (src, dst) = (self.src.addr, self.dst.addr);
        ip_packet(src, dst, IpProtocol::Tcp, repr.buffer_len(), |b| {
            repr.emit(
                &mut TcpPacket::new_unchecked(b),
                &src,
                &dst,
                &ChecksumCapabilities::default(),
            )
        })
    }
}

/// A TCP SYN from `src` to `dst` with sequence number `seq` ([`Segment::syn`]), as an IP
/// packet.
pub fn tcp_syn(src: impl Into<IpEndpoint>, dst: impl Into<IpEndpoint>, seq: i32) -> Vec<u8> {
    Segment::syn(src, dst, seq).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::tests::verified_ip;
    use smoltcp::wire::{Ipv4Address, Ipv6Address};

    /// Parses `packet` the way smoltcp does on receive (checksums verified) and hands the
    /// TCP fields to `check`.
    fn parse(packet: &[u8], check: impl FnOnce(&TcpRepr<'_>)) {
        let (src, dst, protocol, segment) = verified_ip(packet);
        assert_eq!(protocol, IpProtocol::Tcp);
        let tcp = TcpPacket::new_checked(segment).unwrap();
        let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default())
            .expect("valid TCP checksum");
        check(&repr);
    }

    fn v4(last: u8, port: u16) -> IpEndpoint {
        IpEndpoint::new(Ipv4Address::new(198, 18, 0, last).into(), port)
    }

    fn v6(last: u16, port: u16) -> IpEndpoint {
        IpEndpoint::new(
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, last).into(),
            port,
        )
    }

    #[test]
    fn syn_with_options_parses_with_every_field() {
        for (src, dst) in [(v4(1, 40000), v4(2, 80)), (v6(1, 40000), v6(2, 80))] {
            let packet = Segment::syn(src, dst, 1000)
                .sack_permitted()
                .timestamp(7, 0)
                .build();
            parse(&packet, |t| {
                assert_eq!(t.control, TcpControl::Syn);
                assert_eq!((t.src_port, t.dst_port), (40000, 80));
                assert_eq!(t.seq_number, TcpSeqNumber(1000));
                assert_eq!(t.ack_number, None);
                assert_eq!(t.window_len, Segment::DEFAULT_WINDOW);
                assert_eq!((t.window_scale, t.max_seg_size), (Some(7), Some(1460)));
                assert!(t.sack_permitted);
                assert_eq!(t.timestamp, Some(TcpTimestampRepr::new(7, 0)));
            });
            assert_eq!(
                tcp_syn(src, dst, 1000),
                Segment::syn(src, dst, 1000).build()
            );
        }
    }

    #[test]
    fn data_segment_with_ack_and_sack_blocks_carries_its_payload() {
        let seg = Segment {
            sack_ranges: [Some((10, 20)), Some((30, 40)), None],
            ..Segment::new(v4(1, 1), v4(2, 2))
                .control(TcpControl::Psh)
                .seq(-5)
                .ack(i32::MAX)
                .window(0)
                .payload(b"payload")
        };
        parse(&seg.build(), |t| {
            assert_eq!(t.control, TcpControl::Psh);
            assert_eq!(t.seq_number, TcpSeqNumber(-5));
            assert_eq!(t.ack_number, Some(TcpSeqNumber(i32::MAX)));
            assert_eq!(t.window_len, 0);
            assert_eq!(t.sack_ranges, [Some((10, 20)), Some((30, 40)), None]);
            assert_eq!(t.payload, b"payload");
        });
    }

    #[test]
    fn a_bare_segment_is_forty_bytes_over_ipv4() {
        // Tests rely on it: the last byte is the urgent pointer, covered only by the checksum.
        let p = Segment::new(v4(1, 1), v4(2, 2)).build();
        assert_eq!(p.len(), 40);
        assert_eq!(Segment::new(v6(1, 1), v6(2, 2)).build().len(), 60);
    }
}
