//! # netstack-core
//!
//! A `no_std` (+ `alloc`) userspace network stack core built on [`smoltcp`]. It turns raw IP
//! packets (as read from a TUN device) into TCP connections for **any** destination address and
//! port, and turns the application's replies back into IP packets.
//!
//! The core owns the smoltcp [`Interface`](smoltcp::iface::Interface), its socket table and the
//! poll loop, and exposes them through waker-based `poll_*` primitives. It has no executor and no
//! clock of its own: the user supplies a [`Clock`] and drives [`Stack::poll_runner`] from a task,
//! sleeping until the deadline it returns. Adapter crates (`netstack-tokio`) wrap these primitives
//! into the I/O traits of an async ecosystem.
//!
//! ```text
//! packets in ──▶ Stack::push_ingress ──▶ [IngressQueue] ──▶ runner: classify, SYN table, smoltcp
//! packets out ◀── Stack::poll_egress ◀── [EgressQueue] ◀──── runner: smoltcp egress
//! application ◀──▶ TcpConnection::poll_read / poll_write / shutdown_write / abort
//! ```
//!
//! One code base gives a `Send + Sync` stack and a non-`Send` one: [`Stack`] is generic over an
//! `embassy_sync` [`RawMutex`](embassy_sync::blocking_mutex::raw::RawMutex); the compiler decides
//! whether it is `Send`.
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

extern crate alloc;

mod config;
mod device;
mod emit;
mod error;
mod filter;
mod icmp;
mod icmp_socket;
mod ingress;
mod normalize;
mod packet_io;
mod reassembly;
mod shard;
mod stack;
mod stats;
mod tcp;
mod time;
mod udp;
mod udp_socket;
mod waker;

#[cfg(test)]
mod tests;

pub use config::Config;
pub use error::{Error, TcpError};
pub use filter::{FilterAction, FilterHook, FilterRule, FlowInfo, IpFilter, Protocol};
pub use icmp::{IcmpEchoMode, IcmpKind, IcmpMessage};
pub use icmp_socket::IcmpSocket;
pub use packet_io::{PacketPort, PacketSink, PacketStream};
pub use stack::{Packet, RunnerStatus, Stack, StackPtr};
pub use stats::{DropStats, IcmpStats, IpStats, Stats, TcpStats, UdpStats};
pub use tcp::{ConnId, TcpConnection};
pub use time::Clock;
pub use udp::UdpDatagram;
pub use udp_socket::{Datagram, UdpRecvHalf, UdpSendHalf, UdpSocket};

/// Re-exported smoltcp types that appear in this crate's API.
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::{
    IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr,
};
