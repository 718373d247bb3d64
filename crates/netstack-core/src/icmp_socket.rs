//! [`IcmpSocket`]: ICMP messages delivered to the application (echo requests when the stack is
//! built with [`IcmpEchoMode::Deliver`](crate::IcmpEchoMode::Deliver)), and echo replies sent on
//! the destination's behalf — generic over the stack pointer, for both adapters.

use core::fmt;
use core::future::poll_fn;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;

use crate::error::Error;
use crate::icmp::IcmpMessage;
use crate::stack::StackPtr;

/// Receives the ICMP messages the stack delivers, and answers echo requests. A `Stream` of
/// [`IcmpMessage`]s that never ends.
pub struct IcmpSocket<P: StackPtr> {
    stack: P,
}

impl<P: StackPtr> fmt::Debug for IcmpSocket<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcmpSocket").finish_non_exhaustive()
    }
}

impl<P: StackPtr> IcmpSocket<P> {
    /// The stack's ICMP socket.
    ///
    /// # Errors
    /// [`Error::AlreadyClaimed`] while another `IcmpSocket` of this stack is alive.
    pub fn new(stack: P) -> Result<Self, Error> {
        if !stack.claim_icmp() {
            return Err(Error::AlreadyClaimed);
        }
        Ok(IcmpSocket { stack })
    }

    /// Receives the next delivered message.
    pub async fn recv(&self) -> IcmpMessage {
        poll_fn(|cx| self.stack.poll_icmp_recv(cx)).await
    }

    /// Sends the echo reply for `request`, as its destination would have.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] if `request` is not an echo request; [`Error::QueueFull`] if
    /// the egress queue is full (the reply is dropped and counted).
    pub fn reply_echo(&self, request: &IcmpMessage) -> Result<(), Error> {
        self.stack.send_icmp_echo_reply(request)
    }
}

impl<P: StackPtr> Drop for IcmpSocket<P> {
    fn drop(&mut self) {
        self.stack.release_icmp();
    }
}

impl<P: StackPtr + Unpin> Stream for IcmpSocket<P> {
    type Item = IcmpMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<IcmpMessage>> {
        self.stack.poll_icmp_recv(cx).map(Some)
    }
}
