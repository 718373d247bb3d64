//! The TUN device under both executors' wrappers ([`Tun`](crate::tun::Tun) on tokio,
//! [`AsyncIoTun`](crate::tun_async_io::AsyncIoTun) on async-io): created or adopted through
//! [tun-rs](https://docs.rs/tun-rs), always non-blocking, with this project's packet handling on
//! top.
//!
//! tun-rs does the platform work: `/dev/net/tun` and its ioctls on Linux, utun on macOS,
//! `/dev/tun` on FreeBSD, wintun on Windows; on Android and iOS, where only the operating system
//! creates devices, it adopts the descriptor the app was handed. What stays here:
//!
//! - **Linux offloads** ([`crate::offload`]): with `IFF_VNET_HDR` every read and write carries a
//!   `virtio_net_hdr`, reads bring TCP super-segments of up to 64 KiB and writes may send them.
//!   tun-rs's own offload I/O (`recv_multiple`/`send_multiple`) cuts every super-segment into
//!   MTU-sized copies (GSO/GRO in user space); this stack takes and makes the 64 KiB segments
//!   whole, so the header is read and written here, on tun-rs's plain device I/O (`readv` into
//!   uninitialised spare capacity on the descriptor, `send_vectored` for writes).
//! - **Batched reads** ([`Device::try_recv_batch`]): every packet that is ready, read into one
//!   reused scratch buffer; a small packet is copied out into a buffer of its own size, a large
//!   one takes the scratch buffer with it (so an ACK does not cost 64 KiB, and a 64 KiB segment
//!   is not copied).
//! - **Adopted descriptors** ([`Device::from_fd`]): a device the operating system handed over
//!   (Android's `VpnService`, an iOS utun descriptor) is borrowed and never closed: Android 11+
//!   aborts a process that closes a descriptor it does not own (fdsan).
//!
//! A [`Device`] only does non-blocking I/O: an operation returns `WouldBlock` when the device has
//! nothing to read or no room; the wrappers wait on their reactor and retry. Windows has no
//! descriptor to register with a reactor: there the device is tun-rs's `AsyncDevice` (which waits
//! on wintun's read event in the `blocking` thread pool, whatever the executor), and both
//! wrappers use its async methods (`Device::recv`, `recv_batch` and `send`, Windows only).
//!
//! A device created here lives in the network namespace of the calling thread (Linux), which
//! lets tests create devices inside a private namespace entered with `unshare(CLONE_NEWNET)`.

#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[cfg(target_os = "linux")]
use crate::offload::{finish_packet, outgoing, VnetHdr, VNET_HDR_LEN};

/// Packets up to this size are copied out of the scratch buffer into one of their own size.
const COPY_OUT_MAX: usize = 2048;

/// Largest IP packet an offloading device delivers (a TCP super-segment).
const MAX_OFFLOAD_PACKET: usize = 65_535;

/// Transmit queue length given to a created Linux device (packets the kernel holds for the
/// reader). The kernel drops packets it cannot queue for the reader (500 by default) instead of
/// pushing back on its TCP senders; several streams' windows together exceed that.
#[cfg(target_os = "linux")]
const TX_QUEUE_LEN: u32 = 8192;

/// The tun-rs device: owned (created here; closed on drop) or borrowed (adopted; never closed).
#[cfg(unix)]
enum Raw {
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    Owned(tun_rs::SyncDevice),
    Borrowed(tun_rs::BorrowedSyncDevice<'static>),
}

#[cfg(unix)]
impl Raw {
    fn sync(&self) -> &tun_rs::SyncDevice {
        match self {
            #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
            Raw::Owned(dev) => dev,
            Raw::Borrowed(dev) => dev,
        }
    }
}

/// On Windows: tun-rs's executor-neutral async device over wintun.
#[cfg(windows)]
type Raw = tun_rs::AsyncDevice;

/// How a batch read ended (see [`Device::try_recv_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// The batch is full; more packets may be ready.
    Full,
    /// The device had no more packets (`WouldBlock`): readiness may be cleared.
    Drained,
}

