//! Resets the stack sends without a socket: the answer to a refused or expired connection
//! request (RFC 9293 3.10.7.1: a segment that opens no connection is answered with RST).

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};

use crate::classify::TcpHeader;
use crate::error::Error;
use crate::outbox::Outbox;
use crate::tcp::tuple::FourTuple;
use crate::waker::WakeBatch;

/// The RST that answers `header` (a segment from `tuple.remote` to `tuple.local`): with the
/// segment's ACK number as its sequence number if it had one, otherwise sequence 0 and an ACK
/// of everything the segment occupied, so that the peer accepts it (a client in SYN-SENT then
/// fails its `connect()` with ECONNREFUSED).
fn rst_for(tuple: FourTuple, header: &TcpHeader) -> TcpRepr<'static> {
    let (seq, ack) = match header.ack {
        Some(ack) => (ack, None),
        None => {
            let len = header.payload_len as u32 + u32::from(header.syn) + u32::from(header.fin);
            (0, Some(TcpSeqNumber(header.seq.wrapping_add(len) as i32)))
        }
    };
    TcpRepr {
        src_port: tuple.local.port,
        dst_port: tuple.remote.port,
        control: TcpControl::Rst,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack,
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    }
}

impl Outbox {
    /// Queues the RST that refuses `header` on `tuple`; if the outbox is full it is dropped
    /// and counted (the peer retransmits its SYN and is refused again).
    pub(crate) fn send_rst(
        &mut self,
        tuple: FourTuple,
        header: &TcpHeader,
        wake: &mut WakeBatch,
    ) -> Result<(), Error> {
        let repr = rst_for(tuple, header);
        let (src, dst) = (tuple.local.addr, tuple.remote.addr);
        self.emit(
            src,
            dst,
            IpProtocol::Tcp,
            repr.buffer_len(),
            |buf| {
                let mut packet = TcpPacket::new_unchecked(buf);
                repr.emit(&mut packet, &src, &dst, &ChecksumCapabilities::default());
            },
            wake,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::SynOptions;
    use smoltcp::wire::{IpEndpoint, Ipv4Address};

    fn tuple() -> FourTuple {
        FourTuple {
            remote: IpEndpoint::new(Ipv4Address::new(198, 18, 0, 1).into(), 40_000),
            local: IpEndpoint::new(Ipv4Address::new(198, 19, 0, 10).into(), 80),
        }
    }

    #[test]
    fn a_syn_is_reset_with_an_ack_of_its_sequence_number() {
        let header = TcpHeader {
            seq: u32::MAX, // the ACK wraps around
            ack: None,
            syn: true,
            rst: false,
            fin: false,
            payload_len: 0,
            window: 1024,
            options: SynOptions::default(),
        };
        let rst = rst_for(tuple(), &header);
        assert_eq!(rst.control, TcpControl::Rst);
        assert_eq!(rst.seq_number, TcpSeqNumber(0));
        assert_eq!(rst.ack_number, Some(TcpSeqNumber(0)));
        assert_eq!((rst.src_port, rst.dst_port), (80, 40_000));
    }

    #[test]
    fn a_segment_with_an_ack_is_reset_from_that_ack() {
        let header = TcpHeader {
            seq: 7,
            ack: Some(1234),
            syn: false,
            rst: false,
            fin: false,
            payload_len: 10,
            window: 1024,
            options: SynOptions::default(),
        };
        let rst = rst_for(tuple(), &header);
        assert_eq!(rst.seq_number, TcpSeqNumber(1234));
        assert_eq!(rst.ack_number, None);
    }
}
