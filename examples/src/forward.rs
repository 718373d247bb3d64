//! The command line of the two forwarders (`tun_forward` on tokio, `tun_forward_smol` on a
//! single-thread smol executor), and what it decides: the device, the stack's configuration,
//! the limits and where each flow goes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use netstack_core::{Config, IcmpEchoMode};

use crate::forwarder::udp::UdpLimits;
use crate::tun_device::Device;

/// The SYN timeout of a forwarder that dials first exceeds its dial timeout by this much, so
/// that the stack never expires a request (RST) that the dial could still answer.
const SYN_TIMEOUT_MARGIN: Duration = Duration::from_secs(2);
/// The stack's default SYN timeout, which a shorter dial timeout keeps.
const DEFAULT_SYN_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive and send buffer each TCP connection starts with: 256 KiB. Buffers then grow with
/// use (doubling when filled, up to [`DEFAULT_TCP_BUFFER_MAX`]), as the kernel's autotuning
/// does, so an idle connection holds 512 KiB of (mostly untouched) buffer and one bulk flow
/// gets a 4 MiB window. Through a TUN device with offloads on a 2-core machine, one flow ran
/// at 34-36 Gbit/s with fixed 1 MiB buffers and at 37-48 with buffers growing from 256 KiB
/// to 4 MiB; eight flows at 35-39 either way (BENCHMARKS.md, run K).
pub const DEFAULT_TCP_BUFFER: usize = 256 << 10;

/// Largest TCP buffer a connection grows to: 4 MiB (1 MiB on 32-bit targets, whose address
/// space is smaller). How much all connections together may grow is the stack's default
/// (`netstack_core::Config::tcp_buffer_growth`: what one connection needs to reach both
/// maxima), so eight bulk flows share it rather than each taking 4 MiB (with fixed 4 MiB
/// buffers eight flows moved 10-18 % less than with 1 MiB).
pub const DEFAULT_TCP_BUFFER_MAX: usize = if usize::BITS >= 64 { 4 << 20 } else { 1 << 20 };

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
    /// destination. Give it twice, once per address family, to relay IPv4 and IPv6 flows to
    /// different addresses (a flow goes to the redirect of its own family if there is one).
    #[arg(long, value_name = "IP", num_args = 1, action = clap::ArgAction::Append)]
    pub redirect: Vec<IpAddr>,
    /// ICMP echo: answered by the stack itself (`reply`), or forwarded to the destination and
    /// answered with the real result (`forward`).
    #[arg(long, value_enum, default_value_t = IcmpMode::Reply)]
    pub icmp: IcmpMode,
    /// Maximum TCP connections in any state.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Completed handshakes waiting for the forwarder to take them (SYN-cookie connections and,
    /// with --accept-first, every connection); beyond it a completed handshake is reset. The
    /// forwarder takes them at once, so the queue only absorbs bursts (2,000 clients at once,
    /// most of them through SYN cookies, overflowed the stack's default of 256 under load).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub accept_queue: usize,
    /// Seconds a UDP flow may stay idle before its outbound socket is closed.
    #[arg(long, default_value_t = 60)]
    pub udp_idle_timeout: u64,
    /// Maximum concurrent UDP flows (each holds an outbound socket).
    #[arg(long, default_value_t = 1024)]
    pub max_udp_flows: usize,
    /// Do not turn on the TUN device's offloads (by default the kernel hands over TCP segments
    /// of up to 64 KiB and partial checksums, and the forwarder sends such segments back).
    #[arg(long)]
    pub no_offload: bool,
    /// Complete each client's handshake before dialing its destination (connections made from
    /// SYN cookies are always relayed so). By default the forwarder dials first and answers the
    /// client as the destination did: connected, refused (RST: `ECONNREFUSED`) or unreachable
    /// (ICMP: `EHOSTUNREACH`, `ENETUNREACH`).
    #[arg(long)]
    pub accept_first: bool,
    /// Seconds a connection may take to reach its destination, from the moment its SYN is
    /// seen (waiting for a dial permit included); then the client is told the host is
    /// unreachable (dialing first) or its connection is reset (accepting first).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub dial_timeout: f64,
    /// Upstream dials in flight at most; further connections wait for a permit (within their
    /// dial timeout).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_pending_dials: usize,
    /// Upstream dials in flight to any one destination address at most, so that a few
    /// destinations that never answer cannot take every permit.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_dials_per_destination: usize,
    /// TCP runner groups: connections hash to one of N groups, each with its own lock and
    /// runner task, so that connections of different groups are serviced on different cores.
    /// Default: one per worker thread of the executor (tokio: `TOKIO_WORKER_THREADS` or the
    /// number of cores; `tun_forward_smol`: 1, or `--threads`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub runners: Option<u16>,
    /// Seconds a connection may sit idle with empty buffers before it gives its buffer pages
    /// back (it gets new ones with its next bytes); 0 keeps them for the connection's life.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, value_parser = parse_seconds_or_zero)]
    pub idle_trim: f64,
    /// Receive and send buffer each TCP connection starts with, in bytes (4096..=64 MiB); the
    /// receive buffer is the first window the client may fill, the send buffer what may be in
    /// flight to it. Default: 256 KiB. Pages a connection never fills cost no memory.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(4096..=64 << 20))]
    pub tcp_buffer: Option<u32>,
    /// Largest receive and send buffer a TCP connection grows to, in bytes (4096..=64 MiB; at
    /// least `--tcp-buffer`): a buffer doubles when it is filled, while the growth of all
    /// connections together stays within what one needs to reach this size both ways.
    /// Default: 4 MiB (1 MiB on 32-bit targets). Equal to `--tcp-buffer`, buffers never grow.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(4096..=64 << 20))]
    pub tcp_buffer_max: Option<u32>,
}

