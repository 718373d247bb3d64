//! The UDP relay: one connected kernel socket per (source, destination) flow, closed after an
//! idle timeout, at most a bounded number of flows; replies go back to the flow's source,
//! appearing to come from its original destination, and a "port unreachable" from the target
//! (`ECONNREFUSED` on the flow's socket) goes back as an ICMP port unreachable that quotes the
//! flow's first datagram, so the client's connected socket sees `ECONNREFUSED` too.
//!
//! Generic over where datagrams come from and where replies go ([`FlowDatagram`],
//! [`Replies`]): the forwarders use netstack's UDP socket; the benchmark's peer forwarders and
//! kernel relay use the same [`FlowTable`] and [`Flow`] with their stacks' sockets.

use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use netstack_core::{ErrorQuote, StackPtr, UdpDatagram, UdpSendHalf, Unreachable};

use super::executor::{Executor, KernelDatagram};
use super::udp_batch::MAX_BATCH;
use super::udp_recv::RecvBatch;
pub use super::udp_table::{FlowSocket, FlowTable, TableFlow};

/// Datagrams buffered per flow on their way out; more are dropped (UDP may lose datagrams,
/// memory may not grow).
pub const FLOW_QUEUE: usize = 64;
/// Longest the demultiplexer waits for a flow with a full queue to take a datagram (it holds
/// every other flow's datagrams meanwhile, and through them the stack's UDP queue and the
/// device: see `netstack_core::Config::udp_hold`). A flow that did not take one in time is
/// marked stalled: datagrams for it are dropped without waiting until it takes one again.
pub const FLOW_HOLD: Duration = Duration::from_millis(5);
/// Largest datagram the relay reads back from a target.
pub const MAX_DATAGRAM: usize = 65536;

/// Limits of the UDP relay.
#[derive(Debug, Clone, Copy)]
pub struct UdpLimits {
    /// Close a flow's outbound socket after this long without traffic in either direction
    /// (datagrams its table sent directly are seen at the next idle check: a flow that only
    /// sends closes between one and two timeouts after its last datagram).
    pub idle_timeout: Duration,
    /// Maximum concurrent flows; datagrams of new flows beyond it are dropped.
    pub max_flows: usize,
}

/// Counters of a UDP relay, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct UdpRelayStats {
    /// Flows opened.
    pub flows: AtomicU64,
    /// Datagrams dropped (flow queue full, too many flows, no socket for the flow, or a
    /// reply lost in a batched read: see [`udp_recv`](super::udp_recv)).
    pub dropped: AtomicU64,
    /// Datagrams sent to targets.
    pub forwarded: AtomicU64,
    /// Datagrams sent back to sources.
    pub replied: AtomicU64,
    /// Port-unreachable errors passed back to sources.
    pub refused: AtomicU64,
}

impl std::fmt::Display for UdpRelayStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "udp relay: flows {}, dropped {}, forwarded {}, replied {}, refused {}",
            n(&self.flows),
            n(&self.dropped),
            n(&self.forwarded),
            n(&self.replied),
            n(&self.refused)
        )
    }
}

/// A datagram a flow relays.
pub trait FlowDatagram: 'static {
    /// What an error about the datagram quotes (`()` where the source cannot be told).
    type Quote: 'static;
    /// The payload.
    fn payload(&self) -> &[u8];
    /// The quote of this datagram for a later error.
    fn quote(&self) -> Self::Quote;
}

/// A datagram of netstack's UDP socket (it keeps its packet: no copy, and a quote).
impl FlowDatagram for UdpDatagram {
    type Quote = ErrorQuote;

    fn payload(&self) -> &[u8] {
        UdpDatagram::payload(self)
    }

    fn quote(&self) -> ErrorQuote {
        UdpDatagram::quote(self)
    }
}

/// A bare payload (stacks that cannot send ICMP errors).
impl FlowDatagram for Vec<u8> {
    type Quote = ();

    fn payload(&self) -> &[u8] {
        self
    }

    fn quote(&self) {}
}

