//! # netstack-core
//!
//! A `no_std` (+ `alloc`) userspace network stack core built on [`smoltcp`]. It turns raw IP
//! packets (as read from a TUN device) into TCP connections for **any** destination address and
//! port, UDP datagrams and ICMP messages, and turns the application's replies back into IP
//! packets.
//!
//! The core owns the smoltcp interfaces, their socket tables and the poll loop, and everything
//! above them that is not an executor's: the listener, the streams, the builder, the runner's
//! decisions and the `Send`/non-`Send` flavours. It has no executor and no clock of its own: an
//! adapter crate (`netstack-tokio`, `netstack-smol`) supplies a [`Runtime`] — a [`Clock`], a
//! [`Timer`], a random seed, a spawn — and implements its ecosystem's I/O traits on the streams.
//!
//! ```text
//!  device ──▶ PacketSink ─ normalize → classify → filter ─┬─ TCP ─▶ [ingress queue] ─▶ Runner: SYN table, smoltcp shards
//!   (TUN)                     (outside the lock)           ├─ UDP ─▶ [UDP queue] ─▶ UdpSocket
//!                                                          └─ ICMP ─▶ echo reply, or [ICMP queue] ─▶ IcmpSocket
//!  device ◀── PacketStream ◀── [egress queue] ◀── Runner (smoltcp), UdpSocket sends, echo replies
//!  application ◀── TcpListener::accept ◀── [accept queue] ◀── Runner (handshake complete)
//!  application ◀──▶ TcpStream: poll_read / poll_read_uninit / poll_write / shutdown_write / abort
//! ```
//!
//! One code base gives a `Send + Sync` stack and a non-`Send` one: [`Stack`] is generic over an
//! `embassy_sync` [`RawMutex`](embassy_sync::blocking_mutex::raw::RawMutex), and a [`Flavor`]
//! picks the lock and the pointer (`Arc` or `Rc`); the compiler decides whether the handles are
//! `Send`.
//!
//! Without an adapter (firmware, a custom executor), implement [`Runtime`] yourself, or build a
//! [`Stack`] directly and drive [`Stack::poll_runner`] from a task, sleeping until the deadline
//! it returns.
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

extern crate alloc;

mod adapter;
mod builder;
mod classify;
mod config;
mod device;
mod egress;
mod error;
mod filter;
mod flavor;
mod group;
mod icmp;
mod ingest;
mod ingress;
mod ip_builder;
mod normalize;
mod outbox;
mod packet;
mod pass;
mod port;
mod ptr;
mod reassembly;
mod runner;
mod runtime;
mod shard;
mod shared;
mod stack;
mod stats;
#[cfg(feature = "std")]
mod std_mutex;
mod tcp;
pub mod time;
mod udp;
mod waker;

#[cfg(test)]
mod tests;

pub use builder::{ListenerOf, PortOf, PtrOf, RunnerOf, RunnersOf, StackBuilder};
pub use classify::SynOptions;
pub use config::Config;
pub use error::{Error, TcpError};
pub use filter::{FilterAction, FilterHook, FilterRule, FlowInfo, IpFilter, Protocol};
#[cfg(feature = "std")]
pub use flavor::SendFlavor;
pub use flavor::{Flavor, LocalFlavor};
pub use icmp::message::{IcmpEchoMode, IcmpKind, IcmpMessage};
pub use icmp::socket::IcmpSocket;
pub use icmp::unreachable::{ErrorQuote, Unreachable};
pub use packet::Packet;
pub use pass::RunnerStatus;
pub use port::{PacketPort, PacketSink, PacketStream};
pub use ptr::StackPtr;
pub use runner::{Runner, Timer};
#[cfg(feature = "std")]
pub use runtime::std_random_seed;
pub use runtime::{Io, Runtime, Spawn};
pub use stack::Stack;
pub use stats::{DropStats, IcmpStats, IpStats, Stats, TcpStats, UdpStats};
#[cfg(feature = "std")]
pub use std_mutex::StdRawMutex;
pub use tcp::connection::ConnId;
pub use tcp::listener::TcpListener;
pub use tcp::pending::Refusal;
pub use tcp::request::{ConnectionRequest, Incoming};
pub use tcp::stream::{TcpReadHalf, TcpStream, TcpWriteHalf};
pub use time::Clock;
pub use udp::queue::UdpDatagram;
pub use udp::socket::{Datagram, UdpRecvHalf, UdpSendHalf, UdpSocket};

/// The core types an adapter re-exports at its root (`pub use netstack_core::reexports::*`),
/// so that its users need no direct `netstack-core` dependency for configuration, datagrams,
/// ICMP messages and counters.
pub mod reexports {
    pub use crate::{
        Config, Datagram, Duration, Error as StackError, ErrorQuote, FilterAction, FilterRule,
        FlowInfo, IcmpEchoMode, IcmpKind, IcmpMessage, IpCidr, IpFilter, Packet, Protocol, Refusal,
        Stats, SynOptions, Unreachable,
    };
}

/// Re-exported smoltcp types that appear in this crate's API.
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::{
    IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr,
};
