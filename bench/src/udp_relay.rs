//! The UDP relay glue of the peer forwarders and the kernel relay: `tun_forward`'s own flow
//! table and flows (`netstack_examples::forwarder::udp`), on tokio, over these subjects'
//! sockets — one connected kernel socket per (source, destination) flow, a bounded queue of
//! [`FLOW_QUEUE`] datagrams per flow (more are dropped and counted), at most [`MAX_FLOWS`]
//! flows, each closed after [`IDLE_TIMEOUT`] without traffic: `tun_forward`'s code, constants
//! and defaults, so that only the stacks differ.
//!
//! * For stacks that hand over every datagram with its addresses (netstack-smoltcp's one UDP
//!   socket, a kernel listening socket), a [`FlowTable`] demultiplexes them onto the flows
//!   (`table.dispatch::<Tokio>(…)` for each datagram that is ready, at most [`MAX_BATCH`],
//!   then `table.flush()`); spawn each flow it opens with `tokio::spawn(flow.run::<Tokio>())`.
//! * For stacks that demultiplex themselves and hand over one stream per flow (ipstack),
//!   [`stream_flow`] makes the same [`Flow`] over the stream.
//!
//! The only difference from `tun_forward`: these stacks cannot send ICMP errors, so a target's
//! "port unreachable" is dropped ([`Replies::refused`] is `false`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

pub use netstack_examples::forwarder::tokio_exec::Tokio;
pub use netstack_examples::forwarder::udp::{
    Flow, FlowTable, Replies, UdpLimits, UdpRelayStats, FLOW_QUEUE, MAX_DATAGRAM,
};
pub use netstack_examples::forwarder::udp_batch::MAX_BATCH;

/// A flow's socket is closed after this long without traffic (`tun_forward`'s default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most concurrent flows (`tun_forward`'s default).
pub const MAX_FLOWS: usize = 1024;
/// `tun_forward`'s default limits.
pub const LIMITS: UdpLimits = UdpLimits {
    idle_timeout: IDLE_TIMEOUT,
    max_flows: MAX_FLOWS,
};

/// Replies out of a kernel UDP socket that received the flows: from its own address.
#[derive(Debug, Clone)]
pub struct SocketReplies(pub Arc<UdpSocket>);

impl Replies for SocketReplies {
    type Quote = ();

    async fn send_reply(
        &self,
        payload: &[u8],
        _from: SocketAddr,
        to: SocketAddr,
    ) -> io::Result<()> {
        self.0.send_to(payload, to).await.map(|_| ())
    }

    fn refused(&self, _: &()) -> bool {
        false
    }
}

/// Replies written into a per-flow stream (ipstack's UDP streams: every write one datagram).
pub struct StreamReplies<W>(Arc<Mutex<W>>);

impl<W> Clone for StreamReplies<W> {
    fn clone(&self) -> Self {
        StreamReplies(self.0.clone())
    }
}

impl<W: AsyncWrite + Unpin + 'static> Replies for StreamReplies<W> {
    type Quote = ();

    async fn send_reply(
        &self,
        payload: &[u8],
        _from: SocketAddr,
        _to: SocketAddr,
    ) -> io::Result<()> {
        self.0.lock().await.write_all(payload).await
    }

    fn refused(&self, _: &()) -> bool {
        false
    }
}

/// The datagrams read from a per-flow stream (one per read, copied out of one reused buffer,
/// as the other stacks hand theirs over); it ends with the stream (an empty read: a
/// zero-length datagram cannot be told apart from it through this API) or its first error.
pub type Datagrams = Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>;

/// The [`Flow`] of a stack's per-flow `stream` (from `src` to `dst`, relayed to `to`).
pub fn stream_flow<S>(
    stream: S,
    route: (SocketAddr, SocketAddr, SocketAddr),
    stats: Arc<UdpRelayStats>,
) -> Flow<Vec<u8>, StreamReplies<tokio::io::WriteHalf<S>>, Datagrams>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    stats
        .flows
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (reader, writer) = tokio::io::split(stream);
    let datagrams = futures::stream::unfold(
        (reader, vec![0u8; MAX_DATAGRAM]),
        |(mut reader, mut buf)| async move {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    let datagram = buf[..n].to_vec();
                    Some((datagram, (reader, buf)))
                }
            }
        },
    );
    let replies = StreamReplies(Arc::new(Mutex::new(writer)));
    Flow::new(Box::pin(datagrams), replies, route, IDLE_TIMEOUT, stats)
}
