//! The forwarder on tokio: the `Send` stack of `netstack-tokio` (its runner spawned with
//! `tokio::spawn`), tokio's kernel sockets and timer, and [`Tun`] on tokio's reactor. Runs on the
//! multi-thread runtime: every task may move between worker threads. With
//! [`Tokio::with_device_thread`], the device's reader and the UDP relay run on a thread of
//! their own instead.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use netstack_core::{Config, PacketPort};
#[cfg(unix)]
use tokio::io::{unix::AsyncFd, Interest};

use super::dial;
use super::executor::{Executor, KernelDatagram, KernelStream, TunDevice};
use super::task::Task;
#[cfg(unix)]
use super::udp_batch::send_batch;
use super::udp_recv::RecvBatch;
use crate::tun::Tun;
use crate::tun_device::Device;

/// The tokio executor (the ambient runtime: call [`forward`](super::forward) inside it).
#[derive(Debug, Clone, Default)]
pub struct Tokio {
    /// The device thread's runtime (see [`Tokio::with_device_thread`]), if there is one.
    device: Option<tokio::runtime::Handle>,
    /// This is the device thread's executor: spawn there.
    on_device_thread: bool,
}

impl Tokio {
    /// The ambient runtime, but the device's reader and the UDP relay (its flow table and
    /// every flow) on a thread of their own: a single-thread runtime whose reactor alone hears
    /// the device's reads and the flows' sockets. Must be called inside a tokio runtime.
    ///
    /// Why: on the multi-thread runtime the reader's wake-ups go to whichever worker is idle,
    /// so the reader moves between workers and reads a few packets per wake-up. Each packet's
    /// arrival then wakes the idle worker again. On its own thread, the reader drains the
    /// device while packets queue, with no wake-ups in between. On the 2-core bench machine
    /// this carried 1.85 and 1.90 Gbit/s of UDP upload (MTU 1500 and 65000) against 1.66 and
    /// 1.84 without it, but cost UDP download (1.13 against 1.66), TCP 2-14 % (the TCP runners
    /// and relays are then woken from another thread) and 43 µs of UDP echo round trip; see
    /// BENCHMARKS.md, run P (run M, before the device reader read again after a burst, had
    /// 1.94 against 1.60). Off by default: `tun_forward --device-thread`.
    ///
    /// # Errors
    /// If the thread or its runtime cannot be started.
    pub fn with_device_thread() -> io::Result<Tokio> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("netstack-device".into())
            // Runs the spawned tasks for as long as the process lives.
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(Tokio {
            device: Some(handle),
            on_device_thread: false,
        })
    }
}

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
        match &self.device {
            Some(device) if self.on_device_thread => drop(device.spawn(task.run())),
            _ => drop(tokio::spawn(task.run())),
        }
    }

    fn device_side(&self) -> Tokio {
        Tokio {
            device: self.device.clone(),
            on_device_thread: self.device.is_some(),
        }
    }

    fn parallelism(&self) -> usize {
        tokio::runtime::Handle::current().metrics().num_workers()
    }

    fn open_tun(&self, device: Device) -> io::Result<Tun> {
        if self.device.is_some() {
            Tun::new_with_separate_reads(device)
        } else {
            Tun::new(device)
        }
    }

    /// Waits for the reactor only if the kernel has not connected the socket inside `connect`
    /// already (see [`dial`]).
    async fn connect(to: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let dial = dial::start(to)?;
        let stream = tokio::net::TcpStream::from_std(dial.stream)?;
        if !dial.connected {
            stream.writable().await?;
            dial::finish(&stream)?;
        }
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

/// A connected datagram socket on tokio's reactor. On Unix not `tokio::net::UdpSocket`, for
/// two reasons:
///
/// - its reads wait for readability only, and a socket error (ICMP port unreachable) makes a
///   Linux socket report `EPOLLERR` alone, so a flow would never hear of it; so the socket is
///   an `AsyncFd` waited on for readability *or* an error. (Windows reports the error as
///   readable.)
/// - it is registered for writability too, and a UDP socket reports write space after every
///   datagram it sends (Linux's `sock_def_write_space` runs whenever a sent buffer is freed,
///   which on loopback is at once), so each send woke a worker parked in `epoll_wait` for an
///   event no task waits for: about 30 % of the forwarder's CPU in a UDP upload on a 2-core
///   machine (BENCHMARKS.md, run I). This socket is registered for readability only, and
///   sends go straight to it; only a send that finds no room registers a second descriptor of
///   the same socket for writability, for as long as it waits (`TokioDatagram::wait_writable`).
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
            // SAFETY: the `AsyncFd` owns the socket, which holds its descriptor from creation
            // to drop and never replaces it: it stays open, and the same socket, for as long
            // as the `AsyncFd` is registered.
            let io = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
                .map_err(io::Error::from)?;
            Ok(TokioDatagram { io })
        }
        #[cfg(windows)]
        Ok(TokioDatagram {
            io: tokio::net::UdpSocket::from_std(socket)?,
        })
    }
}