/// A TUN device (layer 3, no packet information header) in non-blocking mode; see the
/// [module documentation](self).
pub struct Device {
    raw: Raw,
    name: String,
    mtu: u32,
    /// Whether every read and write carries a `virtio_net_hdr` (Linux offloads on).
    offload: bool,
    /// Whether reads complete partial checksums (offloads on; see
    /// [`Device::set_complete_checksums`]).
    complete_checksums: AtomicBool,
    /// Packets read but dropped because their offload header was inconsistent.
    offload_drops: AtomicU64,
    /// Whether writes may carry UDP trains (offloads on, Linux, until the kernel refuses one).
    udp_trains: AtomicBool,
    /// UDP trains written, and the datagrams they carried.
    trains_written: AtomicU64,
    train_datagrams: AtomicU64,
    /// Reads without a readiness wait ([`Device::try_recv_more`]) that found packets, and
    /// the packets they found.
    reads_without_wait: AtomicU64,
    packets_without_wait: AtomicU64,
    /// The read buffer [`Device::try_recv_batch`] reuses between calls.
    scratch: Mutex<Vec<u8>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .field("offload", &self.offload)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Creates (or opens) TUN device `name`, sets its MTU and brings it up; with `offload`
    /// (Linux only) also turns on `IFF_VNET_HDR` and TCP checksum and segmentation offload
    /// (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`).
    ///
    /// On Linux `name` may contain `%d` (the kernel picks the number; [`Device::name`] is the
    /// actual name); on macOS it must be `utunN`. Needs `CAP_NET_ADMIN` (Linux; in the calling
    /// thread's namespace), root (macOS, FreeBSD) or administrator rights and `wintun.dll`
    /// (Windows).
    ///
    /// # Errors
    /// The failing system call, a name the platform refuses, an MTU above 65535, offloads asked
    /// for off Linux, or `Unsupported` on Android and iOS (only the OS creates devices there:
    /// adopt its descriptor with [`Device::from_fd`]).
    pub fn create(name: &str, mtu: u32, offload: bool) -> io::Result<Device> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("TUN device {name:?}: {e}"));
        let raw = open(name, mtu, offload).map_err(context)?;
        let name = interface_name(&raw).unwrap_or_else(|| name.to_string());
        Ok(Device::new(raw, name, mtu, offload))
    }

    /// Adopts TUN descriptor `fd`, which the process was handed (Android's
    /// `VpnService.Builder.establish()`, an iOS packet tunnel's utun socket, a parent process),
    /// without taking ownership: dropping the device never closes `fd`. The device is used as
    /// it is (its MTU should be `mtu`; no offloads), only switched to non-blocking mode, which
    /// the descriptor's other holders share.
    ///
    /// # Safety
    /// `fd` must be an open TUN descriptor that stays open, and that nobody closes, as long as
    /// the device exists. On Linux and Android it must frame packets without packet information
    /// (`IFF_NO_PI`, as `VpnService` does; tun-rs refuses `IFF_VNET_HDR` itself).
    ///
    /// # Errors
    /// If `fd` is not a TUN descriptor (as far as the platform can tell), or the mode cannot be
    /// changed. Unsupported on Windows, which has no descriptors.
    #[cfg(unix)]
    pub unsafe fn from_fd(fd: std::os::fd::RawFd, mtu: u32) -> io::Result<Device> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("TUN descriptor {fd}: {e}"));
        // SAFETY: this function's contract is tun-rs's for `borrow_raw`: `fd` is an open TUN
        // descriptor (IFF_NO_PI on Linux) that outlives the device. The borrowed device never
        // closes it.
        let dev = unsafe { tun_rs::BorrowedSyncDevice::borrow_raw(fd) }.map_err(context)?;
        dev.set_nonblocking(true).map_err(context)?;
        let raw = Raw::Borrowed(dev);
        let name = interface_name(&raw).unwrap_or_else(|| format!("fd {fd}"));
        Ok(Device::new(raw, name, mtu, false))
    }

    fn new(raw: Raw, name: String, mtu: u32, offload: bool) -> Device {
        Device {
            raw,
            name,
            mtu,
            offload,
            complete_checksums: AtomicBool::new(true),
            offload_drops: AtomicU64::new(0),
            udp_trains: AtomicBool::new(cfg!(target_os = "linux") && offload),
            trains_written: AtomicU64::new(0),
            train_datagrams: AtomicU64::new(0),
            reads_without_wait: AtomicU64::new(0),
            packets_without_wait: AtomicU64::new(0),
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// With offloads on, whether reads complete the partial checksums the kernel leaves
    /// (default `true`). Turn it off only if the packets go to a stack that does not verify
    /// transport checksums (`Config::verify_checksums(false)`): then neither side spends a pass
    /// over the data on them.
    pub fn set_complete_checksums(&self, complete: bool) {
        self.complete_checksums.store(complete, Ordering::Relaxed);
    }

    /// Whether the device's offloads are on (see [`Device::create`]).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The largest packet a read can return: the MTU, or 64 KiB with offloads.
    pub fn max_packet(&self) -> usize {
        if self.offload {
            MAX_OFFLOAD_PACKET
        } else {
            self.mtu as usize
        }
    }

    /// Whether [`Device::try_send_train`] may be used: offloads on (Linux), and the kernel has
    /// not refused a train (kernels before 6.2 know no UDP segmentation offload).
    pub fn sends_udp_trains(&self) -> bool {
        self.udp_trains.load(Ordering::Relaxed)
    }

    /// UDP trains written, and the datagrams they carried (see [`crate::udp_train`]).
    pub fn udp_trains(&self) -> (u64, u64) {
        (
            self.trains_written.load(Ordering::Relaxed),
            self.train_datagrams.load(Ordering::Relaxed),
        )
    }

    /// Reads by [`Device::try_recv_more`] that found packets, and the packets they found.
    pub fn reads_without_wait(&self) -> (u64, u64) {
        (
            self.reads_without_wait.load(Ordering::Relaxed),
            self.packets_without_wait.load(Ordering::Relaxed),
        )
    }

    /// [`Device::try_recv_batch`] by a reader that did not wait for readiness (it read again
    /// after a burst, see `forwarder::pump::device_to_stack`), counted in
    /// [`Device::reads_without_wait`] when it finds packets.
    ///
    /// # Errors
    /// As [`Device::try_recv_batch`].
    pub fn try_recv_more(
        &self,
        out: &mut VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<Batch> {
        let before = out.len();
        let result = self.try_recv_batch(out, max, capacity);
        let found = (out.len() - before) as u64;
        if found > 0 {
            self.reads_without_wait.fetch_add(1, Ordering::Relaxed);
            self.packets_without_wait
                .fetch_add(found, Ordering::Relaxed);
        }
        result
    }

    /// Writes `packets` — UDP datagrams of one flow that make a train (see
    /// [`crate::udp_train`]: the first starts one and each later one joins it) — as one
    /// UDP segmentation offload write, gathering their payloads without a copy. Returns the
    /// bytes written.
    ///
    /// # Errors
    /// `WouldBlock` if the device has no room (nothing was written); `InvalidInput` if the
    /// packets make no train; the device's write error. If the kernel refuses the train
    /// (`EINVAL`: no UDP segmentation offload), [`Device::sends_udp_trains`] turns `false`:
    /// write the packets one by one.
    pub fn try_send_train(&self, packets: &[&[u8]]) -> io::Result<usize> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "not a UDP train");
        let (Some(first), true) = (
            packets.first(),
            packets.len() <= crate::udp_train::MAX_TRAIN,
        ) else {
            return Err(invalid());
        };
        let head = crate::udp_train::head(first).ok_or_else(invalid)?;
        let headers = head.headers();
        let bytes: usize = packets
            .iter()
            .map(|p| p.len().saturating_sub(headers))
            .sum();
        #[cfg(target_os = "linux")]
        if self.sends_udp_trains() {
            use std::io::IoSlice;
            let mut header = [0u8; crate::udp_train::MAX_HEADER];
            let (hdr, len) = crate::udp_train::train_header(head, first, bytes, &mut header);
            let mut slices = [IoSlice::new(&[]); crate::udp_train::MAX_TRAIN + 2];
            slices[0] = IoSlice::new(&hdr);
            slices[1] = IoSlice::new(&header[..len]);
            for (slot, p) in slices[2..].iter_mut().zip(packets) {
                *slot = IoSlice::new(p.get(headers..).ok_or_else(invalid)?);
            }
            return match self.raw.sync().send_vectored(&slices[..packets.len() + 2]) {
                Ok(n) => {
                    self.trains_written.fetch_add(1, Ordering::Relaxed);
                    self.train_datagrams
                        .fetch_add(packets.len() as u64, Ordering::Relaxed);
                    Ok(n.saturating_sub(VNET_HDR_LEN))
                }
                Err(e) => {
                    if e.raw_os_error() == Some(libc::EINVAL) {
                        self.udp_trains.store(false, Ordering::Relaxed);
                    }
                    Err(e)
                }
            };
        }
        let _ = bytes;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this device writes no UDP trains",
        ))
    }

    /// Packets read and dropped because their offload header was inconsistent (pointed outside
    /// the packet, or the read was shorter than the header).
    pub fn offload_drops(&self) -> u64 {
        self.offload_drops.load(Ordering::Relaxed)
    }

    /// The interface name of the device (`fd N` for an adopted descriptor whose name the
    /// platform does not tell).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MTU the device was created with (or, adopted, was said to have).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Reads one ready packet into `buf` (a longer packet is truncated: `buf` should hold
    /// [`Device::max_packet`] bytes) and returns its length. Packets with an inconsistent
    /// offload header are counted and skipped.
    ///
    /// # Errors
    /// `WouldBlock` if no packet is ready; the device's read error.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if self.offload {
            return self.try_recv_offload(buf);
        }
        self.recv_plain(buf)
    }

    /// [`Device::try_recv`] with offload framing: the header into a buffer of its own.
    #[cfg(target_os = "linux")]
    fn try_recv_offload(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut hdr = [0u8; VNET_HDR_LEN];
            let n = self
                .raw
                .sync()
                .recv_vectored(&mut [io::IoSliceMut::new(&mut hdr), io::IoSliceMut::new(buf)])?;
            match n.checked_sub(VNET_HDR_LEN) {
                Some(n) if self.finish(&hdr, &mut buf[..n]) => return Ok(n),
                _ => {
                    self.offload_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reads every packet that is ready, at most until `out` holds `max`, each into a buffer of
    /// its own (see the [module documentation](self)); `capacity` is the scratch buffer's size
    /// (at least [`Device::max_packet`]).
    ///
    /// # Errors
    /// The device's read error other than `WouldBlock` (packets read before it stay in `out`).
    pub fn try_recv_batch(
        &self,
        out: &mut VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<Batch> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        while out.len() < max {
            match self.recv_into(&mut scratch, capacity) {
                Ok(true) if scratch.len() <= COPY_OUT_MAX => out.push_back(scratch.to_vec()),
                Ok(true) => out.push_back(std::mem::take(&mut *scratch)),
                Ok(false) => {
                    self.offload_drops.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Batch::Drained),
                Err(e) => return Err(e),
            }
        }
        Ok(Batch::Full)
    }

    /// Reads one packet into `scratch` (emptied first, then given at least `capacity` bytes of
    /// room) and finishes it; `false` if its offload header was inconsistent.
    fn recv_into(&self, scratch: &mut Vec<u8>, capacity: usize) -> io::Result<bool> {
        scratch.clear();
        #[cfg(target_os = "linux")]
        {
            // Reads go into the spare capacity: no zeroing of 64 KiB for every 52-byte ACK.
            scratch.reserve_exact(capacity);
            let fd = std::os::fd::AsFd::as_fd(self.raw.sync());
            if !self.offload {
                sys::readv_into(fd, &mut [], scratch)?;
                return Ok(true);
            }
            let mut hdr = [0u8; VNET_HDR_LEN];
            let n = sys::readv_into(fd, &mut hdr, scratch)?;
            Ok(n >= VNET_HDR_LEN && self.finish(&hdr, scratch))
        }
        #[cfg(not(target_os = "linux"))]
        {
            scratch.resize(capacity, 0);
            let n = self.recv_plain(scratch)?;
            scratch.truncate(n);
            Ok(true)
        }
    }

    /// Completes a packet read with offloads on as [`crate::offload::finish_packet`] says
    /// (unless completion is off); `false` if its header is inconsistent.
    #[cfg(target_os = "linux")]
    fn finish(&self, hdr: &[u8; VNET_HDR_LEN], packet: &mut [u8]) -> bool {
        !self.complete_checksums.load(Ordering::Relaxed)
            || finish_packet(&VnetHdr::parse(hdr), packet).is_ok()
    }

    /// One read without offload framing.
    fn recv_plain(&self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return self.raw.sync().recv(buf);
        #[cfg(windows)]
        return self.raw.try_recv(buf);
    }

    /// Writes one packet if the device has room; returns the bytes of `packet` written. With
    /// offloads every TCP packet goes checksum-partial (the kernel completes or trusts its
    /// checksum), and one larger than the MTU (a super-segment) with a GSO header, which the
    /// kernel cuts where it must (see [`crate::offload::outgoing`]).
    ///
    /// # Errors
    /// `WouldBlock` if the device has no room; the device's write error (for example a packet
    /// the kernel refuses).
    pub fn try_send(&self, packet: &[u8]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if self.offload {
            use std::io::IoSlice;
            let out = outgoing(packet, self.mtu as usize);
            let spliced;
            let whole;
            let slices: &[IoSlice<'_>] = match out.checksum_at {
                // The partial checksum goes in without copying the packet.
                Some(at) if at + 2 <= packet.len() => {
                    spliced = [
                        IoSlice::new(&out.hdr),
                        IoSlice::new(&packet[..at]),
                        IoSlice::new(&out.checksum),
                        IoSlice::new(&packet[at + 2..]),
                    ];
                    &spliced
                }
                _ => {
                    whole = [IoSlice::new(&out.hdr), IoSlice::new(packet)];
                    &whole
                }
            };
            let n = self.raw.sync().send_vectored(slices)?;
            return Ok(n.saturating_sub(VNET_HDR_LEN));
        }
        #[cfg(unix)]
        return self.raw.sync().send(packet);
        #[cfg(windows)]
        return self.raw.try_send(packet);
    }
}

/// Windows: the waits, on tun-rs's async device (its read event, in the `blocking` pool).
#[cfg(windows)]
impl Device {
    /// Waits for a packet and reads it into `buf` (see [`Device::try_recv`]).
    ///
    /// # Errors
    /// The device's read error.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.try_recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.raw.readable().await?,
                result => return result,
            }
        }
    }

    /// Waits for at least one packet, then reads the ready ones (see
    /// [`Device::try_recv_batch`]).
    ///
    /// # Errors
    /// The device's read error.
    pub async fn recv_batch(
        &self,
        out: &mut VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<()> {
        loop {
            self.try_recv_batch(out, max, capacity)?;
            if !out.is_empty() {
                return Ok(());
            }
            self.raw.readable().await?;
        }
    }

    /// Writes one packet, waiting for room.
    ///
    /// # Errors
    /// The device's write error.
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.raw.send(packet).await
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Device {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.raw.sync().as_raw_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Device {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.raw.sync().as_fd()
    }
}

/// Creates the tun-rs device (see [`Device::create`]).
#[cfg(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "freebsd",
    windows
))]
fn open(name: &str, mtu: u32, offload: bool) -> io::Result<Raw> {
    let mtu = u16::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU above 65535"))?;
    let builder = tun_rs::DeviceBuilder::new().name(name).mtu(mtu);
    #[cfg(target_os = "linux")]
    let builder = builder.offload(offload).tx_queue_len(TX_QUEUE_LEN);
    #[cfg(not(target_os = "linux"))]
    if offload {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TUN offloads exist only on Linux",
        ));
    }
    #[cfg(unix)]
    {
        let dev = builder.build_sync()?;
        dev.set_nonblocking(true)?;
        #[cfg(target_os = "linux")]
        if offload {
            sys::tcp_offloads_only(std::os::fd::AsFd::as_fd(&dev))?;
        }
        Ok(Raw::Owned(dev))
    }
    #[cfg(windows)]
    builder.build_async()
}

