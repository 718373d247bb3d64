//! Deterministic in-memory simulation: a `netstack_core::Stack` (no lock, manual clock, no
//! executor) and a smoltcp host as its peer, joined by a link that an [`Impairer`] can make
//! lossy, all under simulated time. The same seed always gives the same run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use netstack_core::{Clock, Config, Instant, RunnerStatus, Stack, TcpListener, TcpStream};
use netstack_testkit::{ManualTime, Peer};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::impair::{Impairer, Impairment};

pub use netstack_testkit::{PEER_ADDR, TARGET_ADDR};

/// A clock that only moves when the simulation says so.
#[derive(Debug, Default)]
pub struct ManualClock(pub ManualTime);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// The stack under simulation.
pub type SimStack = Stack<NoopRawMutex, ManualClock>;
/// A connection accepted from a [`SimStack`].
pub type SimConn = TcpStream<Rc<SimStack>>;

/// A waker-less context: the simulation polls everything on every step.
pub fn noop_cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// One direction of the simulated link: packets in flight, ordered by arrival time.
struct Lane {
    impairer: Option<Impairer>,
    in_flight: BinaryHeap<Reverse<(i64, u64, Vec<u8>)>>,
    sent: u64,
}

impl Lane {
    fn new(impairment: Option<Impairment>) -> Self {
        Lane {
            impairer: impairment.map(Impairer::new),
            in_flight: BinaryHeap::new(),
            sent: 0,
        }
    }

    fn send(&mut self, now: Instant, packet: Vec<u8>) {
        let copies = match &mut self.impairer {
            Some(imp) => imp.decide(packet),
            None => vec![(Duration::ZERO, packet)],
        };
        for (delay, p) in copies {
            let at = now.total_micros() + delay.as_micros() as i64;
            self.sent += 1;
            self.in_flight.push(Reverse((at, self.sent, p)));
        }
    }

    fn due(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.in_flight.peek() {
            Some(Reverse((at, _, _))) if *at <= now.total_micros() => {
                self.in_flight.pop().map(|Reverse((_, _, p))| p)
            }
            _ => None,
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight
            .peek()
            .map(|Reverse((at, _, _))| Instant::from_micros(*at))
    }
}

/// A stack, a smoltcp peer and the link between them.
pub struct Sim {
    /// The stack under test.
    pub stack: Rc<SimStack>,
    peer: Peer,
    up: Lane,
    down: Lane,
    /// The runner's last answer.
    pub last_status: Option<RunnerStatus>,
    /// Packets the stack refused because its ingress queue was full.
    pub refused: u64,
    /// While set, everything the stack emits is lost (the peer went silent).
    pub blackhole_down: bool,
}

impl Sim {
    /// A simulation of a stack with `config`, over a link impaired by `impairment` (both
    /// directions; the stack → peer direction uses the seed + 1).
    pub fn new(config: Config, impairment: Option<Impairment>) -> Sim {
        let stack = Rc::new(SimStack::new(config, ManualClock::default()));
        Sim {
            stack,
            peer: Peer::new(),
            up: Lane::new(impairment),
            down: Lane::new(impairment.map(|i| Impairment {
                seed: i.seed.wrapping_add(1),
                ..i
            })),
            last_status: None,
            refused: 0,
            blackhole_down: false,
        }
    }

    /// The simulated time.
    pub fn now(&self) -> Instant {
        self.stack.clock().now()
    }

    /// Opens a peer connection from `PEER_ADDR:port` to `TARGET_ADDR:target_port` with
    /// `buffer` bytes of buffers each way.
    pub fn connect(&mut self, port: u16, target_port: u16, buffer: usize) -> SocketHandle {
        let target = IpEndpoint::new(IpAddress::Ipv4(TARGET_ADDR), target_port);
        self.peer.connect(port, target, buffer)
    }

    /// A peer socket.
    pub fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.peer.socket(h)
    }

    /// Takes the next accepted connection, if any.
    pub fn accept(&self) -> Option<SimConn> {
        let listener: TcpListener<Rc<SimStack>> = TcpListener::new(self.stack.clone());
        match listener.poll_accept(&mut noop_cx()) {
            Poll::Ready(Ok(c)) => Some(c),
            Poll::Ready(Err(e)) => panic!("accept failed: {e}"),
            Poll::Pending => None,
        }
    }

