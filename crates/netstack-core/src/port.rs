//! [`PacketPort`]: the packet side of a stack as a `Sink` of packets into it and a `Stream` of
//! packets out of it — the handle both adapters expose, generic over the stack pointer (`Arc`,
//! `Rc`, `&`) and over the sink's error type (never produced: `E` only lets an adapter match
//! its ecosystem, e.g. `std::io::Error` for `stream.forward(sink)`).
//!
//! A device with a file descriptor is wired with two tasks (read → sink, stream → write); a
//! platform that hands packets over in callbacks (iOS `NEPacketTunnelFlow`, a JNI bridge) can
//! drive the same two halves from its callbacks.

use alloc::collections::VecDeque;
use core::future::poll_fn;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;

use crate::error::Error;
use crate::icmp::socket::IcmpSocket;
use crate::packet::Packet;
use crate::ptr::{Handle, StackPtr};
use crate::stats::Stats;
use crate::udp::socket::UdpSocket;

/// Packets moved out of the core per lock acquisition on the egress side.
const EGRESS_BATCH: usize = 64;

/// The packet side of a stack: a [`Sink`] of raw IP packets read from the device and a
/// [`Stream`] of raw IP packets to write to it. Clones share the stack; [`PacketPort::split`]
/// gives halves that can live in different tasks.
pub struct PacketPort<P: StackPtr, E = Error> {
    sink: PacketSink<P, E>,
    stream: PacketStream<P>,
}

impl<P: StackPtr, E> PacketPort<P, E> {
    /// The packet side of the stack behind `core`.
    pub fn new(core: P) -> Self {
        PacketPort {
            sink: PacketSink {
                core: Handle::new(core.clone()),
                _error: PhantomData,
            },
            stream: PacketStream {
                core: Handle::new(core),
                buffered: VecDeque::new(),
            },
        }
    }

    /// Splits into the packet sink (device → stack) and the packet stream (stack → device).
    /// Neither half locks the other.
    pub fn split(self) -> (PacketSink<P, E>, PacketStream<P>) {
        (self.sink, self.stream)
    }

    /// A snapshot of the stack's counters.
    pub fn stats(&self) -> Stats {
        self.sink.core.stats()
    }

    /// The core stack, for operations the adapters do not wrap.
    pub fn core(&self) -> &P {
        self.sink.core.ptr()
    }

    /// The stack's UDP socket: every datagram for any destination, and replies.
    ///
    /// # Errors
    /// [`Error::AlreadyClaimed`] while another `UdpSocket` (or its receive half) of this stack
    /// is alive.
    pub fn udp_socket(&self) -> Result<UdpSocket<P>, Error> {
        UdpSocket::new(self.core().clone())
    }

    /// The stack's ICMP socket (see [`IcmpEchoMode`](crate::IcmpEchoMode)).
    ///
    /// # Errors
    /// [`Error::AlreadyClaimed`] while another `IcmpSocket` of this stack is alive.
    pub fn icmp_socket(&self) -> Result<IcmpSocket<P>, Error> {
        IcmpSocket::new(self.core().clone())
    }
}

impl<P: StackPtr, E> Clone for PacketPort<P, E> {
    fn clone(&self) -> Self {
        PacketPort::new(self.sink.core.ptr().clone())
    }
}

/// Packets into the stack. `poll_ready` waits while the ingress queue is full (back-pressure);
/// a packet the stack cannot use is counted and dropped, never an error of the sink (`E` is
/// never produced).
pub struct PacketSink<P: StackPtr, E = Error> {
    core: Handle<P>,
    _error: PhantomData<fn() -> E>,
}

impl<P: StackPtr, E> Clone for PacketSink<P, E> {
    fn clone(&self) -> Self {
        PacketSink {
            core: self.core.clone(),
            _error: PhantomData,
        }
    }
}

impl<P: StackPtr, E> PacketSink<P, E> {
    /// A snapshot of the stack's counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Hands one packet to the stack without waiting, for platforms that deliver packets in
    /// callbacks (iOS `NEPacketTunnelFlow`, a JNI bridge) rather than through a device a task
    /// can await.
    ///
    /// # Errors
    /// [`Error::QueueFull`] if it is a TCP segment and the stack's ingress queue is full: the
    /// packet is dropped and counted (`drops.ingress_full`), as a full device queue would.
    pub fn push(&self, packet: Packet) -> Result<(), Error> {
        self.core.push_ingress(packet)
    }

    /// Moves every packet of `packets` into the stack, waiting while its ingress queue is full
    /// (and, for at most [`Config::udp_hold`](crate::Config::udp_hold), while the UDP queue
    /// is): one lock acquisition per batch instead of two per packet (`poll_ready` +
    /// `start_send`). A pump that awaits this before reading more from its device lets the
    /// device's queue drop what the stack cannot take.
    pub async fn send_batch(&mut self, packets: &mut VecDeque<Packet>) {
        poll_fn(|cx| {
            self.core.poll_push_ingress_batch(cx, packets);
            if packets.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl<P: StackPtr, E> Sink<Packet> for PacketSink<P, E> {
    type Error = E;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.core.poll_ingress_ready(cx).map(Ok)
    }

    fn start_send(self: Pin<&mut Self>, packet: Packet) -> Result<(), E> {
        // Only another clone racing for the last slot makes this fail; the packet is then
        // counted as dropped (`drops.ingress_full`), like a full device queue would.
        let _ = self.core.push_ingress(packet);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }
}

/// Packets out of the stack. It never ends while the stack lives.
pub struct PacketStream<P: StackPtr> {
    core: Handle<P>,
    /// Packets taken from the core in one batch and not yet yielded.
    buffered: VecDeque<Packet>,
}

impl<P: StackPtr> PacketStream<P> {
    /// A snapshot of the stack's counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Gives the buffers of packets the device has written back to the stack, which builds
    /// later packets in them instead of allocating and zeroing new ones (see
    /// [`Stack::recycle`](crate::Stack::recycle)). Optional: packets simply dropped are freed.
    pub fn recycle(&self, packets: impl IntoIterator<Item = Packet>) {
        self.core.recycle(packets);
    }
}

impl<P: StackPtr + Unpin> Stream for PacketStream<P> {
    type Item = Packet;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Packet>> {
        let this = self.get_mut();
        if let Some(p) = this.buffered.pop_front() {
            return Poll::Ready(Some(p));
        }
        match this
            .core
            .poll_egress_batch(cx, &mut this.buffered, EGRESS_BATCH)
        {
            Poll::Ready(_) => Poll::Ready(this.buffered.pop_front()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<P: StackPtr + Unpin, E> Sink<Packet> for PacketPort<P, E> {
    type Error = E;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Pin::new(&mut self.sink).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, packet: Packet) -> Result<(), E> {
        Pin::new(&mut self.sink).start_send(packet)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Pin::new(&mut self.sink).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Pin::new(&mut self.sink).poll_close(cx)
    }
}

impl<P: StackPtr + Unpin, E> Stream for PacketPort<P, E> {
    type Item = Packet;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Packet>> {
        Pin::new(&mut self.stream).poll_next(cx)
    }
}
