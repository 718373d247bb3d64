//! # netstack-smol
//!
//! The async-io adapter for [`netstack_core`] (smol, async-std and any executor that uses
//! `async-io`): a userspace TCP/IP stack that a TUN device (or any source of raw IP packets) is
//! wired to, and that hands the application one [`TcpStream`] per TCP connection it accepts,
//! for **any** destination address and port.
//!
//! ```no_run
//! use futures::{AsyncWriteExt, SinkExt, StreamExt};
//!
//! # fn main() -> std::io::Result<()> {
//! let ex = async_executor::LocalExecutor::new();
//! async_io::block_on(ex.run(async {
//!     // The local flavour: `Rc`, no locking, for a single-thread executor.
//!     let (stack, runner, listener) = netstack_smol::local::StackBuilder::default().build();
//!     ex.spawn(runner).detach();
//!     // Wire the packet device: packets read from it go into `stack` (a `Sink`), packets the
//!     // stack emits come out of it (a `Stream`).
//!     let (mut to_stack, mut from_stack) = stack.split();
//!     # let packet_from_tun: Vec<u8> = Vec::new();
//!     to_stack.send(packet_from_tun).await?;
//!     ex.spawn(async move {
//!         while let Some(_packet) = from_stack.next().await {
//!             // write `_packet` to the TUN device
//!         }
//!     })
//!     .detach();
//!     // Every TCP connection opened through the device, whatever its destination:
//!     loop {
//!         let (mut stream, peer) = listener.accept().await?;
//!         println!("{peer} -> {}", stream.local_addr()?);
//!         stream.write_all(b"hello\n").await?;
//!         stream.close().await?; // half-close: queues a FIN, reading goes on
//!     }
//! }))
//! # }
//! ```
//!
//! Types mirror `async-net` and `tokio::net`: [`TcpListener::accept`] (and a `Stream` of
//! connections), [`TcpStream::local_addr`] (the original destination), [`TcpStream::peer_addr`],
//! [`TcpStream::into_split`]. [`TcpStream`] implements futures-io `AsyncRead`/`AsyncWrite`;
//! its `poll_close` is a half-close that completes as soon as the FIN is queued.
//!
//! ## Two flavours, one implementation
//!
//! The types at the crate root are `Send + Sync`, for an `Executor` run on several threads (an
//! `Arc` and a per-stack mutex). The same names in [`local`] are neither: an `Rc` and no locking
//! at all, for a `LocalExecutor` or `async_io::block_on`. Both are aliases of the [`generic`]
//! types, instantiated with a [`flavor`] marker; the compiler decides which is `Send`.
//!
//! The runner sleeps on one `async_io::Timer`, re-armed to the stack's next deadline with
//! `set_at` and disarmed when there is none.
#![deny(missing_docs)]

mod builder;
mod clock;
pub mod flavor;
mod listener;
mod mutex;
mod runner;
mod stack;
mod stream;
mod udp;

pub use clock::StdClock;
pub use mutex::StdRawMutex;
pub use netstack_core::{
    Config, Datagram, Duration, Error as StackError, FilterAction, FilterRule, FlowInfo,
    IcmpEchoMode, IcmpKind, IcmpMessage, IpCidr, IpFilter, Protocol, Stats,
};

/// The adapter types, generic over their [`flavor`]. Name them through the aliases at the crate
/// root (`Send`) or in [`local`] (not `Send`).
pub mod generic {
    pub use crate::builder::StackBuilder;
    pub use crate::flavor::CoreStack;
    pub use crate::listener::TcpListener;
    pub use crate::runner::Runner;
    pub use crate::stack::{PacketSink, PacketStream, Stack};
    pub use crate::stream::{OwnedReadHalf, OwnedWriteHalf, TcpStream};
    pub use crate::udp::{IcmpSocket, UdpRecvHalf, UdpSendHalf, UdpSocket};
}

/// Declares the aliases of one flavour: the same names at the crate root and in `local`.
macro_rules! flavour_aliases {
    ($flavor:ty, $what:literal) => {
        #[doc = concat!("Builds ", $what, " stack, its runner and its listener.")]
        pub type StackBuilder = $crate::generic::StackBuilder<$flavor>;
        #[doc = concat!("The packet side of ", $what, " stack: a `Sink` in, a `Stream` out.")]
        pub type Stack = $crate::generic::Stack<$flavor>;
        #[doc = concat!("Packets into ", $what, " stack.")]
        pub type PacketSink = $crate::generic::PacketSink<$flavor>;
        #[doc = concat!("Packets out of ", $what, " stack.")]
        pub type PacketStream = $crate::generic::PacketStream<$flavor>;
        #[doc = concat!("The future that drives ", $what, " stack.")]
        pub type Runner = $crate::generic::Runner<$flavor>;
        #[doc = concat!("Accepts the TCP connections of ", $what, " stack.")]
        pub type TcpListener = $crate::generic::TcpListener<$flavor>;
        #[doc = concat!("A TCP connection of ", $what, " stack.")]
        pub type TcpStream = $crate::generic::TcpStream<$flavor>;
        #[doc = concat!("The read half of a TCP connection of ", $what, " stack.")]
        pub type OwnedReadHalf = $crate::generic::OwnedReadHalf<$flavor>;
        #[doc = concat!("The write half of a TCP connection of ", $what, " stack.")]
        pub type OwnedWriteHalf = $crate::generic::OwnedWriteHalf<$flavor>;
        #[doc = concat!("The UDP socket of ", $what, " stack.")]
        pub type UdpSocket = $crate::generic::UdpSocket<$flavor>;
        #[doc = concat!("The receive half of the UDP socket of ", $what, " stack.")]
        pub type UdpRecvHalf = $crate::generic::UdpRecvHalf<$flavor>;
        #[doc = concat!("The send half of the UDP socket of ", $what, " stack.")]
        pub type UdpSendHalf = $crate::generic::UdpSendHalf<$flavor>;
        #[doc = concat!("The ICMP socket of ", $what, " stack.")]
        pub type IcmpSocket = $crate::generic::IcmpSocket<$flavor>;
        #[doc = concat!("The core stack behind ", $what, " stack.")]
        pub type CoreStack = $crate::generic::CoreStack<$flavor>;
    };
}

flavour_aliases!(flavor::SendFlavor, "a `Send + Sync`");

/// The non-`Send` flavour: the same types as the crate root over an `Rc` and no locking, for a
/// `LocalExecutor` or `async_io::block_on` on one thread.
pub mod local {
    flavour_aliases!(crate::flavor::LocalFlavor, "a single-thread");
}

/// A raw IP packet.
pub type Packet = netstack_core::Packet;
