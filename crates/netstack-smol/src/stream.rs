//! [`TcpStream`] and its owned halves: futures-io `AsyncRead`/`AsyncWrite` over a core
//! connection.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use netstack_core::{IpAddress, IpEndpoint, StackPtr, TcpConnection};

use crate::flavor::Flavor;

type Conn<F> = TcpConnection<<F as Flavor>::Ptr>;

/// A TCP connection accepted by the stack.
///
/// - `poll_read` copies straight out of the socket's receive buffer; `Ok(0)` is the peer's FIN.
/// - `poll_write` copies straight into its send buffer.
/// - `poll_flush` returns at once: written data is already queued for transmission.
/// - `poll_close` half-closes: it queues a FIN and returns; reading continues (unlike a socket,
///   where `close` ends both directions, this lets `futures::io::copy` relay half-closes).
/// - Dropping the stream closes it (FIN), or resets it (RST) if received data was left unread.
pub struct TcpStream<F: Flavor> {
    conn: Conn<F>,
}

impl<F: Flavor> std::fmt::Debug for TcpStream<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TcpStream").field(&self.conn).finish()
    }
}

fn socket_addr(ep: IpEndpoint) -> SocketAddr {
    let ip = match ep.addr {
        IpAddress::Ipv4(a) => IpAddr::V4(a),
        IpAddress::Ipv6(a) => IpAddr::V6(a),
    };
    SocketAddr::new(ip, ep.port)
}

impl<F: Flavor> TcpStream<F> {
    pub(crate) fn new(conn: Conn<F>) -> Self {
        TcpStream { conn }
    }

    /// The local address: the destination the peer originally connected to.
    ///
    /// # Errors
    /// None; the `Result` mirrors `async_net::TcpStream::local_addr`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(socket_addr(self.conn.local_endpoint()))
    }

    /// The peer's address.
    ///
    /// # Errors
    /// None; the `Result` mirrors `async_net::TcpStream::peer_addr`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(socket_addr(self.conn.remote_endpoint()))
    }

    /// Resets the connection (sends RST). Later reads and writes fail with `ConnectionAborted`.
    pub fn abort(&self) {
        self.conn.abort();
    }

    /// Waits until a read would not wait (data, end of stream or an error to report), without
    /// reading: a relay can hold no buffer while the connection is idle.
    pub async fn readable(&self) {
        std::future::poll_fn(|cx| self.conn.poll_read_ready(cx)).await;
    }

    /// Polls for read readiness (see [`Self::readable`]), registering the waker if not ready.
    pub fn poll_read_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.conn.poll_read_ready(cx)
    }

    /// Splits into owned halves that can move to different tasks. No lock is shared between
    /// them: the core keeps separate read and write wakers.
    pub fn into_split(self) -> (OwnedReadHalf<F>, OwnedWriteHalf<F>) {
        let conn = F::share(self.conn);
        (
            OwnedReadHalf { conn: conn.clone() },
            OwnedWriteHalf {
                conn,
                shutdown_on_drop: true,
            },
        )
    }
}

fn poll_read<P: StackPtr>(
    conn: &TcpConnection<P>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    conn.poll_read(cx, buf).map_err(std::io::Error::from)
}

fn poll_write<P: StackPtr>(
    conn: &TcpConnection<P>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    conn.poll_write(cx, buf).map_err(std::io::Error::from)
}

fn shutdown<P: StackPtr>(conn: &TcpConnection<P>) -> Poll<io::Result<()>> {
    Poll::Ready(conn.shutdown_write().map_err(std::io::Error::from))
}

impl<F: Flavor> AsyncRead for TcpStream<F> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        poll_read(&self.conn, cx, buf)
    }
}

impl<F: Flavor> AsyncWrite for TcpStream<F> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write(&self.conn, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        shutdown(&self.conn)
    }
}

/// The read half of a [`TcpStream`], from [`TcpStream::into_split`].
pub struct OwnedReadHalf<F: Flavor> {
    conn: F::Shared<Conn<F>>,
}

impl<F: Flavor> std::fmt::Debug for OwnedReadHalf<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OwnedReadHalf").field(&*self.conn).finish()
    }
}

impl<F: Flavor> OwnedReadHalf<F> {
    /// The peer's address.
    ///
    /// # Errors
    /// None; mirrors `async_net`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(socket_addr(self.conn.remote_endpoint()))
    }

    /// The local address (the original destination).
    ///
    /// # Errors
    /// None; mirrors `async_net`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(socket_addr(self.conn.local_endpoint()))
    }

    /// Waits until a read would not wait (data, end of stream or an error to report), without
    /// reading: a relay can hold no buffer while the connection is idle.
    pub async fn readable(&self) {
        std::future::poll_fn(|cx| self.conn.poll_read_ready(cx)).await;
    }

    /// Polls for read readiness (see [`Self::readable`]), registering the waker if not ready.
    pub fn poll_read_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.conn.poll_read_ready(cx)
    }
}

impl<F: Flavor> AsyncRead for OwnedReadHalf<F> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        poll_read(&self.conn, cx, buf)
    }
}

/// The write half of a [`TcpStream`], from [`TcpStream::into_split`]. Like tokio's owned write
/// half, dropping it shuts the write direction down (FIN); `poll_close` does so at once.
pub struct OwnedWriteHalf<F: Flavor> {
    conn: F::Shared<Conn<F>>,
    shutdown_on_drop: bool,
}

impl<F: Flavor> std::fmt::Debug for OwnedWriteHalf<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OwnedWriteHalf").field(&*self.conn).finish()
    }
}

impl<F: Flavor> OwnedWriteHalf<F> {
    /// The peer's address.
    ///
    /// # Errors
    /// None; mirrors `async_net`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(socket_addr(self.conn.remote_endpoint()))
    }

    /// The local address (the original destination).
    ///
    /// # Errors
    /// None; mirrors `async_net`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(socket_addr(self.conn.local_endpoint()))
    }

    /// Resets the connection (sends RST); both halves then fail with `ConnectionAborted`.
    pub fn abort(&self) {
        self.conn.abort();
    }

    /// Drops the half without shutting the write direction down.
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
    }
}

impl<F: Flavor> Drop for OwnedWriteHalf<F> {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.conn.shutdown_write();
        }
    }
}

impl<F: Flavor> AsyncWrite for OwnedWriteHalf<F> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write(&self.conn, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        shutdown(&self.conn)
    }
}
