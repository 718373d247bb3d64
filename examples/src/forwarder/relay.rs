//! The byte relay of one connection: the stack's stream ↔ one outbound kernel stream.
//!
//! The relay has no buffer of its own. Each direction lends one side's buffer to the other's
//! system call: the stack's receive buffer goes straight to the kernel socket's `write`
//! ([`TcpReadHalf::poll_read_with`]) and the kernel socket's `read` fills the stack's send
//! buffer in place ([`TcpWriteHalf::poll_write_with`]), so each byte is copied once, by the
//! kernel, and each wake takes the stack lock once: the call that moves the bytes also
//! registers the waker when it leaves nothing to move. An idle connection holds nothing here
//! (with `tokio::io::copy_bidirectional` every connection holds two 64 KiB buffers for its
//! whole life: 1.25 GiB of address space and, once touched, of memory for 10,000 idle
//! connections). Half-close is preserved: a FIN from one side shuts the other side's write
//! half down, and the opposite direction keeps flowing.
//!
//! The system calls run under the stack lock of the connection's runner group. They do not
//! block (the sockets are non-blocking) and touch nothing of the stack.

use std::future::poll_fn;
use std::io;
use std::task::{ready, Poll};

use netstack_core::{StackPtr, TcpReadHalf, TcpStream, TcpWriteHalf};

use super::executor::KernelStream;

/// Copies bytes both ways between `inbound` (the stack's stream) and `outbound` (a connected
/// kernel stream) until both directions finished.
///
/// Returns the bytes copied (inbound → outbound, outbound → inbound).
///
/// # Errors
/// The first I/O error of either direction.
pub async fn relay<P: StackPtr, K: KernelStream>(
    inbound: TcpStream<P>,
    outbound: K,
) -> io::Result<(u64, u64)> {
    let (stack_read, stack_write) = inbound.into_split();
    futures::future::try_join(
        stack_to_kernel(stack_read, &outbound),
        kernel_to_stack(&outbound, stack_write),
    )
    .await
}

/// Why a lent buffer was not used up.
#[derive(Default)]
struct Stop {
    /// The kernel socket said `WouldBlock` (its readiness is cleared: wait for it).
    would_block: bool,
    /// The kernel socket reached end of stream.
    eof: bool,
    /// The kernel socket failed.
    failed: Option<io::Error>,
}

impl Stop {
    /// Records the outcome of a kernel system call that moved nothing.
    fn record(&mut self, e: io::Error) {
        if e.kind() == io::ErrorKind::WouldBlock {
            self.would_block = true;
        } else {
            self.failed = Some(e);
        }
    }
}

/// Copies the stack's stream to the kernel socket; shuts the kernel socket's write side down
/// at end of stream.
async fn stack_to_kernel<P: StackPtr, K: KernelStream>(
    from: TcpReadHalf<P>,
    to: &K,
) -> io::Result<u64> {
    let mut total = 0;
    let mut kernel_full = false;
    poll_fn(|cx| loop {
        if kernel_full {
            ready!(to.poll_write_ready(cx))?;
            kernel_full = false;
        }
        let mut stop = Stop::default();
        // Lent the received bytes, write them until the kernel takes no more.
        let read = from.poll_read_with(cx, |data| {
            let mut sent = 0;
            while sent < data.len() && !stop.would_block && stop.failed.is_none() {
                match to.try_write(&data[sent..]) {
                    Ok(0) => stop.failed = Some(io::ErrorKind::WriteZero.into()),
                    Ok(n) => sent += n,
                    Err(e) => stop.record(e),
                }
            }
            sent
        });
        match ready!(read) {
            Err(e) => return Poll::Ready(Err(io::Error::from(e))),
            Ok(None) => return Poll::Ready(to.shutdown_write().map(|()| total)),
            Ok(Some(n)) => {
                total += n as u64;
                if let Some(e) = stop.failed {
                    return Poll::Ready(Err(e));
                }
                if !stop.would_block {
                    // Everything was taken: the stack registered our waker for more.
                    return Poll::Pending;
                }
                kernel_full = true;
            }
        }
    })
    .await
}

/// Copies the kernel socket to the stack's stream; half-closes the stream (FIN) at end of
/// stream.
async fn kernel_to_stack<P: StackPtr, K: KernelStream>(
    from: &K,
    to: TcpWriteHalf<P>,
) -> io::Result<u64> {
    let mut total = 0;
    // Wait for the kernel first: an idle direction takes no stack lock.
    let mut kernel_empty = true;
    poll_fn(|cx| loop {
        if kernel_empty {
            ready!(from.poll_read_ready(cx))?;
            kernel_empty = false;
        }
        let mut stop = Stop::default();
        // Lent the send buffer's free space, read into it until the kernel has no more.
        let written = to.poll_write_with(cx, |free| {
            let mut filled = 0;
            while filled < free.len() && !stop.would_block && !stop.eof && stop.failed.is_none() {
                match from.try_read(&mut free[filled..]) {
                    Ok(0) => stop.eof = true,
                    Ok(n) => filled += n,
                    Err(e) => stop.record(e),
                }
            }
            filled
        });
        match ready!(written) {
            Err(e) => return Poll::Ready(Err(io::Error::from(e))),
            Ok(n) => {
                total += n as u64;
                if let Some(e) = stop.failed {
                    return Poll::Ready(Err(e));
                }
                if stop.eof {
                    return Poll::Ready(to.shutdown_write().map(|()| total).map_err(Into::into));
                }
                if !stop.would_block {
                    // The send buffer is full: the stack registered our waker for room.
                    return Poll::Pending;
                }
                kernel_empty = true;
            }
        }
    })
    .await
}
