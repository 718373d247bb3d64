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
//! let config = netstack_tokio::Config::default().mtu(1500);
//! let (port, listener) = netstack_tokio::StackBuilder::new(config).run();
//! // Wire the packet device: packets read from it go into `to_stack` (a `Sink`), packets the
//! // stack emits come out of `from_stack` (a `Stream`).
//! let (mut to_stack, mut from_stack) = port.split();
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
//! Types mirror `tokio::net`: [`TcpListener::accept`](netstack_core::TcpListener::accept),
//! `TcpStream::local_addr` (the original destination), `peer_addr`, `into_split`. A stream
//! implements tokio's `AsyncRead`/`AsyncWrite` and dereferences to the core's
//! [`TcpStream`](netstack_core::TcpStream) for everything else (`readable`, `abort`, the
//! `poll_*` primitives). `poll_shutdown` is a half-close that completes as soon as the FIN is
//! queued, so `tokio::io::copy_bidirectional` relays half-closed connections correctly.
//!
//! ## Two flavours
//!
//! The types at the crate root are `Send + Sync` and work on the multi-thread runtime (an `Arc`
//! and a per-stack mutex). The same names in [`local`] are neither: an `Rc` and no locking at
//! all, for a current-thread runtime with a [`LocalSet`](tokio::task::LocalSet). Both are
//! aliases of the core's generic types with the [`Tokio`] runtime; the compiler decides which
//! is `Send`.
//!
//! The runtime needs its time driver (`enable_time`/`enable_all`; `#[tokio::main]` enables
//! it): the runner sleeps on one tokio timer, reset only when the stack's deadline moves
//! earlier.
#![deny(missing_docs)]

pub mod generic;
mod runtime;

pub use netstack_core::reexports::*;
pub use runtime::{Tokio, TokioClock, TokioTimer};

netstack_core::adapter_aliases!(netstack_core::SendFlavor, crate::Tokio, "a `Send + Sync`");

/// The non-`Send` flavour: the same types as the crate root over an `Rc` and no locking, for a
/// current-thread runtime and a [`LocalSet`](tokio::task::LocalSet).
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// let local = tokio::task::LocalSet::new();
/// local
///     .run_until(async {
///         // `run` spawns the runner with `spawn_local`.
///         let (port, listener) = netstack_tokio::local::StackBuilder::default().run();
///         # drop(port);
///         let (stream, peer) = listener.accept().await?;
///         tokio::task::spawn_local(async move { drop((stream, peer)) });
///         Ok(())
///     })
///     .await
/// # }
/// ```
pub mod local {
    netstack_core::adapter_aliases!(netstack_core::LocalFlavor, crate::Tokio, "a single-thread");
}
