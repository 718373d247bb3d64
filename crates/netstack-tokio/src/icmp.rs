//! [`IcmpSocket`]: ICMP messages delivered to the application (echo requests when the stack is
//! built with `IcmpEchoMode::Deliver`), and echo replies sent on the destination's behalf.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use netstack_core::IcmpMessage;

use crate::flavor::Flavor;
use crate::io_error;
use crate::stack::Stack;

impl<F: Flavor> Stack<F> {
    /// The stack's ICMP socket.
    ///
    /// # Errors
    /// `AlreadyExists` while another `IcmpSocket` of this stack is alive.
    pub fn icmp_socket(&self) -> io::Result<IcmpSocket<F>> {
        if !self.core().claim_icmp() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this stack's ICMP socket is already taken",
            ));
        }
        Ok(IcmpSocket {
            core: self.core().clone(),
        })
    }
}

/// Receives the ICMP messages the stack delivers, and answers echo requests. A `Stream` of
/// [`IcmpMessage`]s that never ends.
pub struct IcmpSocket<F: Flavor> {
    core: F::Ptr,
}

impl<F: Flavor> fmt::Debug for IcmpSocket<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcmpSocket").finish_non_exhaustive()
    }
}

impl<F: Flavor> IcmpSocket<F> {
    /// Receives the next delivered message.
    pub async fn recv(&self) -> IcmpMessage {
        std::future::poll_fn(|cx| self.core.poll_icmp_recv(cx)).await
    }

    /// Sends the echo reply for `request`, as its destination would have.
    ///
    /// # Errors
    /// `InvalidInput` if `request` is not an echo request; `WouldBlock` if the egress queue is
    /// full (the reply is dropped and counted).
    pub fn reply_echo(&self, request: &IcmpMessage) -> io::Result<()> {
        self.core
            .send_icmp_echo_reply(request)
            .map_err(io_error::core)
    }
}

impl<F: Flavor> Drop for IcmpSocket<F> {
    fn drop(&mut self) {
        self.core.release_icmp();
    }
}

impl<F: Flavor> Stream for IcmpSocket<F> {
    type Item = IcmpMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<IcmpMessage>> {
        self.core.poll_icmp_recv(cx).map(Some)
    }
}
