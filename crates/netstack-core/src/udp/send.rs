//! Sending UDP datagrams: built with `smoltcp::wire`, fragmented beyond the MTU, queued for
//! the device when the egress queue has room.

use core::task::{Context, Poll};

use smoltcp::wire::{IpEndpoint, IpProtocol};

use crate::error::Error;
use crate::state::Inner;
use crate::udp::queue::fill_udp;
use crate::waker::WakeBatch;

impl Inner {
    /// Queues a UDP datagram if the egress queue has room; otherwise registers `cx` to be woken
    /// when it has.
    pub(crate) fn poll_send_udp(
        &mut self,
        cx: &mut Context<'_>,
        src: IpEndpoint,
        dst: IpEndpoint,
        payload: &[u8],
        wake: &mut WakeBatch,
    ) -> Poll<Result<(), Error>> {
        if src.port == 0 || dst.port == 0 || src.addr.is_unspecified() || dst.addr.is_unspecified()
        {
            return Poll::Ready(Err(Error::InvalidAddress));
        }
        let l4_len = 8 + payload.len();
        if !self.egress_has_room_for(self.ip_out.packet_count(src.addr, l4_len)) {
            self.room_waiters.register(cx.waker());
            return Poll::Pending;
        }
        let r = self.ip_out.emit(
            &mut self.device.egress,
            src.addr,
            dst.addr,
            IpProtocol::Udp,
            l4_len,
            |buf| fill_udp(buf, src, dst, payload),
        );
        if r.is_ok() {
            self.counters.udp.datagrams_out += 1;
            self.egress_waiters.take_all(wake);
        }
        if !self.room_waiters.is_empty() && self.egress_has_room_for(1) {
            // Pass the room on: a freed slot woke only one waiter.
            self.room_waiters.take_first(1, wake);
        }
        Poll::Ready(r)
    }
}
