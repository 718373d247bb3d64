//! # netstack-testkit
//!
//! What netstack's in-memory tests, its kernel-peer tests and its fuzz targets share, written
//! once (`publish = false`; a dev-dependency of `netstack-core`, a dependency of `tests/` and
//! `fuzz/`):
//!
//! * [`peer`]: a smoltcp host on an in-memory link ([`Peer`], [`Wire`]) that plays the remote
//!   side of a TCP connection the way the kernel does behind a TUN device, and a clock that
//!   only moves when the test says so ([`ManualTime`]);
//! * [`packets`]: builders for the IP packets tests inject (TCP segments with options, UDP
//!   datagrams, ICMP echo requests, IPv4/IPv6 fragments, IPv6 extension headers), all with
//!   valid checksums, and parsers for what the stack emits ([`packets::tcp_info`],
//!   [`packets::is_syn`]).
//!
//! The kit depends on smoltcp and std only, never on `netstack-core`: the core's `Clock` trait
//! is implemented by its users, over [`ManualTime`]:
//!
//! ```text
//! struct ManualClock(netstack_testkit::ManualTime);
//! impl netstack_core::Clock for ManualClock {
//!     fn now(&self) -> netstack_core::Instant {
//!         self.0.now()
//!     }
//! }
//! ```

pub mod packets;
pub mod peer;

pub use peer::{ManualTime, Peer, Wire, PEER_ADDR, TARGET_ADDR};
