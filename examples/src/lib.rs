//! Example programs for the netstack crates, plus the small pieces of
//! platform glue they share.
//!
//! The binaries live in `src/bin/`; this library holds the code they have in
//! common, most importantly [`tun`], an asynchronous Linux TUN device.

#[cfg(target_os = "linux")]
pub mod tun;

pub mod relay;
#[cfg(target_os = "linux")]
pub mod wire;
