//! Stack configuration: buffer sizes, limits and timeouts, with documented defaults.
//!
//! The defaults suit a phone or desktop VPN: a few thousand connections, a local TUN link.
//! Memory per TCP connection is `tcp_rx_buffer + tcp_tx_buffer` (allocated when the SYN is
//! accepted, freed when the connection is gone); the worst case is that times `max_connections`.

use smoltcp::time::Duration;

use crate::filter::IpFilter;
use crate::icmp::message::IcmpEchoMode;

/// Configuration of a [`Stack`](crate::Stack). Build it with [`Config::default`] and the
/// chainable setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// MTU of the link (largest IP packet, in bytes). Default 1500. Must be at least 1280 for IPv6.
    pub mtu: usize,
    /// The device segments TCP itself (TCP segmentation offload, e.g. a Linux TUN device with
    /// `IFF_VNET_HDR` and `TUN_F_TSO4`/`TUN_F_TSO6`): the stack then sends TCP segments of up
    /// to 64 KiB whatever [`mtu`](Self::mtu) and the peer's MSS say, and the device writer
    /// must mark every TCP packet larger than `mtu` for segmentation. UDP and ICMP still
    /// respect `mtu`. Default `false`.
    pub tcp_segmentation_offload: bool,
    /// The device completes the checksum of every TCP segment the stack sends (a Linux TUN
    /// device with `IFF_VNET_HDR` and `TUN_F_CSUM`: the writer marks each TCP packet
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM` with the pseudo-header sum in the checksum field). The
    /// stack then leaves the field zero instead of summing every byte it sends. Segments the
    /// stack builds without smoltcp (resets, SYN cookies) still carry full checksums. Default
    /// `false`.
    pub tcp_checksum_offload: bool,
    /// Verify the TCP, UDP and ICMP checksums of every packet the device delivers, dropping
    /// and counting bad ones (`drops.bad_checksum`). Default `true`. Turn it off only for a
    /// device that vouches for them: a Linux TUN device carries packets the local kernel built,
    /// and with checksum offload (`TUN_F_CSUM`) it even leaves them partial on purpose; then
    /// verifying (or completing) them is a wasted pass over every byte. IP header checks,
    /// lengths and every other validation still apply.
    pub verify_checksums: bool,
    /// Receive buffer each TCP connection starts with, in bytes; it sets the first advertised
    /// window. Default 256 KiB.
    pub tcp_rx_buffer: usize,
    /// Send buffer each TCP connection starts with, in bytes. Default 256 KiB.
    pub tcp_tx_buffer: usize,
    /// Largest receive buffer a TCP connection grows to, in bytes (at least `tcp_rx_buffer`;
    /// equal to it, buffers never grow). A connection's receive buffer doubles when the
    /// application finds it at least three quarters full (the peer was sending into the whole
    /// window), and its send buffer when the application fills it while the peer's window
    /// would take more: as the kernel's buffer autotuning, bulk flows get large windows and
    /// other connections keep small buffers. Growth counts against `tcp_buffer_budget` and
    /// stops at three quarters of it; a grown buffer keeps its size for the connection's
    /// life (`tcp_idle_trim` still gives its pages back). The window scale offered in the SYN
    /// is chosen for this size. Default 4 MiB on 64-bit targets, 256 KiB (no growth) on
    /// others.
    pub tcp_rx_buffer_max: usize,
    /// Largest send buffer a TCP connection grows to, in bytes (at least `tcp_tx_buffer`); see
    /// `tcp_rx_buffer_max`. Default 4 MiB on 64-bit targets, 256 KiB on others.
    pub tcp_tx_buffer_max: usize,
    /// Bytes by which the buffers of all TCP connections of a runner group together may
    /// exceed their first sizes; `None` (the default): what one connection needs to reach
    /// both maxima, `(tcp_rx_buffer_max - tcp_rx_buffer) + (tcp_tx_buffer_max -
    /// tcp_tx_buffer)`. One bulk flow gets its largest window; many share the growth, each
    /// needing less window for its share of the throughput. Measured through `tun_forward` on
    /// a 2-core machine (BENCHMARKS.md, run K): eight flows whose buffers each grew to 4 MiB
    /// moved 10-18 % less than eight with 1 MiB.
    pub tcp_buffer_growth: Option<usize>,
    /// Maximum number of TCP connections in any state (half-open, established, closing,
    /// abandoned). SYNs beyond it are answered with RST. Default 4096.
    pub max_connections: usize,
    /// Global budget, in bytes, for the buffers of all TCP connections together, counted
    /// exactly: each connection holds its current receive and send capacities (at first
    /// `tcp_rx_buffer + tcp_tx_buffer`, more once grown) from its SYN until it is gone. A SYN
    /// whose first buffers would exceed it is refused with RST (`tcp.refused_memory_budget`);
    /// buffers grow only while the total stays within three quarters of it. Default 1 GiB
    /// (2048 connections at the default first sizes; pages a connection never touches cost no
    /// RAM).
    pub tcp_buffer_budget: usize,
    /// Maximum number of half-open connections (SYN received, handshake not complete). SYNs
    /// beyond it are answered with RST. Default 256.
    pub syn_backlog: usize,
    /// How long a half-open connection may wait for the handshake to complete before it is
    /// dropped, and a connection request for the application's answer before it is refused
    /// with RST. Default 5 s.
    pub syn_timeout: Duration,
    /// Ask the application about each new connection at SYN time, before answering it
    /// ([`TcpListener::incoming`](crate::TcpListener::incoming) yields a
    /// [`ConnectionRequest`](crate::ConnectionRequest) to accept or refuse), instead of
    /// completing the handshake first. A pending request holds its SYN (no socket buffers yet)
    /// and counts against `syn_backlog`. Default `false`.
    pub connection_requests: bool,
    /// Answer SYNs with SYN cookies (RFC 4987 3.6) when `syn_backlog` is full, instead of
    /// RST: new clients keep connecting during a SYN flood. A cookie connection is created
    /// established, when the client's ACK returns a valid cookie, so it cannot be refused at
    /// SYN time (with `connection_requests` it arrives as an established stream). It keeps the
    /// client's window scaling, SACK and an MSS rounded down to a table value. Default `true`.
    pub syn_cookies: bool,
    /// Maximum number of established connections waiting for `accept`. Connections that complete
    /// the handshake when it is full are reset. Default 256.
    pub accept_queue: usize,
    /// Packets waiting to be processed by the runner. Default 256. A full queue pushes back on
    /// the packet source (the `Sink` is not ready).
    pub ingress_queue: usize,
    /// Packets waiting to be written to the device. Default 256. When full, smoltcp holds
    /// segments in the socket buffers (no drops) until the device drains.
    pub egress_queue: usize,
    /// How long a connection the application has dropped may go without progress while it
    /// closes before it is reset. Progress is the peer acknowledging more of what the stack
    /// still had to send, or the close moving to its next state (FIN acknowledged, peer's FIN
    /// received): a large reply written before the drop is delivered in full at the peer's
    /// pace, while a peer that stops acknowledging, or never sends its FIN, is reset
    /// `close_timeout` after it went quiet. Default 30 s.
    pub close_timeout: Duration,
    /// Give the buffer memory of connections idle this long back: their receive and transmit
    /// buffers, empty by then, are swapped for fresh ones of the same sizes, which cost no
    /// memory until data arrives (on systems that map zeroed pages lazily, with an allocator
    /// that maps large blocks afresh — `tun_forward` installs one), and the old ones are freed.
    /// Budget accounting is unchanged: the sizes are the same. `None` (the default) keeps the
    /// buffers for the connection's life, which is right where memory is not paged lazily.
    pub tcp_idle_trim: Option<Duration>,
    /// Abort a connection whose sent data stays unacknowledged this long. Default 120 s.
    pub tcp_timeout: Option<Duration>,
    /// TCP keep-alive interval; `None` disables keep-alive. Default `None`.
    pub tcp_keep_alive: Option<Duration>,
    /// Maximum packets the runner processes per poll before yielding. Default 64.
    pub runner_batch: usize,
    /// Seed for initial sequence numbers and IP identifications. `None` (the default): the
    /// [`StackBuilder`](crate::StackBuilder) asks its [`Runtime`](crate::Runtime) for a random
    /// one; a stack made directly with [`Stack::new`](crate::Stack::new) then uses 0, which
    /// makes sequence numbers predictable — set one from a random source there.
    pub random_seed: Option<u64>,
    /// UDP datagrams waiting for the application. Default 512. Excess datagrams wait at the
    /// packet pump for [`udp_hold`](Self::udp_hold), then are dropped and counted
    /// (`drops.udp_queue_full`).
    pub udp_queue: usize,
    /// Bytes of UDP datagrams waiting for the application (packet buffers). Default 4 MiB.
    pub udp_queue_bytes: usize,
    /// How long the packet pump ([`PacketSink::send_batch`](crate::PacketSink::send_batch),
    /// [`Stack::poll_push_ingress_batch`](crate::Stack::poll_push_ingress_batch))
    /// waits for the application to read when the UDP queue is full, before it drops
    /// datagrams. Default 5 ms; `None` drops at once.
    ///
    /// While it waits the pump reads nothing more from the device, whose own queue then drops
    /// what does not fit — in the kernel, at no cost to the stack — instead of the stack
    /// reading, checking and dropping every datagram of a flood it cannot forward (through a
    /// TUN device on two cores, this more than tripled the UDP a forwarder delivered, see
    /// BENCHMARKS.md). IP fragments wait for room like datagrams (a fragment's length
    /// standing for the datagram it may complete). Every packet behind the held datagram
    /// waits too, TCP segments included, so this is also the longest a slow UDP reader can
    /// delay other traffic: the wait ends as soon as the reader has drained the queue to half;
    /// a reader that has not done so in time makes the stack drop (and count,
    /// `drops.udp_queue_full`) datagrams without waiting until it has.
    pub udp_hold: Option<Duration>,
    /// TTL / hop limit of the packets the stack builds itself (UDP, ICMP). Default 64.
    pub hop_limit: u8,
    /// What to do with ICMP echo requests. Default: reply locally.
    pub icmp_echo: IcmpEchoMode,
    /// Deliver ICMP messages other than echo requests to the application instead of
    /// dropping them. Default `false`.
    pub icmp_deliver_other: bool,
    /// ICMP messages waiting for the application. Default 64.
    pub icmp_queue: usize,
    /// ICMP errors (destination unreachable) the stack sends per second at most, on average
    /// and in a burst; 0 sends none. Default 1000 (Linux's `icmp_msgs_per_sec`).
    pub icmp_errors_per_second: u32,
    /// Fragmented datagrams being reassembled at once. Default 64.
    pub reassembly_max_datagrams: usize,
    /// Bytes held for reassembly, all datagrams together. Default 1 MiB.
    pub reassembly_max_bytes: usize,
    /// How long a fragmented datagram may take to complete. Default 10 s.
    pub reassembly_timeout: Duration,
    /// Which flows the stack serves. Default: all.
    pub filter: IpFilter,
    /// Number of TCP socket tables (shards) a connection can hash to. smoltcp scans a whole
    /// table per packet, so more shards keep the per-packet cost flat with many connections.
    /// Default 256 (each shard is 488 bytes plus its sockets: `size_of::<Shard>()` on x86_64).
    pub tcp_shards: usize,
    /// Runner groups the shards are split into: each has its own lock, ingress queue and
    /// outbox, and is served by its own runner task (`StackBuilder::run` spawns one per
    /// group), so connections of different groups are serviced on different threads. Use the
    /// number of worker threads of a multi-thread executor; 1 for a single thread. With more
    /// than one, `max_connections`, `syn_backlog` and `tcp_buffer_budget` are split evenly
    /// among the groups. Default 1.
    pub tcp_runners: usize,
}

