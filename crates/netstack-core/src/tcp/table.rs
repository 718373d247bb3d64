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
//! send what they hold, finish their FIN exchange and are removed when closed, or are reset
//! once they made no progress (no data acknowledged, no state change) for `close_timeout`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::task::{Context, Poll, Waker};

use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp::{self, RecvError, State};
use smoltcp::time::Instant;
use smoltcp::wire::TcpSeqNumber;

use crate::classify::TcpHeader;
use crate::config::Config;
use crate::error::TcpError;
use crate::packet::Packet;
use crate::stats::TcpStats;
use crate::tcp::budget::BufferBudget;
use crate::tcp::connection::{Accepted, CloseProgress, Conn, ConnId, Phase};
use crate::tcp::pending::{PendingRequest, RecentRefusals, Refusal, RequestInfo};
use crate::tcp::tuple::FourTuple;
use crate::waker::{WakeBatch, WakerSlot};

/// What the SYN table decided about a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SynOutcome {
    /// A socket now listens for it (new or existing); hand the SYN to smoltcp.
    Listening(Option<ConnId>),
    /// A new connection request (the stack asks the application before answering): store the
    /// SYN with [`TcpTable::add_request`].
    Request,
    /// A retransmitted SYN of a pending request: nothing to do, the application answers it.
    PendingRequest,
    /// A retransmitted SYN of a request the application refused: refuse it again.
    Refuse(Refusal),
    /// The half-open table is full: answer with a SYN cookie, keeping no state.
    Cookie,
    /// Refused: no socket listens, so smoltcp answers the SYN with RST.
    Refused,
}

/// Whether one more connection would exceed the hard limits of its runner group (counted in
/// `stats`): `max_connections` and the buffer budget. `total` counts connections and requests.
pub(crate) fn over_hard_limit(
    config: &Config,
    stats: &mut TcpStats,
    total: usize,
    budget: BufferBudget,
) -> bool {
    if total >= config.max_connections {
        stats.refused_connection_limit += 1;
        return true;
    }
    if !budget.admits(config.tcp_rx_buffer + config.tcp_tx_buffer) {
        stats.refused_memory_budget += 1;
        return true;
    }
    false
}

/// Which of a connection's buffers a read or write found worth growing (see
/// [`TcpTable::grow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grow {
    /// Neither.
    No,
    /// The receive buffer: the application found it at least three quarters full.
    Recv,
    /// The send buffer: the application filled it while the peer's window would take more.
    Send,
}

/// The TCP connections of one shard of a stack (the stack enforces the global limits).
pub(crate) struct TcpTable {
    shard: u32,
    next_seq: u64,
    conns: BTreeMap<ConnId, Conn>,
    /// Connection requests waiting for the application's answer (no socket yet).
    requests: BTreeMap<ConnId, PendingRequest>,
    /// Connections and requests by 4-tuple.
    by_tuple: BTreeMap<FourTuple, ConnId>,
    /// 4-tuples whose request was refused lately.
    refused: RecentRefusals,
    /// Half-open connections and pending requests.
    syn_received: usize,
    /// Bytes the buffers of this shard's connections hold (their capacities).
    buffer_bytes: usize,
    /// Of those, bytes by which buffers grew beyond their first sizes.
    grown_bytes: usize,
    /// Earliest SYN or orphan expiry, computed by `maintain`.
    deadline: Option<Instant>,
    /// Wakers of tasks waiting on connections that were removed (an accepted request's
    /// handshake that expired or was reset): `maintain` wakes them, and they find the
    /// connection gone (`ConnectionReset`) instead of waiting forever.
    released: Vec<Waker>,
    pub(crate) stats: TcpStats,
}

impl TcpTable {
    pub(crate) fn new(shard: u32) -> Self {
        TcpTable {
            shard,
            next_seq: 0,
            conns: BTreeMap::new(),
            requests: BTreeMap::new(),
            by_tuple: BTreeMap::new(),
            refused: RecentRefusals::default(),
            syn_received: 0,
            buffer_bytes: 0,
            grown_bytes: 0,
            deadline: None,
            released: Vec::new(),
            stats: TcpStats::default(),
        }
    }

    /// The (global) number of this table's shard.
    pub(crate) fn shard(&self) -> u32 {
        self.shard
    }

    /// Connections in this shard, in any phase, and pending requests.
    pub(crate) fn len(&self) -> usize {
        self.conns.len() + self.requests.len()
    }

