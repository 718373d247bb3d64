//! [`UdpSocket`]: every UDP datagram the stack receives, for any destination, and replies —
//! the handle both adapters expose, generic over the stack pointer (`Arc`, `Rc`, `&`).
//!
//! A stack has one UDP queue and so one receiving socket ([`UdpSocket::new`] fails while one
//! is alive); its send half can be cloned freely. Each datagram carries its source (the
//! application behind the device) and its original destination; a reply is sent *from* that
//! destination *to* that source.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::future::poll_fn;
use core::net::SocketAddr;
use core::pin::Pin;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;
use futures_core::Stream;
use futures_sink::Sink;
use smoltcp::wire::IpEndpoint;

use crate::error::Error;
use crate::icmp::unreachable::{ErrorQuote, Unreachable};
use crate::ptr::{Handle, StackPtr};
use crate::stack::Stack;
use crate::time::Clock;
use crate::udp::queue::UdpDatagram;

/// An owned UDP datagram: payload, source and destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The payload.
    pub payload: Vec<u8>,
    /// Source: for a received datagram the application behind the device; for one to send,
    /// the address it appears to come from (the original destination being answered).
    pub src: SocketAddr,
    /// Destination: for a received datagram its original destination; for one to send, the
    /// application behind the device.
    pub dst: SocketAddr,
}

impl From<UdpDatagram> for Datagram {
    fn from(d: UdpDatagram) -> Self {
        Datagram {
            src: d.src().into(),
            dst: d.dst().into(),
            payload: d.into_payload(),
        }
    }
}

/// Receives every UDP datagram of the stack and sends replies. Any number of tasks may wait in
/// `recv` at once (each datagram goes to one of them). Also a `Stream` of received
/// [`Datagram`]s (it never ends: a malformed packet is counted and dropped by the stack and
/// never reaches it) and a `Sink` of datagrams to send.
pub struct UdpSocket<P: StackPtr> {
    recv: UdpRecvHalf<P>,
    send: UdpSendHalf<P>,
}

impl<P: StackPtr> fmt::Debug for UdpSocket<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket").finish_non_exhaustive()
    }
}

impl<P: StackPtr> UdpSocket<P> {
    /// The stack's UDP socket.
    ///
    /// # Errors
    /// [`Error::AlreadyClaimed`] while another `UdpSocket` (or its receive half) of this stack
    /// is alive.
    pub fn new(stack: P) -> Result<Self, Error> {
        if !stack.claim_udp() {
            return Err(Error::AlreadyClaimed);
        }
        Ok(UdpSocket {
            recv: UdpRecvHalf {
                stack: Handle::new(stack.clone()),
            },
            send: UdpSendHalf {
                stack: Handle::new(stack),
                pending: VecDeque::new(),
            },
        })
    }

    /// Receives the next datagram.
    pub async fn recv(&self) -> Datagram {
        self.recv.recv().await
    }

    /// Receives the next datagram into `buf` (truncating it if `buf` is too small, as
    /// `recv_from` on an OS socket does); returns its length, source and destination.
    pub async fn recv_from(&self, buf: &mut [u8]) -> (usize, SocketAddr, SocketAddr) {
        let d = poll_fn(|cx| self.recv.stack.poll_udp_recv(cx)).await;
        let n = d.payload().len().min(buf.len());
        buf[..n].copy_from_slice(&d.payload()[..n]);
        (n, d.src().into(), d.dst().into())
    }