/// Parses a finite number of seconds in [0, 86400].
fn parse_seconds_or_zero(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(0.0) => Ok(0.0),
        _ => parse_seconds(s),
    }
}

/// Parses a positive, finite number of seconds (at most a day).
fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: give seconds in (0, 86400]"))
    }
}

/// Where each flow goes: its original destination, or a redirect (per address family).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    v4: Option<IpAddr>,
    v6: Option<IpAddr>,
}

impl Targets {
    /// Redirects to `redirects` (at most one per family; the last one given wins).
    pub fn new(redirects: &[IpAddr]) -> Targets {
        let mut t = Targets::default();
        for &ip in redirects {
            match ip {
                IpAddr::V4(_) => t.v4 = Some(ip),
                IpAddr::V6(_) => t.v6 = Some(ip),
            }
        }
        t
    }

    /// The redirect for a flow to `destination`: the one of its family, else the other one.
    fn redirect(&self, destination: IpAddr) -> Option<IpAddr> {
        let (same, other) = match destination {
            IpAddr::V4(_) => (self.v4, self.v6),
            IpAddr::V6(_) => (self.v6, self.v4),
        };
        same.or(other)
    }

    /// Where to relay a flow whose original destination is `destination`.
    pub fn target(&self, destination: SocketAddr) -> SocketAddr {
        match self.redirect(destination.ip()) {
            Some(ip) => SocketAddr::new(ip, destination.port()),
            None => destination,
        }
    }

    /// Where to send a ping whose original destination is `destination`.
    pub fn ping_target(&self, destination: IpAddr) -> IpAddr {
        self.redirect(destination).unwrap_or(destination)
    }
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

    /// The TCP buffer size each connection starts with: `--tcp-buffer`, else
    /// [`DEFAULT_TCP_BUFFER`].
    pub fn tcp_buffer(&self) -> usize {
        self.tcp_buffer.map_or(DEFAULT_TCP_BUFFER, |b| b as usize)
    }

    /// Largest per-connection TCP buffer: `--tcp-buffer-max`, else [`DEFAULT_TCP_BUFFER_MAX`];
    /// at least [`Self::tcp_buffer`].
    pub fn tcp_buffer_max(&self) -> usize {
        let max = self
            .tcp_buffer_max
            .map_or(DEFAULT_TCP_BUFFER_MAX, |b| b as usize);
        max.max(self.tcp_buffer())
    }

    /// Where each flow goes.
    pub fn targets(&self) -> Targets {
        Targets::new(&self.redirect)
    }

