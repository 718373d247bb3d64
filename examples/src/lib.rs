//! Example programs for the netstack crates, plus the code they share.
//!
//! The binaries live in `src/bin/`: `tun_forward` (tokio) and `tun_forward_smol` (a
//! single-thread async-io executor) are one forwarder, [`forwarder`], on two executors, with
//! one command line, [`forward`]. The TUN device is [`tun`] for tokio (and [`tun_async_io`],
//! the same device for async-io executors), both over the platform code of [`tun_device`]
//! (tun-rs underneath: Linux, Android, macOS, iOS, FreeBSD, Windows).

pub mod tun;
pub mod tun_async_io;
pub mod tun_device;

pub mod allocator;
pub mod forward;
pub mod forwarder;
pub mod offload;
pub mod udp_train;

#[cfg(all(test, target_os = "linux"))]
mod test_netns;
