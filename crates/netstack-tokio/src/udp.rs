//! [`UdpSocket`]: every UDP datagram the stack receives, for any destination, and replies.
//!
//! A stack has one UDP queue and so one receiving socket ([`Stack::udp_socket`] fails with
//! `AlreadyExists` while one is alive); its send half can be cloned freely. Each datagram
//! carries its source (the application behind the device) and its original destination; a
//! reply is sent *from* that destination *to* that source.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;
use netstack_core::UdpDatagram;

use crate::addr::{endpoint, socket_addr};
use crate::flavor::Flavor;
use crate::io_error;
use crate::stack::Stack;

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
            src: socket_addr(d.src()),
            dst: socket_addr(d.dst()),
            payload: d.into_payload(),
        }
    }
}

impl<F: Flavor> Stack<F> {
    /// The stack's UDP socket: every datagram for any destination, and replies.
    ///
    /// # Errors
    /// `AlreadyExists` while another `UdpSocket` (or its receive half) of this stack is alive.
    pub fn udp_socket(&self) -> io::Result<UdpSocket<F>> {
        if !self.core().claim_udp() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this stack's UDP socket is already taken",
            ));
        }
        Ok(UdpSocket {
            recv: UdpRecvHalf {
                core: self.core().clone(),
            },
            send: UdpSendHalf {
                core: self.core().clone(),
                pending: VecDeque::new(),
            },
        })
    }
}

/// Receives every UDP datagram of the stack and sends replies. Also a `Stream` of received
/// [`Datagram`]s (it never ends: a malformed packet is counted and dropped by the stack and
/// never reaches it) and a `Sink` of datagrams to send.
pub struct UdpSocket<F: Flavor> {
    recv: UdpRecvHalf<F>,
    send: UdpSendHalf<F>,
}

impl<F: Flavor> fmt::Debug for UdpSocket<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket").finish_non_exhaustive()
    }
}

impl<F: Flavor> UdpSocket<F> {
    /// Receives the next datagram.
    pub async fn recv(&self) -> Datagram {
        self.recv.recv().await
    }

    /// Receives the next datagram into `buf` (truncating it if `buf` is too small, as
    /// `tokio::net::UdpSocket::recv_from` does); returns its length, source and destination.
    ///
    /// # Errors
    /// None at present; the `Result` mirrors tokio.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        let d = std::future::poll_fn(|cx| self.recv.core.poll_udp_recv(cx)).await;
        let n = d.payload().len().min(buf.len());
        buf[..n].copy_from_slice(&d.payload()[..n]);
        Ok((n, socket_addr(d.src()), socket_addr(d.dst())))
    }

    /// Sends `payload` from `src` to `dst` (see [`Datagram`]); waits while the egress queue is
    /// full. Payloads larger than the MTU leave as IP fragments.
    ///
    /// # Errors
    /// `InvalidInput` for payloads over 64 KiB, mixed IPv4/IPv6 addresses, or port 0.
    pub async fn send_to(
        &self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> io::Result<()> {
        self.send.send_to(payload, src, dst).await
    }

    /// Splits into a receive half and a cloneable send half.
    pub fn split(self) -> (UdpRecvHalf<F>, UdpSendHalf<F>) {
        (self.recv, self.send)
    }
}

impl<F: Flavor> Stream for UdpSocket<F> {
    type Item = Datagram;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Datagram>> {
        Pin::new(&mut self.recv).poll_next(cx)
    }
}

impl<F: Flavor> Sink<Datagram> for UdpSocket<F> {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Datagram) -> io::Result<()> {
        Pin::new(&mut self.send).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_close(cx)
    }
}

/// The receiving half of a [`UdpSocket`]: a `Stream` of [`Datagram`]s that never ends.
pub struct UdpRecvHalf<F: Flavor> {
    core: F::Ptr,
}

impl<F: Flavor> UdpRecvHalf<F> {
    /// Receives the next datagram.
    pub async fn recv(&self) -> Datagram {
        std::future::poll_fn(|cx| self.core.poll_udp_recv(cx))
            .await
            .into()
    }

    /// Polls for the next datagram (the core type: payload without a copy).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<UdpDatagram> {
        self.core.poll_udp_recv(cx)
    }
}

impl<F: Flavor> Drop for UdpRecvHalf<F> {
    fn drop(&mut self) {
        self.core.release_udp();
    }
}

impl<F: Flavor> Stream for UdpRecvHalf<F> {
    type Item = Datagram;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Datagram>> {
        self.core.poll_udp_recv(cx).map(|d| Some(d.into()))
    }
}

/// The sending half of a [`UdpSocket`]; clones send independently. As a `Sink` it buffers at
/// most one datagram and sends it on flush.
pub struct UdpSendHalf<F: Flavor> {
    core: F::Ptr,
    pending: VecDeque<Datagram>,
}

impl<F: Flavor> Clone for UdpSendHalf<F> {
    fn clone(&self) -> Self {
        UdpSendHalf {
            core: self.core.clone(),
            pending: VecDeque::new(),
        }
    }
}

impl<F: Flavor> UdpSendHalf<F> {
    /// Sends `payload` from `src` to `dst`; waits while the egress queue is full.
    ///
    /// # Errors
    /// `InvalidInput` for payloads over 64 KiB, mixed IPv4/IPv6 addresses, or port 0.
    pub async fn send_to(
        &self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> io::Result<()> {
        let (src, dst) = (endpoint(src), endpoint(dst));
        std::future::poll_fn(|cx| self.core.poll_udp_send(cx, src, dst, payload))
            .await
            .map_err(io_error::core)
    }
}

impl<F: Flavor> Sink<Datagram> for UdpSendHalf<F> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            self.poll_flush(cx)
        }
    }

    fn start_send(mut self: Pin<&mut Self>, item: Datagram) -> io::Result<()> {
        self.pending.push_back(item);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(d) = self.pending.front() {
            let (src, dst) = (endpoint(d.src), endpoint(d.dst));
            match self.core.poll_udp_send(cx, src, dst, &d.payload) {
                Poll::Ready(r) => {
                    self.pending.pop_front();
                    r.map_err(io_error::core)?;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