    /// The dial timeout.
    pub fn dial_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.dial_timeout)
    }

    /// The limits of the UDP relay.
    pub fn udp_limits(&self) -> UdpLimits {
        UdpLimits {
            idle_timeout: Duration::from_secs(self.udp_idle_timeout),
            max_flows: self.max_udp_flows,
        }
    }

    /// The stack's configuration for a device with offloads on (`offload`) or off.
    pub fn stack_config(&self, offload: bool) -> Config {
        let syn_timeout = if self.accept_first {
            DEFAULT_SYN_TIMEOUT
        } else {
            (self.dial_timeout() + SYN_TIMEOUT_MARGIN).max(DEFAULT_SYN_TIMEOUT)
        };
        let syn_timeout = netstack_core::Duration::from_millis(syn_timeout.as_millis() as u64);
        Config::default()
            .mtu(self.mtu as usize)
            // With the device's offloads the kernel cuts large TCP segments itself, and vouches
            // for the checksums of the packets the local kernel built.
            .tcp_segmentation_offload(offload)
            .verify_checksums(!offload)
            .tcp_rx_buffer(self.tcp_buffer())
            .tcp_tx_buffer(self.tcp_buffer())
            .tcp_rx_buffer_max(self.tcp_buffer_max())
            .tcp_tx_buffer_max(self.tcp_buffer_max())
            .max_connections(self.max_connections)
            .accept_queue(self.accept_queue)
            // The connection cap is the limit users set here; size the byte budget to admit
            // that many connections at their first sizes (growth takes at most three quarters
            // of it). Saturating: on a 32-bit target a large `--tcp-buffer` times the cap
            // exceeds `usize`.
            .tcp_buffer_budget(self.max_connections.saturating_mul(2 * self.tcp_buffer()))
            .icmp_echo(match self.icmp {
                IcmpMode::Reply => IcmpEchoMode::Reply,
                IcmpMode::Forward => IcmpEchoMode::Deliver,
            })
            .connection_requests(!self.accept_first)
            .syn_timeout(syn_timeout)
            // With offloads the device completes TCP checksums (every TCP packet is written
            // checksum-partial: see `offload::outgoing`).
            .tcp_checksum_offload(offload)
            .tcp_idle_trim(self.idle_trim())
            .tcp_runners(usize::from(self.runners.unwrap_or(1)))
    }

    /// The idle time after which a connection gives its buffer pages back, if any.
    pub fn idle_trim(&self) -> Option<netstack_core::Duration> {
        (self.idle_trim > 0.0)
            .then(|| netstack_core::Duration::from_millis((self.idle_trim * 1000.0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(["fwd", "--tun", "t0"].iter().chain(extra)).unwrap()
    }

    #[test]
    fn a_redirect_per_family_and_one_for_both() {
        let v4: SocketAddr = "198.19.0.10:80".parse().unwrap();
        let v6: SocketAddr = "[fd00::10]:80".parse().unwrap();
        let both = args(&["--redirect", "127.0.0.1"]).targets();
        assert_eq!(both.target(v4), "127.0.0.1:80".parse().unwrap());
        assert_eq!(both.target(v6), "127.0.0.1:80".parse().unwrap());
        let each = args(&["--redirect", "127.0.0.1", "--redirect", "::1"]).targets();
        assert_eq!(each.target(v4), "127.0.0.1:80".parse().unwrap());
        assert_eq!(each.target(v6), "[::1]:80".parse().unwrap());
        assert_eq!(each.ping_target(v6.ip()), "::1".parse::<IpAddr>().unwrap());
        let none = args(&[]).targets();
        assert_eq!(none.target(v6), v6);
    }

    #[test]
    fn dialing_first_asks_at_syn_time_and_outlasts_the_dial() {
        let c = args(&["--dial-timeout", "9"]).stack_config(false);
        assert!(c.connection_requests);
        assert_eq!(c.syn_timeout, netstack_core::Duration::from_secs(11));
        let c = args(&["--dial-timeout", "0.5"]).stack_config(true);
        assert_eq!(c.syn_timeout, netstack_core::Duration::from_secs(5));
        assert!(c.tcp_segmentation_offload && !c.verify_checksums);
        let c = args(&["--accept-first"]).stack_config(false);
        assert!(!c.connection_requests);
        assert!(Args::try_parse_from(["fwd", "--tun", "t0", "--dial-timeout", "0"]).is_err());
    }

    #[test]
    fn offloads_idle_trim_runners_and_the_accept_queue_reach_the_stack() {
        let c = args(&[]).stack_config(true);
        assert!(c.tcp_checksum_offload, "the device completes TCP checksums");
        assert_eq!(c.tcp_idle_trim, Some(netstack_core::Duration::from_secs(2)));
        assert_eq!(
            c.tcp_runners, 1,
            "the executor's parallelism is applied by `forward`"
        );
        assert_eq!(c.accept_queue, 1024);
        let c = args(&["--idle-trim", "0", "--runners", "3", "--accept-queue", "64"])
            .stack_config(false);
        assert!(!c.tcp_checksum_offload);
        assert_eq!(c.tcp_idle_trim, None);
        assert_eq!(c.tcp_runners, 3);
        assert_eq!(c.accept_queue, 64);
        assert!(Args::try_parse_from(["fwd", "--tun", "t0", "--runners", "0"]).is_err());
        assert!(Args::try_parse_from(["fwd", "--tun", "t0", "--idle-trim", "-1"]).is_err());
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn tcp_buffers_start_at_256_kib_grow_to_4_mib_and_follow_the_flags() {
        let c = args(&[]).stack_config(true);
        assert_eq!((c.tcp_rx_buffer, c.tcp_tx_buffer), (256 << 10, 256 << 10));
        assert_eq!(
            (c.tcp_rx_buffer_max, c.tcp_tx_buffer_max),
            (4 << 20, 4 << 20)
        );
        assert_eq!(
            c.tcp_buffer_growth, None,
            "the stack's default growth limit"
        );
        assert_eq!(c.tcp_buffer_budget as u64, 4096 * 2 * (256 << 10));
        let c =
            args(&["--tcp-buffer", "1048576", "--tcp-buffer-max", "8388608"]).stack_config(true);
        assert_eq!((c.tcp_rx_buffer, c.tcp_tx_buffer), (1 << 20, 1 << 20));
        assert_eq!(
            (c.tcp_rx_buffer_max, c.tcp_tx_buffer_max),
            (8 << 20, 8 << 20)
        );
        // A maximum below the first size is the first size: no growth.
        let c = args(&["--tcp-buffer", "1048576", "--tcp-buffer-max", "65536"]).stack_config(true);
        assert_eq!(c.tcp_rx_buffer_max, 1 << 20);
        for flag in ["--tcp-buffer", "--tcp-buffer-max"] {
            for bad in ["100", "0", "1000000000"] {
                assert!(
                    Args::try_parse_from(["fwd", "--tun", "t0", flag, bad]).is_err(),
                    "{flag} {bad}"
                );
            }
        }
    }
}