#[cfg(unix)]
impl TokioDatagram {
    /// Runs `send` on the socket until it does not find the socket full, waiting for room
    /// ([`wait_writable`](Self::wait_writable)) after each time it does.
    async fn send_with<T>(
        &self,
        mut send: impl FnMut(&UdpSocket) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            match send(self.io.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable().await?,
                done => return done,
            }
        }
    }

    /// Waits until the socket has room to send. A second descriptor of the socket is
    /// registered with the reactor for writability for the wait and closed after it: the
    /// kernel's write-space events then reach the reactor only while a sender waits for them.
    /// Registering reports a socket that already has room at once (`epoll_ctl` polls it), so
    /// room made between the failed send and the registration is not missed.
    #[allow(unsafe_code)]
    async fn wait_writable(&self) -> io::Result<()> {
        use std::os::fd::AsFd;
        let fd = self.io.get_ref().as_fd().try_clone_to_owned()?;
        // SAFETY: the `AsyncFd` owns `fd` (a descriptor of its own, from `dup`), which stays
        // open and unchanged until the `AsyncFd` is dropped, deregistering it first.
        let writer = unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        let _ready = writer.writable().await?;
        Ok(())
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
        return self.send_with(|s| s.send(datagram)).await;
        #[cfg(windows)]
        return self.io.send(datagram).await;
    }

    async fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        #[cfg(unix)]
        return self.send_with(|s| send_batch(s, datagrams)).await;
        #[cfg(windows)]
        return match datagrams.first() {
            Some(d) => self.io.send(d).await.map(|_| 1),
            None => Ok(0),
        };
    }

    fn try_send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        // Straight to the socket (it is not registered for writability): a `WouldBlock` here
        // is the caller's to handle (the flow table queues the rest for the flow's task).
        #[cfg(unix)]
        return send_batch(self.io.get_ref(), datagrams);
        #[cfg(windows)]
        return match datagrams.first() {
            Some(d) => self.io.try_send(d).map(|_| 1),
            None => Ok(0),
        };
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::test_netns::{in_new_netns, run};
    use std::net::Ipv4Addr;
    use std::time::Duration;

    /// A send that finds the socket's buffer full waits for room and then sends: the socket
    /// sends through a token bucket of 1 Mbit/s (on a TUN device nobody reads, in a namespace
    /// of the test's own), so its smallest send buffer fills after a few datagrams and empties
    /// slowly.
    #[test]
    fn a_send_that_finds_the_socket_full_waits_for_room_then_sends() {
        in_new_netns(|| {
            let device = Device::create("slowq%d", 1500, false).expect("creating a TUN device");
            let name = device.name().to_owned();
            run("ip", &["addr", "add", "198.18.7.1/24", "dev", &name]);
            run("ip", &["link", "set", &name, "up"]);
            let tbf = ["rate", "1mbit", "burst", "1600", "limit", "30000"];
            run(
                "tc",
                &[&["qdisc", "add", "dev", &name, "root", "tbf"][..], &tbf].concat(),
            );
            let socket = UdpSocket::bind((Ipv4Addr::new(198, 18, 7, 1), 0)).unwrap();
            socket2::SockRef::from(&socket)
                .set_send_buffer_size(1)
                .unwrap();
            socket.connect((Ipv4Addr::new(198, 18, 7, 2), 9)).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let socket = TokioDatagram::new(socket).unwrap();
                let datagram: &[u8] = &[7u8; 1000];
                let mut accepted = 0;
                loop {
                    match socket.try_send_batch(&[datagram]) {
                        Ok(n) => accepted += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("send failed: {e}"),
                    }
                    assert!(accepted < 100, "the send buffer never filled");
                }
                // The socket is full: each of these must wait for the queue to drain a
                // datagram, be woken, and send.
                let patience = Duration::from_secs(10);
                for _ in 0..3 {
                    let sent = tokio::time::timeout(patience, socket.send_batch(&[datagram; 2]))
                        .await
                        .expect("a batch waiting for room was never woken")
                        .unwrap();
                    assert!((1..=2).contains(&sent), "sent {sent} of 2");
                }
                let sent = tokio::time::timeout(patience, socket.send(datagram))
                    .await
                    .expect("a send waiting for room was never woken")
                    .unwrap();
                assert_eq!(sent, datagram.len());
            });
            drop(device);
        });
    }
}
