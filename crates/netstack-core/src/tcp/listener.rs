//! [`TcpListener`]: the stack's TCP connections, for any destination, as the application
//! accepts them.

use core::fmt;
use core::future::poll_fn;
use core::marker::PhantomData;
use core::net::SocketAddr;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;

use crate::error::Error;
use crate::ptr::{Handle, StackPtr};
use crate::stats::Stats;
use crate::tcp::request::{ConnectionRequest, Incoming};
use crate::tcp::stream::TcpStream;

/// Yields every TCP connection that completed its handshake through the stack, whatever its
/// destination address and port: like `tokio::net::TcpListener`, but bound to everything.
/// [`TcpStream::local_addr`] of what it yields is the destination the peer connected to.
///
/// `S` is the stream type it yields (an adapter's wrapper around [`TcpStream`]), `E` the error
/// type of its `Result`s, which is never produced (it lets `accept` return `io::Result` in the
/// adapters, as tokio's does). Any number of tasks may wait in `accept` at once; each
/// connection goes to one of them. Also a `Stream` of `Result<S, E>` that never ends.
pub struct TcpListener<P: StackPtr, S = TcpStream<P>, E = Error> {
    stack: Handle<P>,
    _types: PhantomData<fn() -> (S, E)>,
}

impl<P: StackPtr, S: From<TcpStream<P>>, E> TcpListener<P, S, E> {
    /// The listener of the stack behind `stack`. A stack has one accept queue: several
    /// listeners share it.
    pub fn new(stack: P) -> Self {
        TcpListener {
            stack: Handle::new(stack),
            _types: PhantomData,
        }
    }

    /// Waits for the next connection; returns it with the peer's address.
    ///
    /// # Errors
    /// None at present; the `Result` mirrors `tokio::net::TcpListener::accept`.
    pub async fn accept(&self) -> Result<(S, SocketAddr), E> {
        let stream = poll_fn(|cx| self.poll_accept_stream(cx)).await;
        let peer = stream.remote_endpoint().into();
        Ok((S::from(stream), peer))
    }

    /// Polls for the next connection.
    ///
    /// # Errors
    /// None at present (see [`Self::accept`]).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<S, E>> {
        self.poll_accept_stream(cx).map(|s| Ok(S::from(s)))
    }

    /// Waits for what comes next: with
    /// [`Config::connection_requests`](crate::Config::connection_requests), the next
    /// connection request (to accept or refuse), or an established connection that made no
    /// request (one completed with a SYN cookie); without, established connections only.
    ///
    /// # Errors
    /// None at present (see [`Self::accept`]).
    pub async fn incoming(&self) -> Result<Incoming<P, S, E>, E> {
        poll_fn(|cx| self.poll_incoming(cx)).await
    }

    /// Polls for what comes next (see [`Self::incoming`]); requests first.
    ///
    /// # Errors
    /// None at present (see [`Self::accept`]).
    pub fn poll_incoming(&self, cx: &mut Context<'_>) -> Poll<Result<Incoming<P, S, E>, E>> {
        if let Poll::Ready(info) = self.stack.poll_request(cx) {
            let request = ConnectionRequest::new(self.stack.clone(), info);
            return Poll::Ready(Ok(Incoming::Request(request)));
        }
        self.poll_accept_stream(cx).map(|stream| {
            let peer = stream.remote_endpoint().into();
            Ok(Incoming::Stream(S::from(stream), peer))
        })
    }

    fn poll_accept_stream(&self, cx: &mut Context<'_>) -> Poll<TcpStream<P>> {
        self.stack
            .poll_accept(cx)
            .map(|accepted| TcpStream::new(self.stack.ptr().clone(), accepted))
    }

    /// A snapshot of the stack's counters.
    pub fn stats(&self) -> Stats {
        self.stack.stats()
    }
}

impl<P: StackPtr, S, E> fmt::Debug for TcpListener<P, S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener").finish_non_exhaustive()
    }
}

impl<P: StackPtr + Unpin, S: From<TcpStream<P>>, E> Stream for TcpListener<P, S, E> {
    type Item = Result<S, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_accept(cx).map(Some)
    }
}
