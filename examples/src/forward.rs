//! What the two forwarders (`tun_forward` on tokio, `tun_forward_smol` on a single-thread smol
//! executor) have in common: the command line, buffer sizing and the choice of target.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;

/// Command line of the forwarders.
#[derive(Parser, Debug, Clone)]
#[command(about = "Relay every TCP connection arriving on a TUN device")]
pub struct Args {
    /// Name of the TUN device to create or open.
    #[arg(long)]
    pub tun: String,
    /// MTU of the device and the stack (576..=65535).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=65535))]
    pub mtu: u32,
    /// Relay every flow to this address (keeping the original port) instead of its original
    /// destination.
    #[arg(long)]
    pub redirect: Option<IpAddr>,
    /// ICMP echo: answered by the stack itself (`reply`), or forwarded to the destination and
    /// answered with the real result (`forward`).
    #[arg(long, value_enum, default_value_t = IcmpMode::Reply)]
    pub icmp: IcmpMode,
    /// Maximum TCP connections in any state.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Seconds a UDP flow may stay idle before its outbound socket is closed.
    #[arg(long, default_value_t = 60)]
    pub udp_idle_timeout: u64,
    /// Maximum concurrent UDP flows (each holds an outbound socket).
    #[arg(long, default_value_t = 1024)]
    pub max_udp_flows: usize,
    /// Do not turn on the TUN device's offloads (tun_forward; by default the kernel hands over TCP
    /// segments of up to 64 KiB and partial checksums, which the forwarder completes).
    #[arg(long)]
    pub no_offload: bool,
}

/// How the forwarder handles ICMP echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IcmpMode {
    /// The stack answers every echo request itself.
    Reply,
    /// Ping the real destination and answer only if it answers.
    Forward,
}

impl Args {
    /// Per-connection TCP buffer size: at least 16 full segments in flight per direction, so
    /// large MTUs keep their speed, and never less than 256 KiB.
    pub fn tcp_buffer(&self) -> usize {
        (16 * self.mtu as usize).max(256 * 1024)
    }

    /// Where to relay a flow whose original destination is `destination`.
    pub fn target(&self, destination: SocketAddr) -> SocketAddr {
        match self.redirect {
            Some(ip) => SocketAddr::new(ip, destination.port()),
            None => destination,
        }
    }

    /// Where to send a ping whose original destination is `destination`.
    pub fn ping_target(&self, destination: IpAddr) -> IpAddr {
        self.redirect.unwrap_or(destination)
    }
}
