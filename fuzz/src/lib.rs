//! Fuzz targets for `netstack-core`, shared by the cargo-fuzz binaries (`fuzz_targets/`) and the
//! stable-Rust driver (`examples/stable_driver.rs`).
//!
//! Every target drives a `Stack<NoopRawMutex, ManualClock>` by hand (no executor, simulated
//! time) and checks, after every step, properties that must hold for any input:
//!
//! * no panic (smoltcp's or ours, debug assertions and overflow checks on);
//! * counters are consistent: every packet pushed is either counted in `packets_in` once the
//!   runner drained the ingress queue, or refused and counted in `drops.ingress_full`; drops never
//!   exceed packets in; packets out equal the packets taken from the egress queue;
//! * nothing grows without bound: the ingress queue never holds more than `ingress_queue`
//!   packets, one runner pass never queues more than `egress_queue` packets, connections never
//!   exceed `max_connections`, half-open ones never exceed `syn_backlog`, pending accepts never
//!   exceed `accept_queue`, and `open` equals the handles the application holds;
//! * every packet the stack emits is well-formed IPv4/IPv6 with valid checksums (TCP, UDP),
//!   no larger than the MTU; the UDP queue stays within its datagram and byte bounds;
//! * at the end of every input, once the application dropped its handles and the timeouts
//!   passed, every table is empty and the runner has no deadline left (an idle stack sleeps).
//!
//! Targets:
//! * [`ingress_bytes`]: arbitrary bytes as packets (optionally with checksums repaired, so that
//!   mutated headers reach the TCP state machine);
//! * [`tcp_packets`]: packet-level attacks on live connections (a real handshake with a smoltcp
//!   peer first, then injected segments with sequence numbers near the real ones, any flags,
//!   truncations, window edge cases, plus loss, duplication and reordering on the link);
//! * [`tcp_app_ops`]: application operations (accept, read, write, shutdown, abort, drop) and
//!   time interleaved with the same packet operations.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use netstack_core::{Clock, Config, Duration, Instant, Stack, Stats, TcpListener, TcpStream};
use netstack_testkit::packets::{repair_checksums, tcp_info, Segment};
use netstack_testkit::{ManualTime, Peer, TARGET_ADDR as TARGET};
use smoltcp::iface::SocketHandle;
use smoltcp::wire::{
    IpAddress, IpEndpoint, IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6Packet,
    TcpControl, TcpPacket, TcpSeqNumber, UdpPacket,
};

/// A clock that only moves when the harness says so.
#[derive(Debug, Default)]
pub struct ManualClock(pub ManualTime);

impl ManualClock {
    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance(&self, ms: u64) {
        self.0.advance(Duration::from_millis(ms));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// The stack under test: no locking, simulated time.
pub type FuzzStack = Stack<NoopRawMutex, ManualClock>;

/// A connection handle held by the fuzzed application.
type Conn = TcpStream<Rc<FuzzStack>>;

/// Takes every connection waiting in `stack`'s accept queue.
fn accept_all(stack: &Rc<FuzzStack>, mut f: impl FnMut(Conn)) {
    let listener: TcpListener<Rc<FuzzStack>> = TcpListener::new(stack.clone());
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Ok(c)) = listener.poll_accept(&mut cx) {
        f(c);
    }
}

/// The configuration every target uses: small queues, buffers and limits so that inputs reach
/// the "full" paths quickly, short timeouts so that the final leak check is fast.
pub fn config() -> Config {
    Config::default()
        .mtu(1500)
        .tcp_rx_buffer(4096)
        .tcp_tx_buffer(4096)
        .max_connections(6)
        .syn_backlog(3)
        .syn_timeout(Duration::from_secs(2))
        .accept_queue(2)
        .ingress_queue(8)
        .egress_queue(8)
        .close_timeout(Duration::from_secs(3))
        .tcp_timeout(Some(Duration::from_secs(10)))
        .runner_batch(4)
        .random_seed(0x5eed)
        .udp_queue(8)
        .udp_queue_bytes(8 * 1024)
        .icmp_queue(4)
        .reassembly_max_datagrams(4)
        .reassembly_max_bytes(16 * 1024)
        .reassembly_timeout(Duration::from_secs(2))
}

/// Whether the stack of an input verifies transport checksums: inputs of even length do.
fn verifies_checksums(data: &[u8]) -> bool {
    data.len().is_multiple_of(2)
}

/// Most operations one input may run: keeps every execution short.
const MAX_OPS: usize = 256;
/// The port the peer connects to (at the test kit's `TARGET_ADDR`).
const TARGET_PORT: u16 = 443;
/// Bytes of buffer each way of every peer socket.
const PEER_BUFFER: usize = 8192;

// ----- reading the fuzz input -----

/// Reads fields from the fuzz input; an exhausted input reads as zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn i16(&mut self) -> i16 {
        self.u16() as i16
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

// ----- the invariant checker -----

/// The stack plus the bookkeeping needed to check its counters against what was done to it.
pub struct Checked {
    /// The stack under test.
    pub stack: Rc<FuzzStack>,
    config: Config,
    pushed: u64,
    refused: u64,
    taken: u64,
    last_deadline: Option<Instant>,
}

impl Checked {
    /// A fresh stack with [`config`], verifying transport checksums or not
    /// (`Config::verify_checksums`: off, damaged packets reach smoltcp and the UDP/ICMP paths).
    pub fn new(verify_checksums: bool) -> Self {
        let config = config().verify_checksums(verify_checksums);
        Checked {
            stack: Rc::new(FuzzStack::new(config.clone(), ManualClock::default())),
            config,
            pushed: 0,
            refused: 0,
            taken: 0,
            last_deadline: None,
        }
    }

