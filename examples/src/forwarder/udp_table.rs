//! The UDP flow table: every datagram of a demultiplexing socket onto its flow.
//!
//! A datagram for a flow with nothing queued goes straight out on the flow's kernel socket,
//! from the demultiplexer's own task: consecutive datagrams of one flow are gathered into a
//! *run* and sent together ([`FlowTable::flush`]: one system call per run, with UDP
//! segmentation where the kernel has it). The flow's task then only reads replies. Only when
//! the socket has no room does a datagram go onto the flow's queue, which the flow's task
//! drains; datagrams after it queue behind it until the queue is empty again, so a flow's
//! datagrams leave in order.
//!
//! Why: handing every datagram to the flow's task cost a queue node, a wake-up and, on a
//! multi-threaded executor, often a thread switch per batch; a UDP upload spent its CPU on
//! them (`bench/scripts/udp_one_cell.sh`, BENCHMARKS.md run H).

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Instant;

use futures::channel::mpsc;

use super::executor::{Executor, KernelDatagram};
use super::udp::{
    connected_socket, Flow, FlowDatagram, Replies, UdpLimits, UdpRelayStats, FLOW_HOLD, FLOW_QUEUE,
};
use super::udp_batch::MAX_BATCH;

/// A flow's kernel socket, shared by its table (which sends on it) and its task (which reads
/// replies from it and sends what was queued).
#[derive(Debug)]
pub struct FlowSocket<K> {
    /// The connected kernel socket.
    pub(super) socket: K,
    /// Datagrams on the flow's queue not yet sent by its task: the table sends directly only
    /// while this is 0 (else a direct send would overtake them).
    pub(super) queued: AtomicUsize,
    /// Datagrams the table sent directly: the flow's task is not idle while this moves.
    pub(super) direct: AtomicU64,
}

impl<K> FlowSocket<K> {
    /// `socket`, with nothing queued or sent.
    pub fn new(socket: K) -> Self {
        FlowSocket {
            socket,
            queued: AtomicUsize::new(0),
            direct: AtomicU64::new(0),
        }
    }
}

/// A flow the table opened: spawn [`TableFlow::run`].
pub struct TableFlow<D, R, K> {
    flow: Flow<D, R, mpsc::Receiver<D>>,
    socket: Arc<FlowSocket<K>>,
}

impl<D, R, K> TableFlow<D, R, K>
where
    D: FlowDatagram,
    R: Replies<Quote = D::Quote>,
    K: KernelDatagram,
{
    /// Runs the flow on executor `E` (whose kernel datagram sockets are `K`).
    ///
    /// # Errors
    /// If a reply cannot be sent.
    pub async fn run<E: Executor<Datagram = K>>(self) -> io::Result<()> {
        self.flow.run_on::<E>(self.socket).await
    }
}

/// The flows of one demultiplexing relay: [`FlowTable::dispatch`] every received datagram,
/// spawn the flows it opens, and [`FlowTable::flush`] when no more datagrams are ready.
pub struct FlowTable<D: FlowDatagram, R, K> {
    /// Each open flow, by (source, original destination).
    flows: HashMap<(SocketAddr, SocketAddr), FlowEntry<D, K>>,
    /// Datagrams of one flow on their way out directly, not sent yet (at most
    /// [`MAX_BATCH`]), and that flow's key.
    run: Vec<D>,
    run_key: Option<(SocketAddr, SocketAddr)>,
    /// That flow's socket, held from the run's first datagram until it is sent.
    run_socket: Option<Arc<FlowSocket<K>>>,
    replies: R,
    limits: UdpLimits,
    stats: Arc<UdpRelayStats>,
}

/// An open flow, as its table sees it.
struct FlowEntry<D: FlowDatagram, K> {
    /// The flow's queue.
    queue: mpsc::Sender<D>,
    /// Its socket, owned by the flow's task: closed when the task ends, not when the table
    /// next notices.
    socket: Weak<FlowSocket<K>>,
    /// What an error about the flow quotes: its first datagram.
    quote: D::Quote,
    /// It did not take a datagram within [`FLOW_HOLD`] and has not taken one since.
    stalled: bool,
}

