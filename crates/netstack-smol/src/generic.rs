//! The stream types, generic over the stack pointer, with futures-io's `AsyncRead` and
//! `AsyncWrite`. Name them through the aliases at the crate root (`Send`) or in
//! [`local`](crate::local).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::AsyncRead;
use netstack_core::StackPtr;

netstack_core::adapter_streams!("futures-io's `AsyncRead` and `AsyncWrite`");

impl<P: StackPtr> AsyncRead for TcpStream<P> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_read(cx, buf).map_err(io::Error::from)
    }
}

impl<P: StackPtr> AsyncRead for OwnedReadHalf<P> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_read(cx, buf).map_err(io::Error::from)
    }
}

netstack_core::adapter_write!(futures_io::AsyncWrite, poll_close);