    /// Offers a packet to the stack, counting whether it was taken or refused.
    pub fn push(&mut self, packet: Vec<u8>) {
        match self.stack.push_ingress(packet) {
            Ok(()) => self.pushed += 1,
            Err(_) => self.refused += 1,
        }
    }

    /// Runs the runner until the ingress queue is drained, taking every packet it emits (and
    /// checking each), then checks the counters. Returns the emitted packets.
    pub fn run(&mut self, open_handles: usize) -> Vec<Vec<u8>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        // Every pass processes at least one packet once the egress queue was drained, so this
        // bound (queue length plus slack) is only hit if the runner stops making progress.
        for _ in 0..(self.config.ingress_queue * 4 + 8) {
            let status = self.stack.poll_runner(&mut cx);
            self.last_deadline = status.deadline;
            let mut taken_now = 0;
            while let Poll::Ready(p) = self.stack.poll_egress(&mut cx) {
                check_emitted(&p, self.config.mtu);
                out.push(p);
                taken_now += 1;
                assert!(
                    taken_now <= self.config.egress_queue,
                    "egress queue grew beyond its bound"
                );
            }
            self.taken += taken_now as u64;
            if !status.more && self.stack.stats().packets_in == self.pushed {
                break;
            }
        }
        self.check(open_handles);
        out
    }

    /// Checks the counters (see the crate documentation).
    pub fn check(&self, open_handles: usize) {
        let s: Stats = self.stack.stats();
        let c = &self.config;
        assert_eq!(s.packets_in, self.pushed, "ingress not drained: {s}");
        assert_eq!(s.drops.ingress_full, self.refused, "{s}");
        assert_eq!(s.packets_out, self.taken, "{s}");
        let d = &s.drops;
        let dropped = d.malformed
            + d.bad_checksum
            + d.unknown_protocol
            + d.filtered
            + d.reassembly
            + d.udp_queue_full
            + d.icmp_queue_full
            + d.icmp_unhandled;
        assert!(dropped <= s.packets_in, "more drops than packets: {s}");
        assert!(s.udp.queued <= c.udp_queue as u64, "{s}");
        assert!(s.udp.queued_bytes <= c.udp_queue_bytes as u64, "{s}");
        assert!(s.udp.datagrams_in <= s.packets_in, "{s}");
        let t = &s.tcp;
        assert!(t.syn_received <= c.syn_backlog as u64, "{s}");
        assert!(t.accept_pending <= c.accept_queue as u64, "{s}");
        assert!(
            t.syn_received + t.accept_pending + t.open + t.closing <= c.max_connections as u64,
            "{s}"
        );
        assert_eq!(t.open, open_handles as u64, "open ≠ handles held: {s}");
        assert!(t.accepted <= s.packets_in, "{s}");
    }

    /// Whether every table is empty.
    fn is_empty(&self) -> bool {
        let t = self.stack.stats().tcp;
        t.syn_received + t.accept_pending + t.open + t.closing == 0
    }

