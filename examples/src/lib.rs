//! Example programs for the netstack crates, plus the small pieces of
//! platform glue they share.
//!
//! The binaries live in `src/bin/`; this library holds the code they have in
//! common, most importantly [`tun`], an asynchronous Linux TUN device (and
//! [`tun_async_io`], the same device for async-io executors).

#[cfg(target_os = "linux")]
pub mod tun;
#[cfg(target_os = "linux")]
pub mod tun_async_io;

pub mod allocator;
pub mod forward;
#[cfg(target_os = "linux")]
pub mod icmp_forward;
#[cfg(target_os = "linux")]
pub mod offload;
pub mod relay;
#[cfg(target_os = "linux")]
pub mod smol_local;
pub mod udp_relay;
#[cfg(target_os = "linux")]
pub mod wire;
