//! The unit the stack exchanges with its device: one raw IP packet.

use alloc::vec::Vec;

/// A raw IP packet (IPv4 or IPv6, no link-layer header), as read from or written to a TUN
/// device.
pub type Packet = Vec<u8>;