    /// The end of every input: with no handle left and no peer answering, simulated time passes
    /// until every timeout fired. Then every table must be empty and the runner idle.
    pub fn finish(mut self) {
        // syn_timeout + close_timeout + tcp_timeout + slack, one second at a time.
        for _ in 0..20 {
            accept_all(&self.stack, drop);
            self.stack.clock().advance(1000);
            self.run(0);
        }
        let s = self.stack.stats();
        assert!(self.is_empty(), "connections leaked: {s}");
        assert_eq!(
            self.last_deadline, None,
            "an empty stack still has a timer: {s}"
        );
    }
}

impl Default for Checked {
    /// A stack that verifies checksums (the default configuration).
    fn default() -> Self {
        Self::new(true)
    }
}

/// Asserts that a packet the stack emitted is well formed and within the MTU: a valid IP
/// header, and for an unfragmented TCP or UDP packet, a valid checksum.
fn check_emitted(p: &[u8], mtu: usize) {
    assert!(p.len() <= mtu, "packet of {} bytes > MTU {mtu}", p.len());
    let (src, dst, protocol, payload) = match p.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(p).expect("emitted IPv4 header");
            assert!(ip.verify_checksum(), "emitted IPv4 checksum");
            assert_eq!(usize::from(ip.total_len()), p.len());
            if ip.more_frags() || ip.frag_offset() != 0 {
                return;
            }
            (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                ip.next_header(),
                ip.payload(),
            )
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(p).expect("emitted IPv6 header");
            (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip.next_header(),
                ip.payload(),
            )
        }
        _ => panic!("emitted a packet that is not IP"),
    };
    match protocol {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).expect("emitted TCP header");
            assert!(tcp.verify_checksum(&src, &dst), "emitted TCP checksum");
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(payload).expect("emitted UDP header");
            assert!(udp.verify_checksum(&src, &dst), "emitted UDP checksum");
        }
        // ICMP echo replies and IPv6 fragments: the IP header was checked above.
        _ => {}
    }
}

// ----- crafting packets -----

/// What the last segment seen on a connection said, for crafting believable segments.
#[derive(Debug, Clone, Copy)]
struct SeqState {
    /// The next sequence number the stack will send (seq + segment length of its last segment).
    stack_next: TcpSeqNumber,
    /// The sequence number the stack expects from the peer (its last ACK).
    stack_expects: TcpSeqNumber,
}

/// `seq` moved by `delta`, wrapping (smoltcp's `+ usize` panics on values above `i32::MAX`).
fn offset(seq: TcpSeqNumber, delta: i32) -> TcpSeqNumber {
    TcpSeqNumber(seq.0.wrapping_add(delta))
}

// ----- target (a): arbitrary bytes -----

/// Target (a): the input is a sequence of packets, each `[flags, len_lo, len_hi, bytes…]`.
/// Flag bit 0 repairs the packet's checksums, bit 1 advances the clock by 100 ms × the upper
/// bits, bit 2 runs the runner after this packet (otherwise packets pile up in the ingress
/// queue, which is bounded).
pub fn ingress_bytes(data: &[u8]) {
    let mut input = Input { data };
    // Half the inputs run with checksum verification off (chosen by length, so that the
    // meaning of the bytes does not change).
    let mut stack = Checked::new(verifies_checksums(data));
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        let flags = input.u8();
        let len = usize::from(input.u16()) % 2048;
        let mut packet = input.bytes(len).to_vec();
        if flags & 1 != 0 {
            repair_checksums(&mut packet);
        }
        if flags & 2 != 0 {
            stack.stack.clock().advance(u64::from(flags >> 3) * 100);
        }
        stack.push(packet);
        if flags & 4 != 0 {
            stack.run(0);
        }
    }
    stack.run(0);
    stack.finish();
}

// ----- targets (b) and (c): sessions -----

/// Which operations a session input mostly selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Packets,
    AppOps,
}

/// One operation of a session.
#[derive(Debug, Clone, Copy)]
enum Op {
    Exchange,
    DropToStack,
    DropToPeer,
    Duplicate,
    Reorder,
    Advance,
    Inject,
    SpoofedSyn,
    MutateReplay,
    PeerApp,
    StackApp,
}

