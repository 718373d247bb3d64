//! An asynchronous TUN device for tokio, on every platform tun-rs supports.
//!
//! [`Tun`] is the [`Device`] of [`crate::tun_device`] (created or adopted through tun-rs, with
//! this project's Linux offload handling and batched reads) registered with tokio's reactor.
//! Every [`Tun::recv`] returns exactly one IP packet and every [`Tun::send`] writes exactly one;
//! [`Tun::recv_many`] reads every packet that is ready, in one readiness wait. All methods take
//! `&self`, so one device can be shared between a reading task and a writing task through an
//! [`Arc<Tun>`](std::sync::Arc). A [`Tun`] dereferences to its [`Device`] for the name, the MTU
//! and the offload state (and, on Unix, its descriptor: `Device` is `AsRawFd` and `AsFd`).
//!
//! [`Tun::create_with_offload`] also turns on the Linux device's offloads (`IFF_VNET_HDR`,
//! `TUNSETOFFLOAD` with checksum and TCP segmentation offload, see [`crate::offload`]): the
//! kernel then hands over TCP super-segments of up to 64 KiB and partial checksums, which
//! reads complete, so callers still see ordinary IP packets.
//!
//! A created device lives in the network namespace of the *calling thread* (Linux), which lets
//! tests create devices inside a private namespace entered with `unshare(CLONE_NEWNET)` on a
//! dedicated thread. The interface exists as long as the handle is open (unless it was made
//! persistent by other means); an adopted descriptor ([`Device::from_fd`], then [`Tun::new`]) is
//! never closed.

use std::collections::VecDeque;
use std::io;
use std::ops::Deref;

pub use crate::tun_device::Device;

#[cfg(unix)]
use crate::tun_device::Batch;
#[cfg(unix)]
use std::os::fd::{AsFd, OwnedFd};
#[cfg(unix)]
use std::sync::OnceLock;
#[cfg(unix)]
use std::task::{ready, Context, Poll};
#[cfg(unix)]
use tokio::io::{
    unix::{AsyncFd, AsyncFdReadyGuard},
    Interest,
};

/// What a reader waits for. A Linux TUN whose interface was deleted reports only `EPOLLERR`,
/// which tokio does not count as readable: without it the reader would sleep forever instead of
/// reading the error.
#[cfg(any(target_os = "linux", target_os = "android"))]
const READ_INTEREST: Interest = Interest::READABLE.add(Interest::ERROR);
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const READ_INTEREST: Interest = Interest::READABLE;

/// An asynchronous handle to a TUN device (layer 3, no packet information header) on tokio.
#[derive(Debug)]
pub struct Tun {
    #[cfg(unix)]
    io: AsyncFd<Device>,
    /// With [`Tun::new_with_separate_reads`]: what reads wait on, registered by the first read
    /// with the reactor of the runtime it runs on (`io` then waits for writability only).
    #[cfg(unix)]
    reads: Option<OnceLock<AsyncFd<OwnedFd>>>,
    /// Windows: tun-rs's async device needs no reactor.
    #[cfg(windows)]
    io: Device,
}

/// A read readiness guard, of whichever registration reads wait on.
#[cfg(unix)]
enum ReadGuard<'a> {
    /// The device's own registration.
    Shared(AsyncFdReadyGuard<'a, Device>),
    /// The reads' registration (see [`Tun::new_with_separate_reads`]).
    Separate(AsyncFdReadyGuard<'a, OwnedFd>),
}

#[cfg(unix)]
impl ReadGuard<'_> {
    /// Forgets the readiness: the next wait waits for the reactor's next event.
    fn clear_ready(&mut self) {
        match self {
            ReadGuard::Shared(g) => g.clear_ready(),
            ReadGuard::Separate(g) => g.clear_ready(),
        }
    }
}

