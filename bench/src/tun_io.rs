//! [`TunIo`]: a [`Tun`] device as [`AsyncRead`] + [`AsyncWrite`] (one packet per call), for
//! stacks that take a byte-stream device (ipstack).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use netstack_examples::tun::Tun;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `tun_forward`'s TUN device (no offloads) read and written through its poll methods: every
/// read returns one packet and every write sends one.
#[derive(Debug)]
pub struct TunIo(Tun);

impl TunIo {
    /// Creates TUN device `name` with [`Tun::create`] (MTU set, interface up) and wraps it.
    ///
    /// # Errors
    /// If the device cannot be created.
    pub fn create(name: &str, mtu: u32) -> io::Result<TunIo> {
        Ok(TunIo(Tun::create(name, mtu)?))
    }
}

impl AsyncRead for TunIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = ready!(self.0.poll_recv(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TunIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_send(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