const PACKET_OPS: [Op; 16] = [
    Op::Exchange,
    Op::Exchange,
    Op::DropToStack,
    Op::DropToPeer,
    Op::Duplicate,
    Op::Reorder,
    Op::Advance,
    Op::Inject,
    Op::Inject,
    Op::Inject,
    Op::Inject,
    Op::SpoofedSyn,
    Op::MutateReplay,
    Op::MutateReplay,
    Op::PeerApp,
    Op::StackApp,
];

const APP_OPS: [Op; 16] = [
    Op::Exchange,
    Op::Exchange,
    Op::Exchange,
    Op::DropToStack,
    Op::Duplicate,
    Op::Advance,
    Op::Advance,
    Op::Inject,
    Op::SpoofedSyn,
    Op::PeerApp,
    Op::PeerApp,
    Op::PeerApp,
    Op::StackApp,
    Op::StackApp,
    Op::StackApp,
    Op::StackApp,
];

/// A stack with a smoltcp peer, the application's handles, and a link the input impairs.
struct Session {
    stack: Checked,
    peer: Peer,
    peer_socks: Vec<SocketHandle>,
    next_port: u16,
    conns: Vec<Conn>,
    seq: BTreeMap<IpEndpoint, SeqState>,
    /// Packets in flight from the stack to the peer (the peer's wire holds the other way).
    to_peer: VecDeque<Vec<u8>>,
    /// Recent packets the peer sent, for mutated replays.
    recent: VecDeque<Vec<u8>>,
    spoofed: u32,
}

impl Session {
    /// A stack and a peer with one established, accepted connection that carried a little data
    /// each way.
    fn new(verify_checksums: bool) -> Self {
        let mut s = Session {
            stack: Checked::new(verify_checksums),
            peer: Peer::new(),
            peer_socks: Vec::new(),
            next_port: 40000,
            conns: Vec::new(),
            seq: BTreeMap::new(),
            to_peer: VecDeque::new(),
            recent: VecDeque::new(),
            spoofed: 0,
        };
        let h = s.peer_connect();
        s.exchange(8);
        s.accept();
        assert_eq!(s.conns.len(), 1, "handshake: {}", s.stack.stack.stats());
        s.peer.socket(h).send_slice(b"hello").unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(s.conns[0].poll_write(&mut cx, b"world").is_ready());
        s.exchange(8);
        s
    }

