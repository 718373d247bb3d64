//! One TCP connection's bookkeeping beside its smoltcp socket: its identity, its phase, the
//! application handles that hold it, and the tasks waiting on it.
//!
//! A connection moves through phases that the application can observe only from `Open` on:
//!
//! ```text
//! SYN ─▶ SynReceived ─handshake done─▶ AcceptPending ─accept()─▶ Open ─last handle dropped─▶ Orphan ─closed─▶ gone
//!             └─ syn_timeout / RST ─▶ gone                  accept queue full ─▶ RST ─▶ gone
//! ```
//!
//! With connection requests, a SYN first waits without a socket as a pending request (module
//! `tcp::pending`); accepting it creates the socket in `SynReceived`, and the
//! task that accepted it takes the stream when the handshake completes (no accept queue).

use smoltcp::iface::SocketHandle;
use smoltcp::time::Instant;

use crate::tcp::tuple::FourTuple;
use crate::waker::WakerSlot;

/// Identifies a connection inside its stack: its shard and a number never reused while the
/// stack lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    pub(crate) shard: u32,
    pub(crate) seq: u64,
}

impl ConnId {
    /// The shard (socket table) the connection lives in.
    pub(crate) fn shard(self) -> usize {
        self.shard as usize
    }
}

/// Where a connection is in its life (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    SynReceived {
        since: Instant,
    },
    AcceptPending,
    Open,
    /// Dropped by the application, still closing. `since` is when it was dropped or last made
    /// progress; `progress` is what it had reached by then.
    Orphan {
        since: Instant,
        progress: CloseProgress,
    },
}

/// How far an orphan's close had got: its state and the bytes still queued to send. The close
/// timeout counts from the last time either moved, so that a large send buffer drained at the
/// peer's pace is delivered in full, while a peer that stops acknowledging, or never sends its
/// FIN, is still reset after `close_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CloseProgress {
    pub(crate) state: smoltcp::socket::tcp::State,
    pub(crate) unsent: usize,
}

impl CloseProgress {
    /// Where `socket` stands now.
    pub(crate) fn of(socket: &smoltcp::socket::tcp::Socket<'_>) -> CloseProgress {
        CloseProgress {
            state: socket.state(),
            unsent: socket.send_queue(),
        }
    }

    /// Whether `now` is further along than `self`: a state change, or fewer bytes to send.
    pub(crate) fn advanced_to(self, now: CloseProgress) -> bool {
        now.state != self.state || now.unsent < self.unsent
    }
}

/// One connection's bookkeeping beside its smoltcp socket.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) socket: SocketHandle,
    pub(crate) tuple: FourTuple,
    pub(crate) phase: Phase,
    /// Application handles (a stream, or its two halves) that hold the connection.
    pub(crate) handles: u8,
    /// The task waiting to read (one: only the stream or its read half reads).
    pub(crate) read: WakerSlot,
    /// The task waiting to write (one: only the stream or its write half writes).
    pub(crate) write: WakerSlot,
    pub(crate) aborted: bool,
    /// An accepted connection request: a task awaits the handshake (`TcpTable::poll_handshake`),
    /// so it does not go to the accept queue.
    pub(crate) awaited: bool,
    /// The application read or wrote since the last pass (see `last_active`).
    pub(crate) touched: bool,
    /// When the connection last had data buffered or moved by the application, as of a pass.
    pub(crate) last_active: Instant,
    /// Its buffers were swapped for fresh ones since it last had data (`tcp_idle_trim`).
    pub(crate) trimmed: bool,
    /// Its receive buffer may still grow (not at `tcp_rx_buffer_max`, and the window scale
    /// in use can announce a larger one).
    pub(crate) recv_grows: bool,
    /// Its send buffer may still grow (not at `tcp_tx_buffer_max`).
    pub(crate) send_grows: bool,
    /// Bytes by which its buffers grew beyond their first sizes.
    pub(crate) grown: usize,
}

impl Conn {
    /// A half-open connection, created by its first SYN at `now`.
    pub(crate) fn new(socket: SocketHandle, tuple: FourTuple, now: Instant) -> Self {
        Conn {
            socket,
            tuple,
            phase: Phase::SynReceived { since: now },
            handles: 0,
            read: WakerSlot::default(),
            write: WakerSlot::default(),
            aborted: false,
            awaited: false,
            touched: false,
            last_active: now,
            trimmed: false,
            recv_grows: true,
            send_grows: true,
            grown: 0,
        }
    }
}

/// A connection that completed its handshake and was taken from the accept queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) id: ConnId,
    pub(crate) tuple: FourTuple,
}
