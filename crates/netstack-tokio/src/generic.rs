//! The stream types, generic over the stack pointer, with tokio's `AsyncRead`/`AsyncWrite`.
//! Name them through the aliases at the crate root (`Send`) or in [`local`](crate::local).
//!
//! Reads go straight into the caller's `ReadBuf`, initialised or not: nothing is zeroed first.

#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use netstack_core::{StackPtr, TcpError};
use tokio::io::{AsyncRead, ReadBuf};

netstack_core::adapter_streams!("tokio's `AsyncRead` and `AsyncWrite`");

/// Reads with `read` (a core `poll_read_uninit`) into the unfilled part of `buf`.
fn read_into(
    buf: &mut ReadBuf<'_>,
    read: impl FnOnce(&mut [MaybeUninit<u8>]) -> Poll<Result<usize, TcpError>>,
) -> Poll<io::Result<()>> {
    // SAFETY: `unfilled_mut` is unsafe because the caller could de-initialise bytes that
    // `ReadBuf` counts as initialised; `poll_read_uninit` only ever writes bytes into the
    // slice (its contract), never un-writes them.
    let n = ready!(read(unsafe { buf.unfilled_mut() }))?;
    // SAFETY: `poll_read_uninit` returned `n`: it initialised the first `n` bytes of the
    // unfilled part (its documented contract; `n` is at most the slice's length).
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Poll::Ready(Ok(()))
}

impl<P: StackPtr> AsyncRead for TcpStream<P> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        read_into(buf, |slots| self.0.poll_read_uninit(cx, slots))
    }
}

impl<P: StackPtr> AsyncRead for OwnedReadHalf<P> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        read_into(buf, |slots| self.0.poll_read_uninit(cx, slots))
    }
}

netstack_core::adapter_write!(tokio::io::AsyncWrite, poll_shutdown);
