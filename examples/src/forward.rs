//! What the two forwarders (`tun_forward` on tokio, `tun_forward_smol` on a single-thread smol
//! executor) have in common: the command line, the device it names, buffer sizing and the
//! choice of target.

use std::io;
use std::net::{IpAddr, SocketAddr};

use clap::Parser;

use crate::tun_device::Device;

/// Command line of the forwarders.
#[derive(Parser, Debug, Clone)]
#[command(about = "Relay every TCP connection arriving on a TUN device")]
pub struct Args {
    /// Name of the TUN device to create or open.
    #[arg(long, required_unless_present = "tun_fd", conflicts_with = "tun_fd")]
    pub tun: Option<String>,
    /// Drive the TUN device behind this inherited descriptor instead of creating one (Android's
    /// VpnService, an iOS utun socket, a parent process; Unix only). It must stay open while the
    /// forwarder runs; the forwarder never closes it and leaves the device as it is (give its
    /// MTU with --mtu; no offloads).
    #[arg(long, value_name = "FD")]
    pub tun_fd: Option<i32>,
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
    /// The device the command line names: the `--tun-fd` descriptor adopted, or device `--tun`
    /// created, with offloads if `offload` (and the platform and kernel have them: otherwise
    /// without, after a note on stderr).
    ///
    /// # Errors
    /// As [`Device::from_fd`] or [`Device::create`].
    #[allow(unsafe_code)]
    pub fn open_device(&self, offload: bool) -> io::Result<Device> {
        if let Some(fd) = self.tun_fd {
            // SAFETY: `--tun-fd`'s contract (see its help): the process that started this one
            // handed it an open TUN descriptor (without packet information), which stays open
            // for this process's life; nothing here closes it, as the device only borrows it.
            #[cfg(unix)]
            return unsafe { Device::from_fd(fd, self.mtu) };
            #[cfg(windows)]
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("--tun-fd {fd}: Windows has no TUN descriptors"),
            ));
        }
        let name = self
            .tun
            .as_deref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "--tun or --tun-fd"))?;
        if !offload || !cfg!(target_os = "linux") {
            return Device::create(name, self.mtu, false);
        }
        Device::create(name, self.mtu, true).or_else(|e| {
            eprintln!("TUN offloads unavailable ({e}); continuing without");
            Device::create(name, self.mtu, false)
        })
    }

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
