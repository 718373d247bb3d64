//! The relay glue of the peer forwarders and the kernel relay, generic over the inbound stream
//! type: `tokio::io::copy_bidirectional_with_sizes` with [`RELAY_BUFFER`] per direction (the
//! buffer size of `netstack_examples::forwarder::relay`, which instead waits for readiness and borrows
//! pooled buffers, as only netstack's streams can).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// Buffer size of each relay direction: `tun_forward`'s (`netstack_examples::forwarder::relay`), so that
/// every subject copies in the same chunks.
pub const RELAY_BUFFER: usize = netstack_examples::forwarder::relay::RELAY_BUFFER;

/// Connects to `target` (with `TCP_NODELAY`) and copies bytes both ways with
/// [`tokio::io::copy_bidirectional_with_sizes`] until both directions finished.
///
/// Returns the bytes copied (inbound → target, target → inbound).
///
/// # Errors
/// The connect error, or the first I/O error of either direction.
pub async fn relay_to<S>(mut inbound: S, target: SocketAddr) -> io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut outbound = tokio::net::TcpStream::connect(target).await?;
    outbound.set_nodelay(true)?;
    tokio::io::copy_bidirectional_with_sizes(
        &mut inbound,
        &mut outbound,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await
}
