//! Counters: packets in and out, drops by reason, connections by state.
//!
//! Read them with [`Stack::stats`](crate::Stack::stats) as a plain, copyable struct.

use core::fmt;

/// Why the front end dropped a packet (counted in [`DropStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    Malformed,
    BadChecksum,
    /// A transport protocol the stack does not serve (neither TCP, UDP nor ICMP).
    UnknownProtocol,
    /// Fragment reassembly had no room for it.
    Reassembly,
}

/// Packets dropped by the stack, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropStats {
    /// Truncated or otherwise unparsable IP/TCP packets.
    pub malformed: u64,
    /// Packets whose IPv4 header or TCP checksum is wrong.
    pub bad_checksum: u64,
    /// Packets of a transport protocol the stack does not serve (neither TCP, UDP nor
    /// ICMP/ICMPv6, e.g. GRE or SCTP).
    pub unknown_protocol: u64,
    /// Packets offered with `push_ingress` while the ingress queue was full.
    pub ingress_full: u64,
    /// Packets refused by the IP filter.
    pub filtered: u64,
    /// Fragments refused by reassembly (no room), plus datagrams whose reassembly timed out.
    pub reassembly: u64,
    /// UDP datagrams dropped because the application's queue was full.
    pub udp_queue_full: u64,
    /// ICMP messages dropped because the application's queue was full.
    pub icmp_queue_full: u64,
    /// ICMP messages neither answered nor delivered (per configuration).
    pub icmp_unhandled: u64,
    /// Packets the stack built itself (ICMP replies and errors, resets) dropped because the
    /// egress queue was full.
    pub egress_full: u64,
    /// ICMP errors not sent because of `icmp_errors_per_second`.
    pub icmp_rate_limited: u64,
}

/// IP-layer counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpStats {
    /// Fragments received.
    pub fragments_in: u64,
    /// Datagrams completed from fragments.
    pub reassembled: u64,
    /// Fragments sent (UDP and ICMP replies larger than the MTU).
    pub fragments_out: u64,
}

/// UDP counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams queued for the application.
    pub datagrams_in: u64,
    /// Datagrams sent by the application.
    pub datagrams_out: u64,
    /// Datagrams waiting for the application now.
    pub queued: u64,
    /// Bytes waiting for the application now.
    pub queued_bytes: u64,
    /// Times the packet pump waited for the application to make room
    /// ([`Config::udp_hold`](crate::Config::udp_hold)).
    pub holds: u64,
    /// Times the application did not make room in time (datagrams were then dropped).
    pub holds_expired: u64,
}

/// ICMP counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IcmpStats {
    /// Echo requests received.
    pub echo_requests: u64,
    /// Echo replies sent (by the stack or for the application).
    pub echo_replies: u64,
    /// Messages delivered to the application.
    pub delivered: u64,
    /// Destination-unreachable errors sent.
    pub errors_sent: u64,
    /// Errors asked for about packets that may not be answered with one (RFC 1812 / 4443).
    pub errors_not_allowed: u64,
}

/// TCP connection counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpStats {
    /// Connections handed to the application by `accept` (or by an accepted request).
    pub accepted: u64,
    /// Connection requests made (new 4-tuples with `connection_requests`).
    pub requests: u64,
    /// Requests the application refused.
    pub refused_by_application: u64,
    /// SYNs refused with RST because `max_connections` was reached.
    pub refused_connection_limit: u64,
    /// SYNs refused with RST because the connections' buffers would exceed
    /// `tcp_buffer_budget`.
    pub refused_memory_budget: u64,
    /// SYNs refused with RST because the SYN backlog was full (with `syn_cookies` off).
    pub refused_syn_backlog: u64,
    /// Times a connection's receive or send buffer grew (doubled, up to
    /// `tcp_rx_buffer_max` / `tcp_tx_buffer_max`).
    pub buffers_grown: u64,
    /// Times a buffer would have grown but the growth did not fit the buffer budget.
    pub growth_refused_budget: u64,
    /// SYNs answered with a SYN cookie because the SYN backlog was full.
    pub syn_cookies_sent: u64,
    /// Connections created from an ACK with a valid SYN cookie.
    pub syn_cookies_accepted: u64,
    /// ACKs for no connection checked as SYN cookies while cookies were in use, and invalid.
    pub syn_cookies_invalid: u64,
    /// Completed handshakes reset because the accept queue was full.
    pub refused_accept_queue: u64,
    /// Half-open connections dropped after `syn_timeout`.
    pub syn_expired: u64,
    /// Retransmitted SYNs that matched an existing connection (no second socket was made).
    pub duplicate_syns: u64,
    /// Abandoned connections reset after `close_timeout` without progress.
    pub close_expired: u64,
    /// Times an idle connection's buffers were swapped for fresh ones (`tcp_idle_trim`).
    pub buffers_trimmed: u64,
    /// Connections now half-open (handshake in progress).
    pub syn_received: u64,
    /// Connections now established and waiting in the accept queue.
    pub accept_pending: u64,
    /// Connections now owned by the application.
    pub open: u64,
    /// Connections the application dropped that are still closing.
    pub closing: u64,
    /// Bytes the TCP connections' buffers hold now (their capacities: what counts against
    /// `tcp_buffer_budget`).
    pub buffer_bytes: u64,
}

