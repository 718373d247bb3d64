//! [`Stack`]: the packet side of a stack, a `Sink` of packets into it and a `Stream` of packets
//! out of it.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;
use netstack_core::Stats;

use crate::flavor::Flavor;
use crate::Packet;

/// Packets moved out of the core per lock acquisition on the egress side.
const EGRESS_BATCH: usize = 64;

/// The packet side of a stack: a [`Sink`] of raw IP packets read from the device and a
/// [`Stream`] of raw IP packets to write to it. Clones share the stack; [`Stack::split`] gives
/// halves that can live in different tasks.
pub struct Stack<F: Flavor> {
    sink: PacketSink<F>,
    stream: PacketStream<F>,
}

impl<F: Flavor> Stack<F> {
    pub(crate) fn new(core: F::Ptr) -> Self {
        Stack {
            sink: PacketSink { core: core.clone() },
            stream: PacketStream {
                core,
                buffered: VecDeque::new(),
            },
        }
    }

    /// Splits into the packet sink (device → stack) and the packet stream (stack → device).
    /// Neither half locks the other.
    pub fn split(self) -> (PacketSink<F>, PacketStream<F>) {
        (self.sink, self.stream)
    }

    /// A snapshot of the stack's counters.
    pub fn stats(&self) -> Stats {
        self.sink.core.stats()
    }

    /// The core stack, for operations this adapter does not wrap.
    pub fn core(&self) -> &F::Ptr {
        &self.sink.core
    }
}

impl<F: Flavor> Clone for Stack<F> {
    fn clone(&self) -> Self {
        Stack::new(self.sink.core.clone())
    }
}

/// Packets into the stack. `poll_ready` waits while the ingress queue is full (back-pressure);
/// a packet the stack cannot use is counted and dropped, never an error of the sink.
pub struct PacketSink<F: Flavor> {
    core: F::Ptr,
}

impl<F: Flavor> Clone for PacketSink<F> {
    fn clone(&self) -> Self {
        PacketSink {
            core: self.core.clone(),
        }
    }
}

impl<F: Flavor> PacketSink<F> {
    /// A snapshot of the stack's counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Moves every packet of `packets` into the stack, waiting while its ingress queue is full:
    /// one lock acquisition per batch instead of two per packet (`poll_ready` + `start_send`).
    pub async fn send_batch(&mut self, packets: &mut VecDeque<Packet>) {
        std::future::poll_fn(|cx| {
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

impl<F: Flavor> Sink<Packet> for PacketSink<F> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.core.poll_ingress_ready(cx).map(Ok)
    }

    fn start_send(self: Pin<&mut Self>, packet: Packet) -> io::Result<()> {
        // Only another clone racing for the last slot makes this fail; the packet is then
        // counted as dropped (`drops.ingress_full`), like a full device queue would.
        let _ = self.core.push_ingress(packet);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Packets out of the stack. It never ends while the stack lives.
pub struct PacketStream<F: Flavor> {
    core: F::Ptr,
    /// Packets taken from the core in one batch and not yet yielded.
    buffered: VecDeque<Packet>,
}

impl<F: Flavor> PacketStream<F> {
    /// A snapshot of the stack's counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }
}

impl<F: Flavor> Stream for PacketStream<F> {
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

impl<F: Flavor> Sink<Packet> for Stack<F> {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sink).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, packet: Packet) -> io::Result<()> {
        Pin::new(&mut self.sink).start_send(packet)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sink).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sink).poll_close(cx)
    }
}

impl<F: Flavor> Stream for Stack<F> {
    type Item = Packet;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Packet>> {
        Pin::new(&mut self.stream).poll_next(cx)
    }
}
