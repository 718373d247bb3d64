//! [`TcpStream`]: an accepted TCP connection as the application holds it, and its two halves.
//!
//! This is the core's stream: every operation is a non-blocking `poll_*` (or a small future)
//! over the stack lock, named like `tokio::net::TcpStream`'s. The adapters wrap it in their
//! ecosystem's I/O traits and dereference to it, so everything here is available on their
//! streams too.
//!
//! Reads copy once, straight from the socket buffer into the caller's buffer — initialised
//! ([`TcpStream::poll_read`]) or not ([`TcpStream::poll_read_uninit`]) — and writes copy once
//! into the send buffer. A relay can skip its own buffer altogether:
//! [`TcpStream::poll_read_with`] lends the receive buffer's bytes in place and
//! [`TcpStream::poll_write_with`] the send buffer's free space, so bytes move between a
//! kernel socket and the stack with the kernel's copy only. Only those two run caller code
//! under the lock: a closure that must not block or call into the stack, like a `RefCell`
//! borrow's.

use core::fmt;
use core::future::poll_fn;
use core::mem::MaybeUninit;
use core::net::SocketAddr;
use core::task::{Context, Poll};

use smoltcp::wire::IpEndpoint;

use crate::error::TcpError;
use crate::ptr::StackPtr;
use crate::tcp::connection::{Accepted, ConnId};

/// An accepted TCP connection, owned by the application.
///
/// - `poll_read*` copy straight out of the socket's receive buffer; `Ok(0)` is the peer's FIN.
/// - [`poll_write`](Self::poll_write) copies straight into its send buffer.
/// - [`shutdown_write`](Self::shutdown_write) half-closes: it queues a FIN and returns at once;
///   reading continues until the peer's FIN.
/// - Dropping the stream closes it (FIN), or resets it (RST) if received data was left unread;
///   [`abort`](Self::abort) resets it.
///
/// Each direction has one waiting task at a time (the stream's reader and writer, or the two
/// halves from [`into_split`](Self::into_split)), as with `tokio::net::TcpStream`.
pub struct TcpStream<P: StackPtr> {
    stack: P,
    id: ConnId,
    local: IpEndpoint,
    remote: IpEndpoint,
}

impl<P: StackPtr> TcpStream<P> {
    /// The stream of a connection taken from the accept queue (counted as a handle there).
    pub(crate) fn new(stack: P, accepted: Accepted) -> Self {
        TcpStream {
            stack,
            id: accepted.id,
            local: accepted.tuple.local,
            remote: accepted.tuple.remote,
        }
    }

    /// The connection's identifier in its stack.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The stack this connection belongs to.
    pub fn stack(&self) -> &P {
        &self.stack
    }

    /// The local endpoint: the destination the peer originally connected to.
    pub fn local_endpoint(&self) -> IpEndpoint {
        self.local
    }

    /// The peer's endpoint (the source of the connection on the link).
    pub fn remote_endpoint(&self) -> IpEndpoint {
        self.remote
    }

    /// The local address: the destination the peer originally connected to.
    ///
    /// # Errors
    /// None; the `Result` mirrors `tokio::net::TcpStream::local_addr`.
    pub fn local_addr(&self) -> Result<SocketAddr, TcpError> {
        Ok(self.local.into())
    }

    /// The peer's address.
    ///
    /// # Errors
    /// None; the `Result` mirrors `tokio::net::TcpStream::peer_addr`.
    pub fn peer_addr(&self) -> Result<SocketAddr, TcpError> {
        Ok(self.remote.into())
    }

    /// Reads received bytes into `buf`, copying them once out of the socket buffer.
    /// `Ready(Ok(0))` means end of stream (the peer sent FIN) or an empty `buf`. Registers the
    /// waker when no data is available.
    ///
    /// # Errors
    /// `ConnectionReset` after a peer RST or timeout; `ConnectionAborted` after [`Self::abort`].
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, TcpError>> {
        let mut filled = 0;
        self.poll_read_into(cx, buf.len(), &mut |data| {
            buf[filled..filled + data.len()].copy_from_slice(data);
            filled += data.len();
            data.len()
        })
        .map_ok(|n| n.unwrap_or(0))
    }

