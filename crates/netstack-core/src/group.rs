//! A runner group: a share of the stack's TCP shards behind a lock of its own, served by its
//! own runner pass, with its own ingress queue and outbox — so that connections of different
//! groups are serviced on different threads without contending for one lock.
//!
//! Shard `s` (of `tcp_shards`) belongs to group `s % groups`, at index `s / groups` there. The
//! stack-wide connection limits are split evenly among the groups (each admits its share of
//! `max_connections`, `syn_backlog` and `tcp_buffer_budget`).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use smoltcp::time::Instant;

use crate::classify::TcpSegment;
use crate::config::Config;
use crate::device::LinkDevice;
use crate::icmp::limit::ErrorLimit;
use crate::ip_builder::IpBuilder;
use crate::outbox::Outbox;
use crate::packet::Packet;
use crate::shard::Shard;
use crate::stats::Stats;
use crate::tcp::budget::BufferBudget;
use crate::tcp::connection::ConnId;
use crate::tcp::cookie::CookieJar;
use crate::waker::{WakeBatch, WakerList, WakerSlot};

/// What a group's state is: its shards and everything its runner pass needs.
pub(crate) struct Group {
    /// This group's configuration: the stack's, with its share of the limits.
    pub(crate) config: Config,
    /// Number of groups, to map global shard numbers to local indices.
    groups: usize,
    /// The group's shards (local index `s / groups` for shard `s`).
    pub(crate) shards: Vec<Shard>,
    /// Local indices of the shards with work for the next pass (each at most once).
    pub(crate) dirty: Vec<usize>,
    /// Classified TCP segments waiting for the runner (bounded by `ingress_queue`).
    pub(crate) tcp_ingress: VecDeque<TcpSegment>,
    /// Packet sources waiting for room in `tcp_ingress`.
    pub(crate) ingress_waiters: WakerList,
    /// The packet smoltcp is processing.
    pub(crate) rx: Option<Packet>,
    pub(crate) out: Outbox,
    pub(crate) runner_waker: WakerSlot,
    /// The runner stopped because the outbox was full; popping a packet must wake it.
    pub(crate) egress_blocked: bool,
    pub(crate) cookies: CookieJar,
    /// Connections established in the last pass, for the accept queue.
    pub(crate) established: Vec<ConnId>,
    /// Connection requests made in the last pass, for the request queue.
    pub(crate) new_requests: Vec<ConnId>,
    /// Requests that expired before a listener took them, for the request queue to forget.
    pub(crate) expired_requests: Vec<ConnId>,
    /// TCP segments taken in, and their bytes.
    pub(crate) segments_in: (u64, u64),
}

impl Group {
    /// Group `index` of `groups`, with the shards that belong to it.
    pub(crate) fn new(index: usize, groups: usize, config: &Config, now: Instant) -> Self {
        let share = |n: usize| (n / groups).max(1);
        let mut config = config.clone();
        config.max_connections = share(config.max_connections);
        config.syn_backlog = share(config.syn_backlog);
        config.tcp_buffer_budget = share(config.tcp_buffer_budget);
        let rate = u32::try_from(groups).map_or(1, |g| (config.icmp_errors_per_second / g).max(1));
        let seed = config.seed();
        let mut out = Outbox::new(
            config.egress_queue,
            IpBuilder::new(config.mtu, config.hop_limit, seed ^ index as u64),
            ErrorLimit::new(if config.icmp_errors_per_second == 0 {
                0
            } else {
                rate
            }),
        );
        let mut rx = None;
        let shards = (index..config.tcp_shards)
            .step_by(groups)
            .map(|s| {
                let mut device = LinkDevice {
                    rx: &mut rx,
                    out: &mut out,
                    mtu: config.tcp_mtu(),
                    tcp_checksum: !config.tcp_checksum_offload,
                };
                Shard::new(s as u32, &config, &mut device, now)
            })
            .collect();
        Group {
            groups,
            shards,
            dirty: Vec::new(),
            tcp_ingress: VecDeque::with_capacity(config.ingress_queue),
            ingress_waiters: WakerList::default(),
            rx,
            out,
            runner_waker: WakerSlot::default(),
            egress_blocked: false,
            cookies: CookieJar::new(seed),
            established: Vec::new(),
            new_requests: Vec::new(),
            expired_requests: Vec::new(),
            segments_in: (0, 0),
            config,
        }
    }

    /// The group's TCP buffer budget as it stands: the bytes all its shards' buffers hold.
    pub(crate) fn buffer_budget(&self) -> BufferBudget {
        let (used, grown) = self.shards.iter().fold((0, 0), |(u, g), s| {
            (u + s.tcp.buffer_bytes(), g + s.tcp.grown_bytes())
        });
        BufferBudget::new(used, self.config.tcp_buffer_budget)
            .with_growth(grown, self.config.growth_limit())
    }

    /// The local index of global shard `shard`.
    pub(crate) fn local(&self, shard: usize) -> usize {
        shard / self.groups
    }

    /// Puts local shard `i` on the list for the next runner pass.
    pub(crate) fn mark_dirty(&mut self, i: usize) {
        let shard = &mut self.shards[i];
        if !shard.dirty {
            shard.dirty = true;
            self.dirty.push(i);
        }
    }

    /// Something changed local shard `i` outside the runner: service it on the next pass.
    pub(crate) fn schedule(&mut self, i: usize, wake: &mut WakeBatch) {
        self.mark_dirty(i);
        wake.take_from(&mut self.runner_waker);
    }

    /// Takes the next packet for the device; a runner blocked on the full outbox is woken.
    pub(crate) fn pop_egress(&mut self, wake: &mut WakeBatch) -> Option<Packet> {
        let p = self.out.pop(wake)?;
        if self.egress_blocked {
            self.egress_blocked = false;
            wake.take_from(&mut self.runner_waker);
        }
        Some(p)
    }

    /// Adds this group's counters and gauges to `stats`.
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        stats.packets_in += self.segments_in.0;
        stats.bytes_in += self.segments_in.1;
        stats.ingress_queued += self.tcp_ingress.len() as u64;
        stats.egress_blocked |= self.egress_blocked;
        add_outbox(stats, &self.out);
        for shard in &self.shards {
            stats.tcp.add(&shard.tcp.snapshot());
        }
    }
}

/// Adds an outbox's counters to `stats`.
pub(crate) fn add_outbox(stats: &mut Stats, out: &Outbox) {
    let c = &out.counters;
    stats.packets_out += c.packets_out;
    stats.bytes_out += c.bytes_out;
    stats.egress_queued += out.len() as u64;
    stats.drops.egress_full += c.egress_full;
    stats.drops.icmp_rate_limited += c.icmp_rate_limited;
    stats.icmp.errors_sent += c.icmp_errors_sent;
    stats.icmp.errors_not_allowed += c.icmp_errors_not_allowed;
    stats.ip.fragments_out += out.ip.fragments_out;
}