impl TcpStats {
    /// Adds `other` field by field (to sum the shards of a stack).
    pub(crate) fn add(&mut self, other: &TcpStats) {
        self.accepted += other.accepted;
        self.requests += other.requests;
        self.refused_by_application += other.refused_by_application;
        self.refused_connection_limit += other.refused_connection_limit;
        self.refused_syn_backlog += other.refused_syn_backlog;
        self.syn_cookies_sent += other.syn_cookies_sent;
        self.syn_cookies_accepted += other.syn_cookies_accepted;
        self.syn_cookies_invalid += other.syn_cookies_invalid;
        self.refused_memory_budget += other.refused_memory_budget;
        self.buffers_grown += other.buffers_grown;
        self.growth_refused_budget += other.growth_refused_budget;
        self.refused_accept_queue += other.refused_accept_queue;
        self.syn_expired += other.syn_expired;
        self.duplicate_syns += other.duplicate_syns;
        self.close_expired += other.close_expired;
        self.buffers_trimmed += other.buffers_trimmed;
        self.syn_received += other.syn_received;
        self.accept_pending += other.accept_pending;
        self.open += other.open;
        self.closing += other.closing;
        self.buffer_bytes += other.buffer_bytes;
    }
}

/// A snapshot of the stack's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Packets accepted into the stack.
    pub packets_in: u64,
    /// Bytes of the packets accepted into the stack.
    pub bytes_in: u64,
    /// Packets handed out of the stack.
    pub packets_out: u64,
    /// Bytes of the packets handed out of the stack.
    pub bytes_out: u64,
    /// Packets waiting in the ingress queue now.
    pub ingress_queued: u64,
    /// Packets waiting in the egress queue now.
    pub egress_queued: u64,
    /// Whether the runner is waiting for the egress queue to drain.
    pub egress_blocked: bool,
    /// Drops by reason.
    pub drops: DropStats,
    /// TCP connections.
    pub tcp: TcpStats,
    /// UDP datagrams.
    pub udp: UdpStats,
    /// ICMP messages.
    pub icmp: IcmpStats,
    /// Fragments.
    pub ip: IpStats,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.drops;
        let t = &self.tcp;
        writeln!(
            f,
            "packets: in {} ({} bytes), out {} ({} bytes); queued in {}, out {}{}",
            self.packets_in,
            self.bytes_in,
            self.packets_out,
            self.bytes_out,
            self.ingress_queued,
            self.egress_queued,
            if self.egress_blocked {
                " (egress full)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "drops: malformed {}, bad checksum {}, unknown protocol {}, ingress full {}, filtered {}, \
             reassembly {}, udp queue full {}, icmp queue full {}, icmp unhandled {}, egress full {}, \
             icmp rate limited {}",
            d.malformed,
            d.bad_checksum,
            d.unknown_protocol,
            d.ingress_full,
            d.filtered,
            d.reassembly,
            d.udp_queue_full,
            d.icmp_queue_full,
            d.icmp_unhandled,
            d.egress_full,
            d.icmp_rate_limited
        )?;
        writeln!(
            f,
            "udp: in {}, out {}, queued {} ({} bytes), waits for the reader {} (expired {}); icmp: \
             echo requests {}, replies {}, \
             delivered {}, errors sent {}; fragments: in {}, reassembled {}, out {}",
            self.udp.datagrams_in,
            self.udp.datagrams_out,
            self.udp.queued,
            self.udp.queued_bytes,
            self.udp.holds,
            self.udp.holds_expired,
            self.icmp.echo_requests,
            self.icmp.echo_replies,
            self.icmp.delivered,
            self.icmp.errors_sent,
            self.ip.fragments_in,
            self.ip.reassembled,
            self.ip.fragments_out
        )?;
        writeln!(
            f,
            "tcp: accepted {}, requests {} (refused by the application {}), refused (limit {}, \
             memory budget {}, backlog {}, accept queue {}), syn cookies (sent {}, accepted {}, \
             invalid {}), syn expired {}, duplicate syns {}, close expired {}, buffers trimmed {}, \
             buffers grown {} (refused by the budget {})",
            t.accepted,
            t.requests,
            t.refused_by_application,
            t.refused_connection_limit,
            t.refused_memory_budget,
            t.refused_syn_backlog,
            t.refused_accept_queue,
            t.syn_cookies_sent,
            t.syn_cookies_accepted,
            t.syn_cookies_invalid,
            t.syn_expired,
            t.duplicate_syns,
            t.close_expired,
            t.buffers_trimmed,
            t.buffers_grown,
            t.growth_refused_budget
        )?;
        write!(
            f,
            "tcp now: syn-received {}, accept-pending {}, open {}, closing {}, buffers {} bytes",
            t.syn_received, t.accept_pending, t.open, t.closing, t.buffer_bytes
        )
    }
}
