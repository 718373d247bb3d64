//! What differs between the forwarder's executors, in the style of quinn's `runtime` module: a
//! small trait ([`Executor`]) over spawning, the stack's flavour, kernel sockets, a timer and
//! the TUN wrapper. Everything else in [`crate::forwarder`] is written once against it; the
//! tokio implementation is [`Tokio`](super::tokio_exec::Tokio), the async-io one (a single-thread
//! `LocalExecutor`, the `!Send` stack) [`AsyncIoLocal`](super::async_io_exec::AsyncIoLocal).
//!
//! The kernel sockets are readiness-based (`poll_*`/`try_*` plus a wait), so the relays can
//! wait without holding a buffer.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::task::{Context, Poll};
use std::time::Instant;

use netstack_core::{Config, PacketPort, StackPtr};

use crate::tun_device::Device;

use super::task::Task;
use super::udp_recv::RecvBatch;

/// An executor the forwarder runs on. Its tasks are the forwarder's [`Task`]s: the generic code
/// never spawns arbitrary futures, so that each executor can check at one concrete place that
/// what it spawns fits it (`Send` for tokio's multi-thread runtime, anything for a local one).
pub trait Executor: Clone + Sized + 'static {
    /// The pointer of the stack flavour this executor runs (`Arc` for tokio, `Rc` for the local
    /// async-io executor).
    type Ptr: StackPtr + Unpin + 'static;
    /// The TUN device, registered with this executor's reactor.
    type Tun: TunDevice;
    /// An outbound kernel TCP stream.
    type TcpStream: KernelStream;
    /// A kernel datagram socket (a connected UDP socket, or an ICMP socket).
    type Datagram: KernelDatagram;
    /// A timer that fires at a deadline (its output is ignored).
    type Sleep: Future + Unpin;

    /// Builds the stack with `config`, spawns its runner and returns its packet port.
    fn start_stack(&self, config: Config) -> PacketPort<Self::Ptr, io::Error>;

    /// Spawns `task`, detached.
    fn spawn(&self, task: Task<Self>);

    /// The executor of the device's reader and of the UDP relay (the flow table and its
    /// flows): by default this one. Tokio's may be a thread of their own
    /// ([`Tokio::with_device_thread`](super::tokio_exec::Tokio::with_device_thread)).
    fn device_side(&self) -> Self {
        self.clone()
    }

    /// Threads the executor runs tasks on: the default number of the stack's runner groups.
    fn parallelism(&self) -> usize;

    /// Registers `device` with the executor's reactor (its reads, with the reactor of the
    /// [`device_side`](Self::device_side) executor, where that differs).
    ///
    /// # Errors
    /// If the reactor refuses the descriptor.
    fn open_tun(&self, device: Device) -> io::Result<Self::Tun>;

    /// Connects a kernel TCP socket to `to` (no timeout of its own: see
    /// [`connect_within`](super::time::connect_within)).
    fn connect(to: SocketAddr) -> impl Future<Output = io::Result<Self::TcpStream>>;

    /// Registers the (non-blocking) datagram socket `socket` with the reactor.
    ///
    /// # Errors
    /// If the reactor refuses it.
    fn datagram(socket: std::net::UdpSocket) -> io::Result<Self::Datagram>;

    /// A timer that fires at `deadline`.
    fn sleep_until(deadline: Instant) -> Self::Sleep;
}

/// A TUN device on an executor's reactor: batched reads, one packet per write.
pub trait TunDevice: Deref<Target = Device> + 'static {
    /// Waits for at least one packet, then reads every ready one (until `out` holds `max`); see
    /// [`Tun::recv_many`](crate::tun::Tun::recv_many).
    fn recv_many(
        &self,
        out: &mut VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> impl Future<Output = io::Result<()>>;

    /// Writes one packet.
    fn send(&self, packet: &[u8]) -> impl Future<Output = io::Result<usize>>;

    /// Writes UDP datagrams of one flow as one train (see [`crate::udp_train`] and
    /// [`Device::try_send_train`]).
    fn send_train(&self, packets: &[&[u8]]) -> impl Future<Output = io::Result<usize>>;
}

/// A connected kernel TCP stream, used through readiness: wait, then try. The waits are
/// `poll_*` functions, not futures, so that a relay waiting on them stores nothing per wait
/// (each direction of a relay waits on one of them: at most one waiter per direction).
pub trait KernelStream: 'static {
    /// Ready once the stream may be readable (a `try_read` may still say `WouldBlock`);
    /// registers the waker otherwise.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is ready into `buf`; 0 at end of stream.
    ///
    /// # Errors
    /// `WouldBlock` if nothing is ready; the socket's error.
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Ready once the stream may be writable; registers the waker otherwise.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Writes what fits now.
    ///
    /// # Errors
    /// `WouldBlock` if nothing fits; the socket's error.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Shuts the write direction down (FIN).
    ///
    /// # Errors
    /// The socket's error.
    fn shutdown_write(&self) -> io::Result<()>;
}

/// A kernel datagram socket, connected to its peer.
pub trait KernelDatagram: 'static {
    /// Receives one datagram into `buf` (a longer one is truncated). Also wakes for a pending
    /// socket error (an ICMP error about an earlier datagram, which Linux reports as
    /// `EPOLLERR` only) and returns it. Cancel-safe: dropping the future loses nothing.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;
    /// Receives the datagrams that are ready into `batch` (replacing those it held), up to
    /// [`MAX_BATCH`](super::udp_batch::MAX_BATCH) with one system call where the platform has
    /// one (see [`udp_recv`](super::udp_recv)); waits for at least one. Returns how many whole
    /// datagrams it holds. Wakes for a pending socket error as [`recv`](Self::recv) does, and
    /// returns it. Cancel-safe.
    fn recv_batch(&self, batch: &mut RecvBatch) -> impl Future<Output = io::Result<usize>>;
    /// Sends one datagram to the connected peer.
    fn send(&self, datagram: &[u8]) -> impl Future<Output = io::Result<usize>>;
    /// Sends the first datagrams of `datagrams` (at least one) to the connected peer with one
    /// system call where the platform has one (see [`udp_batch`](super::udp_batch)); returns
    /// how many were sent.
    fn send_batch(&self, datagrams: &[&[u8]]) -> impl Future<Output = io::Result<usize>>;
    /// As [`send_batch`](Self::send_batch), without waiting: `WouldBlock` if the socket has no
    /// room for the first datagram. Callable from any task (a flow table sends on its flows'
    /// sockets from its own).
    ///
    /// # Errors
    /// `WouldBlock`, or the socket's error (for example `ECONNREFUSED` left by an earlier
    /// port unreachable).
    fn try_send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize>;
}

/// Writes all of `data` to `stream`, waiting for room as needed.
///
/// # Errors
/// The socket's error.
pub async fn write_all<S: KernelStream>(stream: &S, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                poll_fn(|cx| stream.poll_write_ready(cx)).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
