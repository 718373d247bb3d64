//! The packet side of a stack: the core's [`PacketPort`](netstack_core::PacketPort) (a `Sink` of
//! packets in, a `Stream` of packets out, splittable without a lock) over this flavour's
//! pointer, with `std::io::Error` as the sink's error type so that `stream.forward(sink)` works
//! with device streams of `io::Result<Packet>`. The sink never produces an error.

use crate::flavor::Flavor;

/// The packet side of a stack of flavour `F`; also its UDP and ICMP sockets
/// (`udp_socket()`, `icmp_socket()`).
pub type Stack<F> = netstack_core::PacketPort<<F as Flavor>::Ptr, std::io::Error>;
/// Packets into a stack of flavour `F` (back-pressure while its ingress queue is full).
pub type PacketSink<F> = netstack_core::PacketSink<<F as Flavor>::Ptr, std::io::Error>;
/// Packets out of a stack of flavour `F`; never ends while the stack lives.
pub type PacketStream<F> = netstack_core::PacketStream<<F as Flavor>::Ptr>;
