//! An asynchronous Linux TUN device.
//!
//! [`Tun`] opens `/dev/net/tun` in non-blocking mode, attaches it to a layer-3
//! (`IFF_TUN`) interface without the packet-information header
//! (`IFF_NO_PI`), sets the interface MTU and brings it up. Every
//! [`Tun::recv`] returns exactly one IP packet and every [`Tun::send`] writes
//! exactly one.
//!
//! All methods take `&self`, so one device can be shared between a reading
//! task and a writing task through an [`Arc<Tun>`](std::sync::Arc).
//!
//! [`Tun::create_with_offload`] also turns on the device's offloads (`IFF_VNET_HDR`,
//! `TUNSETOFFLOAD` with checksum and TCP segmentation offload, see [`crate::offload`]): the
//! kernel then hands over TCP super-segments of up to 64 KiB and partial checksums, which
//! [`Tun::recv_many`] completes, so callers still see ordinary IP packets.
//!
//! The device is created in the network namespace of the *calling thread*,
//! which lets tests create devices inside a private namespace entered with
//! `unshare(CLONE_NEWNET)` on a dedicated thread.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::offload::{finish_packet, outgoing, Outgoing, VnetHdr, VNET_HDR_LEN};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// An asynchronous handle to a Linux TUN device (layer 3, no packet
/// information header).
///
/// The interface stays in existence as long as this handle is open (unless it
/// was made persistent by other means); dropping the handle closes the file
/// descriptor and the kernel removes a non-persistent interface.
#[derive(Debug)]
pub struct Tun {
    fd: AsyncFd<OwnedFd>,
    name: String,
    mtu: u32,
    /// Whether every read and write carries a `virtio_net_hdr` (offloads on).
    offload: bool,
    /// Whether reads complete partial checksums (offloads on; see
    /// [`Tun::set_complete_checksums`]).
    complete_checksums: bool,
    /// Packets read but dropped because their offload header was inconsistent.
    offload_drops: AtomicU64,
    /// The read buffer [`Tun::recv_many`] reuses between calls.
    scratch: std::sync::Mutex<Vec<u8>>,
}

/// Packets up to this size are copied out of the read buffer into one of their own size.
const COPY_OUT_MAX: usize = 2048;

/// Largest IP packet an offloading device delivers (a TCP super-segment).
const MAX_OFFLOAD_PACKET: usize = 65_535;

impl Tun {
    /// Creates (or opens) TUN device `name` (`IFF_TUN | IFF_NO_PI`,
    /// non-blocking, close-on-exec) in the calling thread's network
    /// namespace, sets its MTU with `SIOCSIFMTU` and brings it up
    /// (`IFF_UP`).
    ///
    /// `name` may contain a `%d` pattern (for example `"tun%d"`), in which
    /// case the kernel picks the number; [`Tun::name`] returns the actual
    /// name.
    ///
    /// Needs `CAP_NET_ADMIN` in the namespace. Must be called inside a tokio
    /// runtime (with I/O enabled), because the descriptor is registered with
    /// the runtime's reactor.
    pub fn create(name: &str, mtu: u32) -> io::Result<Tun> {
        Self::create_inner(name, mtu, false)
    }

    /// Like [`Tun::create`], with the device's offloads on: `IFF_VNET_HDR` and
    /// `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)`. Reads may then return TCP
    /// segments of up to 64 KiB whatever the MTU (the kernel skips segmenting them), with
    /// their checksums completed here; see [`crate::offload`].
    ///
    /// # Errors
    /// As [`Tun::create`], or the kernel's refusal of the offloads.
    pub fn create_with_offload(name: &str, mtu: u32) -> io::Result<Tun> {
        Self::create_inner(name, mtu, true)
    }

