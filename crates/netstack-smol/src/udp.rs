//! UDP and ICMP sockets of the smol adapter: the core's handles
//! ([`netstack_core::UdpSocket`], [`netstack_core::IcmpSocket`]) over this flavour's pointer.
//!
//! Get them from the stack: `stack.udp_socket()`, `stack.icmp_socket()`. A stack has one UDP
//! receiver and one ICMP receiver; a second socket fails (`AlreadyClaimed`, `AlreadyExists` as
//! an `io::Error`) while the first is alive.

use crate::flavor::Flavor;

/// The UDP socket of a stack of flavour `F` (see [`netstack_core::UdpSocket`]).
pub type UdpSocket<F> = netstack_core::UdpSocket<<F as Flavor>::Ptr>;
/// The receive half of a [`UdpSocket`].
pub type UdpRecvHalf<F> = netstack_core::UdpRecvHalf<<F as Flavor>::Ptr>;
/// The send half of a [`UdpSocket`].
pub type UdpSendHalf<F> = netstack_core::UdpSendHalf<<F as Flavor>::Ptr>;
/// The ICMP socket of a stack of flavour `F` (see [`netstack_core::IcmpSocket`]).
pub type IcmpSocket<F> = netstack_core::IcmpSocket<<F as Flavor>::Ptr>;
