//! Example programs for the netstack crates, plus the small pieces of
//! platform glue they share.
//!
//! The binaries live in `src/bin/`; this library holds the code they have in
//! common, most importantly [`tun`], an asynchronous TUN device for tokio (and
//! [`tun_async_io`], the same device for async-io executors), both over the
//! platform code of [`tun_device`] (tun-rs underneath: Linux, Android, macOS,
//! iOS, FreeBSD, Windows).

pub mod tun;
pub mod tun_async_io;
pub mod tun_device;

pub mod allocator;
pub mod forward;
pub mod icmp_forward;
#[cfg(target_os = "linux")]
pub mod offload;
pub mod relay;
pub mod smol_local;
pub mod udp_relay;
pub mod wire;