impl Tun {
    /// Creates (or opens) TUN device `name`, sets its MTU and brings it up (see
    /// [`Device::create`]; on Linux the transmit queue is also lengthened to 8192 packets).
    ///
    /// Must be called inside a tokio runtime (with I/O enabled): the descriptor is registered
    /// with the runtime's reactor.
    ///
    /// # Errors
    /// As [`Device::create`].
    pub fn create(name: &str, mtu: u32) -> io::Result<Tun> {
        Tun::new(Device::create(name, mtu, false)?)
    }

    /// Like [`Tun::create`], with the device's offloads on (Linux): `IFF_VNET_HDR` and
    /// `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)`. Reads may then return TCP segments
    /// of up to 64 KiB whatever the MTU (the kernel skips segmenting them), with their checksums
    /// completed here; see [`crate::offload`].
    ///
    /// # Errors
    /// As [`Tun::create`], the kernel's refusal of the offloads, or `Unsupported` off Linux.
    pub fn create_with_offload(name: &str, mtu: u32) -> io::Result<Tun> {
        Tun::new(Device::create(name, mtu, true)?)
    }

    /// Registers `device` with tokio's reactor. Must be called inside a tokio runtime (with
    /// I/O enabled).
    ///
    /// # Errors
    /// If the reactor refuses the descriptor.
    pub fn new(device: Device) -> io::Result<Tun> {
        Tun::register(device, false)
    }

    /// Like [`Tun::new`], but only writes wait on this runtime's reactor. Reads wait on a
    /// duplicate of the descriptor, which the first read registers with the reactor of the
    /// runtime *it* runs on. So a reader on a runtime of its own (a thread of its own) is woken
    /// by its reactor alone, and a packet's arrival wakes no thread of this runtime. Every
    /// later read must run on that same runtime. Off Unix, the same as [`Tun::new`].
    ///
    /// # Errors
    /// If the reactor refuses the descriptor.
    pub fn new_with_separate_reads(device: Device) -> io::Result<Tun> {
        Tun::register(device, true)
    }

    #[allow(unsafe_code)]
    fn register(device: Device, separate_reads: bool) -> io::Result<Tun> {
        #[cfg(unix)]
        {
            let interest = if separate_reads {
                Interest::WRITABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            // SAFETY: a `Device` holds its descriptor from creation to drop and never replaces
            // it (`as_raw_fd` always returns the same one); an adopted descriptor stays open for
            // the device's life by `Device::from_fd`'s contract. So it stays open, and the same
            // file description, for as long as the `AsyncFd` owns the device.
            let io = unsafe { AsyncFd::register_with_interest(device, interest) }
                .map_err(io::Error::from)?;
            Ok(Tun {
                io,
                reads: separate_reads.then(OnceLock::new),
            })
        }
        #[cfg(windows)]
        {
            let _ = separate_reads;
            Ok(Tun { io: device })
        }
    }

    /// The reads' registration, if they have their own: made on the first call, with the
    /// current runtime's reactor.
    #[cfg(unix)]
    #[allow(unsafe_code)]
    fn separate_reads(&self) -> Option<io::Result<&AsyncFd<OwnedFd>>> {
        let reads = self.reads.as_ref()?;
        if let Some(io) = reads.get() {
            return Some(Ok(io));
        }
        let register = || {
            let fd = self.io.get_ref().as_fd().try_clone_to_owned()?;
            // SAFETY: the `AsyncFd` owns the duplicate, which nothing else can close, so it
            // stays open (and the same file description) for as long as it is registered.
            unsafe { AsyncFd::register_with_interest(fd, READ_INTEREST) }.map_err(io::Error::from)
        };
        Some(register().map(|io| {
            // Only one task reads, so no other registration can have won; if one did, this
            // one is dropped (and deregistered) here.
            reads.get_or_init(|| io)
        }))
    }

    /// Waits until the device may be readable.
    #[cfg(unix)]
    async fn read_ready(&self) -> io::Result<ReadGuard<'_>> {
        Ok(match self.separate_reads() {
            None => ReadGuard::Shared(self.io.ready(READ_INTEREST).await?),
            Some(reads) => ReadGuard::Separate(reads?.ready(READ_INTEREST).await?),
        })
    }

