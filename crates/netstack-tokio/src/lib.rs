//! # netstack-tokio
//!
//! The tokio adapter for [`netstack_core`]: a userspace TCP/IP stack that a TUN device (or any
//! source of raw IP packets) is wired to, and that hands the application one [`TcpStream`] per
//! TCP connection it accepts, for **any** destination address and port.
//!
//! ```no_run
//! use futures::{SinkExt, StreamExt};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn example() -> std::io::Result<()> {
//! let (stack, listener) = netstack_tokio::StackBuilder::default().mtu(1500).run();
//! // Wire the packet device: packets read from it go into `stack` (a `Sink`), packets the
//! // stack emits come out of it (a `Stream`). Here, a channel stands in for a TUN device.
//! let (mut to_stack, mut from_stack) = stack.split();
//! # let packet_from_tun: Vec<u8> = Vec::new();
//! to_stack.send(packet_from_tun).await?;
//! tokio::spawn(async move {
//!     while let Some(_packet) = from_stack.next().await {
//!         // write `_packet` to the TUN device
//!     }
//! });
//! // Every TCP connection opened through the device, whatever its destination:
//! loop {
//!     let (mut stream, peer) = listener.accept().await?;
//!     let destination = stream.local_addr()?;
//!     println!("{peer} -> {destination}");
//!     stream.write_all(b"hello\n").await?;
//! }
//! # }
//! ```
//!
//! Types mirror `tokio::net`: [`TcpListener::accept`], [`TcpStream::local_addr`] (the original
//! destination), [`TcpStream::peer_addr`], [`TcpStream::into_split`]. `poll_shutdown` is a
//! half-close that completes as soon as the FIN is queued, so `tokio::io::copy_bidirectional`
//! relays half-closed connections correctly.
//!
//! Everything here is `Send + Sync` and works on the multi-thread runtime. The runtime needs its
//! time driver (`enable_time`/`enable_all`): the runner sleeps on a tokio timer.

mod builder;
mod clock;
mod io_error;
mod listener;
mod mutex;
mod runner;
mod stack;
mod stream;

pub use builder::StackBuilder;
pub use clock::TokioClock;
pub use listener::TcpListener;
pub use mutex::StdRawMutex;
pub use netstack_core::{Config, Duration, Stats};
pub use runner::Runner;
pub use stack::{PacketSink, PacketStream, Stack};
pub use stream::{OwnedReadHalf, OwnedWriteHalf, TcpStream};

/// The core stack type behind the `Send` flavour.
pub type CoreStack = netstack_core::Stack<StdRawMutex, TokioClock>;

/// A raw IP packet.
pub type Packet = netstack_core::Packet;