    /// Sends `payload` from `src` to `dst` (see [`Datagram`]); waits while the egress queue is
    /// full. Payloads larger than the MTU leave as IP fragments.
    ///
    /// # Errors
    /// [`Error::TooLarge`] beyond 64 KiB, [`Error::AddressFamily`] for mixed IPv4/IPv6,
    /// [`Error::InvalidAddress`] for port 0 or an unspecified address.
    pub async fn send_to(
        &self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<(), Error> {
        self.send.send_to(payload, src, dst).await
    }

    /// Sends every payload of `payloads` from `src` to `dst`, in order, under one lock
    /// acquisition for as many as the egress queue has room for (see
    /// [`UdpSendHalf::send_to_batch`]).
    ///
    /// # Errors
    /// As there.
    pub async fn send_to_batch(
        &self,
        payloads: &[&[u8]],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<(), Error> {
        self.send.send_to_batch(payloads, src, dst).await
    }

    /// Moves up to `max` waiting datagrams into `out` under one lock acquisition (see
    /// [`UdpRecvHalf::poll_recv_batch`]); waits for at least one.
    pub async fn recv_batch(&self, out: &mut impl Extend<UdpDatagram>, max: usize) -> usize {
        poll_fn(|cx| self.recv.poll_recv_batch(cx, out, max)).await
    }

    /// Receives the next datagram as the stack holds it (no copy; keeps its packet, so that
    /// [`UdpDatagram::quote`] can keep its start for an ICMP error).
    pub async fn recv_datagram(&self) -> UdpDatagram {
        poll_fn(|cx| self.recv.stack.poll_udp_recv(cx)).await
    }

    /// Tells the sender of a datagram that its destination is unreachable (see
    /// [`UdpSendHalf::send_unreachable`]).
    ///
    /// # Errors
    /// As there.
    pub fn send_unreachable(&self, about: &ErrorQuote, kind: Unreachable) -> Result<(), Error> {
        self.send.send_unreachable(about, kind)
    }

    /// Splits into a receive half and a cloneable send half.
    pub fn split(self) -> (UdpRecvHalf<P>, UdpSendHalf<P>) {
        (self.recv, self.send)
    }
}

impl<P: StackPtr + Unpin> Stream for UdpSocket<P> {
    type Item = Datagram;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Datagram>> {
        Pin::new(&mut self.recv).poll_next(cx)
    }
}

impl<P: StackPtr + Unpin> Sink<Datagram> for UdpSocket<P> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.send).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Datagram) -> Result<(), Error> {
        Pin::new(&mut self.send).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.send).poll_close(cx)
    }
}

/// The receiving half of a [`UdpSocket`]: a `Stream` of [`Datagram`]s that never ends.
pub struct UdpRecvHalf<P: StackPtr> {
    stack: Handle<P>,
}

impl<P: StackPtr> UdpRecvHalf<P> {
    /// Receives the next datagram.
    pub async fn recv(&self) -> Datagram {
        poll_fn(|cx| self.stack.poll_udp_recv(cx)).await.into()
    }

    /// Polls for the next datagram (the core type: the payload stays in the packet buffer).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<UdpDatagram> {
        self.stack.poll_udp_recv(cx)
    }

    /// Moves up to `max` waiting datagrams into `out` under one lock acquisition (a relay
    /// then sends them upstream in one batch); `Pending`, with the waker registered, if there
    /// are none.
    pub fn poll_recv_batch(
        &self,
        cx: &mut Context<'_>,
        out: &mut impl Extend<UdpDatagram>,
        max: usize,
    ) -> Poll<usize> {
        self.stack.poll_udp_recv_batch(cx, out, max)
    }
}

impl<P: StackPtr> Drop for UdpRecvHalf<P> {
    fn drop(&mut self) {
        self.stack.release_udp();
    }
}

impl<P: StackPtr + Unpin> Stream for UdpRecvHalf<P> {
    type Item = Datagram;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Datagram>> {
        self.stack.poll_udp_recv(cx).map(|d| Some(d.into()))
    }
}

/// The sending half of a [`UdpSocket`]; clones send independently. As a `Sink` it sends the
/// buffered datagrams on flush.
pub struct UdpSendHalf<P: StackPtr> {
    stack: Handle<P>,
    pending: VecDeque<Datagram>,
}

impl<P: StackPtr> Clone for UdpSendHalf<P> {
    fn clone(&self) -> Self {
        UdpSendHalf {
            stack: self.stack.clone(),
            pending: VecDeque::new(),
        }
    }
}

