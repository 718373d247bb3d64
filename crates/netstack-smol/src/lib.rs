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
//!     let (port, runner, listener) = netstack_smol::local::StackBuilder::default().build();
//!     ex.spawn(runner).detach();
//!     // Wire the packet device: packets read from it go into `to_stack` (a `Sink`), packets
//!     // the stack emits come out of `from_stack` (a `Stream`).
//!     let (mut to_stack, mut from_stack) = port.split();
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
//! Types mirror `async-net` and `tokio::net`: [`TcpListener::accept`](netstack_core::TcpListener::accept)
//! (and a `Stream` of connections), `TcpStream::local_addr` (the original destination),
//! `peer_addr`, `into_split`. A stream implements futures-io `AsyncRead`/`AsyncWrite` and
//! dereferences to the core's [`TcpStream`](netstack_core::TcpStream) for everything else;
//! its `poll_close` is a half-close that completes as soon as the FIN is queued.
//!
//! ## Two flavours
//!
//! The types at the crate root are `Send + Sync`, for an `Executor` run on several threads (an
//! `Arc` and a per-stack mutex); their `StackBuilder::run()` drives the runner on a thread of
//! its own. The same names in [`local`] are neither: an `Rc` and no locking at all, for a
//! `LocalExecutor` or `async_io::block_on` (spawn the runner from `build()` yourself). Both are
//! aliases of the core's generic types with the [`AsyncIo`] runtime; the compiler decides which
//! is `Send`.
//!
//! The runner sleeps on one `async_io::Timer`, re-armed only when the stack's deadline moves
//! earlier and disarmed when there is none.
#![deny(missing_docs)]

pub mod generic;
mod runtime;

pub use netstack_core::reexports::*;
pub use runtime::{AsyncIo, AsyncIoTimer, StdClock};

netstack_core::adapter_aliases!(netstack_core::SendFlavor, crate::AsyncIo, "a `Send + Sync`");

/// The non-`Send` flavour: the same types as the crate root over an `Rc` and no locking, for a
/// `LocalExecutor` or `async_io::block_on` on one thread.
pub mod local {
    netstack_core::adapter_aliases!(
        netstack_core::LocalFlavor,
        crate::AsyncIo,
        "a single-thread"
    );
}
