//! [`TcpListener`]: accepts the stack's TCP connections, for any destination.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use netstack_core::Stats;

use crate::flavor::{CoreStack, Flavor};
use crate::generic::TcpStream;

/// Yields every TCP connection that completed its handshake through the stack, whatever its
/// destination address and port. Like `tokio::net::TcpListener`, but bound to everything.
///
/// Also a `Stream` of `io::Result<TcpStream>` (it never ends and never yields an error; the
/// `Result` matches `tokio_stream::wrappers::TcpListenerStream`).
pub struct TcpListener<F: Flavor> {
    core: F::Ptr,
}

impl<F: Flavor> TcpListener<F> {
    pub(crate) fn new(core: F::Ptr) -> Self {
        TcpListener { core }
    }

    /// Waits for the next connection; returns it with the peer's address.
    /// [`TcpStream::local_addr`] is the destination the peer connected to.
    ///
    /// # Errors
    /// None at present; the `Result` mirrors `tokio::net::TcpListener::accept`.
    pub async fn accept(&self) -> io::Result<(TcpStream<F>, SocketAddr)> {
        let stream = std::future::poll_fn(|cx| self.poll_accept(cx)).await?;
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }

    /// Polls for the next connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream<F>>> {
        CoreStack::<F>::poll_accept(&self.core, cx).map(|c| Ok(TcpStream::new(c)))
    }

    /// A snapshot of the stack's counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }
}

impl<F: Flavor> Stream for TcpListener<F> {
    type Item = io::Result<TcpStream<F>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_accept(cx).map(Some)
    }
}
