//! The SYN-cookie path (see [`cookie`](crate::tcp::cookie) for the cookie itself): answering a
//! SYN statelessly when the half-open table is full, and creating the connection when an ACK
//! returns a valid cookie — by replaying, into a new socket, the SYN the cookie describes and
//! then the ACK itself (the socket takes the cookie as the SYN-ACK it sent).

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpProtocol, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};

use crate::classify::{SynOptions, TcpHeader};
use crate::error::Error;
use crate::group::Group;
use crate::packet::Packet;
use crate::shard::shard_of;
use crate::tcp::cookie::CookieOptions;
use crate::tcp::table::over_hard_limit;
use crate::tcp::tuple::FourTuple;
use crate::waker::WakeBatch;

/// The window-scale shift a socket with a receive buffer of `rx_buffer` bytes advertises
/// (smoltcp's rule: enough that the whole buffer fits the 16-bit window).
fn window_shift(rx_buffer: usize) -> u8 {
    let log2 = usize::BITS - rx_buffer.leading_zeros();
    (log2.saturating_sub(16) as u8).min(14)
}

/// What a cookie connection's socket will advertise: its window field and shift, if the peer
/// scales.
fn advertised_window(
    rx_buffer: usize,
    rx_buffer_max: usize,
    peer_scales: bool,
) -> (u16, Option<u8>) {
    let shift = if peer_scales {
        window_shift(rx_buffer.max(rx_buffer_max))
    } else {
        0
    };
    let window = u16::try_from(rx_buffer >> shift).unwrap_or(u16::MAX);
    (window, peer_scales.then_some(shift))
}

impl Group {
    /// The MSS the stack's sockets announce for a connection to `addr`.
    fn local_mss(&self, addr: IpAddress) -> u16 {
        let ip_header = match addr {
            IpAddress::Ipv4(_) => 20,
            IpAddress::Ipv6(_) => 40,
        };
        u16::try_from(self.config.tcp_mtu() - ip_header - 20).unwrap_or(u16::MAX)
    }

    /// Answers the SYN `header` on `tuple` with a SYN cookie.
    pub(crate) fn send_cookie(
        &mut self,
        tuple: FourTuple,
        header: &TcpHeader,
        now: Instant,
        wake: &mut WakeBatch,
    ) -> Result<(), Error> {
        let cookie = self.cookies.make(&tuple, header.seq, &header.options, now);
        let (window_len, window_scale) = advertised_window(
            self.config.tcp_rx_buffer,
            self.config.tcp_rx_buffer_max,
            header.options.window_scale.is_some(),
        );
        let repr = TcpRepr {
            src_port: tuple.local.port,
            dst_port: tuple.remote.port,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(cookie as i32),
            ack_number: Some(TcpSeqNumber(header.seq.wrapping_add(1) as i32)),
            window_len,
            window_scale,
            max_seg_size: Some(self.local_mss(tuple.local.addr)),
            sack_permitted: header.options.sack_permitted,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        };
        let (src, dst) = (tuple.local.addr, tuple.remote.addr);
        self.out.emit(
            src,
            dst,
            IpProtocol::Tcp,
            repr.buffer_len(),
            |buf| {
                repr.emit(
                    &mut TcpPacket::new_unchecked(buf),
                    &src,
                    &dst,
                    &ChecksumCapabilities::default(),
                );
            },
            wake,
        )?;
        let i = self.local(shard_of(&tuple, self.config.tcp_shards));
        self.shards[i].tcp.stats.syn_cookies_sent += 1;
        Ok(())
    }

    /// Checks whether `ack` (an ACK for no connection, in `packet`) returns a valid cookie,
    /// and if so creates its connection in local shard `i`. Returns the packet back if it is not a
    /// cookie connection (smoltcp then answers it with RST, as any stray segment).
    pub(crate) fn try_cookie(
        &mut self,
        i: usize,
        tuple: FourTuple,
        header: &TcpHeader,
        packet: Packet,
        now: Instant,
    ) -> Option<Packet> {
        let ack = header.ack?;
        let peer_isn = header.seq.wrapping_sub(1);
        let Some(options) = self
            .cookies
            .check(&tuple, peer_isn, ack.wrapping_sub(1), now)
        else {
            self.shards[i].tcp.stats.syn_cookies_invalid += 1;
            return Some(packet);
        };
        let total: usize = self.shards.iter().map(|s| s.tcp.len()).sum();
        let budget = self.buffer_budget();
        if over_hard_limit(&self.config, &mut self.shards[i].tcp.stats, total, budget) {
            // Like Linux at its limits: drop the ACK; the client retransmits.
            return None;
        }
        let syn = self.replayed_syn(tuple, peer_isn, &options, header)?;
        let shard = &mut self.shards[i];
        let id = shard.tcp.add_cookie_connection(
            tuple,
            ack.wrapping_sub(1),
            now,
            &self.config,
            &mut shard.sockets,
        )?;
        self.feed(i, syn, now);
        self.feed(i, packet, now);
        let shard = &mut self.shards[i];
        shard.tcp.after_new_syn(id, &mut shard.sockets);
        shard.tcp.stats.syn_cookies_accepted += 1;
        self.mark_dirty(i);
        None
    }

    /// The SYN the peer sent, as far as its cookie tells (with the ACK's window).
    fn replayed_syn(
        &self,
        tuple: FourTuple,
        peer_isn: u32,
        options: &CookieOptions,
        ack: &TcpHeader,
    ) -> Option<Packet> {
        let syn = SynOptions {
            mss: Some(options.mss),
            window_scale: options.window_scale,
            sack_permitted: options.sack_permitted,
            timestamp: None,
        };
        let repr = TcpRepr {
            src_port: tuple.remote.port,
            dst_port: tuple.local.port,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(peer_isn as i32),
            ack_number: None,
            window_len: ack.window,
            window_scale: syn.window_scale,
            max_seg_size: syn.mss,
            sack_permitted: syn.sack_permitted,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        };
        let (src, dst) = (tuple.remote.addr, tuple.local.addr);
        self.out
            .ip
            .build(src, dst, IpProtocol::Tcp, repr.buffer_len(), |buf| {
                repr.emit(
                    &mut TcpPacket::new_unchecked(buf),
                    &src,
                    &dst,
                    &ChecksumCapabilities::default(),
                );
            })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_window_follows_smoltcps_rule() {
        assert_eq!(
            advertised_window(256 * 1024, 256 * 1024, true),
            (32768, Some(3))
        );
        assert_eq!(
            advertised_window(256 * 1024, 256 * 1024, false),
            (u16::MAX, None)
        );
        assert_eq!(
            advertised_window(64 * 1024, 64 * 1024, true),
            (32768, Some(1))
        );
        assert_eq!(
            advertised_window(1 << 30, 1 << 30, true),
            (u16::MAX, Some(14))
        );
        assert_eq!(advertised_window(4096, 4096, true), (4096, Some(0)));
        // A buffer that may grow: the scale of the largest, the window of the first.
        assert_eq!(
            advertised_window(256 * 1024, 4 << 20, true),
            (2048, Some(7))
        );
    }
}
