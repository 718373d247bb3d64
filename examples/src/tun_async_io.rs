//! The TUN device of [`tun`](crate::tun) for async-io executors (smol, async-std).
//!
//! [`AsyncIoTun`] opens the device exactly as [`Tun`](crate::tun::Tun) does and registers the
//! descriptor with async-io's reactor (`async_io::Async`) instead of tokio's. It needs no
//! runtime to be running: async-io starts its reactor on first use.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use async_io::Async;

use crate::tun::{open_device, read_fd, write_fd};

/// An asynchronous handle to a Linux TUN device (layer 3, no packet information header) on
/// async-io's reactor. All methods take `&self`: share it through an `Rc` or `Arc` between the
/// reading and the writing task.
#[derive(Debug)]
pub struct AsyncIoTun {
    fd: Async<OwnedFd>,
    name: String,
    mtu: u32,
}

impl AsyncIoTun {
    /// Creates (or opens) TUN device `name` in the calling thread's network namespace, sets
    /// its MTU and brings it up; see [`Tun::create`](crate::tun::Tun::create).
    ///
    /// # Errors
    /// The failing system call (needs `CAP_NET_ADMIN` in the namespace), or a name that is
    /// empty or too long.
    pub fn create(name: &str, mtu: u32) -> io::Result<AsyncIoTun> {
        let (fd, name) = open_device(name, mtu, false)?;
        Ok(AsyncIoTun {
            fd: Async::new(fd)?,
            name,
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

    /// Reads one packet into `buf` and returns its length (a longer packet is truncated).
    ///
    /// # Errors
    /// The error of `read(2)` other than `EAGAIN`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read_with(|fd| read_fd(fd.as_raw_fd(), buf)).await
    }

    /// Writes one packet and returns the number of bytes written.
    ///
    /// # Errors
    /// The error of `write(2)` other than `EAGAIN` (for example a packet the kernel refuses).
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.fd
            .write_with(|fd| write_fd(fd.as_raw_fd(), packet))
            .await
    }
}

impl AsRawFd for AsyncIoTun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}