    fn create_inner(name: &str, mtu: u32, offload: bool) -> io::Result<Tun> {
        let (fd, actual) = open_device(name, mtu, offload)?;
        // SAFETY: `fd` is an open descriptor owned by the `OwnedFd` that we move into
        // the `AsyncFd`; it stays open (and `as_raw_fd` keeps returning it) until
        // the `AsyncFd` is dropped, and nothing ever replaces it.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(io::Error::from)?;
        Ok(Tun {
            fd,
            name: actual,
            mtu,
            offload,
            complete_checksums: true,
            offload_drops: AtomicU64::new(0),
            scratch: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// With offloads on, whether reads complete the partial checksums the kernel leaves
    /// (default `true`). Turn it off only if the packets go to a stack that does not verify
    /// transport checksums (`Config::verify_checksums(false)`): then neither side spends a
    /// pass over the data on them.
    pub fn set_complete_checksums(&mut self, complete: bool) {
        self.complete_checksums = complete;
    }

    /// Whether the device's offloads are on (see [`Tun::create_with_offload`]).
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

    /// Packets read and dropped because their offload header pointed outside them.
    pub fn offload_drops(&self) -> u64 {
        self.offload_drops.load(Ordering::Relaxed)
    }

    /// Returns the interface name of the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the MTU that was configured on the device.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Reads one packet into `buf` and returns its length.
    ///
    /// A packet longer than `buf` is truncated, so `buf` should be at least
    /// [`Tun::mtu`] bytes long.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            if !self.offload {
                match guard.try_io(|inner| read_fd(inner.get_ref().as_raw_fd(), buf)) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            }
            let mut hdr = [0u8; VNET_HDR_LEN];
            let fd = guard.get_inner().as_raw_fd();
            match guard.try_io(|_| read_vnet(fd, &mut hdr, buf.as_mut_ptr(), buf.len())) {
                Ok(Ok(n)) => {
                    if !self.complete_checksums
                        || finish_packet(&VnetHdr::parse(&hdr), &mut buf[..n]).is_ok()
                    {
                        return Ok(n);
                    }
                    self.offload_drops.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits for at least one packet, then reads every packet that is ready (at most `max`)
    /// into `out`: one readiness wait per batch instead of per packet. Reads go into a reused
    /// scratch buffer of `capacity` bytes; a small packet (an ACK) is copied out into a buffer
    /// of its own size, a large one takes the scratch buffer with it. So a 64-byte ACK does not
    /// cost a 64 KiB allocation, and a 64 KiB segment is not copied.
    pub async fn recv_many(
        &self,
        out: &mut std::collections::VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<()> {
        let mut scratch =
            std::mem::take(&mut *self.scratch.lock().unwrap_or_else(|e| e.into_inner()));
        let result = self.recv_many_into(&mut scratch, out, max, capacity).await;
        *self.scratch.lock().unwrap_or_else(|e| e.into_inner()) = scratch;
        result
    }

    async fn recv_many_into(
        &self,
        scratch: &mut Vec<u8>,
        out: &mut std::collections::VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let fd = guard.get_inner().as_raw_fd();
            while out.len() < max {
                scratch.clear();
                if scratch.capacity() < capacity {
                    scratch.reserve_exact(capacity);
                }
                let read = if self.offload {
                    let mut hdr = [0u8; VNET_HDR_LEN];
                    let complete = self.complete_checksums;
                    guard
                        .try_io(|_| read_vnet_into(fd, &mut hdr, scratch))
                        .map(|r| {
                            r.map(|()| {
                                !complete || finish_packet(&VnetHdr::parse(&hdr), scratch).is_ok()
                            })
                        })
                } else {
                    guard.try_io(|_| read_fd_into(fd, scratch).map(|()| true))
                };
                match read {
                    Ok(Ok(true)) if scratch.len() <= COPY_OUT_MAX => {
                        out.push_back(scratch.as_slice().to_vec());
                    }
                    Ok(Ok(true)) => out.push_back(std::mem::take(scratch)),
                    Ok(Ok(false)) => {
                        self.offload_drops.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => break,
                }
            }
            if !out.is_empty() {
                return Ok(());
            }
        }
    }

    /// Writes one packet and returns the number of bytes written.
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            let fd = guard.get_inner().as_raw_fd();
            let result = if self.offload {
                // A GSO header for a TCP super-segment, an all-zero one for anything else.
                let out = outgoing(packet, self.mtu as usize);
                guard.try_io(|_| write_vnet(fd, &out, packet).map(|n| n - VNET_HDR_LEN))
            } else {
                guard.try_io(|_| write_fd(fd, packet))
            };
            match result {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

/// Creates (or opens) TUN device `name` (`IFF_TUN | IFF_NO_PI`, non-blocking, close-on-exec)
/// in the calling thread's network namespace, sets its MTU and brings it up; returns the
/// descriptor and the actual interface name. Shared by [`Tun`] and the async-io wrapper
/// ([`crate::tun_async_io`]), which differ only in the reactor they register it with.
pub(crate) fn open_device(name: &str, mtu: u32, offload: bool) -> io::Result<(OwnedFd, String)> {
    let ifr_name = encode_name(name)?;
    let mtu_c = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU too large"))?;

    let fd = open_tun_fd()?;

    // SAFETY: `ifreq` is a plain C struct/union of integers, arrays and a raw
    // pointer; the all-zero bit pattern is a valid value for it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = ifr_name;
    let vnet = if offload { libc::IFF_VNET_HDR } else { 0 };
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | vnet) as libc::c_short;
    // SAFETY: `fd` is an open descriptor for /dev/net/tun and `req` is a valid,
    // properly initialised `ifreq` that outlives the call; TUNSETIFF reads and
    // writes only within that struct.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    if rc < 0 {
        return Err(annotate(io::Error::last_os_error(), "TUNSETIFF", name));
    }
    // The kernel writes the final interface name back (relevant for "%d").
    let actual = decode_name(&req.ifr_name);
    if offload {
        let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: `fd` is an open TUN descriptor; TUNSETOFFLOAD takes its argument by value.
        let rc = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD as _,
                libc::c_ulong::from(features),
            )
        };
        if rc < 0 {
            return Err(annotate(io::Error::last_os_error(), "TUNSETOFFLOAD", name));
        }
    }

    configure_interface(&req.ifr_name, &actual, mtu_c)?;
    Ok((fd, actual))
}

/// Opens `/dev/net/tun` non-blocking and close-on-exec.
fn open_tun_fd() -> io::Result<OwnedFd> {
    const PATH: &CStr = c"/dev/net/tun";
    // SAFETY: `PATH` is a valid NUL-terminated string; `open` does not retain it.
    let raw = unsafe {
        libc::open(
            PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("opening /dev/net/tun: {err}"),
        ));
    }
    // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sets the MTU of interface `ifr_name` and sets `IFF_UP` on it, using an
/// `AF_INET` datagram socket of the calling thread's namespace.
/// Transmit queue length given to the TUN device (packets the kernel holds for the reader).
const TX_QUEUE_LEN: libc::c_int = 8192;

fn configure_interface(
    ifr_name: &[libc::c_char; libc::IFNAMSIZ],
    name: &str,
    mtu: libc::c_int,
) -> io::Result<()> {
    // SAFETY: plain socket(2) call with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(annotate(io::Error::last_os_error(), "socket", name));
    }
    // SAFETY: `raw` is a freshly created socket that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: all-zero is a valid `ifreq` (see `Tun::create`).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = *ifr_name;
    req.ifr_ifru.ifru_mtu = mtu;
    // SAFETY: `sock` is an open socket and `req` a valid `ifreq` that outlives the
    // call; SIOCSIFMTU only reads from it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU as _, &mut req) } < 0 {
        return Err(annotate(io::Error::last_os_error(), "SIOCSIFMTU", name));
    }

    // The kernel drops packets it cannot queue for the reader (the TUN's transmit queue,
    // 500 packets by default) instead of pushing back on its TCP senders; several streams'
    // windows together exceed that, so give the queue room for them.
    // SAFETY: all-zero is a valid `ifreq` (see `Tun::create`).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = *ifr_name;
    req.ifr_ifru.ifru_metric = TX_QUEUE_LEN;
    // SAFETY: `sock` is an open socket and `req` a valid `ifreq` that outlives the call;
    // SIOCSIFTXQLEN only reads `ifr_qlen` (the same union slot as `ifru_metric`) from it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFTXQLEN as _, &mut req) } < 0 {
        return Err(annotate(io::Error::last_os_error(), "SIOCSIFTXQLEN", name));
    }

