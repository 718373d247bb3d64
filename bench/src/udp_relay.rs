//! The UDP relay glue of the peer forwarders and the kernel relay: `tun_forward`'s design
//! (`netstack_examples::udp_relay`) for stacks that are not netstack.
//!
//! * One outbound kernel socket per (source, destination) flow, `connect`ed to the flow's
//!   target; datagrams from the target go back to the flow's source, appearing to come from
//!   its original destination.
//! * For stacks that hand over every datagram with its addresses (netstack-smoltcp's one UDP
//!   socket, a kernel listening socket), a [`FlowTable`] demultiplexes them onto the flows
//!   through a bounded queue of [`FLOW_QUEUE`] datagrams per flow (more are dropped and
//!   counted), at most [`MAX_FLOWS`] flows, each closed after [`IDLE_TIMEOUT`] without traffic:
//!   `tun_forward`'s constants and defaults.
//! * For stacks that demultiplex themselves and hand over one stream per flow (ipstack),
//!   [`relay_stream_flow`] runs the same flow loop on the stream.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams buffered per flow on their way out (`netstack_examples::udp_relay`'s value).
pub const FLOW_QUEUE: usize = 64;
/// Largest datagram read back from a target.
pub const MAX_DATAGRAM: usize = 65536;
/// A flow's socket is closed after this long without traffic (`tun_forward`'s default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most concurrent flows (`tun_forward`'s default).
pub const MAX_FLOWS: usize = 1024;

/// Where a flow's replies go: back into the stack (or out of a listening socket).
pub trait ReplySink: Clone + Send + Sync + 'static {
    /// Sends `payload` to `to` as if from `from`.
    fn send_reply(
        &self,
        payload: &[u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// A kernel UDP socket that received the flows: replies leave from its own address.
impl ReplySink for Arc<UdpSocket> {
    async fn send_reply(
        &self,
        payload: &[u8],
        _from: SocketAddr,
        to: SocketAddr,
    ) -> io::Result<()> {
        self.send_to(payload, to).await.map(|_| ())
    }
}

/// Counters of a UDP relay.
#[derive(Debug, Default)]
pub struct UdpRelayStats {
    /// Flows opened.
    pub flows: AtomicU64,
    /// Datagrams dropped (flow queue full, or too many flows).
    pub dropped: AtomicU64,
    /// Datagrams sent to targets.
    pub forwarded: AtomicU64,
    /// Datagrams sent back to sources.
    pub replied: AtomicU64,
}

impl std::fmt::Display for UdpRelayStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "udp relay: flows {}, dropped {}, forwarded {}, replied {}",
            self.flows.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.forwarded.load(Ordering::Relaxed),
            self.replied.load(Ordering::Relaxed)
        )
    }
}

/// The flows of one demultiplexing relay: [`FlowTable::dispatch`] every received datagram.
pub struct FlowTable<R, T> {
    /// Queue of each open flow, by (source, original destination).
    flows: HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>,
    /// Where replies go.
    reply: R,
    /// Target of a flow, from its original destination.
    target: T,
    /// Counters.
    stats: Arc<UdpRelayStats>,
}

impl<R, T> FlowTable<R, T>
where
    R: ReplySink,
    T: Fn(SocketAddr) -> SocketAddr,
{
    /// An empty table whose flows reply through `reply` and relay to `target(destination)`.
    pub fn new(reply: R, target: T, stats: Arc<UdpRelayStats>) -> Self {
        FlowTable {
            flows: HashMap::new(),
            reply,
            target,
            stats,
        }
    }

    /// Queues `payload` (from `src` to `dst`) on its flow, opening the flow if needed (the
    /// loop body of `netstack_examples::udp_relay::relay_udp`). Must run inside a tokio
    /// runtime.
    pub fn dispatch(&mut self, payload: Vec<u8>, src: SocketAddr, dst: SocketAddr) {
        let key = (src, dst);
        let payload = match self.flows.get(&key) {
            None => payload,
            Some(flow) => match flow.try_send(payload) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // The flow timed out: start a new one.
                Err(mpsc::error::TrySendError::Closed(p)) => {
                    self.flows.remove(&key);
                    p
                }
            },
        };
        if self.flows.len() >= MAX_FLOWS {
            self.flows.retain(|_, f| !f.is_closed());
            if self.flows.len() >= MAX_FLOWS {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let (sender, receiver) = mpsc::channel(FLOW_QUEUE);
        // A fresh channel has room for the first datagram.
        let _ = sender.try_send(payload);
        self.flows.insert(key, sender);
        self.stats.flows.fetch_add(1, Ordering::Relaxed);
        let to = (self.target)(dst);
        tokio::spawn(run_flow(
            receiver,
            self.reply.clone(),
            src,
            dst,
            to,
            self.stats.clone(),
        ));
    }
}

/// An unspecified address of `to`'s family, port 0.
fn any_of_family(to: SocketAddr) -> SocketAddr {
    match to.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A kernel UDP socket connected to `to`.
async fn connected_socket(to: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(any_of_family(to)).await?;
    socket.connect(to).await?;
    Ok(socket)
}

/// One flow: datagrams from the queue go to `to`; datagrams from `to` go back to `src` as if
/// from `dst`. Ends after [`IDLE_TIMEOUT`] without traffic.
async fn run_flow<R: ReplySink>(
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    back: R,
    src: SocketAddr,
    dst: SocketAddr,
    to: SocketAddr,
    stats: Arc<UdpRelayStats>,
) -> io::Result<()> {
    let socket = connected_socket(to).await?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            datagram = outgoing.recv() => match datagram {
                Some(d) => {
                    // A refused or failed send is a lost datagram, as on a real network.
                    if socket.send(&d).await.is_ok() {
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => return Ok(()),
            },
            received = socket.recv(&mut buf) => {
                // An error here is an ICMP error (port unreachable) for an earlier datagram:
                // the flow stays open, and the error is dropped as the network would.
                if let Ok(n) = received {
                    back.send_reply(&buf[..n], dst, src).await?;
                    stats.replied.fetch_add(1, Ordering::Relaxed);
                }
            }
            () = tokio::time::sleep(IDLE_TIMEOUT) => return Ok(()),
        }
    }
}

/// One flow handed over by the stack as a stream (every read one datagram, every write one
/// reply): the same loop as the [`FlowTable`]'s flows, with the stack's own per-flow queue
/// in place of [`FLOW_QUEUE`].
pub async fn relay_stream_flow<S>(
    stream: S,
    to: SocketAddr,
    stats: Arc<UdpRelayStats>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stats.flows.fetch_add(1, Ordering::Relaxed);
    let socket = connected_socket(to).await?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut inbound = vec![0u8; MAX_DATAGRAM];
    let mut outbound = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            read = reader.read(&mut inbound) => match read {
                // An empty read is the end of the flow (a zero-length datagram cannot be told
                // apart from it through this API).
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => {
                    if socket.send(&inbound[..n]).await.is_ok() {
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            received = socket.recv(&mut outbound) => {
                if let Ok(n) = received {
                    writer.write_all(&outbound[..n]).await?;
                    stats.replied.fetch_add(1, Ordering::Relaxed);
                }
            }
            () = tokio::time::sleep(IDLE_TIMEOUT) => return Ok(()),
        }
    }
}
