//! The TCP connections of one shard: the SYN table, connection phases, and the socket
//! operations behind the application's streams.
//!
//! smoltcp sockets listen on one endpoint each, so the stack creates a socket per connection
//! when its first SYN arrives: the socket listens on that SYN's exact destination and the SYN
//! is then handed to smoltcp, which answers it. The table is keyed by the 4-tuple, so a
//! retransmitted SYN reaches the same socket (never a second socket or a second stream).
//! Phases are described in [`connection`](crate::tcp::connection).
//!
//! Half-open connections are bounded by `syn_backlog` and expire after `syn_timeout`; all
//! connections together are bounded by `max_connections`. Orphans (dropped by the application)
//! finish their FIN exchange and are removed when closed, or reset after `close_timeout`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::task::{Context, Poll};

use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp::{self, RecvError, State};
use smoltcp::time::Instant;

use crate::config::Config;
use crate::error::TcpError;
use crate::stats::TcpStats;
use crate::tcp::accept_queue::AcceptQueue;
use crate::tcp::connection::{Accepted, Conn, ConnId, Phase};
use crate::tcp::tuple::FourTuple;
use crate::waker::{WakeBatch, WakerSlot};

/// What the SYN table decided about a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SynOutcome {
    /// A socket now listens for it (new or existing); hand the SYN to smoltcp.
    Listening(Option<ConnId>),
    /// Refused: no socket listens, so smoltcp answers the SYN with RST.
    Refused,
}

/// The TCP connections of one shard of a stack (the stack enforces the global limits).
pub(crate) struct TcpTable {
    shard: u32,
    next_seq: u64,
    conns: BTreeMap<ConnId, Conn>,
    by_tuple: BTreeMap<FourTuple, ConnId>,
    syn_received: usize,
    /// Earliest SYN or orphan expiry, computed by `maintain`.
    deadline: Option<Instant>,
    pub(crate) stats: TcpStats,
}

impl TcpTable {
    pub(crate) fn new(shard: u32) -> Self {
        TcpTable {
            shard,
            next_seq: 0,
            conns: BTreeMap::new(),
            by_tuple: BTreeMap::new(),
            syn_received: 0,
            deadline: None,
            stats: TcpStats::default(),
        }
    }

    /// Connections in this shard, in any phase.
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Half-open connections in this shard.
    pub(crate) fn syn_received(&self) -> usize {
        self.syn_received
    }

