//! UDP relay glue of the tokio forwarder: one outbound kernel socket per (source, destination)
//! flow, closed after an idle timeout; replies go back through the stack to the flow's source,
//! appearing to come from its original destination.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netstack_tokio::{Datagram, UdpSendHalf, UdpSocket};
use tokio::sync::mpsc;

/// Datagrams buffered per flow on their way out; more are dropped (UDP may lose datagrams,
/// memory may not grow).
const FLOW_QUEUE: usize = 64;
/// Largest datagram the relay reads back from a target.
const MAX_DATAGRAM: usize = 65536;

/// Limits of the UDP relay.
#[derive(Debug, Clone, Copy)]
pub struct UdpRelayLimits {
    /// Close a flow's outbound socket after this long without traffic in either direction.
    pub idle_timeout: Duration,
    /// Maximum concurrent flows; datagrams of new flows beyond it are dropped.
    pub max_flows: usize,
}

/// Counters of the UDP relay, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct UdpRelayStats {
    /// Flows opened.
    pub flows: AtomicU64,
    /// Datagrams dropped (flow queue full, or too many flows).
    pub dropped: AtomicU64,
}

impl std::fmt::Display for UdpRelayStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "udp relay: flows {}, dropped {}",
            self.flows.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed)
        )
    }
}

/// Relays every datagram of `socket` to `target(original destination)`; runs until aborted.
pub async fn relay_udp(
    socket: UdpSocket,
    target: impl Fn(SocketAddr) -> SocketAddr,
    limits: UdpRelayLimits,
    stats: Arc<UdpRelayStats>,
) {
    let (rx, tx) = socket.split();
    let mut flows: HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>> = HashMap::new();
    let stats = &*stats;
    loop {
        let Datagram { payload, src, dst } = rx.recv().await;
        let key = (src, dst);
        if let Some(flow) = flows.get(&key) {
            match flow.try_send(payload) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // The flow timed out: start a new one below.
                Err(mpsc::error::TrySendError::Closed(p)) => {
                    flows.remove(&key);
                    open_flow(&mut flows, stats, &tx, &target, limits, key, p);
                    continue;
                }
            }
        }
        open_flow(&mut flows, stats, &tx, &target, limits, key, payload);
    }
}

/// Opens a flow for `key` and queues its first datagram.
fn open_flow(
    flows: &mut HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>,
    stats: &UdpRelayStats,
    tx: &UdpSendHalf,
    target: &impl Fn(SocketAddr) -> SocketAddr,
    limits: UdpRelayLimits,
    key: (SocketAddr, SocketAddr),
    first: Vec<u8>,
) {
    if flows.len() >= limits.max_flows {
        flows.retain(|_, f| !f.is_closed());
        if flows.len() >= limits.max_flows {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    let (sender, receiver) = mpsc::channel(FLOW_QUEUE);
    // A fresh channel has room for the first datagram.
    let _ = sender.try_send(first);
    flows.insert(key, sender);
    stats.flows.fetch_add(1, Ordering::Relaxed);
    let (src, dst) = key;
    let to = target(dst);
    tokio::spawn(run_flow(
        receiver,
        tx.clone(),
        src,
        dst,
        to,
        limits.idle_timeout,
    ));
}

/// One flow: datagrams from the channel go to `to`; datagrams from `to` go back to `src` as if
/// from `dst`. Ends after `idle` without traffic.
async fn run_flow(
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    back: UdpSendHalf,
    src: SocketAddr,
    dst: SocketAddr,
    to: SocketAddr,
    idle: Duration,
) -> io::Result<()> {
    let bind: SocketAddr = match to.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(to).await?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            datagram = outgoing.recv() => match datagram {
                Some(d) => {
                    // A refused or failed send is a lost datagram, as on a real network.
                    let _ = socket.send(&d).await;
                }
                None => return Ok(()),
            },
            received = socket.recv(&mut buf) => {
                // An error here is an ICMP error (port unreachable) for an earlier datagram:
                // the flow stays open, and the error is dropped as the network would.
                if let Ok(n) = received {
                    back.send_to(&buf[..n], dst, src).await?;
                }
            }
            _ = tokio::time::sleep(idle) => return Ok(()),
        }
    }
}