    /// Like [`poll_read`](Self::poll_read), into memory that need not be initialised (a
    /// `ReadBuf`'s unfilled part, a fresh `Vec`'s spare capacity): nothing has to be zeroed
    /// first. The first `n` bytes of `buf` are initialised when it returns `Ready(Ok(n))`.
    ///
    /// # Errors
    /// As [`Self::poll_read`].
    pub fn poll_read_uninit(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [MaybeUninit<u8>],
    ) -> Poll<Result<usize, TcpError>> {
        let mut filled = 0;
        self.poll_read_into(cx, buf.len(), &mut |data| {
            for (slot, &byte) in buf[filled..filled + data.len()].iter_mut().zip(data) {
                slot.write(byte);
            }
            filled += data.len();
            data.len()
        })
        .map_ok(|n| n.unwrap_or(0))
    }

    /// Reads received bytes by lending them, in place, to `f`: the copy-free read for a relay
    /// that hands them straight to another sink (a kernel socket's `write`, a hasher). `f` is
    /// called with contiguous slices of the receive buffer (at most two per call on a full
    /// ring), in order, until it takes less than its slice or the buffer is empty; it returns
    /// how many bytes of its slice it took (more than the slice counts as all of it).
    ///
    /// - `Ready(Ok(Some(n)))`: `f` took `n` bytes (0 if it took nothing).
    /// - `Ready(Ok(None))`: end of stream (the peer sent FIN and everything was read); `f` is
    ///   not called.
    /// - `Pending`: nothing to read; the waker is registered.
    ///
    /// When `f` takes everything it is lent, the receive buffer is empty and the waker is
    /// registered as for `Pending` (woken at once if the FIN is already here): the caller may
    /// return `Pending` without asking again, so a relay takes the stack lock once per wake.
    ///
    /// `f` runs under the stack's lock, like a `RefCell` borrow: it must not block and must not
    /// call into the same stack (that deadlocks the `Send` flavour and panics the local one).
    ///
    /// # Errors
    /// As [`Self::poll_read`].
    pub fn poll_read_with(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&[u8]) -> usize,
    ) -> Poll<Result<Option<usize>, TcpError>> {
        self.poll_read_into(cx, usize::MAX, &mut f)
    }

    /// Hands up to `max` received bytes to `sink` (see `TcpTable::poll_read_with`).
    fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        sink: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Poll<Result<Option<usize>, TcpError>> {
        let id = self.id;
        self.stack
            .with_connection_growing(id, |table, sockets, wake| {
                table.poll_read_with(id, cx, max, sink, sockets, wake)
            })
    }

    /// Ready once a read would not wait (data, end of stream, or an error to report), without
    /// reading: lets an application hold no buffer while the connection is idle. Registers
    /// the waker otherwise.
    ///
    /// # Errors
    /// `ConnectionAborted` after [`Self::abort`]; other failures are reported by the read.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), TcpError>> {
        let id = self.id;
        self.stack.with_connection(id, |table, sockets, _| {
            (table.poll_read_ready(id, cx, sockets), false)
        })
    }

    /// Waits until a read would not wait (see [`Self::poll_read_ready`]), like
    /// `tokio::net::TcpStream::readable`.
    ///
    /// # Errors
    /// As [`Self::poll_read_ready`].
    pub async fn readable(&self) -> Result<(), TcpError> {
        poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Writes bytes from `buf` into the send buffer (one copy). Registers the waker when the
    /// buffer is full.
    ///
    /// # Errors
    /// `BrokenPipe` after [`Self::shutdown_write`] or once the connection closed,
    /// `ConnectionReset` after a peer RST, `ConnectionAborted` after [`Self::abort`].
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, TcpError>> {
        let mut copied = 0;
        self.poll_write_into(cx, buf.len(), &mut |free| {
            free.copy_from_slice(&buf[copied..copied + free.len()]);
            copied += free.len();
            free.len()
        })
    }

    /// Writes by lending the free part of the send buffer to `f`, which fills it in place:
    /// the copy-free write for a relay whose bytes come from another source (a kernel
    /// socket's `read`). `f` is called with contiguous free slices (at most two per call), in
    /// order, until it fills less than its slice or the buffer is full; it writes into the
    /// slice's start and returns how many bytes it wrote (more than the slice counts as all
    /// of it). The slices hold old bytes, not zeros.
    ///
    /// - `Ready(Ok(n))`: `f` wrote `n` bytes (0 if it wrote nothing).
    /// - `Pending`: the send buffer is full; the waker is registered.
    ///
    /// When `f` fills everything it is lent, the buffer is full and the waker is registered
    /// as for `Pending`: the caller may return `Pending` without asking again.
    ///
    /// `f` runs under the stack's lock, with the rules of [`Self::poll_read_with`].
    ///
    /// # Errors
    /// As [`Self::poll_write`].
    pub fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut [u8]) -> usize,
    ) -> Poll<Result<usize, TcpError>> {
        self.poll_write_into(cx, usize::MAX, &mut f)
    }

    /// Fills up to `max` bytes of the send buffer with `source` (see
    /// `TcpTable::poll_write_with`).
    fn poll_write_into(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        source: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Poll<Result<usize, TcpError>> {
        let id = self.id;
        self.stack.with_connection_growing(id, |table, sockets, _| {
            let (r, grow) = table.poll_write_with(id, cx, max, source, sockets);
            let sent = matches!(r, Poll::Ready(Ok(n)) if n > 0);
            (r, sent, grow)
        })
    }

    /// Half-close: queues a FIN after the data already written and returns at once; reading
    /// continues until the peer's FIN.
    ///
    /// # Errors
    /// `ConnectionReset` if the connection is already gone.
    pub fn shutdown_write(&self) -> Result<(), TcpError> {
        let id = self.id;
        self.stack.with_connection(id, |table, sockets, _| {
            (table.shutdown_write(id, sockets), true)
        })
    }

    /// Bytes written but not yet acknowledged by the peer (0 once everything was delivered,
    /// or after the connection is gone).
    pub fn send_queue(&self) -> usize {
        let id = self.id;
        self.stack.with_connection(id, |table, sockets, _| {
            (table.send_queue(id, sockets), false)
        })
    }

    /// Resets the connection: an RST is sent and buffered data discarded. Later operations
    /// fail with `ConnectionAborted`.
    pub fn abort(&self) {
        let id = self.id;
        self.stack.with_connection(id, |table, sockets, wake| {
            table.abort(id, sockets, wake);
            ((), true)
        });
    }

    /// Splits into a read half and a write half that can move to different tasks. They share
    /// no lock beyond the stack's: the core keeps separate read and write wakers.
    pub fn into_split(self) -> (TcpReadHalf<P>, TcpWriteHalf<P>) {
        self.stack.tcp_add_handle(self.id);
        let twin = TcpStream {
            stack: self.stack.clone(),
            id: self.id,
            local: self.local,
            remote: self.remote,
        };
        (
            TcpReadHalf { stream: self },
            TcpWriteHalf {
                stream: twin,
                shutdown_on_drop: true,
            },
        )
    }
}