impl<D, R, K> FlowTable<D, R, K>
where
    D: FlowDatagram,
    R: Replies<Quote = D::Quote>,
    K: KernelDatagram,
{
    /// An empty table whose flows reply through `replies`.
    pub fn new(replies: R, limits: UdpLimits, stats: Arc<UdpRelayStats>) -> Self {
        FlowTable {
            flows: HashMap::new(),
            run: Vec::with_capacity(MAX_BATCH),
            run_key: None,
            run_socket: None,
            replies,
            limits,
            stats,
        }
    }

    /// `Pending` (and `cx` registered) while the flow of `src` → `dst` is open, not stalled,
    /// and its queue is full: then [`dispatch`](Self::dispatch) would drop the datagram.
    pub fn poll_room(
        &mut self,
        cx: &mut std::task::Context<'_>,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Poll<()> {
        match self.flows.get_mut(&(src, dst)) {
            Some(flow) if !flow.stalled => match flow.queue.poll_ready(cx) {
                Poll::Pending => Poll::Pending,
                // Room, or a flow that ended (dispatch starts a new one).
                Poll::Ready(_) => Poll::Ready(()),
            },
            _ => Poll::Ready(()),
        }
    }

    /// Waits for room on the flow of `src` → `dst` for at most [`FLOW_HOLD`], marking the
    /// flow stalled if it made none in time (no timer is made when there is room). A run of
    /// another flow goes out first, rather than wait with it.
    pub async fn wait_for_room<E: Executor>(&mut self, src: SocketAddr, dst: SocketAddr) {
        if self.run_key == Some((src, dst)) && self.run.len() < MAX_BATCH {
            // The run's flow had nothing queued: it has room.
            return;
        }
        let has_room = poll_fn(|cx| Poll::Ready(self.poll_room(cx, src, dst).is_ready())).await;
        if has_room {
            return;
        }
        self.flush();
        let mut timer = E::sleep_until(Instant::now() + FLOW_HOLD);
        let made_room = poll_fn(|cx| {
            if self.poll_room(cx, src, dst).is_ready() {
                return Poll::Ready(true);
            }
            Pin::new(&mut timer).poll(cx).map(|_| false)
        })
        .await;
        if !made_room {
            if let Some(flow) = self.flows.get_mut(&(src, dst)) {
                flow.stalled = true;
            }
        }
    }

    /// Takes `datagram` (from `src` to `dst`) for its flow: onto the run that goes out
    /// directly if the flow has nothing queued, else onto its queue; if the flow is not open,
    /// opens it to `to` (a kernel socket of executor `E`) and returns it: spawn
    /// [`TableFlow::run`]. Call [`flush`](Self::flush) once no more datagrams are ready.
    pub fn dispatch<E: Executor<Datagram = K>>(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        datagram: D,
        to: SocketAddr,
    ) -> Option<TableFlow<D, R, K>> {
        self.dispatch_with(src, dst, datagram, to, || {
            connected_socket(to).and_then(E::datagram)
        })
    }

    /// [`dispatch`](Self::dispatch), with the socket of a new flow made by `new_socket`.
    fn dispatch_with(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        datagram: D,
        to: SocketAddr,
        new_socket: impl FnOnce() -> io::Result<K>,
    ) -> Option<TableFlow<D, R, K>> {
        let key = (src, dst);
        if self.run_key == Some(key) && self.run.len() < MAX_BATCH {
            self.run.push(datagram);
            return None;
        }
        self.flush();
        let flow = self.flows.get_mut(&key);
        let socket = flow
            .as_ref()
            .filter(|f| !f.queue.is_closed())
            .and_then(|f| f.socket.upgrade());
        let datagram = match (flow, socket) {
            (None, _) => datagram,
            // The flow timed out: start a new one with this datagram.
            (Some(_), None) => {
                self.flows.remove(&key);
                datagram
            }
            (Some(flow), Some(socket)) if socket.queued.load(Ordering::Acquire) == 0 => {
                flow.stalled = false;
                self.run_key = Some(key);
                self.run_socket = Some(socket);
                self.run.push(datagram);
                return None;
            }
            (Some(flow), Some(socket)) => {
                match flow.queue.try_send(datagram) {
                    Ok(()) => {
                        socket.queued.fetch_add(1, Ordering::AcqRel);
                        flow.stalled = false;
                    }
                    // Full, or closed since: dropped, as the network would.
                    Err(_) => {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                return None;
            }
        };
        self.open(key, datagram, to, new_socket)
    }

    /// Opens the flow `key` to `to` on the socket `new_socket` makes, with its first datagram
    /// on its queue.
    fn open(
        &mut self,
        key: (SocketAddr, SocketAddr),
        datagram: D,
        to: SocketAddr,
        new_socket: impl FnOnce() -> io::Result<K>,
    ) -> Option<TableFlow<D, R, K>> {
        if self.flows.len() >= self.limits.max_flows {
            self.flows.retain(|_, f| !f.queue.is_closed());
            if self.flows.len() >= self.limits.max_flows {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        let socket = match new_socket() {
            Ok(s) => Arc::new(FlowSocket::new(s)),
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let (mut sender, receiver) = mpsc::channel(FLOW_QUEUE);
        let quote = datagram.quote();
        // A fresh channel has room for the first datagram.
        if sender.try_send(datagram).is_ok() {
            socket.queued.store(1, Ordering::Release);
        }
        self.flows.insert(
            key,
            FlowEntry {
                queue: sender,
                socket: Arc::downgrade(&socket),
                quote,
                stalled: false,
            },
        );
        self.stats.flows.fetch_add(1, Ordering::Relaxed);
        let (src, dst) = key;
        let flow = Flow::new(
            receiver,
            self.replies.clone(),
            (src, dst, to),
            self.limits.idle_timeout,
            self.stats.clone(),
        );
        Some(TableFlow { flow, socket })
    }

    /// Sends the run (the datagrams of one flow gathered by [`dispatch`](Self::dispatch)) on
    /// its flow's socket, as few system calls as the platform allows, without waiting: what
    /// the socket has no room for goes onto the flow's queue (and is dropped if that is
    /// full). A failed send is a lost datagram, as on a real network; a target's "port
    /// unreachable" goes back to the source as the flow's task would send it.
    pub fn flush(&mut self) {
        let (Some(key), Some(socket)) = (self.run_key.take(), self.run_socket.take()) else {
            return;
        };
        let Some(flow) = self.flows.get_mut(&key) else {
            self.run.clear();
            return;
        };
        // No allocation per run: the payloads' slices on the stack.
        let mut slices: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        for (slot, d) in slices.iter_mut().zip(&self.run) {
            *slot = d.payload();
        }
        let payloads = &slices[..self.run.len()];
        let mut sent = 0;
        let mut refused = false;
        while sent < payloads.len() {
            match socket.socket.try_send_batch(&payloads[sent..]) {
                Ok(n) => {
                    let n = n.max(1);
                    sent += n;
                    self.stats.forwarded.fetch_add(n as u64, Ordering::Relaxed);
                    socket.direct.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    refused |= e.kind() == io::ErrorKind::ConnectionRefused;
                    sent += 1;
                }
            }
        }
        if refused && self.replies.refused(&flow.quote) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        // The socket had no room: the rest waits on the queue, in order.
        for d in self.run.drain(sent..) {
            match flow.queue.try_send(d) {
                Ok(()) => {
                    socket.queued.fetch_add(1, Ordering::AcqRel);
                }
                Err(_) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.run.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;
    use crate::forwarder::udp_recv::RecvBatch;

    /// A kernel socket with room for `room` datagrams, that records what it sends; refuses
    /// the next send once when `refuse` is set.
    #[derive(Default)]
    struct FakeSocket {
        room: Cell<usize>,
        refuse: Cell<bool>,
        sent: RefCell<Vec<Vec<u8>>>,
        calls: Cell<usize>,
    }

    impl KernelDatagram for FakeSocket {
        async fn recv(&self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        async fn recv_batch(&self, _: &mut RecvBatch) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        async fn send(&self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        async fn send_batch(&self, _: &[&[u8]]) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn try_send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
            self.calls.set(self.calls.get() + 1);
            if self.refuse.take() {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            let n = datagrams.len().min(self.room.get());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.room.set(self.room.get() - n);
            let mut sent = self.sent.borrow_mut();
            sent.extend(datagrams[..n].iter().map(|d| d.to_vec()));
            Ok(n)
        }
    }

    /// Replies that count the port unreachables sent.
    #[derive(Clone, Default)]
    struct CountedRefusals(Rc<Cell<u32>>);

    impl Replies for CountedRefusals {
        type Quote = ();
        async fn send_reply(&self, _: &[u8], _: SocketAddr, _: SocketAddr) -> io::Result<()> {
            Ok(())
        }
        fn refused(&self, _: &()) -> bool {
            self.0.set(self.0.get() + 1);
            true
        }
    }

    type Table = FlowTable<Vec<u8>, CountedRefusals, FakeSocket>;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn datagram(i: u8) -> Vec<u8> {
        vec![i; 10]
    }

    /// Datagram `i` of the flow 198.18.0.1:1000 → 198.19.0.10:53, on a table that must not
    /// open another flow for it.
    fn dispatch(table: &mut Table, i: u8) {
        let opened = table.dispatch_with(
            addr("198.18.0.1:1000"),
            addr("198.19.0.10:53"),
            datagram(i),
            addr("127.0.0.1:53"),
            || panic!("datagram {i} opened a second flow"),
        );
        assert!(opened.is_none());
    }

    /// What waits on a flow's queue, in order.
    fn drain(queue: &mut mpsc::Receiver<Vec<u8>>) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| queue.try_recv().ok()).collect()
    }

    /// A flow's datagrams never overtake each other: direct while nothing is queued, behind
    /// the queue otherwise, and the queue again when the socket has no room.
    #[test]
    fn a_flows_datagrams_go_out_directly_or_behind_its_queue_in_order() {
        let stats = Arc::new(UdpRelayStats::default());
        let limits = UdpLimits {
            idle_timeout: std::time::Duration::from_secs(60),
            max_flows: 8,
        };
        let refusals = CountedRefusals::default();
        let mut table = Table::new(refusals.clone(), limits, stats.clone());
        let flow = table
            .dispatch_with(
                addr("198.18.0.1:1000"),
                addr("198.19.0.10:53"),
                datagram(0),
                addr("127.0.0.1:53"),
                || Ok(FakeSocket::default()),
            )
            .expect("the first datagram opens the flow");
        let shared = flow.socket.clone();
        let mut queue = flow.flow.outgoing;
        let queued = || shared.queued.load(Ordering::Acquire);

        // The first datagram waits on the queue for the flow's task; the next one queues
        // behind it.
        dispatch(&mut table, 1);
        table.flush();
        assert_eq!(queued(), 2);
        assert_eq!(drain(&mut queue), [datagram(0), datagram(1)]);
        assert_eq!(shared.socket.calls.get(), 0, "nothing was sent directly");
        // The flow's task sent them (as `Flow::run_on` counts them).
        shared.queued.fetch_sub(2, Ordering::AcqRel);

        // Nothing queued: one run, one send, with room for two; the third waits on the queue.
        shared.socket.room.set(2);
        for i in 2..5 {
            dispatch(&mut table, i);
        }
        assert_eq!(shared.socket.calls.get(), 0, "a run goes out when flushed");
        table.flush();
        assert_eq!(*shared.socket.sent.borrow(), [datagram(2), datagram(3)]);
        assert_eq!(
            shared.socket.calls.get(),
            2,
            "one send, then one that would block"
        );
        assert_eq!(queued(), 1);

        // The socket has room again, but datagram 5 must not overtake datagram 4.
        shared.socket.room.set(10);
        dispatch(&mut table, 5);
        table.flush();
        assert_eq!(shared.socket.sent.borrow().len(), 2);
        assert_eq!(drain(&mut queue), [datagram(4), datagram(5)]);
        shared.queued.fetch_sub(2, Ordering::AcqRel);

        // A refusal reported by a direct send: that datagram is lost, the source hears of it
        // once, and the rest of the run goes out.
        shared.socket.refuse.set(true);
        dispatch(&mut table, 6);
        dispatch(&mut table, 7);
        table.flush();
        assert_eq!(shared.socket.sent.borrow().last(), Some(&datagram(7)));
        assert_eq!(refusals.0.get(), 1);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
        assert_eq!(stats.forwarded.load(Ordering::Relaxed), 3);
        assert_eq!(shared.direct.load(Ordering::Relaxed), 3);
        assert_eq!(stats.flows.load(Ordering::Relaxed), 1);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);

        // The flow's task ended (its idle timeout): its socket closes with it, though the
        // table still has the flow, and the next datagram opens a new flow.
        let socket = Arc::downgrade(&shared);
        drop((queue, shared, flow.socket));
        assert!(socket.upgrade().is_none(), "the table keeps no socket open");
        let reopened = table.dispatch_with(
            addr("198.18.0.1:1000"),
            addr("198.19.0.10:53"),
            datagram(8),
            addr("127.0.0.1:53"),
            || Ok(FakeSocket::default()),
        );
        assert!(reopened.is_some());
        assert_eq!(stats.flows.load(Ordering::Relaxed), 2);
    }
}
