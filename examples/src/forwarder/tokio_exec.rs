//! The forwarder on tokio: the `Send` stack of `netstack-tokio` (its runner spawned with
//! `tokio::spawn`), tokio's kernel sockets and timer, and [`Tun`] on tokio's reactor. Runs on the
//! multi-thread runtime: every task may move between worker threads.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use netstack_core::{Config, PacketPort};
#[cfg(unix)]
use tokio::io::{unix::AsyncFd, Interest};

use super::executor::{Executor, KernelDatagram, KernelStream, TunDevice};
use super::task::Task;
#[cfg(unix)]
use super::udp_batch::send_batch;
use super::udp_recv::RecvBatch;
use crate::tun::Tun;
use crate::tun_device::Device;

/// The tokio executor (the ambient runtime: call [`forward`](super::forward) inside it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Executor for Tokio {
    type Ptr = netstack_tokio::StackPtr;
    type Tun = Tun;
    type TcpStream = tokio::net::TcpStream;
    type Datagram = TokioDatagram;
    type Sleep = Pin<Box<tokio::time::Sleep>>;

    fn start_stack(&self, config: Config) -> PacketPort<Self::Ptr, io::Error> {
        // The forwarder makes its own listener (of core streams) from the port.
        let (port, _listener) = netstack_tokio::StackBuilder::new(config).run();
        port
    }

    fn spawn(&self, task: Task<Self>) {
        tokio::spawn(task.run());
    }

    fn parallelism(&self) -> usize {
        tokio::runtime::Handle::current().metrics().num_workers()
    }

    fn open_tun(device: Device) -> io::Result<Tun> {
        Tun::new(device)
    }

    async fn connect(to: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let stream = tokio::net::TcpStream::connect(to).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn datagram(socket: UdpSocket) -> io::Result<TokioDatagram> {
        TokioDatagram::new(socket)
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

impl TunDevice for Tun {
    async fn recv_many(
        &self,
        out: &mut VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<()> {
        Tun::recv_many(self, out, max, capacity).await
    }

    async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        Tun::send(self, packet).await
    }

    async fn send_train(&self, packets: &[&[u8]]) -> io::Result<usize> {
        Tun::send_train(self, packets).await
    }
}

impl KernelStream for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_read(self, buf)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_write_ready(self, cx)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        socket2::SockRef::from(self).shutdown(Shutdown::Write)
    }
}

/// A connected datagram socket on tokio's reactor. On Unix not `tokio::net::UdpSocket`: its
/// reads wait for readability only, and a socket error (ICMP port unreachable) makes a Linux
/// socket report `EPOLLERR` alone, so a flow would never hear of it; so the socket is an
/// `AsyncFd` waited on for readability *or* an error. (Windows reports the error as readable.)
#[derive(Debug)]
pub struct TokioDatagram {
    #[cfg(unix)]
    io: AsyncFd<UdpSocket>,
    #[cfg(windows)]
    io: tokio::net::UdpSocket,
}

impl TokioDatagram {
    /// Registers `socket` with tokio's reactor (inside a tokio runtime).
    #[allow(unsafe_code)]
    fn new(socket: UdpSocket) -> io::Result<TokioDatagram> {
        socket.set_nonblocking(true)?;
        #[cfg(unix)]
        {
            let interest = Interest::READABLE | Interest::WRITABLE;
            // SAFETY: the `AsyncFd` owns the socket, which holds its descriptor from creation
            // to drop and never replaces it: it stays open, and the same socket, for as long
            // as the `AsyncFd` is registered.
            let io = unsafe { AsyncFd::register_with_interest(socket, interest) }
                .map_err(io::Error::from)?;
            Ok(TokioDatagram { io })
        }
        #[cfg(windows)]
        Ok(TokioDatagram {
            io: tokio::net::UdpSocket::from_std(socket)?,
        })
    }
}

impl KernelDatagram for TokioDatagram {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return self
            .io
            .async_io(Interest::READABLE | Interest::ERROR, |s| s.recv(buf))
            .await;
        #[cfg(windows)]
        return self.io.recv(buf).await;
    }

    async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        #[cfg(unix)]
        return self
            .io
            .async_io(Interest::READABLE | Interest::ERROR, |s| batch.try_recv(s))
            .await;
        #[cfg(windows)]
        {
            let n = self.io.recv(batch.one_buffer()).await?;
            Ok(batch.received_one(n))
        }
    }

    async fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return self
            .io
            .async_io(Interest::WRITABLE, |s| s.send(datagram))
            .await;
        #[cfg(windows)]
        return self.io.send(datagram).await;
    }

    async fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        #[cfg(unix)]
        return self
            .io
            .async_io(Interest::WRITABLE, |s| send_batch(s, datagrams))
            .await;
        #[cfg(windows)]
        return match datagrams.first() {
            Some(d) => self.io.send(d).await.map(|_| 1),
            None => Ok(0),
        };
    }

    fn try_send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        // Not through the `AsyncFd`'s readiness: a `WouldBlock` here leaves it as it is, and
        // the flow's own task (which waits on it) finds out for itself.
        #[cfg(unix)]
        return send_batch(self.io.get_ref(), datagrams);
        #[cfg(windows)]
        return match datagrams.first() {
            Some(d) => self.io.try_send(d).map(|_| 1),
            None => Ok(0),
        };
    }
}
