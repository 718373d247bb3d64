//! What every runner group and every socket shares, behind its own lock: the queues the
//! application takes from (accepted connections, connection requests, UDP datagrams, ICMP
//! messages), fragment reassembly, the outbox of datagrams and ICMP messages, and the
//! counters of the packets that entered the stack.
//!
//! Lock order: a runner group may take this lock while it holds its own (to hand over
//! established connections and requests); code holding this lock never takes a group's.

use smoltcp::time::Instant;

use crate::config::Config;
use crate::icmp::limit::ErrorLimit;
use crate::icmp::queue::IcmpQueue;
use crate::ip_builder::IpBuilder;
use crate::outbox::Outbox;
use crate::reassembly::Reassembler;
use crate::stats::{DropReason, DropStats, IcmpStats, IpStats, Stats, UdpStats};
use crate::tcp::accept_queue::AcceptQueue;
use crate::tcp::pending::RequestQueue;
use crate::udp::queue::UdpQueue;

/// Counters of the shared side.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Packets (other than TCP segments, which their group counts) and their bytes.
    pub(crate) packets_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) drops: DropStats,
    pub(crate) udp: UdpStats,
    pub(crate) icmp: IcmpStats,
    pub(crate) ip: IpStats,
}

/// The shared state (see the module documentation).
pub(crate) struct Shared {
    pub(crate) accept: AcceptQueue,
    pub(crate) requests: RequestQueue,
    pub(crate) udp: UdpQueue,
    pub(crate) icmp: IcmpQueue,
    pub(crate) reassembler: Reassembler,
    /// UDP datagrams, echo replies and ICMP errors about datagrams.
    pub(crate) out: Outbox,
    /// Whether an application handle receives UDP / ICMP (one receiver each).
    pub(crate) udp_claimed: bool,
    pub(crate) icmp_claimed: bool,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn new(config: &Config) -> Self {
        Shared {
            accept: AcceptQueue::new(config.accept_queue),
            requests: RequestQueue::default(),
            udp: UdpQueue::new(config.udp_queue, config.udp_queue_bytes, config.udp_hold),
            icmp: IcmpQueue::new(config.icmp_queue),
            reassembler: Reassembler::new(
                config.reassembly_max_datagrams,
                config.reassembly_max_bytes,
                config.reassembly_timeout,
            ),
            out: Outbox::new(
                config.egress_queue,
                IpBuilder::new(config.mtu, config.hop_limit, config.seed()),
                ErrorLimit::new(config.icmp_errors_per_second),
            ),
            udp_claimed: false,
            icmp_claimed: false,
            counters: Counters::default(),
        }
    }

    /// Counts a packet that entered the stack.
    pub(crate) fn count_in(&mut self, len: usize) {
        self.counters.packets_in += 1;
        self.counters.bytes_in += len as u64;
    }

    /// Counts a dropped packet under its reason.
    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        let d = &mut self.counters.drops;
        match reason {
            DropReason::Malformed => d.malformed += 1,
            DropReason::BadChecksum => d.bad_checksum += 1,
            DropReason::UnknownProtocol => d.unknown_protocol += 1,
            DropReason::Reassembly => d.reassembly += 1,
        }
    }

    /// Expires reassembly that ran out of time; its next deadline.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Instant> {
        if self.reassembler.deadline().is_some_and(|d| now >= d) {
            self.reassembler.expire(now);
        }
        self.reassembler.deadline()
    }

    /// Adds the shared counters and gauges to `stats`.
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        let c = &self.counters;
        stats.packets_in += c.packets_in;
        stats.bytes_in += c.bytes_in;
        let egress_full = stats.drops.egress_full;
        let rate_limited = stats.drops.icmp_rate_limited;
        stats.drops = DropStats {
            reassembly: c.drops.reassembly + self.reassembler.expired,
            egress_full,
            icmp_rate_limited: rate_limited,
            ..c.drops
        };
        stats.udp = UdpStats {
            queued: self.udp.len() as u64,
            queued_bytes: self.udp.bytes() as u64,
            holds: self.udp.holds,
            holds_expired: self.udp.holds_expired,
            ..c.udp
        };
        let (errors_sent, errors_not_allowed) =
            (stats.icmp.errors_sent, stats.icmp.errors_not_allowed);
        stats.icmp = IcmpStats {
            errors_sent,
            errors_not_allowed,
            ..c.icmp
        };
        let fragments_out = stats.ip.fragments_out;
        stats.ip = IpStats {
            fragments_out,
            ..c.ip
        };
        crate::group::add_outbox(stats, &self.out);
    }
}