impl<P: StackPtr> fmt::Debug for TcpStream<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("id", &self.id)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish()
    }
}

impl<P: StackPtr> Drop for TcpStream<P> {
    fn drop(&mut self) {
        self.stack.tcp_release(self.id);
    }
}

/// The read half of a [`TcpStream`], from [`TcpStream::into_split`].
pub struct TcpReadHalf<P: StackPtr> {
    stream: TcpStream<P>,
}

impl<P: StackPtr> TcpReadHalf<P> {
    /// See [`TcpStream::local_addr`].
    ///
    /// # Errors
    /// None; mirrors tokio.
    pub fn local_addr(&self) -> Result<SocketAddr, TcpError> {
        self.stream.local_addr()
    }

    /// See [`TcpStream::peer_addr`].
    ///
    /// # Errors
    /// None; mirrors tokio.
    pub fn peer_addr(&self) -> Result<SocketAddr, TcpError> {
        self.stream.peer_addr()
    }

    /// See [`TcpStream::poll_read`].
    ///
    /// # Errors
    /// As there.
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, TcpError>> {
        self.stream.poll_read(cx, buf)
    }

    /// See [`TcpStream::poll_read_uninit`].
    ///
    /// # Errors
    /// As there.
    pub fn poll_read_uninit(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [MaybeUninit<u8>],
    ) -> Poll<Result<usize, TcpError>> {
        self.stream.poll_read_uninit(cx, buf)
    }

