//! Sending UDP datagrams: built with `smoltcp::wire`, fragmented beyond the MTU, queued for
//! the device when the egress queue has room.

use core::task::{Context, Poll};

use smoltcp::wire::{IpEndpoint, IpProtocol};

use crate::error::Error;
use crate::shared::Shared;
use crate::udp::queue::fill_udp;
use crate::waker::WakeBatch;

impl Shared {
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
        if !self
            .out
            .has_room_for(self.out.ip.packet_count(src.addr, l4_len))
        {
            self.out.register_for_room(cx.waker());
            return Poll::Pending;
        }
        let r = self.out.emit(
            src.addr,
            dst.addr,
            IpProtocol::Udp,
            l4_len,
            |buf| fill_udp(buf, src, dst, payload),
            wake,
        );
        if r.is_ok() {
            self.counters.udp.datagrams_out += 1;
        }
        // Pass the room on: a freed slot woke only one waiter.
        self.out.pass_room_on(wake);
        Poll::Ready(r)
    }
}
