//! Shards: the TCP sockets of a stack split over several smoltcp interfaces.
//!
//! smoltcp scans its whole socket set for every packet it receives, every egress pass and
//! every deadline computation, so one set of 10,000 sockets makes each packet cost as much as
//! 10,000. The stack therefore keeps `tcp_shards` independent (interface, socket set, TCP
//! table) triples; a connection lives in the shard its 4-tuple hashes to, a packet touches only
//! that shard, and a runner pass services only the shards that have work (packets, application
//! operations, due timers) — an idle connection costs nothing per packet of another.

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address};

use alloc::vec::Vec;

use crate::config::Config;
use crate::device::LinkDevice;
use crate::tcp::table::TcpTable;
use crate::tcp::tuple::FourTuple;

/// One smoltcp interface with its sockets and their connection table.
pub(crate) struct Shard {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) tcp: TcpTable,
    /// When the shard next needs servicing (smoltcp or TCP-table timers), as of its last pass.
    pub(crate) deadline: Option<Instant>,
    /// Whether the shard is in the stack's list of shards to service.
    pub(crate) dirty: bool,
}

impl Shard {
    pub(crate) fn new(
        index: u32,
        config: &Config,
        device: &mut LinkDevice<'_>,
        now: Instant,
    ) -> Self {
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ip);
        iface_config.random_seed = config.seed().wrapping_add(u64::from(index));
        let mut iface = Interface::new(iface_config, device, now);
        // Accept packets for every destination: each TCP socket listens on its exact endpoint.
        iface.set_any_ip(true);
        iface.update_ip_addrs(|addrs| {
            // Capacity for two addresses is smoltcp's minimum; these cannot fail.
            let _ = addrs.push(IpCidr::new(
                IpAddress::Ipv4(Ipv4Address::new(0, 0, 0, 1)),
                0,
            ));
            let _ = addrs.push(IpCidr::new(
                IpAddress::Ipv6(Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
                0,
            ));
        });
        Shard {
            iface,
            sockets: SocketSet::new(Vec::new()),
            tcp: TcpTable::new(index),
            deadline: None,
            dirty: false,
        }
    }
}

/// The shard a connection lives in: an FNV-1a hash of its 4-tuple.
pub(crate) fn shard_of(tuple: &FourTuple, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for ep in [tuple.remote, tuple.local] {
        match ep.addr {
            IpAddress::Ipv4(a) => eat(&a.octets()),
            IpAddress::Ipv6(a) => eat(&a.octets()),
        }
        eat(&ep.port.to_be_bytes());
    }
    (hash % shards as u64) as usize
}