    /// See [`TcpStream::poll_read_with`].
    ///
    /// # Errors
    /// As there.
    pub fn poll_read_with(
        &self,
        cx: &mut Context<'_>,
        f: impl FnMut(&[u8]) -> usize,
    ) -> Poll<Result<Option<usize>, TcpError>> {
        self.stream.poll_read_with(cx, f)
    }

    /// See [`TcpStream::poll_read_ready`].
    ///
    /// # Errors
    /// As there.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), TcpError>> {
        self.stream.poll_read_ready(cx)
    }

    /// See [`TcpStream::readable`].
    ///
    /// # Errors
    /// As there.
    pub async fn readable(&self) -> Result<(), TcpError> {
        self.stream.readable().await
    }
}

/// The write half of a [`TcpStream`], from [`TcpStream::into_split`]. Like tokio's, dropping it
/// shuts the write direction down (FIN), unless it was [`forget`](Self::forget)-ed.
pub struct TcpWriteHalf<P: StackPtr> {
    stream: TcpStream<P>,
    shutdown_on_drop: bool,
}

impl<P: StackPtr> TcpWriteHalf<P> {
    /// See [`TcpStream::local_addr`].
    ///
    /// # Errors
    /// None; mirrors tokio.
    pub fn local_addr(&self) -> Result<SocketAddr, TcpError> {
        self.stream.local_addr()
    }

    /// See [`TcpStream::peer_addr`].
    ///
    /// # Errors
    /// None; mirrors tokio.
    pub fn peer_addr(&self) -> Result<SocketAddr, TcpError> {
        self.stream.peer_addr()
    }

    /// See [`TcpStream::poll_write`].
    ///
    /// # Errors
    /// As there.
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, TcpError>> {
        self.stream.poll_write(cx, buf)
    }

    /// See [`TcpStream::poll_write_with`].
    ///
    /// # Errors
    /// As there.
    pub fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        f: impl FnMut(&mut [u8]) -> usize,
    ) -> Poll<Result<usize, TcpError>> {
        self.stream.poll_write_with(cx, f)
    }

    /// See [`TcpStream::shutdown_write`].
    ///
    /// # Errors
    /// As there.
    pub fn shutdown_write(&self) -> Result<(), TcpError> {
        self.stream.shutdown_write()
    }

    /// See [`TcpStream::send_queue`].
    pub fn send_queue(&self) -> usize {
        self.stream.send_queue()
    }

    /// Resets the connection (RST); both halves then fail with `ConnectionAborted`.
    pub fn abort(&self) {
        self.stream.abort();
    }

    /// Drops the half without shutting the write direction down.
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
    }
}

impl<P: StackPtr> fmt::Debug for TcpReadHalf<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TcpReadHalf").field(&self.stream).finish()
    }
}

impl<P: StackPtr> fmt::Debug for TcpWriteHalf<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TcpWriteHalf").field(&self.stream).finish()
    }
}

impl<P: StackPtr> Drop for TcpWriteHalf<P> {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.stream.shutdown_write();
        }
    }
}