    fn peer_connect(&mut self) -> SocketHandle {
        let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), TARGET_PORT);
        let h = self.peer.connect(self.next_port, target, PEER_BUFFER);
        self.next_port += 1;
        self.peer_socks.push(h);
        h
    }

    fn accept(&mut self) {
        accept_all(&self.stack.stack, |c| self.conns.push(c));
    }

    fn now(&self) -> smoltcp::time::Instant {
        self.stack.stack.clock().now()
    }

    /// Moves packets both ways for up to `rounds` rounds.
    fn exchange(&mut self, rounds: usize) {
        for _ in 0..rounds {
            let now = self.now();
            while let Some(p) = self.to_peer.pop_front() {
                self.peer.wire.to_peer.push_back(p);
            }
            self.peer.poll(now);
            let mut moved = false;
            while let Some(p) = self.peer.wire.to_stack.pop_front() {
                self.note_to_stack(&p);
                self.stack.push(p);
                moved = true;
            }
            let out = self.stack.run(self.conns.len());
            moved |= !out.is_empty();
            for p in out {
                self.note_from_stack(&p);
                self.to_peer.push_back(p);
            }
            if !moved {
                return;
            }
        }
    }

    fn note_to_stack(&mut self, p: &[u8]) {
        if self.recent.len() == 8 {
            self.recent.pop_front();
        }
        self.recent.push_back(p.to_vec());
    }

    fn note_from_stack(&mut self, p: &[u8]) {
        if let Some(t) = tcp_info(p) {
            let entry = self.seq.entry(t.dst).or_insert(SeqState {
                stack_next: t.seq,
                stack_expects: t.seq,
            });
            entry.stack_next = offset(t.seq, t.segment_len as i32);
            if let Some(ack) = t.ack {
                entry.stack_expects = ack;
            }
        }
    }

    /// Runs the stack on whatever was pushed directly (not through the peer).
    fn run_stack(&mut self) {
        for p in self.stack.run(self.conns.len()) {
            self.note_from_stack(&p);
            self.to_peer.push_back(p);
        }
    }

    fn step(&mut self, op: Op, input: &mut Input<'_>) {
        let mut cx = Context::from_waker(Waker::noop());
        match op {
            Op::Exchange => self.exchange(usize::from(input.u8() % 8) + 1),
            Op::DropToStack => {
                self.peer.poll(self.now());
                let n = usize::from(input.u8() % 4);
                for _ in 0..n {
                    self.peer.wire.to_stack.pop_front();
                }
            }
            Op::DropToPeer => {
                let n = usize::from(input.u8() % 4);
                for _ in 0..n {
                    self.to_peer.pop_front();
                }
            }
            Op::Duplicate => {
                if let Some(p) = self.recent.back().cloned() {
                    self.stack.push(p);
                    self.run_stack();
                }
                if let Some(p) = self.to_peer.front().cloned() {
                    self.to_peer.push_back(p);
                }
            }
            Op::Reorder => {
                let n = self.to_peer.len();
                if n >= 2 {
                    let i = usize::from(input.u8()) % n;
                    self.to_peer.swap(0, i);
                }
                let n = self.peer.wire.to_stack.len();
                if n >= 2 {
                    let i = usize::from(input.u8()) % n;
                    self.peer.wire.to_stack.swap(0, i);
                }
            }
            Op::Advance => {
                let ms = u64::from(input.u8()) * 20;
                self.stack.stack.clock().advance(ms);
                self.run_stack();
            }
            Op::Inject => self.inject(input),
            Op::SpoofedSyn => {
                self.spoofed += 1;
                let v6 = input.u8() & 1 == 1;
                let n = self.spoofed;
                let src = if v6 {
                    IpEndpoint::new(
                        IpAddress::Ipv6(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 9, n as u16)),
                        1000 + (n % 60000) as u16,
                    )
                } else {
                    IpEndpoint::new(
                        IpAddress::Ipv4(Ipv4Address::new(10, 9, (n >> 8) as u8, n as u8)),
                        1000 + (n % 60000) as u16,
                    )
                };
                let dst = if v6 {
                    IpEndpoint::new(
                        IpAddress::Ipv6(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
                        input.u16(),
                    )
                } else {
                    IpEndpoint::new(IpAddress::Ipv4(TARGET), TARGET_PORT)
                };
                let seg = Segment {
                    control: TcpControl::Syn,
                    seq: TcpSeqNumber(i32::from(input.i16())),
                    ack: None,
                    window: input.u16(),
                    window_scale: Some(input.u8() % 16),
                    mss: Some(input.u16()),
                    sack_permitted: true,
                    ..Segment::new(src, dst)
                };
                self.stack.push(seg.build());
                self.run_stack();
            }
            Op::MutateReplay => {
                let Some(mut p) = self.recent.back().cloned() else {
                    return;
                };
                let at = usize::from(input.u16());
                let val = input.u8();
                let mode = input.u8();
                if !p.is_empty() {
                    let i = at % p.len();
                    p[i] = val;
                    if mode & 1 == 1 {
                        p.truncate(i);
                    }
                    if mode & 2 == 2 {
                        repair_checksums(&mut p);
                    }
                }
                self.stack.push(p);
                self.run_stack();
            }
            Op::PeerApp => {
                if self.peer_socks.is_empty() {
                    return;
                }
                let which = input.u8();
                let h = self.peer_socks[usize::from(which) % self.peer_socks.len()];
                match input.u8() % 6 {
                    0 if self.peer_socks.len() < 4 => {
                        self.peer_connect();
                    }
                    0 | 1 => {
                        let n = usize::from(input.u8()) * 32;
                        let data = vec![0xa5u8; n];
                        let _ = self.peer.socket(h).send_slice(&data);
                    }
                    2 => {
                        let mut buf = [0u8; 4096];
                        let _ = self.peer.socket(h).recv_slice(&mut buf);
                    }
                    3 => self.peer.socket(h).close(),
                    4 => self.peer.socket(h).abort(),
                    _ => {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = self.peer.socket(h).recv_slice(&mut buf) {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                }
            }
            Op::StackApp => {
                self.accept();
                if self.conns.is_empty() {
                    return;
                }
                let i = usize::from(input.u8()) % self.conns.len();
                match input.u8() % 6 {
                    0 | 1 => {
                        let mut buf = vec![0u8; usize::from(input.u8()) * 32 + 1];
                        if let Poll::Ready(Ok(n)) = self.conns[i].poll_read(&mut cx, &mut buf) {
                            assert!(n <= buf.len());
                        }
                    }
                    2 => {
                        let data = vec![0x5au8; usize::from(input.u8()) * 32];
                        if let Poll::Ready(Ok(n)) = self.conns[i].poll_write(&mut cx, &data) {
                            assert!(n <= data.len());
                        }
                    }
                    3 => {
                        let _ = self.conns[i].shutdown_write();
                        // Writing after shutdown must fail, never queue data after the FIN.
                        let r = self.conns[i].poll_write(&mut cx, b"late");
                        assert!(matches!(r, Poll::Ready(Err(_))), "{r:?}");
                    }
                    4 => {
                        self.conns[i].abort();
                        let mut buf = [0u8; 8];
                        let r = self.conns[i].poll_read(&mut cx, &mut buf);
                        assert_eq!(
                            r,
                            Poll::Ready(Err(netstack_core::TcpError::ConnectionAborted))
                        );
                    }
                    _ => {
                        drop(self.conns.swap_remove(i));
                    }
                }
                self.run_stack();
            }
        }
    }

    /// Injects a crafted segment on a known connection, with sequence and acknowledgement
    /// numbers near the real ones.
    fn inject(&mut self, input: &mut Input<'_>) {
        if self.seq.is_empty() {
            return;
        }
        let which = usize::from(input.u8()) % self.seq.len();
        let (&remote, &state) = self.seq.iter().nth(which).expect("index in range");
        let flags = input.u8();
        let control = match flags & 7 {
            0 | 1 => TcpControl::None,
            2 => TcpControl::Psh,
            3 => TcpControl::Syn,
            4 => TcpControl::Fin,
            5 => TcpControl::Rst,
            _ => TcpControl::None,
        };
        let seq_delta = i32::from(input.i16()) >> (input.u8() % 16);
        let ack_delta = i32::from(input.i16()) >> (input.u8() % 16);
        let seg = Segment {
            control,
            seq: offset(state.stack_expects, seq_delta),
            ack: (flags & 8 != 0).then_some(offset(state.stack_next, ack_delta)),
            window: match flags >> 6 {
                0 => 0,
                1 => 1,
                2 => u16::MAX,
                _ => input.u16(),
            },
            window_scale: (flags & 16 != 0).then(|| input.u8() % 20),
            mss: (flags & 32 != 0).then(|| input.u16()),
            sack_permitted: flags & 16 != 0,
            ..Segment::new(
                remote,
                IpEndpoint::new(IpAddress::Ipv4(TARGET), TARGET_PORT),
            )
        };
        // The remote endpoint of a spoofed or second connection may not be IPv4; the target
        // must match its version.
        let seg = match remote.addr {
            IpAddress::Ipv6(_) => Segment {
                dst: IpEndpoint::new(
                    IpAddress::Ipv6(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
                    TARGET_PORT,
                ),
                ..seg
            },
            IpAddress::Ipv4(_) => seg,
        };
        let len = usize::from(input.u8()) * 8;
        let payload = vec![0xeeu8; len];
        let mut p = seg.payload(&payload).build();
        let cut = usize::from(input.u8() % 32);
        if cut > 0 && cut < p.len() && input.u8() & 1 == 1 {
            p.truncate(p.len() - cut);
        }
        self.stack.push(p);
        self.run_stack();
    }

    /// Ends the session: the peer goes away, the application drops everything, and the
    /// timeouts must empty every table.
    fn finish(mut self) {
        if std::env::var_os("NETSTACK_FUZZ_VERBOSE").is_some() {
            eprintln!("{}\n", self.stack.stack.stats());
        }
        self.conns.clear();
        self.stack.run(0);
        self.stack.finish();
    }
}

fn session(data: &[u8], mode: Mode) {
    let mut input = Input { data };
    let mut s = Session::new(verifies_checksums(data));
    let table = match mode {
        Mode::Packets => &PACKET_OPS,
        Mode::AppOps => &APP_OPS,
    };
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        let op = table[usize::from(input.u8() % 16)];
        s.step(op, &mut input);
    }
    s.exchange(16);
    s.finish();
}

/// Target (b): packet-level operations against a live connection (see the crate docs).
pub fn tcp_packets(data: &[u8]) {
    session(data, Mode::Packets);
}

/// Target (c): application operations interleaved with packets and time (see the crate docs).
pub fn tcp_app_ops(data: &[u8]) {
    session(data, Mode::AppOps);
}

/// A fuzz target: runs one input, panics if a property fails.
pub type Target = fn(&[u8]);

/// The targets by name, for drivers.
pub const TARGETS: [(&str, Target); 3] = [
    ("ingress_bytes", ingress_bytes),
    ("tcp_packets", tcp_packets),
    ("tcp_app_ops", tcp_app_ops),
];

/// A small seed corpus for `target` (what `stable_driver --make-corpus` writes to
/// `fuzz/corpus/<target>/`): valid packets and typical operation sequences, so that fuzzing
/// starts from inputs that reach deep states.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let frame = |flags: u8, p: &[u8]| {
        let mut v = vec![flags];
        v.extend_from_slice(&(p.len() as u16).to_le_bytes());
        v.extend_from_slice(p);
        v
    };
    let v4 =
        |a: u8, port: u16| IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 1, 0, a)), port);
    let v6 = |a: u16, port: u16| {
        IpEndpoint::new(
            IpAddress::Ipv6(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, a)),
            port,
        )
    };
    // SYN options (window scale 7, MSS 1460, SACK permitted) on every segment.
    let seg = |src: IpEndpoint, dst: IpEndpoint, control, seq, ack| Segment {
        control,
        ack,
        ..Segment::syn(src, dst, seq).sack_permitted()
    };
    match target {
        "ingress_bytes" => {
            let syn4 = seg(v4(1, 4000), v4(2, 80), TcpControl::Syn, 100, None).build();
            let syn6 = seg(v6(1, 4000), v6(2, 80), TcpControl::Syn, 100, None).build();
            // A SYN, then (after the stack's SYN-ACK, whose ISN the input cannot know) an ACK
            // with data and a FIN, then a RST: mutations of the ACK numbers find the handshake.
            let client = |control, seq, ack| seg(v4(1, 4000), v4(2, 80), control, seq, ack);
            let acked = Some(TcpSeqNumber(1));
            let ack = client(TcpControl::Psh, 101, acked)
                .payload(b"GET / HTTP/1.0\r\n\r\n")
                .build();
            let fin = client(TcpControl::Fin, 119, acked).build();
            let rst = client(TcpControl::Rst, 120, None).build();
            let mut session = Vec::new();
            for p in [&syn4, &ack, &fin, &rst] {
                session.extend(frame(4 | 2 | (1 << 3), p));
            }
            let mut flood = Vec::new();
            for i in 0..12u8 {
                let p = seg(
                    v4(i, 4000 + u16::from(i)),
                    v4(2, 80),
                    TcpControl::Syn,
                    7,
                    None,
                )
                .build();
                flood.extend(frame(if i % 3 == 0 { 4 } else { 0 }, &p));
            }
            let mut garbage = frame(1, &syn4[..30]);
            garbage.extend(frame(0, &[0x45, 0, 0, 20]));
            garbage.extend(frame(5, &[0x60; 60]));
            vec![frame(4, &syn4), frame(4, &syn6), session, flood, garbage]
        }
        "tcp_packets" | "tcp_app_ops" => {
            // Op indices into the mode's table, followed by their argument bytes.
            let mut out = vec![
                vec![0, 4, 0, 4],
                vec![7, 0, 8 | 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3],
                vec![7, 0, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                vec![
                    11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11, 1, 80, 0, 0, 0, 0, 0, 0, 0, 0, 6, 200,
                ],
                vec![15, 0, 2, 40, 0, 7, 15, 0, 3, 0, 7, 6, 250, 6, 250],
                vec![14, 0, 1, 100, 0, 2, 3, 14, 0, 3, 0, 4, 12, 0, 0, 4],
            ];
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            for len in [32usize, 96, 200] {
                let mut v = Vec::with_capacity(len);
                for _ in 0..len {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    v.push(state as u8);
                }
                out.push(v);
            }
            out
        }
        _ => Vec::new(),
    }
}
