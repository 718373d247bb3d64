//! The TUN device of [`tun`](crate::tun) for async-io executors (smol, async-std).
//!
//! [`AsyncIoTun`] is the same [`Device`] as [`Tun`](crate::tun::Tun), registered with async-io's
//! reactor (`async_io::Async`) instead of tokio's; it needs no runtime to be running (async-io
//! starts its reactor on first use). It dereferences to its [`Device`] for the name, the MTU and
//! the offload state.

use std::collections::VecDeque;
use std::io;
use std::ops::Deref;

use crate::tun_device::Device;

/// An asynchronous handle to a TUN device (layer 3, no packet information header) on async-io's
/// reactor. All methods take `&self`: share it through an `Rc` or `Arc` between the reading and
/// the writing task.
#[derive(Debug)]
pub struct AsyncIoTun {
    #[cfg(unix)]
    io: async_io::Async<Device>,
    /// Windows: tun-rs's async device needs no reactor.
    #[cfg(windows)]
    io: Device,
}

impl AsyncIoTun {
    /// Creates (or opens) TUN device `name`, sets its MTU and brings it up; see
    /// [`Device::create`].
    ///
    /// # Errors
    /// As [`Device::create`].
    pub fn create(name: &str, mtu: u32) -> io::Result<AsyncIoTun> {
        AsyncIoTun::new(Device::create(name, mtu, false)?)
    }

    /// Like [`AsyncIoTun::create`], with the Linux device's offloads on (see
    /// [`Tun::create_with_offload`](crate::tun::Tun::create_with_offload)).
    ///
    /// # Errors
    /// As [`Device::create`].
    pub fn create_with_offload(name: &str, mtu: u32) -> io::Result<AsyncIoTun> {
        AsyncIoTun::new(Device::create(name, mtu, true)?)
    }

    /// Registers `device` with async-io's reactor.
    ///
    /// # Errors
    /// If the reactor refuses the descriptor.
    pub fn new(device: Device) -> io::Result<AsyncIoTun> {
        #[cfg(unix)]
        return Ok(AsyncIoTun {
            io: async_io::Async::new(device)?,
        });
        #[cfg(windows)]
        return Ok(AsyncIoTun { io: device });
    }

    /// Reads one packet into `buf` and returns its length (a longer packet is truncated).
    ///
    /// # Errors
    /// The device's read error.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return self.io.read_with(|device| device.try_recv(buf)).await;
        #[cfg(windows)]
        return self.io.recv(buf).await;
    }

    /// Waits for at least one packet, then reads every packet that is ready (at most until
    /// `out` holds `max`); see [`Tun::recv_many`](crate::tun::Tun::recv_many).
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
            self.io.get_ref().try_recv_batch(out, max, capacity)?;
            if !out.is_empty() {
                return Ok(());
            }
            self.io.readable().await?;
        }
        #[cfg(windows)]
        self.io.recv_batch(out, max, capacity).await
    }

    /// Writes one packet and returns the number of bytes written.
    ///
    /// # Errors
    /// The device's write error (for example a packet the kernel refuses).
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return self.io.write_with(|device| device.try_send(packet)).await;
        #[cfg(windows)]
        return self.io.send(packet).await;
    }

    /// Writes a UDP train as one packet (see [`Device::try_send_train`]).
    ///
    /// # Errors
    /// As [`Device::try_send_train`].
    pub async fn send_train(&self, packets: &[&[u8]]) -> io::Result<usize> {
        #[cfg(unix)]
        return self
            .io
            .write_with(|device| device.try_send_train(packets))
            .await;
        #[cfg(windows)]
        return self.io.try_send_train(packets);
    }
}

impl Deref for AsyncIoTun {
    type Target = Device;

    fn deref(&self) -> &Device {
        #[cfg(unix)]
        return self.io.get_ref();
        #[cfg(windows)]
        return &self.io;
    }
}