    /// The earliest time `maintain` must run to expire half-open or abandoned connections.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Handles a SYN (without ACK) for `tuple` before smoltcp sees it. `total` and
    /// `total_syn_received` are the stack-wide counts the limits apply to.
    pub(crate) fn on_syn(
        &mut self,
        tuple: FourTuple,
        now: Instant,
        config: &Config,
        sockets: &mut SocketSet<'static>,
        (total, total_syn_received): (usize, usize),
    ) -> SynOutcome {
        if let Some(&id) = self.by_tuple.get(&tuple) {
            let conn = &self.conns[&id];
            let state = sockets.get::<tcp::Socket>(conn.socket).state();
            if !matches!(state, State::Closed | State::TimeWait) {
                // A retransmitted SYN: smoltcp's socket for this 4-tuple answers it again.
                self.stats.duplicate_syns += 1;
                return SynOutcome::Listening(None);
            }
            // The old connection is over (the application still holds it): a new one may reuse
            // the 4-tuple.
            self.by_tuple.remove(&tuple);
        }
        if total >= config.max_connections {
            self.stats.refused_connection_limit += 1;
            return SynOutcome::Refused;
        }
        let per_connection = config.tcp_rx_buffer + config.tcp_tx_buffer;
        if (total + 1).saturating_mul(per_connection) > config.tcp_buffer_budget {
            self.stats.refused_memory_budget += 1;
            return SynOutcome::Refused;
        }
        if total_syn_received >= config.syn_backlog {
            self.stats.refused_syn_backlog += 1;
            return SynOutcome::Refused;
        }
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; config.tcp_rx_buffer]),
            tcp::SocketBuffer::new(vec![0u8; config.tcp_tx_buffer]),
        );
        configure_socket(&mut socket, config);
        if socket.listen(tuple.local).is_err() {
            return SynOutcome::Refused;
        }
        let handle = sockets.add(socket);
        let id = ConnId {
            shard: self.shard,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.conns.insert(id, Conn::new(handle, tuple, now));
        self.by_tuple.insert(tuple, id);
        self.syn_received += 1;
        let expiry = now + config.syn_timeout;
        self.deadline = Some(self.deadline.map_or(expiry, |d| d.min(expiry)));
        SynOutcome::Listening(Some(id))
    }

    /// Called after smoltcp processed the SYN that created `id`: a socket that smoltcp did not
    /// move out of LISTEN (it rejected the packet) is removed, so that it cannot catch another
    /// peer's SYN.
    pub(crate) fn after_new_syn(&mut self, id: ConnId, sockets: &mut SocketSet<'static>) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if sockets.get::<tcp::Socket>(conn.socket).state() == State::Listen {
            self.remove(id, sockets);
        }
    }

    /// Called after smoltcp processed an RST for `tuple`: a half-open socket that the RST sent
    /// back to LISTEN (smoltcp's RFC 793 behaviour for passive opens) is removed at once, so
    /// that it cannot accept another peer's SYN under this peer's 4-tuple.
    pub(crate) fn after_rst(&mut self, tuple: FourTuple, sockets: &mut SocketSet<'static>) {
        let Some(&id) = self.by_tuple.get(&tuple) else {
            return;
        };
        let conn = &self.conns[&id];
        if matches!(conn.phase, Phase::SynReceived { .. })
            && sockets.get::<tcp::Socket>(conn.socket).state() == State::Listen
        {
            self.remove(id, sockets);
        }
    }

    /// Promotes finished handshakes to the accept queue, expires half-open and abandoned
    /// connections, removes closed ones, and collects the wakers of connections whose readiness
    /// changed. Runs after smoltcp processed packets or a deadline passed. Returns whether it
    /// aborted connections (whose RSTs must be sent, after which they can be removed).
    pub(crate) fn maintain(
        &mut self,
        now: Instant,
        config: &Config,
        sockets: &mut SocketSet<'static>,
        accept: &mut AcceptQueue,
        wake: &mut WakeBatch,
    ) -> bool {
        let mut aborted = false;
        let mut deadline: Option<Instant> = None;
        let mut remove = heapless::Vec::<ConnId, 64>::new();
        let mut more_to_remove = false;
        for (&id, conn) in self.conns.iter_mut() {
            let socket = sockets.get_mut::<tcp::Socket>(conn.socket);
            let state = socket.state();
            match conn.phase {
                Phase::SynReceived { since } => match state {
                    State::Listen | State::SynReceived => {
                        let expiry = since + config.syn_timeout;
                        if now >= expiry {
                            // Counted only once it is really removed: a full batch leaves the
                            // rest for the next pass, which must not count them again.
                            if remove.push(id).is_ok() {
                                self.stats.syn_expired += 1;
                            } else {
                                more_to_remove = true;
                            }
                        } else {
                            deadline = Some(deadline.map_or(expiry, |d| d.min(expiry)));
                        }
                    }
                    State::Closed | State::TimeWait => {
                        more_to_remove |= remove.push(id).is_err();
                    }
                    _ => {
                        self.syn_received -= 1;
                        if accept.push(id, wake) {
                            conn.phase = Phase::AcceptPending;
                        } else {
                            self.stats.refused_accept_queue += 1;
                            socket.abort();
                            aborted = true;
                            conn.phase = Phase::Orphan { since: now };
                        }
                    }
                },
                Phase::AcceptPending => {}
                Phase::Open => {
                    if conn.read.is_registered() && (socket.can_recv() || !socket.may_recv()) {
                        wake.take_from(&mut conn.read);
                    }
                    if conn.write.is_registered() && (socket.can_send() || !socket.may_send()) {
                        wake.take_from(&mut conn.write);
                    }
                }
                Phase::Orphan { since } => {
                    let expiry = since + config.close_timeout;
                    match state {
                        // An aborted socket keeps its endpoint until its RST is sent; the
                        // egress that sends it reports a change and brings us back here.
                        State::Closed if socket.local_endpoint().is_some() => {}
                        // TIME-WAIT only matters if our last ACK is lost; the TUN link is local.
                        State::Closed | State::TimeWait => {
                            more_to_remove |= remove.push(id).is_err();
                        }
                        // Nobody will read it: like Linux, answer data after close with RST.
                        _ if socket.recv_queue() > 0 => {
                            socket.abort();
                            aborted = true;
                        }
                        _ if now >= expiry => {
                            self.stats.close_expired += 1;
                            socket.abort();
                            aborted = true;
                        }
                        _ => deadline = Some(deadline.map_or(expiry, |d| d.min(expiry))),
                    }
                }
            }
        }
        for id in remove {
            self.remove(id, sockets);
        }
        // Removal is batched to keep this pass allocation-free; anything left over is picked up
        // right away by the next pass.
        self.deadline = if more_to_remove { Some(now) } else { deadline };
        aborted
    }

    fn remove(&mut self, id: ConnId, sockets: &mut SocketSet<'static>) {
        if let Some(conn) = self.conns.remove(&id) {
            if let Phase::SynReceived { .. } = conn.phase {
                self.syn_received -= 1;
            }
            if self.by_tuple.get(&conn.tuple) == Some(&id) {
                self.by_tuple.remove(&conn.tuple);
            }
            sockets.remove(conn.socket);
        }
    }

    /// Hands the connection `id`, taken from the accept queue, to the application (one
    /// handle).
    pub(crate) fn open(&mut self, id: ConnId) -> Option<Accepted> {
        let conn = self.conns.get_mut(&id)?;
        conn.phase = Phase::Open;
        conn.handles = 1;
        self.stats.accepted += 1;
        Some(Accepted {
            id,
            tuple: conn.tuple,
        })
    }

    /// Describes every connection of this shard, one line each (diagnostics).
    pub(crate) fn describe(&self, sockets: &SocketSet<'static>, out: &mut Vec<String>) {
        for (id, conn) in &self.conns {
            let socket = sockets.get::<tcp::Socket>(conn.socket);
            out.push(format!(
                "{id:?} {:?} {} recv-queue {} send-queue {} read-waiting {} write-waiting {} \
                 can-recv {} can-send {}",
                conn.phase,
                socket.state(),
                socket.recv_queue(),
                socket.send_queue(),
                conn.read.is_registered(),
                conn.write.is_registered(),
                socket.can_recv(),
                socket.can_send(),
            ));
        }
    }

    /// Counts connections by phase into `stats`.
    pub(crate) fn snapshot(&self) -> TcpStats {
        let mut stats = self.stats;
        for conn in self.conns.values() {
            match conn.phase {
                Phase::SynReceived { .. } => stats.syn_received += 1,
                Phase::AcceptPending => stats.accept_pending += 1,
                Phase::Open => stats.open += 1,
                Phase::Orphan { .. } => stats.closing += 1,
            }
        }
        stats
    }

    fn open_socket<'s>(
        &mut self,
        id: ConnId,
        sockets: &'s mut SocketSet<'static>,
    ) -> Result<(&mut Conn, &'s mut tcp::Socket<'static>), TcpError> {
        let conn = self.conns.get_mut(&id).ok_or(TcpError::ConnectionAborted)?;
        if conn.aborted {
            return Err(TcpError::ConnectionAborted);
        }
        let socket = sockets.get_mut::<tcp::Socket>(conn.socket);
        Ok((conn, socket))
    }

    /// Reads up to `max` bytes, handing them to `sink` as one or two contiguous slices (the
    /// socket buffer is a ring). `Ok(0)` means the peer finished sending (or `max` is 0).
    /// Sets `window_update` when the read opened the receive window enough that smoltcp will
    /// advertise it, so the runner must run.
    pub(crate) fn poll_read_with(
        &mut self,
        id: ConnId,
        cx: &mut Context<'_>,
        max: usize,
        sink: &mut dyn FnMut(&[u8]),
        sockets: &mut SocketSet<'static>,
        window_update: &mut bool,
    ) -> Poll<Result<usize, TcpError>> {
        let (conn, socket) = match self.open_socket(id, sockets) {
            Ok(x) => x,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if max == 0 {
            return Poll::Ready(Ok(0));
        }
        let queued = socket.recv_queue();
        let mut read = 0;
        // At most two slices: up to the end of the ring, then from its start.
        for _ in 0..2 {
            let chunk = socket.recv(|data| {
                let n = data.len().min(max - read);
                sink(&data[..n]);
                (n, n)
            });
            match chunk {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(RecvError::Finished) if read == 0 => return Poll::Ready(Ok(0)),
                Err(RecvError::Finished) => break,
                Err(RecvError::InvalidState) if read == 0 => {
                    return Poll::Ready(Err(TcpError::ConnectionReset))
                }
                Err(RecvError::InvalidState) => break,
            }
            if read == max {
                break;
            }
        }
        if read == 0 {
            conn.read.register(cx.waker());
            return Poll::Pending;
        }
        // smoltcp sends a window update once the window at least doubles, which can only
        // happen if the last advertised window was at most half the buffer.
        *window_update = queued * 2 >= socket.recv_capacity();
        Poll::Ready(Ok(read))
    }

    /// Ready once a read would not wait: data is queued, the peer finished sending, or the
    /// connection failed (the read reports which); an error if the connection was aborted
    /// locally. Registers the waker otherwise.
    pub(crate) fn poll_read_ready(
        &mut self,
        id: ConnId,
        cx: &mut Context<'_>,
        sockets: &mut SocketSet<'static>,
    ) -> Poll<Result<(), TcpError>> {
        let (conn, socket) = match self.open_socket(id, sockets) {
            Ok(x) => x,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if socket.recv_queue() > 0 || !socket.may_recv() {
            return Poll::Ready(Ok(()));
        }
        conn.read.register(cx.waker());
        Poll::Pending
    }

    /// Writes from `buf` into the send buffer.
    pub(crate) fn poll_write(
        &mut self,
        id: ConnId,
        cx: &mut Context<'_>,
        buf: &[u8],
        sockets: &mut SocketSet<'static>,
    ) -> Poll<Result<usize, TcpError>> {
        let (conn, socket) = match self.open_socket(id, sockets) {
            Ok(x) => x,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if !socket.may_send() {
            return Poll::Ready(Err(match socket.state() {
                State::Closed => TcpError::ConnectionReset,
                _ => TcpError::BrokenPipe,
            }));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match socket.send_slice(buf) {
            Ok(0) => {
                conn.write.register(cx.waker());
                Poll::Pending
            }
            Ok(n) => Poll::Ready(Ok(n)),
            Err(_) => Poll::Ready(Err(TcpError::BrokenPipe)),
        }
    }

    /// Bytes written to `id` and not yet acknowledged.
    pub(crate) fn send_queue(&self, id: ConnId, sockets: &SocketSet<'static>) -> usize {
        self.conns
            .get(&id)
            .map_or(0, |c| sockets.get::<tcp::Socket>(c.socket).send_queue())
    }

    /// Queues a FIN after the data already written (half-close); reading continues.
    pub(crate) fn shutdown_write(
        &mut self,
        id: ConnId,
        sockets: &mut SocketSet<'static>,
    ) -> Result<(), TcpError> {
        let (_, socket) = self.open_socket(id, sockets)?;
        if socket.state() == State::Closed && socket.local_endpoint().is_none() {
            return Err(TcpError::ConnectionReset);
        }
        socket.close();
        Ok(())
    }

    /// Resets the connection (RST). Later operations fail with `ConnectionAborted`.
    pub(crate) fn abort(
        &mut self,
        id: ConnId,
        sockets: &mut SocketSet<'static>,
        wake: &mut WakeBatch,
    ) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.aborted = true;
            sockets.get_mut::<tcp::Socket>(conn.socket).abort();
            wake.take_from(&mut conn.read);
            wake.take_from(&mut conn.write);
        }
    }

    /// Another application handle now holds `id` (the stream was split into halves).
    pub(crate) fn add_handle(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.handles = conn.handles.saturating_add(1);
        }
    }

    /// The application dropped a handle. When it was the last: close gracefully, or reset if
    /// unread data would be lost (as the kernel does on `close` with a non-empty receive
    /// queue). Returns whether that happened (the shard must then be serviced).
    pub(crate) fn release(
        &mut self,
        id: ConnId,
        now: Instant,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        conn.handles = conn.handles.saturating_sub(1);
        if conn.handles > 0 {
            return false;
        }
        let socket = sockets.get_mut::<tcp::Socket>(conn.socket);
        if socket.recv_queue() > 0 {
            socket.abort();
        } else {
            socket.close();
        }
        conn.phase = Phase::Orphan { since: now };
        conn.read = WakerSlot::default();
        conn.write = WakerSlot::default();
        // Let `maintain` reap it (or time it out) on the next runner pass.
        self.deadline = Some(now);
        true
    }
}

/// Applies the stack's TCP tuning to a new socket: no delayed ACK and no Nagle on the local
/// link, Cubic where available, timeouts from the configuration.
fn configure_socket(socket: &mut tcp::Socket<'static>, config: &Config) {
    socket.set_ack_delay(None);
    socket.set_nagle_enabled(false);
    socket.set_segmentation_offload(config.tcp_segmentation_offload);
    socket.set_timeout(config.tcp_timeout);
    socket.set_keep_alive(config.tcp_keep_alive);
    #[cfg(feature = "cubic")]
    socket.set_congestion_control(tcp::CongestionControl::Cubic);
}
