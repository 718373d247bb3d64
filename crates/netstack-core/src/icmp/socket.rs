//! [`IcmpSocket`]: ICMP messages delivered to the application (echo requests when the stack is
//! built with [`IcmpEchoMode::Deliver`](crate::IcmpEchoMode::Deliver)), and echo replies sent on
//! the destination's behalf — generic over the stack pointer, for both adapters.

use core::fmt;
use core::future::poll_fn;
use core::pin::Pin;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;
use futures_core::Stream;

use crate::error::Error;
use crate::icmp::message::{IcmpKind, IcmpMessage};
use crate::ptr::{Handle, StackPtr};
use crate::stack::Stack;
use crate::time::Clock;

/// Receives the ICMP messages the stack delivers, and answers echo requests. A `Stream` of
/// [`IcmpMessage`]s that never ends. Any number of tasks may wait in `recv` at once.
pub struct IcmpSocket<P: StackPtr> {
    stack: Handle<P>,
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
        Ok(IcmpSocket {
            stack: Handle::new(stack),
        })
    }

    /// Receives the next delivered message.
    pub async fn recv(&self) -> IcmpMessage {
        poll_fn(|cx| self.stack.poll_icmp_recv(cx)).await
    }

    /// Sends the echo reply for `request`, as its destination would have.
    ///
    /// # Errors
    /// [`Error::NotEchoRequest`] if `request` is not an echo request; [`Error::QueueFull`] if
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

/// The ICMP primitives the socket is built on.
impl<M: RawMutex, C: Clock> Stack<M, C> {
    /// Claims the stack's one ICMP receiver; `false` if it is already claimed.
    pub(crate) fn claim_icmp(&self) -> bool {
        self.with_shared(|shared, _| !core::mem::replace(&mut shared.icmp_claimed, true))
    }

    /// Releases the ICMP receiver claimed with `claim_icmp`.
    pub(crate) fn release_icmp(&self) {
        self.with_shared(|shared, _| shared.icmp_claimed = false);
    }

    /// Takes the next ICMP message delivered to the application (echo requests with
    /// [`IcmpEchoMode::Deliver`](crate::IcmpEchoMode::Deliver), other messages with
    /// `icmp_deliver_other`), or registers the waker.
    pub fn poll_icmp_recv(&self, cx: &mut Context<'_>) -> Poll<IcmpMessage> {
        self.with_shared(|shared, _| shared.icmp.poll_pop(cx))
    }

    /// Answers a delivered echo request (as its destination would have).
    ///
    /// # Errors
    /// [`Error::NotEchoRequest`] if `request` is not an echo request; [`Error::QueueFull`] if
    /// the egress queue has no room (the reply is dropped and counted).
    pub fn send_icmp_echo_reply(&self, request: &IcmpMessage) -> Result<(), Error> {
        if !matches!(request.kind(), IcmpKind::EchoRequest { .. }) {
            return Err(Error::NotEchoRequest);
        }
        self.with_shared(|shared, wake| {
            shared.send_echo_reply(request.dst(), request.src(), request.message(), wake)
        })
    }
}