/// Where a flow's replies go: back into the stack (or out of a listening socket).
pub trait Replies: Clone + 'static {
    /// What [`Replies::refused`] quotes.
    type Quote: 'static;
    /// Sends `payload` to `to` as if from `from`.
    fn send_reply(
        &self,
        payload: &[u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<()>>;
    /// Sends every payload of `payloads` (a batch the flow read at once), in order, to `to` as
    /// if from `from`; by default one [`send_reply`](Self::send_reply) each.
    fn send_replies(
        &self,
        payloads: &[&[u8]],
        from: SocketAddr,
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<()>> {
        async move {
            for p in payloads {
                self.send_reply(p, from, to).await?;
            }
            Ok(())
        }
    }
    /// The flow's target answered with "port unreachable": tell the source, about `quote`.
    /// Returns whether an error was sent.
    fn refused(&self, quote: &Self::Quote) -> bool;
}

/// Replies through netstack's UDP socket; refusals as ICMP port unreachable.
impl<P: StackPtr + 'static> Replies for UdpSendHalf<P> {
    type Quote = ErrorQuote;

    async fn send_reply(&self, payload: &[u8], from: SocketAddr, to: SocketAddr) -> io::Result<()> {
        self.send_to(payload, from, to)
            .await
            .map_err(io::Error::from)
    }

    /// The whole batch under one lock acquisition of the stack for as many as its egress queue
    /// has room for ([`UdpSendHalf::send_to_batch`]).
    async fn send_replies(
        &self,
        payloads: &[&[u8]],
        from: SocketAddr,
        to: SocketAddr,
    ) -> io::Result<()> {
        self.send_to_batch(payloads, from, to)
            .await
            .map_err(io::Error::from)
    }

    fn refused(&self, quote: &ErrorQuote) -> bool {
        // Rate-limited and filtered by the stack (RFC 1812 / RFC 4443): an error not sent is
        // counted there.
        self.send_unreachable(quote, Unreachable::Port).is_ok()
    }
}

/// One flow: datagrams from `outgoing` go to the target; datagrams from the target go back to
/// the source as if from the original destination. Ends after the idle timeout, or when
/// `outgoing` ends.
pub struct Flow<D, R, O> {
    pub(super) outgoing: O,
    replies: R,
    src: SocketAddr,
    dst: SocketAddr,
    to: SocketAddr,
    idle: Duration,
    stats: Arc<UdpRelayStats>,
    _datagram: std::marker::PhantomData<fn() -> D>,
}

/// What woke a flow.
enum Event<D> {
    Out(Option<D>),
    In(io::Result<usize>),
    Idle,
}

impl<D, R, O> Flow<D, R, O>
where
    D: FlowDatagram,
    R: Replies<Quote = D::Quote>,
    O: Stream<Item = D> + Unpin,
{
    /// A flow from `src` to `dst`, relayed to `to` (`route`), whose datagrams come from
    /// `outgoing` (for stacks that demultiplex flows themselves; a [`FlowTable`] makes its
    /// own).
    pub fn new(
        outgoing: O,
        replies: R,
        route: (SocketAddr, SocketAddr, SocketAddr),
        idle: Duration,
        stats: Arc<UdpRelayStats>,
    ) -> Self {
        let (src, dst, to) = route;
        Flow {
            outgoing,
            replies,
            src,
            dst,
            to,
            idle,
            stats,
            _datagram: std::marker::PhantomData,
        }
    }

    /// Runs the flow on executor `E`'s sockets and timer.
    ///
    /// Replies (target → source) are read in batches and handed on in batches. Per datagram,
    /// through netstack's socket: one copy into the batch's buffer (the kernel's receive), one
    /// into the IP packet the stack builds (with the checksum pass), one by the TUN write; no
    /// allocation in the relay (the batch's buffer comes from a per-thread pool, see
    /// [`udp_recv`](super::udp_recv)), one in the stack (the packet; more for a fragmented
    /// one). Per batch of up to [`MAX_BATCH`] datagrams that were ready together: one
    /// `recvmmsg` (Linux; elsewhere one `recv` per datagram) and one acquisition of the stack's
    /// lock (more only while its egress queue is full), where each datagram took one `recv`
    /// and one acquisition before. The TUN write stays one per packet.
    ///
    /// Datagrams to the target come from `outgoing` and go out in batches (one system call
    /// per batch). A [`FlowTable`]'s flow gets only those its table could not send directly
    /// ([`udp_table`](super::udp_table)).
    ///
    /// # Errors
    /// If the flow's socket cannot be made, or a reply cannot be sent.
    pub async fn run<E: Executor>(self) -> io::Result<()> {
        let socket = match connected_socket(self.to).and_then(E::datagram) {
            Ok(s) => s,
            Err(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.run_on::<E>(Arc::new(FlowSocket::new(socket))).await
    }

    /// Runs the flow on `shared`, a socket of executor `E` that a [`FlowTable`] may also send
    /// on directly (see [`udp_table`](super::udp_table)).
    ///
    /// # Errors
    /// If a reply cannot be sent.
    pub async fn run_on<E: Executor>(
        mut self,
        shared: Arc<FlowSocket<E::Datagram>>,
    ) -> io::Result<()> {
        let socket = &shared.socket;
        // What the table has sent directly by the last idle check.
        let mut direct_seen = shared.direct.load(Ordering::Relaxed);
        // Holds a buffer only from a read until its replies are handed on.
        let mut inbound = RecvBatch::new();
        let mut batch: Vec<D> = Vec::new();
        // The flow's first datagram, for the errors about it.
        let mut quote: Option<D::Quote> = None;
        let mut last_activity = Instant::now();
        let mut timer = E::sleep_until(last_activity + self.idle);
        // Alternates which side is polled first, so neither starves the other.
        let mut out_first = true;
        loop {
            out_first = !out_first;
            let event = {
                // Made afresh each turn (it is cancel-safe), so that `inbound` is free below.
                let mut recv = pin!(socket.recv_batch(&mut inbound));
                poll_fn(|cx| {
                    let mut out = |cx: &mut std::task::Context<'_>| {
                        self.outgoing.poll_next_unpin(cx).map(Event::Out)
                    };
                    if out_first {
                        if let Poll::Ready(e) = out(cx) {
                            return Poll::Ready(e);
                        }
                    }
                    if let Poll::Ready(r) = recv.as_mut().poll(cx) {
                        return Poll::Ready(Event::In(r));
                    }
                    if !out_first {
                        if let Poll::Ready(e) = out(cx) {
                            return Poll::Ready(e);
                        }
                    }
                    Pin::new(&mut timer).poll(cx).map(|_| Event::Idle)
                })
                .await
            };
            match event {
                Event::Out(Some(d)) => {
                    last_activity = Instant::now();
                    if quote.is_none() {
                        quote = Some(d.quote());
                    }
                    // Everything queued now goes out together (one system call per batch).
                    batch.push(d);
                    let mut ended = false;
                    while batch.len() < MAX_BATCH {
                        match self.outgoing.next().now_or_never() {
                            Some(Some(d)) => batch.push(d),
                            Some(None) => {
                                ended = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    let n = batch.len();
                    let refused = send_all(socket, &mut batch, &self.stats).await;
                    // Sent (or lost): the table may send directly again once all are.
                    shared.queued.fetch_sub(n, Ordering::AcqRel);
                    if refused && quote.as_ref().is_some_and(|q| self.replies.refused(q)) {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    if ended {
                        return Ok(());
                    }
                }
                Event::Out(None) => return Ok(()),
                Event::In(Ok(_)) => {
                    last_activity = Instant::now();
                    // No allocation per batch: the payloads' slices on the stack.
                    let mut slices: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
                    let mut n = 0;
                    for (slot, d) in slices.iter_mut().zip(inbound.datagrams()) {
                        *slot = d;
                        n += 1;
                    }
                    let lost = inbound.lost() as u64;
                    if lost > 0 {
                        self.stats.dropped.fetch_add(lost, Ordering::Relaxed);
                    }
                    self.replies
                        .send_replies(&slices[..n], self.dst, self.src)
                        .await?;
                    self.stats.replied.fetch_add(n as u64, Ordering::Relaxed);
                    inbound.release();
                }
                // "Port unreachable" for an earlier datagram: pass it on. The flow stays open
                // (a server may start listening), as a kernel socket's would.
                Event::In(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if quote.as_ref().is_some_and(|q| self.replies.refused(q)) {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Other ICMP errors are dropped, as the network would.
                Event::In(Err(_)) => {}
                Event::Idle => {
                    let direct = shared.direct.load(Ordering::Relaxed);
                    if direct != direct_seen {
                        direct_seen = direct;
                        last_activity = Instant::now();
                    }
                    let until = last_activity + self.idle;
                    if Instant::now() >= until {
                        return Ok(());
                    }
                    timer = E::sleep_until(until);
                }
            }
        }
    }
}

/// Sends (and empties) `batch` on `socket`, as few system calls as the platform allows,
/// counting what went out in `stats`. A failed send is a lost datagram, as on a real network;
/// returns whether the target refused (a port unreachable about an earlier datagram, reported
/// by this send).
async fn send_all<D: FlowDatagram, K: KernelDatagram>(
    socket: &K,
    batch: &mut Vec<D>,
    stats: &UdpRelayStats,
) -> bool {
    // No allocation per batch: the payloads' slices on the stack (batches hold at most
    // MAX_BATCH datagrams).
    let mut slices: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
    for (slot, d) in slices.iter_mut().zip(batch.iter()) {
        *slot = d.payload();
    }
    let payloads = &slices[..batch.len().min(MAX_BATCH)];
    let mut sent = 0;
    let mut refused = false;
    while sent < payloads.len() {
        match socket.send_batch(&payloads[sent..]).await {
            Ok(n) => {
                sent += n.max(1);
                stats.forwarded.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                refused |= e.kind() == io::ErrorKind::ConnectionRefused;
                sent += 1;
            }
        }
    }
    batch.clear();
    refused
}

/// A non-blocking kernel UDP socket connected to `to`.
pub(super) fn connected_socket(to: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let bind: SocketAddr = match to.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(to)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
