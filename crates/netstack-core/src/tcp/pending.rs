//! Connection requests the application has not answered yet: a SYN for a new 4-tuple, held
//! without a socket (so a pending request costs its SYN's bytes, not two socket buffers) until
//! the application accepts it (then the SYN is handed to smoltcp, which answers SYN-ACK),
//! refuses it, or lets it expire.

use alloc::collections::VecDeque;
use core::task::{Context, Poll};

use smoltcp::time::Instant;

use crate::classify::{SynOptions, TcpHeader};
use crate::icmp::unreachable::Unreachable;
use crate::packet::Packet;
use crate::tcp::connection::ConnId;
use crate::tcp::tuple::FourTuple;
use crate::waker::{WakeBatch, WakerList};

/// How a [`ConnectionRequest`](crate::ConnectionRequest) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer the SYN with RST: the client's `connect()` fails with `ECONNREFUSED`, as for a
    /// closed port.
    Reset,
    /// Answer with an ICMP (IPv4) or ICMPv6 destination unreachable of this kind, quoting the
    /// SYN; see [`Unreachable`] for the errors clients report. Rate-limited by
    /// `icmp_errors_per_second`: beyond it the request is refused with RST instead.
    Unreachable(Unreachable),
}

/// One SYN waiting for the application's answer.
#[derive(Debug)]
pub(crate) struct PendingRequest {
    pub(crate) tuple: FourTuple,
    /// The SYN itself: smoltcp processes it on accept, and ICMP errors quote it.
    pub(crate) syn: Packet,
    pub(crate) header: TcpHeader,
    pub(crate) since: Instant,
    /// Whether a listener has handed it to the application (a request is handed out once).
    pub(crate) handed_out: bool,
}

/// What the application learns about a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestInfo {
    pub(crate) id: ConnId,
    pub(crate) tuple: FourTuple,
    pub(crate) options: SynOptions,
}

/// Most refused 4-tuples a shard remembers (see [`RecentRefusals`]).
const REMEMBERED_REFUSALS: usize = 16;

/// The 4-tuples a shard refused in the last `syn_timeout`, so that a retransmitted SYN (its
/// RST or ICMP error was lost) gets the same answer at once instead of becoming a new request
/// that waits for the application again. Bounded: the oldest is forgotten first.
#[derive(Debug, Default)]
pub(crate) struct RecentRefusals {
    entries: VecDeque<(FourTuple, Refusal, Instant)>,
}

impl RecentRefusals {
    /// Remembers that `tuple` was refused at `now`.
    pub(crate) fn remember(&mut self, tuple: FourTuple, refusal: Refusal, now: Instant) {
        if self.entries.len() >= REMEMBERED_REFUSALS {
            self.entries.pop_front();
        }
        self.entries.push_back((tuple, refusal, now));
    }

    /// How `tuple` was refused, if it was since `since`.
    pub(crate) fn lookup(&mut self, tuple: &FourTuple, since: Instant) -> Option<Refusal> {
        while self.entries.front().is_some_and(|&(_, _, at)| at < since) {
            self.entries.pop_front();
        }
        self.entries
            .iter()
            .rev()
            .find(|(t, _, _)| t == tuple)
            .map(|&(_, refusal, _)| refusal)
    }
}

/// New requests waiting for a listener to hand them to the application, across all shards.
/// Bounded by the SYN backlog (every entry is a half-open request); entries whose request
/// expired meanwhile are skipped when they are popped.
#[derive(Default)]
pub(crate) struct RequestQueue {
    queue: VecDeque<ConnId>,
    waiters: WakerList,
}

impl RequestQueue {
    /// Queues a new request and wakes the listeners waiting for one.
    pub(crate) fn push(&mut self, id: ConnId, wake: &mut WakeBatch) {
        self.queue.push_back(id);
        self.waiters.take_all(wake);
    }

    /// Takes the next request id, or registers the waker.
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<ConnId> {
        match self.queue.pop_front() {
            Some(id) => Poll::Ready(id),
            None => {
                self.waiters.register(cx.waker());
                Poll::Pending
            }
        }
    }

    /// Drops `id` (its request expired before a listener took it). At most `syn_backlog`
    /// entries are compared.
    pub(crate) fn forget(&mut self, id: ConnId) {
        if let Some(at) = self.queue.iter().position(|&q| q == id) {
            self.queue.remove(at);
        }
    }
}