/// Android and iOS: only the operating system creates TUN devices.
#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "freebsd",
    windows
)))]
fn open(_name: &str, _mtu: u32, _offload: bool) -> io::Result<Raw> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "on this platform only the operating system creates TUN devices: adopt its descriptor \
         (--tun-fd)",
    ))
}

/// The interface name tun-rs reports, where it can tell (not on Android and iOS).
fn interface_name(raw: &Raw) -> Option<String> {
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    return raw.sync().name().ok();
    #[cfg(windows)]
    return raw.name().ok();
    #[cfg(not(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "freebsd",
        windows
    )))]
    {
        let _ = raw;
        None
    }
}

/// The two system calls tun-rs has no public form for.
#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd};

    /// One `readv(2)` of a packet: its first `hdr.len()` bytes into `hdr` (none if it is
    /// empty), the rest into the spare capacity of `buf`, whose length grows by what landed
    /// there. Returns the bytes read in all.
    pub(super) fn readv_into(
        fd: BorrowedFd<'_>,
        hdr: &mut [u8],
        buf: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: spare.as_mut_ptr().cast(),
                iov_len: room,
            },
        ];
        // SAFETY: both iovecs describe memory borrowed mutably for the whole call (`hdr`, and
        // the spare capacity of `buf`: uninitialised bytes may be written, readv never reads
        // them), and readv writes at most `iov_len` bytes to each; `fd` is open for the borrow.
        let n = unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let landed = n.saturating_sub(hdr.len());
        // SAFETY: readv fills the iovecs in order, so the first `landed <= room` bytes of the
        // spare capacity are now initialised.
        unsafe { buf.set_len(buf.len() + landed) };
        Ok(n)
    }

    /// Narrows the device's offloads to TCP (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`): tun-rs
    /// also turns on UDP segmentation offload where the kernel has it (6.2+), and the stack
    /// would take a UDP GSO packet for one huge datagram.
    pub(super) fn tcp_offloads_only(fd: BorrowedFd<'_>) -> io::Result<()> {
        let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: `fd` is an open TUN descriptor for the borrow; TUNSETOFFLOAD takes its
        // argument by value and touches no memory of ours.
        let rc = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD as _,
                libc::c_ulong::from(features),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETOFFLOAD: {e}")));
        }
        Ok(())
    }
}