/// Default largest TCP buffer: 4 MiB where the address space allows it, else no growth.
const DEFAULT_BUFFER_MAX: usize = if cfg!(target_pointer_width = "64") {
    4 << 20
} else {
    256 * 1024
};

impl Default for Config {
    fn default() -> Self {
        Config {
            mtu: 1500,
            tcp_rx_buffer: 256 * 1024,
            tcp_tx_buffer: 256 * 1024,
            tcp_rx_buffer_max: DEFAULT_BUFFER_MAX,
            tcp_tx_buffer_max: DEFAULT_BUFFER_MAX,
            tcp_buffer_growth: None,
            max_connections: 4096,
            tcp_buffer_budget: 1 << 30,
            syn_backlog: 256,
            syn_timeout: Duration::from_secs(5),
            connection_requests: false,
            syn_cookies: true,
            accept_queue: 256,
            ingress_queue: 256,
            egress_queue: 256,
            close_timeout: Duration::from_secs(30),
            tcp_timeout: Some(Duration::from_secs(120)),
            tcp_idle_trim: None,
            tcp_keep_alive: None,
            runner_batch: 64,
            random_seed: None,
            udp_queue: 512,
            udp_queue_bytes: 4 << 20,
            udp_hold: Some(Duration::from_millis(5)),
            hop_limit: 64,
            icmp_echo: IcmpEchoMode::Reply,
            icmp_deliver_other: false,
            icmp_queue: 64,
            icmp_errors_per_second: 1000,
            reassembly_max_datagrams: 64,
            reassembly_max_bytes: 1 << 20,
            reassembly_timeout: Duration::from_secs(10),
            filter: IpFilter::default(),
            tcp_shards: 256,
            tcp_runners: 1,
            tcp_segmentation_offload: false,
            tcp_checksum_offload: false,
            verify_checksums: true,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty),* $(,)?) => {
        impl Config {
            $(
                #[$doc]
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = value;
                    self
                }
            )*
        }
    };
}