    // SAFETY: all-zero is a valid `ifreq` (see `Tun::create`).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = *ifr_name;
    // SAFETY: as above; SIOCGIFFLAGS writes the flags into `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(annotate(io::Error::last_os_error(), "SIOCGIFFLAGS", name));
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel initialised `ifru_flags`
    // (and the union was zero-initialised anyway).
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads from `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut req) } < 0 {
        return Err(annotate(io::Error::last_os_error(), "SIOCSIFFLAGS", name));
    }
    Ok(())
}

/// One non-blocking `read(2)`.
pub(crate) fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the whole
    // call, and `fd` is open (borrowed from the `AsyncFd` by the caller).
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One non-blocking `read(2)` into the spare capacity of `buf` (no zeroing of the buffer
/// first: a 64 KiB buffer per packet would otherwise be cleared for every 52-byte ACK).
pub(crate) fn read_fd_into(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<()> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: `spare` is a writable region of `spare.len()` bytes owned by `buf` for the whole
    // call (read(2) writes at most that many), and `fd` is open (borrowed from the caller).
    let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: read(2) initialised the first `n` bytes of the spare capacity, and
    // `n <= spare.len()`, so the new length is within the capacity and fully initialised.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(())
}

/// One non-blocking `readv(2)` of a `virtio_net_hdr` into `hdr` and the packet into the
/// `len` bytes at `buf`; returns the packet's length.
fn read_vnet(
    fd: RawFd,
    hdr: &mut [u8; VNET_HDR_LEN],
    buf: *mut u8,
    len: usize,
) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: VNET_HDR_LEN,
        },
        libc::iovec {
            iov_base: buf.cast(),
            iov_len: len,
        },
    ];
    // SAFETY: both iovecs describe writable regions that stay valid for the call (`hdr` is
    // borrowed mutably, the caller guarantees `len` writable bytes at `buf`), and `fd` is open.
    let n = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n < VNET_HDR_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TUN read shorter than its virtio_net_hdr",
        ));
    }
    Ok(n - VNET_HDR_LEN)
}

/// [`read_vnet`] into the spare capacity of `buf` (no zeroing first).
fn read_vnet_into(fd: RawFd, hdr: &mut [u8; VNET_HDR_LEN], buf: &mut Vec<u8>) -> io::Result<()> {
    let spare = buf.spare_capacity_mut();
    let n = read_vnet(fd, hdr, spare.as_mut_ptr().cast(), spare.len())?;
    // SAFETY: readv initialised the first `n <= spare.len()` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(())
}

/// One non-blocking `writev(2)` of `out.hdr` followed by `packet` (with the checksum bytes
/// `out` asks for spliced in, without copying the packet); returns the bytes written.
fn write_vnet(fd: RawFd, out: &Outgoing, packet: &[u8]) -> io::Result<usize> {
    let iovec = |bytes: &[u8]| libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let iov: [libc::iovec; 4];
    let count = match out.checksum_at {
        Some(at) if at + 2 <= packet.len() => {
            iov = [
                iovec(&out.hdr),
                iovec(&packet[..at]),
                iovec(&out.checksum),
                iovec(&packet[at + 2..]),
            ];
            4
        }
        _ => {
            iov = [iovec(&out.hdr), iovec(packet), iovec(&[]), iovec(&[])];
            2
        }
    };
    // SAFETY: the first `count` iovecs describe readable regions borrowed for the whole call
    // (writev only reads them despite the `*mut` in `iovec`), and `fd` is open.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), count) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One non-blocking `write(2)`.
pub(crate) fn write_fd(fd: RawFd, packet: &[u8]) -> io::Result<usize> {
    // SAFETY: `packet` is a valid readable region of `packet.len()` bytes for the
    // whole call, and `fd` is open (borrowed from the `AsyncFd` by the caller).
    let n = unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Converts an interface name to the fixed-size, NUL-terminated C form.
fn encode_name(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid interface name {name:?} (1 to {} bytes, no NUL)",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, &src) in out.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(out)
}

/// Converts a fixed-size C interface name back to a `String`.
fn decode_name(raw: &[libc::c_char; libc::IFNAMSIZ]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Prefixes an OS error with the operation and interface it concerns.
fn annotate(err: io::Error, what: &str, name: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what} on {name:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::process::Command;
    use std::time::Duration;

    /// Runs `f` on a fresh thread that first moves into a new network
    /// namespace (which disappears when the thread ends).
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: plain unshare(2) call; it only affects the calling thread.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET) failed (these tests must run as root): {}",
                io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("running ip");
        assert!(
            out.status.success(),
            "ip {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn name_encoding() {
        assert!(encode_name("").is_err());
        assert!(encode_name("0123456789abcdef").is_err());
        let raw = encode_name("tun7").unwrap();
        assert_eq!(decode_name(&raw), "tun7");
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
}