    /// Bytes the buffers of this shard's connections hold.
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// Bytes by which this shard's buffers grew beyond their first sizes.
    pub(crate) fn grown_bytes(&self) -> usize {
        self.grown_bytes
    }

    /// Half-open connections and pending requests in this shard.
    pub(crate) fn syn_received(&self) -> usize {
        self.syn_received
    }

    /// The earliest time `maintain` must run to expire half-open or abandoned connections.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Handles a SYN (without ACK) for `tuple` before smoltcp sees it. `totals` are the
    /// stack-wide counts of connections and half-open ones the limits apply to; with
    /// `connection_requests` the stack asks the application before answering a new 4-tuple,
    /// and with a full backlog it answers with a SYN cookie.
    pub(crate) fn on_syn(
        &mut self,
        tuple: FourTuple,
        now: Instant,
        config: &Config,
        sockets: &mut SocketSet<'static>,
        totals: (usize, usize, BufferBudget),
    ) -> SynOutcome {
        if let Some(&id) = self.by_tuple.get(&tuple) {
            if self.requests.contains_key(&id) {
                // A retransmitted SYN while the application decides: no second request.
                self.stats.duplicate_syns += 1;
                return SynOutcome::PendingRequest;
            }
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
        if config.connection_requests {
            if let Some(refusal) = self.refused.lookup(&tuple, now - config.syn_timeout) {
                self.stats.duplicate_syns += 1;
                return SynOutcome::Refuse(refusal);
            }
        }
        let (total, total_syn_received, budget) = totals;
        if over_hard_limit(config, &mut self.stats, total, budget) {
            return SynOutcome::Refused;
        }
        if total_syn_received >= config.syn_backlog {
            if config.syn_cookies {
                return SynOutcome::Cookie;
            }
            self.stats.refused_syn_backlog += 1;
            return SynOutcome::Refused;
        }
        if config.connection_requests {
            return SynOutcome::Request;
        }
        let id = self.next_id();
        match self.add_socket(id, tuple, now, config, sockets) {
            Some(()) => SynOutcome::Listening(Some(id)),
            None => SynOutcome::Refused,
        }
    }

    /// Creates the socket of connection `id`, listening on `tuple`'s destination, as a
    /// half-open connection that expires `syn_timeout` after `since`.
    fn add_socket(
        &mut self,
        id: ConnId,
        tuple: FourTuple,
        since: Instant,
        config: &Config,
        sockets: &mut SocketSet<'static>,
    ) -> Option<()> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; config.tcp_rx_buffer]),
            tcp::SocketBuffer::new(vec![0u8; config.tcp_tx_buffer]),
        );
        configure_socket(&mut socket, config);
        socket.listen(tuple.local).ok()?;
        let handle = sockets.add(socket);
        self.buffer_bytes += config.tcp_rx_buffer + config.tcp_tx_buffer;
        self.conns.insert(id, Conn::new(handle, tuple, since));
        self.by_tuple.insert(tuple, id);
        self.syn_received += 1;
        self.expire_at(since + config.syn_timeout);
        Some(())
    }

    fn next_id(&mut self) -> ConnId {
        let id = ConnId {
            shard: self.shard,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        id
    }

    /// Whether a connection or request of `tuple` exists.
    pub(crate) fn knows(&self, tuple: &FourTuple) -> bool {
        self.by_tuple.contains_key(tuple)
    }

    /// Creates the socket of a connection whose SYN was answered with a SYN cookie `isn`
    /// (the caller then replays the SYN and the ACK into it).
    pub(crate) fn add_cookie_connection(
        &mut self,
        tuple: FourTuple,
        isn: u32,
        now: Instant,
        config: &Config,
        sockets: &mut SocketSet<'static>,
    ) -> Option<ConnId> {
        let id = self.next_id();
        self.add_socket(id, tuple, now, config, sockets)?;
        let socket = sockets.get_mut::<tcp::Socket>(self.conns[&id].socket);
        socket.set_syn_answered(Some(TcpSeqNumber(isn as i32)));
        Some(id)
    }

    /// Makes sure `maintain` runs by `at`.
    fn expire_at(&mut self, at: Instant) {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    /// Stores the SYN of a new connection request (after [`SynOutcome::Request`]); it counts
    /// as half-open until it is answered or expires `syn_timeout` after `now`.
    pub(crate) fn add_request(
        &mut self,
        tuple: FourTuple,
        syn: Packet,
        header: TcpHeader,
        now: Instant,
        config: &Config,
    ) -> RequestInfo {
        let id = self.next_id();
        self.requests.insert(
            id,
            PendingRequest {
                tuple,
                syn,
                header,
                since: now,
                handed_out: false,
            },
        );
        self.by_tuple.insert(tuple, id);
        self.syn_received += 1;
        self.stats.requests += 1;
        self.expire_at(now + config.syn_timeout);
        RequestInfo {
            id,
            tuple,
            options: header.options,
        }
    }

    /// Hands request `id` to the application, once: its info, or `None` if it was answered
    /// or expired meanwhile (or was handed out already).
    pub(crate) fn hand_out_request(&mut self, id: ConnId) -> Option<RequestInfo> {
        let request = self.requests.get_mut(&id)?;
        if core::mem::replace(&mut request.handed_out, true) {
            return None;
        }
        Some(RequestInfo {
            id,
            tuple: request.tuple,
            options: request.header.options,
        })
    }

    /// Remembers that the request of `tuple` was refused at `now` (see [`RecentRefusals`]).
    pub(crate) fn remember_refusal(&mut self, tuple: FourTuple, refusal: Refusal, now: Instant) {
        self.refused.remember(tuple, refusal, now);
    }

    /// Takes request `id` out of the table to answer it (accept or refuse); `None` if it
    /// expired.
    pub(crate) fn take_request(&mut self, id: ConnId) -> Option<PendingRequest> {
        let request = self.requests.remove(&id)?;
        self.syn_received -= 1;
        if self.by_tuple.get(&request.tuple) == Some(&id) {
            self.by_tuple.remove(&request.tuple);
        }
        Some(request)
    }

    /// The application accepted `request` (taken with [`Self::take_request`] under `id`):
    /// creates its socket, which must now process the SYN (the caller hands it to smoltcp).
    /// The connection is then half-open, and reported to [`Self::poll_handshake`] rather than
    /// queued for `accept` once established.
    ///
    /// # Errors
    /// `ConnectionRefused` if its buffers no longer fit the budget (it is refused with RST).
    pub(crate) fn accept_request(
        &mut self,
        id: ConnId,
        request: &PendingRequest,
        config: &Config,
        budget: BufferBudget,
        sockets: &mut SocketSet<'static>,
    ) -> Result<(), TcpError> {
        if !budget.admits(config.tcp_rx_buffer + config.tcp_tx_buffer) {
            self.stats.refused_memory_budget += 1;
            return Err(TcpError::ConnectionRefused);
        }
        self.add_socket(id, request.tuple, request.since, config, sockets)
            .ok_or(TcpError::ConnectionRefused)?;
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.awaited = true;
        }
        Ok(())
    }

    /// Removes the requests that waited `syn_timeout` for an answer into `expired` (at most its
    /// capacity per call; returns whether more are due).
    pub(crate) fn expire_requests<const N: usize>(
        &mut self,
        now: Instant,
        config: &Config,
        expired: &mut heapless::Vec<(ConnId, PendingRequest), N>,
    ) -> bool {
        let due: heapless::Vec<ConnId, N> = self
            .requests
            .iter()
            .filter(|(_, r)| now >= r.since + config.syn_timeout)
            .map(|(&id, _)| id)
            .take(N)
            .collect();
        for id in &due {
            if let Some(r) = self.take_request(*id) {
                self.stats.syn_expired += 1;
                let _ = expired.push((*id, r));
            }
        }
        due.len() == N
    }

    /// The earliest expiry of a pending request.
    fn next_request_expiry(&self, config: &Config) -> Option<Instant> {
        self.requests
            .values()
            .map(|r| r.since + config.syn_timeout)
            .min()
    }

    /// Ready once the accepted request `id` completed its handshake (its stream is then the
    /// application's: one handle); an error if the handshake failed (the peer reset it, or it
    /// timed out). Registers the waker otherwise.
    pub(crate) fn poll_handshake(
        &mut self,
        id: ConnId,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Accepted, TcpError>> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Poll::Ready(Err(TcpError::ConnectionReset));
        };
        match conn.phase {
            Phase::AcceptPending => Poll::Ready(self.open(id).ok_or(TcpError::ConnectionReset)),
            Phase::SynReceived { .. } if !conn.aborted => {
                conn.read.register(cx.waker());
                Poll::Pending
            }
            _ => Poll::Ready(Err(TcpError::ConnectionReset)),
        }
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
        established: &mut Vec<ConnId>,
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
                        conn.phase = Phase::AcceptPending;
                        if conn.awaited {
                            // An accepted request: its task awaits the handshake.
                            wake.take_from(&mut conn.read);
                        } else {
                            // For the accept queue (see `refuse_accept_overflow`).
                            established.push(id);
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
                    if let Some(idle) = config.tcp_idle_trim {
                        match trim_if_idle(conn, socket, idle, now) {
                            Trim::Trimmed => self.stats.buffers_trimmed += 1,
                            Trim::At(at) => deadline = Some(deadline.map_or(at, |d| d.min(at))),
                            Trim::Nothing => {}
                        }
                    }
                }
                Phase::Orphan { since, progress } => {
                    // The close timeout counts from the orphan's last progress.
                    let reached = CloseProgress::of(socket);
                    let since = if progress.advanced_to(reached) {
                        conn.phase = Phase::Orphan {
                            since: now,
                            progress: reached,
                        };
                        now
                    } else {
                        since
                    };
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
        for waker in self.released.drain(..) {
            wake.push(waker);
        }
        // Removal is batched to keep this pass allocation-free; anything left over is picked up
        // right away by the next pass.
        let deadline = [deadline, self.next_request_expiry(config)]
            .into_iter()
            .flatten()
            .min();
        self.deadline = if more_to_remove { Some(now) } else { deadline };
        aborted
    }

    fn remove(&mut self, id: ConnId, sockets: &mut SocketSet<'static>) {
        if let Some(mut conn) = self.conns.remove(&id) {
            if let Phase::SynReceived { .. } = conn.phase {
                self.syn_received -= 1;
            }
            self.released
                .extend(conn.read.take().into_iter().chain(conn.write.take()));
            if self.by_tuple.get(&conn.tuple) == Some(&id) {
                self.by_tuple.remove(&conn.tuple);
            }
            let socket = sockets.get::<tcp::Socket>(conn.socket);
            self.buffer_bytes -= socket.recv_capacity() + socket.send_capacity();
            self.grown_bytes -= conn.grown;
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
        stats.buffer_bytes += self.buffer_bytes as u64;
        stats.syn_received += self.requests.len() as u64;
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

    /// Lends the received bytes to `sink`, a contiguous slice at a time (the socket buffer is
    /// a ring), until `sink` takes nothing more, `max` bytes were taken or the buffer is
    /// empty; `sink` returns how many bytes of its slice it took. `Ok(None)` means the peer
    /// finished sending and everything was read (or `max` is 0); `Pending` (waker registered)
    /// that nothing is queued. When the buffer was drained, the waker is registered too (or
    /// added to `wake` if a FIN or an error is already there), so a caller that saw `sink` take
    /// everything may wait without asking again. Also returns whether the read opened the
    /// receive window enough that smoltcp will advertise it, so the runner must run, and
    /// [`Grow::Recv`] when the read found the buffer at least three quarters full (the caller
    /// grows it: [`Self::grow`]).
    pub(crate) fn poll_read_with(
        &mut self,
        id: ConnId,
        cx: &mut Context<'_>,
        max: usize,
        sink: &mut dyn FnMut(&[u8]) -> usize,
        sockets: &mut SocketSet<'static>,
        wake: &mut WakeBatch,
    ) -> (Poll<Result<Option<usize>, TcpError>>, bool, Grow) {
        let (conn, socket) = match self.open_socket(id, sockets) {
            Ok(x) => x,
            Err(e) => return (Poll::Ready(Err(e)), false, Grow::No),
        };
        if max == 0 {
            return (Poll::Ready(Ok(None)), false, Grow::No);
        }
        let queued = socket.recv_queue();
        let mut read = 0;
        loop {
            if socket.recv_queue() == 0 {
                if read == 0 && !socket.may_recv() {
                    // Nothing left to read and nothing more coming: the FIN, or a failure.
                    let end = match socket.recv(|_| (0, ())) {
                        Err(RecvError::InvalidState) => Err(TcpError::ConnectionReset),
                        _ => Ok(None),
                    };
                    return (Poll::Ready(end), false, Grow::No);
                }
                break;
            }
            let chunk = socket.recv(|data| {
                let offered = data.len().min(max - read);
                let n = sink(&data[..offered]).min(offered);
                (n, (n, offered))
            });
            match chunk {
                Ok((n, offered)) => {
                    read += n;
                    if n < offered || read == max {
                        break;
                    }
                }
                // Unreachable with bytes queued (smoltcp lets queued bytes be read in any
                // state); stop rather than guess.
                Err(_) => break,
            }
        }
        if socket.recv_queue() == 0 {
            if socket.may_recv() {
                conn.read.register(cx.waker());
            } else {
                // The FIN (or the failure) is already here: the next read reports it (woken
                // once the lock is released, as every wake).
                wake.push(cx.waker().clone());
            }
            if read == 0 {
                return (Poll::Pending, false, Grow::No);
            }
        }
        if read > 0 {
            conn.touched = true;
        }
        // smoltcp sends a window update once the window at least doubles, which can only
        // happen if the last advertised window was at most half the buffer.
        let capacity = socket.recv_capacity();
        let window_update = read > 0 && queued * 2 >= capacity;
        // At least three quarters full: the peer had most of the window in flight.
        let grow = if read > 0 && conn.recv_grows && queued >= capacity - capacity / 4 {
            Grow::Recv
        } else {
            Grow::No
        };
        (Poll::Ready(Ok(Some(read))), window_update, grow)
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

    /// Lends the free part of the send buffer to `source`, a contiguous slice at a time, until
    /// `source` fills less than it was lent, `max` bytes were written or the buffer is full;
    /// `source` writes into its slice and returns how many bytes it wrote. `Pending` (waker
    /// registered) when the buffer is full. When `source` filled the buffer, the waker is
    /// registered too, so a caller that saw `source` fill everything may wait without asking
    /// again. Also returns [`Grow::Send`] when the write filled the buffer while the peer's
    /// window would take more (the caller grows it: [`Self::grow`]).
    pub(crate) fn poll_write_with(
        &mut self,
        id: ConnId,
        cx: &mut Context<'_>,
        max: usize,
        source: &mut dyn FnMut(&mut [u8]) -> usize,
        sockets: &mut SocketSet<'static>,
    ) -> (Poll<Result<usize, TcpError>>, Grow) {
        let (conn, socket) = match self.open_socket(id, sockets) {
            Ok(x) => x,
            Err(e) => return (Poll::Ready(Err(e)), Grow::No),
        };
        if !socket.may_send() {
            let e = match socket.state() {
                State::Closed => TcpError::ConnectionReset,
                _ => TcpError::BrokenPipe,
            };
            return (Poll::Ready(Err(e)), Grow::No);
        }
        if max == 0 {
            return (Poll::Ready(Ok(0)), Grow::No);
        }
        let mut written = 0;
        while written < max && socket.send_queue() < socket.send_capacity() {
            let chunk = socket.send(|free| {
                let lent = free.len().min(max - written);
                let n = source(&mut free[..lent]).min(lent);
                (n, (n, lent))
            });
            match chunk {
                Ok((n, lent)) => {
                    written += n;
                    if n < lent {
                        break;
                    }
                }
                Err(_) => return (Poll::Ready(Err(TcpError::BrokenPipe)), Grow::No),
            }
        }
        let mut grow = Grow::No;
        if socket.send_queue() == socket.send_capacity() {
            conn.write.register(cx.waker());
            if written == 0 {
                return (Poll::Pending, Grow::No);
            }
            // Full, with the peer's window as large: the buffer limits what is in flight.
            if conn.send_grows && socket.remote_window() >= socket.send_capacity() {
                grow = Grow::Send;
            }
        }
        if written > 0 {
            conn.touched = true;
        }
        (Poll::Ready(Ok(written)), grow)
    }

    /// Grows the buffer `which` of connection `id` (doubles it, up to its configured maximum)
    /// if the growth fits `budget`, the group's; returns whether it grew. A grown send buffer
    /// wakes its writer (it has room now); a grown receive buffer opens the window, which the
    /// caller's runner pass announces.
    pub(crate) fn grow(
        &mut self,
        id: ConnId,
        which: Grow,
        budget: BufferBudget,
        config: &Config,
        sockets: &mut SocketSet<'static>,
        wake: &mut WakeBatch,
    ) -> bool {
        let Ok((conn, socket)) = self.open_socket(id, sockets) else {
            return false;
        };
        let (capacity, max) = match which {
            Grow::No => return false,
            Grow::Recv => (socket.recv_capacity(), config.tcp_rx_buffer_max),
            Grow::Send => (socket.send_capacity(), config.tcp_tx_buffer_max),
        };
        let larger = capacity.saturating_mul(2).min(max);
        if larger <= capacity {
            match which {
                Grow::Recv => conn.recv_grows = false,
                _ => conn.send_grows = false,
            }
            return false;
        }
        if !budget.may_grow(larger - capacity) {
            self.stats.growth_refused_budget += 1;
            return false;
        }
        let buffer = tcp::SocketBuffer::new(vec![0u8; larger]);
        let grown = match which {
            Grow::Recv => socket.grow_recv_buffer(buffer).is_ok(),
            _ => socket.grow_send_buffer(buffer).is_ok(),
        };
        if !grown {
            // Only a receive buffer is refused: the window scale in use cannot announce it.
            conn.recv_grows = false;
            return false;
        }
        if which == Grow::Send {
            wake.take_from(&mut conn.write);
        }
        conn.grown += larger - capacity;
        self.buffer_bytes += larger - capacity;
        self.grown_bytes += larger - capacity;
        self.stats.buffers_grown += 1;
        true
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

    /// Resets established connection `id`, for which the accept queue had no room.
    pub(crate) fn refuse_accept_overflow(
        &mut self,
        id: ConnId,
        now: Instant,
        sockets: &mut SocketSet<'static>,
    ) {
        if let Some(conn) = self.conns.get_mut(&id) {
            self.stats.refused_accept_queue += 1;
            let socket = sockets.get_mut::<tcp::Socket>(conn.socket);
            socket.abort();
            conn.phase = Phase::Orphan {
                since: now,
                progress: CloseProgress::of(socket),
            };
            self.deadline = Some(now);
        }
    }

    /// Makes `id` an orphan that `maintain` removes once closed (its task gave up on it).
    pub(crate) fn orphan(&mut self, id: ConnId, now: Instant, sockets: &SocketSet<'static>) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if let Phase::SynReceived { .. } = conn.phase {
                self.syn_received -= 1;
            }
            conn.phase = Phase::Orphan {
                since: now,
                progress: CloseProgress::of(sockets.get::<tcp::Socket>(conn.socket)),
            };
            self.deadline = Some(now);
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
        conn.phase = Phase::Orphan {
            since: now,
            progress: CloseProgress::of(socket),
        };
        conn.read = WakerSlot::default();
        conn.write = WakerSlot::default();
        // Let `maintain` reap it (or time it out) on the next runner pass.
        self.deadline = Some(now);
        true
    }
}

/// What [`trim_if_idle`] did.
enum Trim {
    /// Swapped the buffers now.
    Trimmed,
    /// Look again at this time.
    At(Instant),
    /// Trimmed already: nothing to wait for until data moves again.
    Nothing,
}

/// With `tcp_idle_trim`: swaps the buffers of a connection that had no data for `idle` for
/// fresh ones of the same sizes (untouched, so they cost no memory until used; the old ones
/// go back to the allocator).
fn trim_if_idle(
    conn: &mut Conn,
    socket: &mut tcp::Socket<'static>,
    idle: smoltcp::time::Duration,
    now: Instant,
) -> Trim {
    if core::mem::take(&mut conn.touched) || socket.recv_queue() > 0 || socket.send_queue() > 0 {
        conn.last_active = now;
        conn.trimmed = false;
    }
    if conn.trimmed {
        return Trim::Nothing;
    }
    let due = conn.last_active + idle;
    if now < due {
        return Trim::At(due);
    }
    let rx = tcp::SocketBuffer::new(vec![0u8; socket.recv_capacity()]);
    let tx = tcp::SocketBuffer::new(vec![0u8; socket.send_capacity()]);
    match socket.replace_buffers(rx, tx) {
        // The old buffers are dropped here, back to the allocator.
        Ok(_old) => {
            conn.trimmed = true;
            Trim::Trimmed
        }
        // Out-of-order data is waiting: look again later.
        Err(_) => {
            conn.last_active = now;
            Trim::At(now + idle)
        }
    }
}

/// Applies the stack's TCP tuning to a new socket: no delayed ACK and no Nagle on the local
/// link, Cubic where available, timeouts from the configuration.
fn configure_socket(socket: &mut tcp::Socket<'static>, config: &Config) {
    socket.set_ack_delay(None);
    socket.set_nagle_enabled(false);
    // Before `listen`: the SYN's window scale is chosen for the largest buffer.
    socket.set_recv_capacity_max(config.tcp_rx_buffer_max);
    socket.set_segmentation_offload(config.tcp_segmentation_offload);
    socket.set_timeout(config.tcp_timeout);
    socket.set_keep_alive(config.tcp_keep_alive);
    #[cfg(feature = "cubic")]
    socket.set_congestion_control(tcp::CongestionControl::Cubic);
}