setter! {
    /// Sets [`Config::mtu`].
    mtu: usize,
    /// Sets [`Config::tcp_segmentation_offload`].
    tcp_segmentation_offload: bool,
    /// Sets [`Config::tcp_checksum_offload`].
    tcp_checksum_offload: bool,
    /// Sets [`Config::verify_checksums`].
    verify_checksums: bool,
    /// Sets [`Config::tcp_rx_buffer`].
    tcp_rx_buffer: usize,
    /// Sets [`Config::tcp_tx_buffer`].
    tcp_tx_buffer: usize,
    /// Sets [`Config::tcp_rx_buffer_max`].
    tcp_rx_buffer_max: usize,
    /// Sets [`Config::tcp_tx_buffer_max`].
    tcp_tx_buffer_max: usize,
    /// Sets [`Config::max_connections`].
    max_connections: usize,
    /// Sets [`Config::tcp_buffer_budget`].
    tcp_buffer_budget: usize,
    /// Sets [`Config::syn_backlog`].
    syn_backlog: usize,
    /// Sets [`Config::syn_timeout`].
    syn_timeout: Duration,
    /// Sets [`Config::connection_requests`].
    connection_requests: bool,
    /// Sets [`Config::syn_cookies`].
    syn_cookies: bool,
    /// Sets [`Config::accept_queue`].
    accept_queue: usize,
    /// Sets [`Config::ingress_queue`].
    ingress_queue: usize,
    /// Sets [`Config::egress_queue`].
    egress_queue: usize,
    /// Sets [`Config::close_timeout`].
    close_timeout: Duration,
    /// Sets [`Config::tcp_timeout`].
    tcp_timeout: Option<Duration>,
    /// Sets [`Config::tcp_idle_trim`].
    tcp_idle_trim: Option<Duration>,
    /// Sets [`Config::tcp_keep_alive`].
    tcp_keep_alive: Option<Duration>,
    /// Sets [`Config::runner_batch`].
    runner_batch: usize,
    /// Sets [`Config::udp_queue`].
    udp_queue: usize,
    /// Sets [`Config::udp_queue_bytes`].
    udp_queue_bytes: usize,
    /// Sets [`Config::udp_hold`].
    udp_hold: Option<Duration>,
    /// Sets [`Config::hop_limit`].
    hop_limit: u8,
    /// Sets [`Config::icmp_echo`].
    icmp_echo: IcmpEchoMode,
    /// Sets [`Config::icmp_deliver_other`].
    icmp_deliver_other: bool,
    /// Sets [`Config::icmp_queue`].
    icmp_queue: usize,
    /// Sets [`Config::icmp_errors_per_second`].
    icmp_errors_per_second: u32,
    /// Sets [`Config::reassembly_max_datagrams`].
    reassembly_max_datagrams: usize,
    /// Sets [`Config::reassembly_max_bytes`].
    reassembly_max_bytes: usize,
    /// Sets [`Config::reassembly_timeout`].
    reassembly_timeout: Duration,
    /// Sets [`Config::filter`].
    filter: IpFilter,
    /// Sets [`Config::tcp_shards`].
    tcp_shards: usize,
    /// Sets [`Config::tcp_runners`].
    tcp_runners: usize,
}

