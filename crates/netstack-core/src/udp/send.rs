//! Sending UDP datagrams: built with `smoltcp::wire`, fragmented beyond the MTU, queued for
//! the device when the egress queue has room — one at a time, or a batch under one lock
//! acquisition (a relay's burst of replies: one lock, one wake of the packet consumer).

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
        self.poll_send_udp_batch(cx, src, dst, &[payload], wake)
            .map_ok(|_| ())
    }

    /// Queues the leading datagrams of `payloads` (all from `src` to `dst`) that the egress
    /// queue has room for; returns how many. `Pending`, with `cx` registered for room, if not
    /// even the first fits; if a later one does not, `Ready` with the count and `cx`
    /// registered all the same, so that the caller may wait without asking again. A datagram
    /// that cannot be sent ends the batch before it; as the first, its error is returned
    /// (nothing queued: the caller skips it).
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for port 0 or an unspecified address; the builder's
    /// ([`Error::TooLarge`], [`Error::AddressFamily`]) for the first datagram.
    pub(crate) fn poll_send_udp_batch(
        &mut self,
        cx: &mut Context<'_>,
        src: IpEndpoint,
        dst: IpEndpoint,
        payloads: &[&[u8]],
        wake: &mut WakeBatch,
    ) -> Poll<Result<usize, Error>> {
        if src.port == 0 || dst.port == 0 || src.addr.is_unspecified() || dst.addr.is_unspecified()
        {
            return Poll::Ready(Err(Error::InvalidAddress));
        }
        let mut sent = 0;
        let mut first_error = None;
        for payload in payloads {
            let l4_len = 8 + payload.len();
            if !self
                .out
                .has_room_for(self.out.ip.packet_count(src.addr, l4_len))
            {
                self.out.register_for_room(cx.waker());
                if sent == 0 {
                    return Poll::Pending;
                }
                break;
            }
            let r = self.out.emit(
                src.addr,
                dst.addr,
                IpProtocol::Udp,
                l4_len,
                |buf| fill_udp(buf, src, dst, payload),
                wake,
            );
            match r {
                Ok(()) => {
                    self.counters.udp.datagrams_out += 1;
                    sent += 1;
                }
                Err(e) => {
                    if sent == 0 {
                        first_error = Some(e);
                    }
                    break;
                }
            }
        }
        // Pass the room on: a freed slot woke only one waiter.
        self.out.pass_room_on(wake);
        Poll::Ready(first_error.map_or(Ok(sent), Err))
    }
}
