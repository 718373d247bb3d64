//! The forwarder on one thread: a `LocalExecutor` over async-io, the `!Send` stack of
//! `netstack_smol::local` (an `Rc`, no locking; its runner spawned on the same executor),
//! async-io's kernel sockets and timer, and [`AsyncIoTun`]. Everything runs on the thread that
//! drives the executor.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use netstack_core::{Config, PacketPort};

use super::executor::{Executor, KernelDatagram, KernelStream, TunDevice};
use super::task::Task;
use super::udp_batch::send_batch;
use crate::tun_async_io::AsyncIoTun;
use crate::tun_device::Device;

/// A single-thread async-io executor (drive it with `async_io::block_on(ex.run(..))`).
#[derive(Clone)]
pub struct AsyncIoLocal(Rc<LocalExecutor<'static>>);

impl AsyncIoLocal {
    /// The forwarder's executor over `ex`.
    pub fn new(ex: Rc<LocalExecutor<'static>>) -> Self {
        AsyncIoLocal(ex)
    }
}

impl std::fmt::Debug for AsyncIoLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncIoLocal").finish_non_exhaustive()
    }
}

impl Executor for AsyncIoLocal {
    type Ptr = netstack_smol::local::StackPtr;
    type Tun = AsyncIoTun;
    type TcpStream = Async<TcpStream>;
    type Datagram = Async<UdpSocket>;
    type Sleep = Timer;

    fn start_stack(&self, config: Config) -> PacketPort<Self::Ptr, io::Error> {
        // The forwarder makes its own listener (of core streams) from the port.
        let (port, runner, _listener) = netstack_smol::local::StackBuilder::new(config).build();
        self.0.spawn(runner).detach();
        port
    }

    fn spawn(&self, task: Task<Self>) {
        self.0.spawn(task.run()).detach();
    }

    fn parallelism(&self) -> usize {
        1
    }

    fn open_tun(device: Device) -> io::Result<AsyncIoTun> {
        AsyncIoTun::new(device)
    }

    async fn connect(to: SocketAddr) -> io::Result<Async<TcpStream>> {
        let stream = Async::<TcpStream>::connect(to).await?;
        stream.get_ref().set_nodelay(true)?;
        Ok(stream)
    }

    fn datagram(socket: UdpSocket) -> io::Result<Async<UdpSocket>> {
        Async::new(socket)
    }

    fn sleep_until(deadline: Instant) -> Timer {
        Timer::at(deadline)
    }
}

impl TunDevice for AsyncIoTun {
    async fn recv_many(
        &self,
        out: &mut VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<()> {
        AsyncIoTun::recv_many(self, out, max, capacity).await
    }

    async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        AsyncIoTun::send(self, packet).await
    }
}

impl KernelStream for Async<TcpStream> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Async::poll_readable(self, cx)
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // The descriptor is non-blocking (`Async` made it so).
        self.get_ref().read(buf)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Async::poll_writable(self, cx)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.get_ref().write(buf)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.get_ref().shutdown(Shutdown::Write)
    }
}

/// async-io counts `EPOLLERR` as readable: a socket error (ICMP port unreachable) wakes the
/// reader, whose `recv` returns it.
impl KernelDatagram for Async<UdpSocket> {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Async::<UdpSocket>::recv(self, buf).await
    }

    async fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        Async::<UdpSocket>::send(self, datagram).await
    }

    async fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        self.write_with(|s| send_batch(s, datagrams)).await
    }
}
