//! UDP and ICMP sockets of the smol adapter: the core's handles
//! ([`netstack_core::UdpSocket`], [`netstack_core::IcmpSocket`]) over this flavour's pointer.
//!
//! A stack has one UDP receiver and one ICMP receiver; a second socket fails with
//! `AlreadyExists` while the first is alive.

use std::io;

use crate::flavor::Flavor;
use crate::stack::Stack;

/// The UDP socket of a stack of flavour `F` (see [`netstack_core::UdpSocket`]).
pub type UdpSocket<F> = netstack_core::UdpSocket<<F as Flavor>::Ptr>;
/// The receive half of a [`UdpSocket`].
pub type UdpRecvHalf<F> = netstack_core::UdpRecvHalf<<F as Flavor>::Ptr>;
/// The send half of a [`UdpSocket`].
pub type UdpSendHalf<F> = netstack_core::UdpSendHalf<<F as Flavor>::Ptr>;
/// The ICMP socket of a stack of flavour `F` (see [`netstack_core::IcmpSocket`]).
pub type IcmpSocket<F> = netstack_core::IcmpSocket<<F as Flavor>::Ptr>;

impl<F: Flavor> Stack<F> {
    /// The stack's UDP socket: every datagram for any destination, and replies.
    ///
    /// # Errors
    /// `AlreadyExists` while another `UdpSocket` (or its receive half) of this stack is alive.
    pub fn udp_socket(&self) -> io::Result<UdpSocket<F>> {
        netstack_core::UdpSocket::new(self.core().clone()).map_err(std::io::Error::from)
    }

    /// The stack's ICMP socket (see [`IcmpEchoMode`](netstack_core::IcmpEchoMode)).
    ///
    /// # Errors
    /// `AlreadyExists` while another `IcmpSocket` of this stack is alive.
    pub fn icmp_socket(&self) -> io::Result<IcmpSocket<F>> {
        netstack_core::IcmpSocket::new(self.core().clone()).map_err(std::io::Error::from)
    }
}