    /// Opens a peer connection like [`Sim::connect`] and runs the link until the stack accepts
    /// it (at most 2 s of simulated time): the peer's socket and the stack's stream.
    ///
    /// # Panics
    /// If the handshake does not complete in that time.
    pub fn open(&mut self, port: u16, target_port: u16, buffer: usize) -> (SocketHandle, SimConn) {
        self.open_within(port, target_port, buffer, Duration::from_secs(2))
    }

    /// [`Sim::open`] with `within` of simulated time for the handshake (a lossy link may need
    /// retransmitted SYNs).
    ///
    /// # Panics
    /// If the handshake does not complete in that time.
    pub fn open_within(
        &mut self,
        port: u16,
        target_port: u16,
        buffer: usize,
        within: Duration,
    ) -> (SocketHandle, SimConn) {
        let h = self.connect(port, target_port, buffer);
        let mut conn = None;
        self.run_until(within, Duration::from_millis(10), |s| {
            conn = s.accept();
            conn.is_some()
        });
        let conn = conn.unwrap_or_else(|| panic!("handshake not done: {}", self.stack.stats()));
        (h, conn)
    }

    /// Injects a raw packet into the stack, bypassing the link.
    pub fn inject(&mut self, packet: Vec<u8>) {
        if self.stack.push_ingress(packet).is_err() {
            self.refused += 1;
        }
    }

    /// Drops every packet in flight in both directions (a link outage).
    pub fn cut(&mut self) {
        self.up.in_flight.clear();
        self.down.in_flight.clear();
        self.peer.wire.clear();
    }

    /// Packets the stack emitted and the link lost so far, both directions.
    pub fn link_stats(&self) -> [Option<crate::impair::ImpairStats>; 2] {
        [
            self.up.impairer.as_ref().map(|i| i.stats),
            self.down.impairer.as_ref().map(|i| i.stats),
        ]
    }

    /// One step at the current time: the peer runs, packets due cross the link, the stack
    /// runs. Returns whether any packet moved.
    pub fn step(&mut self) -> bool {
        let now = self.now();
        let mut moved = false;
        self.peer.poll(now);
        while let Some(p) = self.peer.wire.to_stack.pop_front() {
            self.up.send(now, p);
            moved = true;
        }
        while let Some(p) = self.up.due(now) {
            if self.stack.push_ingress(p).is_err() {
                self.refused += 1;
            }
            moved = true;
        }
        let mut cx = noop_cx();
        loop {
            let status = self.stack.poll_runner(&mut cx);
            self.last_status = Some(status);
            let mut out = 0;
            while let Poll::Ready(p) = self.stack.poll_egress(&mut cx) {
                if !self.blackhole_down {
                    self.down.send(now, p);
                }
                out += 1;
            }
            moved |= out > 0;
            if !status.more && out == 0 {
                break;
            }
        }
        while let Some(p) = self.down.due(now) {
            self.peer.wire.to_peer.push_back(p);
            moved = true;
        }
        moved
    }

    /// The next time something is scheduled: a packet arrives, the stack's or the peer's
    /// timer fires.
    fn next_event(&mut self) -> Option<Instant> {
        let now = self.now();
        [
            self.up.next_arrival(),
            self.down.next_arrival(),
            self.last_status.and_then(|s| s.deadline),
            self.peer.poll_at(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs steps, calling `app` after each, until `app` returns true or `limit` of simulated
    /// time passed. Time jumps to the next event when nothing moved (at least 100 µs, at most
    /// `idle_step`). Returns whether `app` returned true.
    pub fn run_until(
        &mut self,
        limit: Duration,
        idle_step: Duration,
        mut app: impl FnMut(&mut Sim) -> bool,
    ) -> bool {
        let end = self.now() + netstack_core::Duration::from_micros(limit.as_micros() as u64);
        while self.now() < end {
            let moved = self.step();
            if app(self) {
                return true;
            }
            let now = self.now();
            let min = now + netstack_core::Duration::from_micros(100);
            let max = now + netstack_core::Duration::from_micros(idle_step.as_micros() as u64);
            let next = if moved {
                min
            } else {
                self.next_event().unwrap_or(max).clamp(min, max)
            };
            self.stack.clock().0.set(next);
        }
        false
    }
}