impl Config {
    /// Sets [`Config::tcp_buffer_growth`].
    #[must_use]
    pub fn tcp_buffer_growth(mut self, bytes: usize) -> Self {
        self.tcp_buffer_growth = Some(bytes);
        self
    }

    /// The growth limit in use (see [`Config::tcp_buffer_growth`]).
    pub(crate) fn growth_limit(&self) -> usize {
        self.tcp_buffer_growth.unwrap_or(
            (self.tcp_rx_buffer_max - self.tcp_rx_buffer)
                .saturating_add(self.tcp_tx_buffer_max - self.tcp_tx_buffer),
        )
    }

    /// Sets [`Config::random_seed`].
    #[must_use]
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.random_seed = Some(seed);
        self
    }

    /// The seed in use (0 when none was given).
    pub(crate) fn seed(&self) -> u64 {
        self.random_seed.unwrap_or(0)
    }

    /// Returns the configuration with every size clamped to a usable minimum (at least one slot
    /// per queue, an MTU of at least 576 bytes, buffers of at least 1 KiB), so that no setting
    /// can make the stack stall or panic.
    pub(crate) fn sanitized(mut self) -> Self {
        self.mtu = self.mtu.clamp(576, 65535);
        self.tcp_rx_buffer = self.tcp_rx_buffer.clamp(1024, 1 << 30);
        self.tcp_tx_buffer = self.tcp_tx_buffer.clamp(1024, 1 << 30);
        self.tcp_rx_buffer_max = self.tcp_rx_buffer_max.clamp(self.tcp_rx_buffer, 1 << 30);
        self.tcp_tx_buffer_max = self.tcp_tx_buffer_max.clamp(self.tcp_tx_buffer, 1 << 30);
        self.syn_backlog = self.syn_backlog.max(1);
        self.accept_queue = self.accept_queue.max(1);
        self.ingress_queue = self.ingress_queue.max(1);
        self.egress_queue = self.egress_queue.max(1);
        self.runner_batch = self.runner_batch.max(1);
        self.hop_limit = self.hop_limit.max(1);
        self.tcp_shards = self.tcp_shards.clamp(1, 4096);
        self.tcp_runners = self.tcp_runners.clamp(1, self.tcp_shards.min(64));
        self
    }

    /// The largest IP packet the stack's TCP may send: the MTU, or 64 KiB with segmentation
    /// offload.
    pub(crate) fn tcp_mtu(&self) -> usize {
        if self.tcp_segmentation_offload {
            65535
        } else {
            self.mtu
        }
    }
}
