//! The relay glue of a forwarder: one accepted stream ↔ one outbound kernel socket.

use std::io;
use std::net::SocketAddr;

use netstack_tokio::TcpStream;

/// Buffer size of each relay direction: large enough that the copy is not the bottleneck.
const RELAY_BUFFER: usize = 64 * 1024;

/// Connects to `target` and copies bytes both ways until both directions finished. Half-close
/// is preserved: when one side sends FIN, the other side's write half is shut down and the
/// opposite direction keeps flowing. If the connection to `target` fails, the inbound stream is
/// reset (RST), as the real server would have refused it.
///
/// Returns the bytes copied (inbound → target, target → inbound).
///
/// # Errors
/// The connect error, or the first I/O error of either direction.
pub async fn relay(mut inbound: TcpStream, target: SocketAddr) -> io::Result<(u64, u64)> {
    let mut outbound = match tokio::net::TcpStream::connect(target).await {
        Ok(s) => s,
        Err(e) => {
            inbound.abort();
            return Err(e);
        }
    };
    outbound.set_nodelay(true)?;
    tokio::io::copy_bidirectional_with_sizes(
        &mut inbound,
        &mut outbound,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await
}