    /// Polls until the device may be readable.
    #[cfg(unix)]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<ReadGuard<'_>>> {
        Poll::Ready(Ok(match self.separate_reads() {
            None => ReadGuard::Shared(ready!(self.io.poll_read_ready(cx))?),
            Some(reads) => ReadGuard::Separate(ready!(reads?.poll_read_ready(cx))?),
        }))
    }

    /// Reads one packet into `buf` and returns its length.
    ///
    /// A packet longer than `buf` is truncated, so `buf` should be at least
    /// [`Device::max_packet`] bytes long.
    ///
    /// # Errors
    /// The device's read error (for example after its interface was deleted).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        loop {
            let mut guard = self.read_ready().await?;
            match self.io.get_ref().try_recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                result => return result,
            }
        }
        #[cfg(windows)]
        self.io.recv(buf).await
    }

    /// Waits for at least one packet, then reads every packet that is ready (at most until
    /// `out` holds `max`) into `out`: one readiness wait per batch instead of per packet. Reads
    /// go into a reused scratch buffer of `capacity` bytes; a small packet (an ACK) is copied out
    /// into a buffer of its own size, a large one takes the scratch buffer with it (see
    /// [`Device::try_recv_batch`]).
    ///
    /// # Errors
    /// The device's read error.
    pub async fn recv_many(
        &self,
        out: &mut VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<()> {
        #[cfg(unix)]
        loop {
            let mut guard = self.read_ready().await?;
            if self.io.get_ref().try_recv_batch(out, max, capacity)? == Batch::Drained {
                guard.clear_ready();
            }
            if !out.is_empty() {
                return Ok(());
            }
        }
        #[cfg(windows)]
        self.io.recv_batch(out, max, capacity).await
    }

    /// Writes one packet and returns the number of bytes written.
    ///
    /// # Errors
    /// The device's write error (for example a packet the kernel refuses).
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        // Not `AsyncFd::async_io`: that also spends tokio's cooperative budget on every write,
        // making the egress pump yield every 128 packets.
        #[cfg(unix)]
        loop {
            let mut guard = self.io.writable().await?;
            match guard.try_io(|io| io.get_ref().try_send(packet)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
        #[cfg(windows)]
        self.io.send(packet).await
    }

    /// Writes a UDP train as one packet (see [`Device::try_send_train`]).
    ///
    /// # Errors
    /// As [`Device::try_send_train`].
    pub async fn send_train(&self, packets: &[&[u8]]) -> io::Result<usize> {
        #[cfg(unix)]
        loop {
            let mut guard = self.io.writable().await?;
            match guard.try_io(|io| io.get_ref().try_send_train(packets)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
        #[cfg(windows)]
        self.io.try_send_train(packets)
    }

    /// Polls for one packet into `buf` (see [`Tun::recv`]), for `AsyncRead`-style adapters.
    ///
    /// # Errors
    /// The device's read error.
    #[cfg(unix)]
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.poll_read_ready(cx))?;
            match self.io.get_ref().try_recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                result => return Poll::Ready(result),
            }
        }
    }

    /// Polls for room to write `packet` and writes it (see [`Tun::send`]), for
    /// `AsyncWrite`-style adapters.
    ///
    /// # Errors
    /// The device's write error.
    #[cfg(unix)]
    pub fn poll_send(&self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.io.poll_write_ready(cx))?;
            match guard.try_io(|io| io.get_ref().try_send(packet)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }
}

impl Deref for Tun {
    type Target = Device;