impl<P: StackPtr> UdpSendHalf<P> {
    /// Sends `payload` from `src` to `dst`; waits while the egress queue is full.
    ///
    /// # Errors
    /// As [`UdpSocket::send_to`].
    pub async fn send_to(
        &self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<(), Error> {
        let (src, dst) = (src.into(), dst.into());
        poll_fn(|cx| self.stack.poll_udp_send(cx, src, dst, payload)).await
    }

    /// Sends every payload of `payloads` from `src` to `dst`, in order; waits while the egress
    /// queue is full. Each wake-up queues as many as there is room for under one lock
    /// acquisition (and wakes the packet consumer once), where [`send_to`](Self::send_to) in a
    /// loop takes the lock once per datagram: for a relay that read a burst of replies at
    /// once.
    ///
    /// # Errors
    /// As [`UdpSocket::send_to`], for the first datagram that cannot be sent: those before it
    /// are queued, it and those after it are not.
    ///
    /// # Example
    /// ```
    /// # use netstack_core::{StackPtr, UdpSendHalf};
    /// # async fn reply<P: StackPtr>(udp: UdpSendHalf<P>) -> Result<(), netstack_core::Error> {
    /// // Two replies of a DNS server at 93.184.216.34 to the client 10.0.0.1:40000.
    /// let from = "93.184.216.34:53".parse().unwrap();
    /// let to = "10.0.0.1:40000".parse().unwrap();
    /// udp.send_to_batch(&[b"first", b"second"], from, to).await
    /// # }
    /// ```
    pub async fn send_to_batch(
        &self,
        payloads: &[&[u8]],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<(), Error> {
        let (src, dst) = (src.into(), dst.into());
        let mut sent = 0;
        poll_fn(|cx| {
            while sent < payloads.len() {
                match self.poll_send_batch(cx, &payloads[sent..], src, dst) {
                    Poll::Ready(Ok(n)) => {
                        sent += n;
                        // The rest did not fit: the waker is registered for room.
                        if sent < payloads.len() {
                            return Poll::Pending;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queues the leading datagrams of `payloads` (from `src` to `dst`) that the egress queue
    /// has room for, under one lock acquisition; returns how many (0 for no payloads). `Pending`
    /// with the waker registered if not even the first fits; if only some fit, the waker is
    /// registered for room as well, so the caller may return `Pending` without polling again.
    ///
    /// # Errors
    /// As [`UdpSocket::send_to`], for the first datagram (nothing is queued; skip it to send
    /// the rest). A later datagram that cannot be sent ends the batch before it: the next call
    /// reports its error.
    pub fn poll_send_batch(
        &self,
        cx: &mut Context<'_>,
        payloads: &[&[u8]],
        src: IpEndpoint,
        dst: IpEndpoint,
    ) -> Poll<Result<usize, Error>> {
        self.stack.poll_udp_send_batch(cx, src, dst, payloads)
    }
}

impl<P: StackPtr> UdpSendHalf<P> {
    /// Sends the sender of the datagram `about` quotes an ICMP or ICMPv6 destination
    /// unreachable of `kind`, from the datagram's destination: a relay whose upstream socket
    /// got "port unreachable" passes it on, and the client's connected socket then reports
    /// `ECONNREFUSED` as it would from the real destination. Rate-limited
    /// (`icmp_errors_per_second`) and never about multicast or broadcast datagrams.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] for a datagram no error may be sent about, [`Error::RateLimited`]
    /// beyond the rate, [`Error::QueueFull`] if the egress queue is full (all counted).
    pub fn send_unreachable(&self, about: &ErrorQuote, kind: Unreachable) -> Result<(), Error> {
        self.stack.send_unreachable(about, kind)
    }
}

impl<P: StackPtr + Unpin> Sink<Datagram> for UdpSendHalf<P> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.pending.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            self.poll_flush(cx)
        }
    }

    fn start_send(mut self: Pin<&mut Self>, item: Datagram) -> Result<(), Error> {
        self.pending.push_back(item);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while let Some(d) = self.pending.front() {
            let (src, dst) = (d.src.into(), d.dst.into());
            match self.stack.poll_udp_send(cx, src, dst, &d.payload) {
                Poll::Ready(r) => {
                    self.pending.pop_front();
                    r?;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_flush(cx)
    }
}

/// The UDP primitives the sockets are built on.
impl<M: RawMutex, C: Clock> Stack<M, C> {
    /// Claims the stack's one UDP receiver; `false` if it is already claimed.
    pub(crate) fn claim_udp(&self) -> bool {
        self.with_shared(|shared, _| !core::mem::replace(&mut shared.udp_claimed, true))
    }

    /// Releases the UDP receiver claimed with `claim_udp`.
    pub(crate) fn release_udp(&self) {
        self.with_shared(|shared, wake| {
            shared.udp_claimed = false;
            shared.udp.reader_gone(wake);
        });
    }

    /// Takes the next UDP datagram received for any destination, or registers the waker.
    pub fn poll_udp_recv(&self, cx: &mut Context<'_>) -> Poll<UdpDatagram> {
        self.with_shared(|shared, wake| {
            let popped = shared.udp.poll_pop(cx);
            shared.udp.made_room(wake);
            popped
        })
    }

    /// Moves up to `max` waiting UDP datagrams into `out` under one lock acquisition, or
    /// registers the waker if there are none.
    pub fn poll_udp_recv_batch(
        &self,
        cx: &mut Context<'_>,
        out: &mut impl Extend<UdpDatagram>,
        max: usize,
    ) -> Poll<usize> {
        self.with_shared(|shared, wake| {
            let mut n = 0;
            while n < max {
                let Poll::Ready(d) = shared.udp.poll_pop(cx) else {
                    break;
                };
                out.extend(core::iter::once(d));
                n += 1;
            }
            shared.udp.made_room(wake);
            if n == 0 {
                Poll::Pending
            } else {
                Poll::Ready(n)
            }
        })
    }

    /// Sends a UDP datagram from `src` (typically the original destination of the datagram
    /// being answered) to `dst` (the device side), fragmenting it if it exceeds the MTU.
    /// `Pending` (waker registered) while the egress queue has no room.
    ///
    /// # Errors
    /// [`Error::TooLarge`] beyond 64 KiB, [`Error::AddressFamily`] if `src` and `dst` differ
    /// in IP version, [`Error::InvalidAddress`] for port 0 or an unspecified address.
    pub fn poll_udp_send(
        &self,
        cx: &mut Context<'_>,
        src: IpEndpoint,
        dst: IpEndpoint,
        payload: &[u8],
    ) -> Poll<Result<(), Error>> {
        self.with_shared(|shared, wake| shared.poll_send_udp(cx, src, dst, payload, wake))
    }

    /// Queues the leading datagrams of `payloads`, all from `src` to `dst`, that the egress
    /// queue has room for, under one lock acquisition (see [`UdpSendHalf::poll_send_batch`]).
    ///
    /// # Errors
    /// As [`Self::poll_udp_send`], for the first datagram.
    pub fn poll_udp_send_batch(
        &self,
        cx: &mut Context<'_>,
        src: IpEndpoint,
        dst: IpEndpoint,
        payloads: &[&[u8]],
    ) -> Poll<Result<usize, Error>> {
        self.with_shared(|shared, wake| shared.poll_send_udp_batch(cx, src, dst, payloads, wake))
    }

    /// Sends a destination unreachable of `kind` about the packet `about` quotes (see
    /// [`UdpSendHalf::send_unreachable`]).
    ///
    /// # Errors
    /// As there.
    pub fn send_unreachable(&self, about: &ErrorQuote, kind: Unreachable) -> Result<(), Error> {
        let now = self.clock().now();
        self.with_shared(|shared, wake| {
            shared
                .out
                .send_unreachable(about.as_bytes(), kind, now, wake)
        })
    }
}
