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
//! The device is created in the network namespace of the *calling thread*,
//! which lets tests create devices inside a private namespace entered with
//! `unshare(CLONE_NEWNET)` on a dedicated thread.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
}

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
        let (fd, actual) = open_device(name, mtu)?;
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
        })
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
            match guard.try_io(|inner| read_fd(inner.get_ref().as_raw_fd(), buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits for at least one packet, then reads every packet that is ready (at most `max`)
    /// into `out`, one buffer of up to `capacity` bytes each: one readiness wait per batch
    /// instead of per packet.
    pub async fn recv_many(
        &self,
        out: &mut std::collections::VecDeque<Vec<u8>>,
        max: usize,
        capacity: usize,
    ) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            while out.len() < max {
                let mut buf = Vec::with_capacity(capacity);
                match guard.try_io(|inner| read_fd_into(inner.get_ref().as_raw_fd(), &mut buf)) {
                    Ok(Ok(())) => out.push_back(buf),
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
            match guard.try_io(|inner| write_fd(inner.get_ref().as_raw_fd(), packet)) {
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
pub(crate) fn open_device(name: &str, mtu: u32) -> io::Result<(OwnedFd, String)> {
    let ifr_name = encode_name(name)?;
    let mtu_c = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU too large"))?;

    let fd = open_tun_fd()?;

    // SAFETY: `ifreq` is a plain C struct/union of integers, arrays and a raw
    // pointer; the all-zero bit pattern is a valid value for it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = ifr_name;
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: `fd` is an open descriptor for /dev/net/tun and `req` is a valid,
    // properly initialised `ifreq` that outlives the call; TUNSETIFF reads and
    // writes only within that struct.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    if rc < 0 {
        return Err(annotate(io::Error::last_os_error(), "TUNSETIFF", name));
    }
    // The kernel writes the final interface name back (relevant for "%d").
    let actual = decode_name(&req.ifr_name);

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