    fn deref(&self) -> &Device {
        #[cfg(unix)]
        return self.io.get_ref();
        #[cfg(windows)]
        return &self.io;
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::test_netns::{in_new_netns, run};
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    fn ip(args: &[&str]) {
        run("ip", args);
    }

    #[test]
    fn a_name_the_kernel_cannot_hold_is_refused() {
        let err = Device::create("0123456789abcdefg", 1400, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }

    #[test]
    fn kernel_udp_datagram_arrives_on_tun() {
        in_new_netns(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let tun = std::sync::Arc::new(Tun::create("tuntest0", 1400).unwrap());
                assert_eq!(tun.name(), "tuntest0");
                assert_eq!(tun.mtu(), 1400);
                ip(&["addr", "add", "198.18.0.1/15", "dev", "tuntest0"]);

                let sock = UdpSocket::bind((Ipv4Addr::new(198, 18, 0, 1), 0)).unwrap();
                let payload = b"hello through the tun";
                sock.send_to(payload, (Ipv4Addr::new(198, 18, 0, 2), 9999))
                    .unwrap();

                // Read on another task through the shared handle.
                let reader = tun.clone();
                let read_task = tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    loop {
                        let n = reader.recv(&mut buf).await.unwrap();
                        let pkt = &buf[..n];
                        // Skip anything else the kernel may emit (e.g. IPv6).
                        if n >= 20 && pkt[0] >> 4 == 4 && pkt[9] == 17 {
                            return pkt.to_vec();
                        }
                    }
                });
                let packet = tokio::time::timeout(Duration::from_secs(5), read_task)
                    .await
                    .expect("no IPv4 UDP packet within 5 s")
                    .unwrap();

                let ihl = usize::from(packet[0] & 0x0f) * 4;
                assert_eq!(&packet[12..16], &[198, 18, 0, 1], "source address");
                assert_eq!(&packet[16..20], &[198, 18, 0, 2], "destination address");
                let udp = &packet[ihl..];
                assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 9999, "dst port");
                assert_eq!(&udp[8..], payload);
                assert_eq!(
                    usize::from(u16::from_be_bytes([packet[2], packet[3]])),
                    packet.len()
                );

                // Writing a packet must also work (the kernel may drop it).
                let n = tun.send(&packet).await.unwrap();
                assert_eq!(n, packet.len());
            });
        });
    }

    /// A device made with separate reads is read on the runtime of its first read, on another
    /// thread, while the runtime that made it is not driven at all: were the reads still
    /// waiting on that runtime's reactor, nothing would wake them. Its writes still work on the
    /// runtime that made it.
    #[test]
    fn separate_reads_wait_on_the_reading_runtime_alone() {
        in_new_netns(|| {
            let maker = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let tun = maker.block_on(async {
                let device = Device::create("tunsep0", 1400, false).unwrap();
                std::sync::Arc::new(Tun::new_with_separate_reads(device).unwrap())
            });
            ip(&["addr", "add", "198.18.0.1/15", "dev", "tunsep0"]);

            let reader = tun.clone();
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let read_thread = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let packet = runtime.block_on(async {
                    let mut buf = vec![0u8; 2048];
                    tokio::time::timeout(Duration::from_secs(5), async {
                        loop {
                            let n = reader.recv(&mut buf).await.unwrap();
                            if n >= 20 && buf[0] >> 4 == 4 && buf[9] == 17 {
                                return buf[..n].to_vec();
                            }
                        }
                    })
                    .await
                    .expect("no IPv4 UDP packet read within 5 s")
                });
                done_tx.send(()).unwrap();
                packet
            });
            // Until the reader has one: it registers its reads with its first read.
            let sock = UdpSocket::bind((Ipv4Addr::new(198, 18, 0, 1), 0)).unwrap();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(Duration::from_millis(50))
            {
                sock.send_to(b"separate", (Ipv4Addr::new(198, 18, 0, 2), 9999))
                    .unwrap();
            }
            let packet = read_thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            assert_eq!(&packet[ihl + 8..], b"separate");

            let n = maker.block_on(tun.send(&packet)).unwrap();
            assert_eq!(n, packet.len());
        });
    }
}
