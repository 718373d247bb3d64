//! The forwarder over async-io, in two ways: [`AsyncIoLocal`], on one thread (a
//! `LocalExecutor`, the `!Send` stack of `netstack_smol::local`: an `Rc`, no locking; its runner
//! spawned on the same executor; everything runs on the thread that drives the executor), and
//! [`AsyncIoThreads`], on several (an `async_executor::Executor` that each of them runs, the
//! `Send` stack of `netstack_smol` with one runner per runner group). Both use async-io's kernel
//! sockets and timer, and [`AsyncIoTun`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_executor::{Executor as ThreadsExecutor, LocalExecutor};
use async_io::{Async, Timer};
use netstack_core::{Config, PacketPort};

use super::dial;
use super::executor::{Executor, KernelDatagram, KernelStream, TunDevice};
use super::task::Task;
use super::udp_batch::send_batch;
use super::udp_recv::RecvBatch;
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

    fn open_tun(&self, device: Device) -> io::Result<AsyncIoTun> {
        AsyncIoTun::new(device)
    }

    async fn connect(to: SocketAddr) -> io::Result<Async<TcpStream>> {
        connect_nodelay(to).await
    }

    fn datagram(socket: UdpSocket) -> io::Result<Async<UdpSocket>> {
        Async::new(socket)
    }

    fn sleep_until(deadline: Instant) -> Timer {
        Timer::at(deadline)
    }
}

/// An async-io executor that several threads run (each `async_io::block_on(ex.run(..))`),
/// with the `Send` stack: connections of different runner groups are served on different
/// threads, as on tokio's multi-thread runtime.
#[derive(Clone)]
pub struct AsyncIoThreads {
    ex: Arc<ThreadsExecutor<'static>>,
    threads: usize,
}

impl AsyncIoThreads {
    /// The forwarder's executor over `ex`, which `threads` threads run.
    pub fn new(ex: Arc<ThreadsExecutor<'static>>, threads: usize) -> Self {
        AsyncIoThreads { ex, threads }
    }
}

impl std::fmt::Debug for AsyncIoThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncIoThreads")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Executor for AsyncIoThreads {
    type Ptr = netstack_smol::StackPtr;
    type Tun = AsyncIoTun;
    type TcpStream = Async<TcpStream>;
    type Datagram = Async<UdpSocket>;
    type Sleep = Timer;

    fn start_stack(&self, config: Config) -> PacketPort<Self::Ptr, io::Error> {
        // One runner per runner group, so that the executor's threads serve groups in parallel.
        let (port, runners, _listener) = netstack_smol::StackBuilder::new(config).build_runners();
        for runner in runners {
            self.ex.spawn(runner).detach();
        }
        port
    }

    fn spawn(&self, task: Task<Self>) {
        self.ex.spawn(task.run()).detach();
    }

    fn parallelism(&self) -> usize {
        self.threads
    }

    fn open_tun(&self, device: Device) -> io::Result<AsyncIoTun> {
        AsyncIoTun::new(device)
    }

    async fn connect(to: SocketAddr) -> io::Result<Async<TcpStream>> {
        connect_nodelay(to).await
    }

    fn datagram(socket: UdpSocket) -> io::Result<Async<UdpSocket>> {
        Async::new(socket)
    }

    fn sleep_until(deadline: Instant) -> Timer {
        Timer::at(deadline)
    }
}

/// A kernel TCP connection to `to` with `TCP_NODELAY`, registered with async-io's reactor. It
/// waits for the reactor only if the kernel has not connected the socket inside `connect`
/// already (see [`dial`]).
async fn connect_nodelay(to: SocketAddr) -> io::Result<Async<TcpStream>> {
    let dial = dial::start(to)?;
    let stream = Async::new_nonblocking(dial.stream)?;
    if !dial.connected {
        stream.writable().await?;
        dial::finish(stream.get_ref())?;
    }
    Ok(stream)
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

    async fn send_train(&self, packets: &[&[u8]]) -> io::Result<usize> {
        AsyncIoTun::send_train(self, packets).await
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

    async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.read_with(|s| batch.try_recv(s)).await
    }

    async fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        Async::<UdpSocket>::send(self, datagram).await
    }

    async fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        self.write_with(|s| send_batch(s, datagrams)).await
    }

    fn try_send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        send_batch(self.get_ref(), datagrams)
    }
}
